"""The secure stack's pure parts: principals and their rights, server overrides, client settings,
certificates, and the files ``ensure_material`` writes (no server)."""

from __future__ import annotations

import json
import stat
import tomllib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from clickstream.settings import KafkaSettings, Settings, load_settings
from commands.stack.certs import issue_server, make_ca
from commands.stack.secure import (
    BROKER_USER,
    Principal,
    SecureFiles,
    client_toml,
    es_overrides,
    es_roles_yml,
    kafka_overrides,
    override,
    principals,
)
from commands.stack.secure_setup import ensure_material, scram_format_args


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        stack={"home": tmp_path, "secure": True, "kafka_controller_port": 19093},
        kafka={"bootstrap_servers": "127.0.0.1:19092"},
        elasticsearch={"url": "https://127.0.0.1:19200"},
    )


def _by_name(settings: Settings) -> dict[str, Principal]:
    return {p.name: p for p in principals(settings)}


def _rights(principal: Principal) -> set[tuple[str, str, str, str]]:
    return {(a.resource, a.name, a.pattern, a.operation) for a in principal.acls}


def test_override_replaces_in_place_appends_the_rest_and_keeps_comments() -> None:
    text = "# listeners=commented\nlisteners=PLAINTEXT://h:1\nnode.id=1\n"
    out = override(text, {"listeners": "SASL_SSL://h:1", "sasl.enabled.mechanisms": "X"}, "=")
    assert out.splitlines() == [
        "# listeners=commented",
        "listeners=SASL_SSL://h:1",
        "node.id=1",
        "sasl.enabled.mechanisms=X",
    ]


def test_override_of_yaml_lines() -> None:
    out = override("xpack.security.enabled: false\nhttp.port: 1\n", es_overrides(), ": ")
    assert "xpack.security.enabled: true" in out.splitlines()
    assert "xpack.security.enabled: false" not in out


def test_kafka_overrides_leave_no_plaintext_client_listener(settings: Settings) -> None:
    values = kafka_overrides(settings, SecureFiles(settings.stack.home), "pw")
    assert values["listeners"] == "SASL_SSL://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert values["listener.security.protocol.map"] == "CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL"
    assert values["inter.broker.listener.name"] == "SASL_SSL"
    assert values["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert values["ssl.keystore.type"] == values["ssl.truststore.type"] == "PEM"
    assert values["super.users"] == f"User:{BROKER_USER};User:ANONYMOUS"
    assert values["allow.everyone.if.no.acl.found"] == "false"
    assert values["authorizer.class.name"].endswith("StandardAuthorizer")


def test_producer_may_only_write_clicks(settings: Settings) -> None:
    assert _rights(_by_name(settings)["producer"]) == {
        ("TOPIC", "clicks", "LITERAL", "WRITE"),
        ("TOPIC", "clicks", "LITERAL", "DESCRIBE"),
    }


def test_ingest_rights(settings: Settings) -> None:
    rights = _rights(_by_name(settings)["ingest"])
    assert ("TOPIC", "clicks", "LITERAL", "READ") in rights
    assert ("TOPIC", "clicks", "LITERAL", "WRITE") not in rights
    assert ("TOPIC", "clicks.speed-state", "LITERAL", "WRITE") in rights
    assert ("TOPIC", "clicks.dlq", "LITERAL", "WRITE") in rights
    assert ("TOPIC", "clicks.dlq", "LITERAL", "READ") not in rights
    assert ("GROUP", "clickstream-ingest", "LITERAL", "READ") in rights
    # The daemons' transactional ids are "<group>-<instance>".
    assert ("TRANSACTIONAL_ID", "clickstream-ingest-", "PREFIXED", "WRITE") in rights


def test_rights_follow_renamed_topics_and_group(tmp_path: Path) -> None:
    settings = load_settings(
        stack={"home": tmp_path}, kafka={"clicks_topic": "c2"}, ingest={"group_id": "g2"}
    )
    rights = _rights(_by_name(settings)["ingest"])
    assert ("TOPIC", "c2.speed-state", "LITERAL", "WRITE") in rights
    assert ("TRANSACTIONAL_ID", "g2-", "PREFIXED", "WRITE") in rights


def test_no_client_principal_has_cluster_or_all_rights(settings: Settings) -> None:
    for principal in principals(settings):
        for acl in principal.acls:
            assert acl.resource != "BROKER", principal.name
            assert acl.operation not in ("ALL", "ALTER", "CLUSTER_ACTION", "DELETE"), acl


def test_batch_and_serving_have_no_kafka_rights(settings: Settings) -> None:
    by_name = _by_name(settings)
    assert not by_name["batch"].uses_kafka
    assert not by_name["serving"].uses_kafka
    assert not by_name["producer"].uses_elasticsearch
    assert not by_name["dlq-reader"].uses_elasticsearch


def test_roles_yml_has_one_line_per_role_with_a_json_body(settings: Settings) -> None:
    lines = es_roles_yml(principals(settings)).splitlines()
    roles = {}
    for line in lines:
        name, _, body = line.partition(": ")
        roles[name] = json.loads(body)
    assert set(roles) == {"ingest", "batch", "serving", "admin"}
    serving = roles["serving"]["indices"]
    assert serving == [{"names": ["clickstream-*"], "privileges": ["read", "view_index_metadata"]}]
    assert "manage_index_templates" in roles["batch"]["cluster"]
    assert "manage_index_templates" not in roles["ingest"]["cluster"]


def test_client_toml_names_password_files_never_passwords(settings: Settings) -> None:
    files = SecureFiles(settings.stack.home)
    ingest = _by_name(settings)["ingest"]
    data = tomllib.loads(client_toml(settings, files, ingest))
    assert data["kafka"] == {
        "bootstrap_servers": "127.0.0.1:19092",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": "ingest",
        "sasl_password_file": str(files.password("ingest")),
        "ssl_ca_file": str(files.ca_cert),
    }
    assert data["elasticsearch"] == {
        "url": "https://127.0.0.1:19200",
        "index_prefix": "clickstream",
        "ca_file": str(files.ca_cert),
        "username": "ingest",
        "password_file": str(files.password("ingest")),
    }
    # Both sections always: a missing one would mean the plain stack's default ports.
    serving = tomllib.loads(client_toml(settings, files, _by_name(settings)["serving"]))
    assert serving["kafka"]["bootstrap_servers"] == "127.0.0.1:19092"
    producer = tomllib.loads(client_toml(settings, files, _by_name(settings)["producer"]))
    assert producer["elasticsearch"]["url"] == "https://127.0.0.1:19200"


def test_server_certificate_names_loopback_and_is_signed_by_the_ca() -> None:
    ca = make_ca()
    issued = issue_server(ca, "broker", ("localhost",), ("127.0.0.1",))
    assert issued.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    cert = x509.load_pem_x509_certificate(issued.cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    public = ca_cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    cert.verify_directly_issued_by(ca_cert)


def test_ensure_material_writes_private_files_once(settings: Settings) -> None:
    files = ensure_material(settings)
    assert stat.S_IMODE(files.root.stat().st_mode) == 0o700
    for path in (files.ca_key, files.kafka_keystore, files.es_key, files.password("ingest")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    keystore = files.kafka_keystore.read_text()
    assert keystore.startswith("-----BEGIN PRIVATE KEY-----")
    assert "-----BEGIN CERTIFICATE-----" in keystore
    before = files.password("ingest").read_text()
    ca_before = files.ca_cert.read_bytes()
    ensure_material(settings)
    assert files.password("ingest").read_text() == before
    assert files.ca_cert.read_bytes() == ca_before


def test_scram_format_args_cover_the_broker_and_every_principal(settings: Settings) -> None:
    files = ensure_material(settings)
    args = scram_format_args(settings, files)
    values = args[1::2]
    assert args[::2] == ["--add-scram"] * len(values)
    names = [v.split("name=")[1].split(",")[0] for v in values]
    assert names == [BROKER_USER, *(p.name for p in principals(settings))]
    assert all(v.startswith("SCRAM-SHA-512=[") for v in values)


def test_client_settings_load_with_the_client_security_settings(settings: Settings) -> None:
    """The written TOML is what KafkaSettings/ElasticsearchSettings read, once they have the
    password-file and CA settings (the main checkout's; skipped before that merge)."""
    if "ssl_ca_file" not in KafkaSettings.model_fields:
        pytest.skip("KafkaSettings has no ssl_ca_file / sasl_password_file yet")
    files = ensure_material(settings)
    loaded = load_settings(files.client_config("ingest"))
    assert loaded.kafka.sasl_username == "ingest"
    assert loaded.elasticsearch.username == "ingest"
