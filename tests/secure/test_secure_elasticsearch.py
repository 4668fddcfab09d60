"""Elasticsearch on the secure stack: HTTPS with the stack's CA, file-realm users, roles."""

from __future__ import annotations

import secrets

import pytest
from elasticsearch import AuthenticationException, AuthorizationException, Elasticsearch

from clickstream.settings import Settings
from commands.stack.secure import SecureFiles
from commands.stack.secure_setup import password

pytestmark = pytest.mark.secure

TEST_INDEX = "clickstream-batch-securetest"


def _client(
    settings: Settings, files: SecureFiles, user: str, secret: str | None = None
) -> Elasticsearch:
    host, port = settings.elasticsearch.host_port
    return Elasticsearch(
        f"https://{host}:{port}",
        ca_certs=str(files.ca_cert),
        basic_auth=(user, secret if secret is not None else password(files, user)),
        request_timeout=20,
    )


@pytest.fixture(scope="module")
def view_index(secure_settings: Settings, files: SecureFiles) -> str:
    """An index under the prefix, created by the admin principal, one document written by the
    batch principal."""
    admin = _client(secure_settings, files, "admin")
    if not admin.indices.exists(index=TEST_INDEX):
        admin.indices.create(index=TEST_INDEX)
    batch = _client(secure_settings, files, "batch")
    batch.index(index=TEST_INDEX, id="1", document={"clicks": 1}, refresh=True)
    return TEST_INDEX


def test_serving_can_search(secure_settings: Settings, files: SecureFiles, view_index: str) -> None:
    found = _client(secure_settings, files, "serving").search(index=view_index, size=1)
    assert found["hits"]["total"]["value"] >= 1


def test_serving_cannot_write(
    secure_settings: Settings, files: SecureFiles, view_index: str
) -> None:
    serving = _client(secure_settings, files, "serving")
    with pytest.raises(AuthorizationException) as caught:
        serving.index(index=view_index, document={"clicks": 2})
    assert caught.value.meta.status == 403
    assert "is unauthorized for user [serving]" in str(caught.value)


def test_admin_can_put_a_template(secure_settings: Settings, files: SecureFiles) -> None:
    admin = _client(secure_settings, files, "admin")
    name = "clickstream-securetest"
    admin.indices.put_index_template(
        name=name, index_patterns=[f"{name}-*"], template={"settings": {"number_of_replicas": 0}}
    )
    assert admin.indices.exists_index_template(name=name)
    admin.indices.delete_index_template(name=name)


def test_serving_cannot_put_a_template(secure_settings: Settings, files: SecureFiles) -> None:
    with pytest.raises(AuthorizationException):
        _client(secure_settings, files, "serving").indices.put_index_template(
            name="clickstream-nope", index_patterns=["clickstream-nope-*"]
        )


def test_ingest_cannot_write_the_batch_view(
    secure_settings: Settings, files: SecureFiles, view_index: str
) -> None:
    with pytest.raises(AuthorizationException):
        _client(secure_settings, files, "ingest").index(index=view_index, document={"clicks": 3})


def test_wrong_password_is_a_401(secure_settings: Settings, files: SecureFiles) -> None:
    client = _client(secure_settings, files, "serving", secret=secrets.token_hex(8))
    with pytest.raises(AuthenticationException) as caught:
        client.info()
    assert caught.value.meta.status == 401
    assert "unable to authenticate user [serving]" in str(caught.value)


def test_no_credentials_is_a_401(secure_settings: Settings, files: SecureFiles) -> None:
    host, port = secure_settings.elasticsearch.host_port
    client = Elasticsearch(f"https://{host}:{port}", ca_certs=str(files.ca_cert))
    with pytest.raises(AuthenticationException):
        client.info()


def test_a_principal_without_a_role_logs_in_and_may_do_nothing(
    secure_settings: Settings, files: SecureFiles, view_index: str
) -> None:
    producer = _client(secure_settings, files, "producer")
    assert producer.security.authenticate()["username"] == "producer"
    with pytest.raises(AuthorizationException):
        producer.search(index=view_index)
