"""The client configuration built from settings: librdkafka's security properties (producers,
consumers, admin) and the Elasticsearch client's keyword arguments; URLs redacted for messages."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient
from elasticsearch.serializer import OrjsonSerializer
from pydantic import SecretStr

from clickstream.security import redact_url
from clickstream.settings import ElasticsearchSettings, KafkaSettings
from indexing.client import client_kwargs, connect

KEY_PASSPHRASE = "key-pass"  # noqa: S105 - the test key's passphrase
FINGERPRINT = "0f" * 32


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, and a client certificate it signed with an encrypted key: real PEM files that
    librdkafka loads when a client is made (nothing connects)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    home = tmp_path_factory.mktemp("pki")
    ca, ca_key = home / "ca.pem", home / "ca.key"
    cert, key, csr = home / "client.pem", home / "client.key", home / "client.csr"

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca),
        "-subj", "/CN=clickstream-test-ca", "-days", "1",
    )  # fmt: skip
    openssl(
        "req", "-newkey", "rsa:2048", "-keyout", str(key), "-passout", f"pass:{KEY_PASSPHRASE}",
        "-out", str(csr), "-subj", "/CN=clickstream-ingest",
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(cert), "-days", "1",
    )  # fmt: skip
    return {"ca": ca, "cert": cert, "key": key, "ca_key": ca_key}


class TestKafkaSecurityConfig:
    def test_plaintext(self) -> None:
        """The local stack: no credentials, no TLS properties at all."""
        assert KafkaSettings().client_config() == {
            "bootstrap.servers": "127.0.0.1:9092",
            "security.protocol": "plaintext",
        }

    def test_sasl_ssl_scram_with_a_private_ca(self, pki: dict[str, Path]) -> None:
        """SASL_SSL: SCRAM-SHA-512 by default, the broker's hostname checked against the CA."""
        kafka = KafkaSettings(
            bootstrap_servers="kafka-1.prod:9093,kafka-2.prod:9093",
            security_protocol="SASL_SSL",
            sasl_username="clickstream-ingest",
            sasl_password=SecretStr("scram-secret"),
            ssl_ca_file=pki["ca"],
        )
        assert kafka.client_config() == {
            "bootstrap.servers": "kafka-1.prod:9093,kafka-2.prod:9093",
            "security.protocol": "sasl_ssl",
            "sasl.mechanisms": "SCRAM-SHA-512",
            "sasl.username": "clickstream-ingest",
            "sasl.password": "scram-secret",
            "ssl.endpoint.identification.algorithm": "https",
            "ssl.ca.location": str(pki["ca"]),
        }

    def test_other_mechanism(self) -> None:
        kafka = KafkaSettings(
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-256",
            sasl_username="u",
            sasl_password=SecretStr("p"),
        )
        assert kafka.security_config()["sasl.mechanisms"] == "SCRAM-SHA-256"

    def test_mtls(self, pki: dict[str, Path]) -> None:
        """SSL with a client certificate and its encrypted key: no SASL properties."""
        kafka = KafkaSettings(
            security_protocol="SSL",
            ssl_ca_file=pki["ca"],
            ssl_certificate_file=pki["cert"],
            ssl_key_file=pki["key"],
            ssl_key_password=SecretStr(KEY_PASSPHRASE),
        )
        assert kafka.security_config() == {
            "security.protocol": "ssl",
            "ssl.endpoint.identification.algorithm": "https",
            "ssl.ca.location": str(pki["ca"]),
            "ssl.certificate.location": str(pki["cert"]),
            "ssl.key.location": str(pki["key"]),
            "ssl.key.password": KEY_PASSPHRASE,
        }

    def test_librdkafka_takes_every_client_config(self, pki: dict[str, Path]) -> None:
        """Producer, consumer and admin client accept the properties as built (names and values
        librdkafka knows; it loads the CA, certificate and key at creation)."""
        quiet: dict[str, Any] = {"log_level": 0}
        configs = [
            KafkaSettings(
                bootstrap_servers="127.0.0.1:1",
                security_protocol="SASL_SSL",
                sasl_username="u",
                sasl_password=SecretStr("p"),
                ssl_ca_file=pki["ca"],
            ).client_config(),
            KafkaSettings(
                bootstrap_servers="127.0.0.1:1",
                security_protocol="SSL",
                ssl_ca_file=pki["ca"],
                ssl_certificate_file=pki["cert"],
                ssl_key_file=pki["key"],
                ssl_key_password=SecretStr(KEY_PASSPHRASE),
            ).client_config(),
        ]
        for config in configs:
            Producer({**config, **quiet})
            Consumer({**config, **quiet, "group.id": "test"})
            AdminClient({**config, **quiet})

    def test_librdkafka_checks_the_key_passphrase(self, pki: dict[str, Path]) -> None:
        """A wrong passphrase fails when the client is made, not at the first connection."""
        config = KafkaSettings(
            bootstrap_servers="127.0.0.1:1",
            security_protocol="SSL",
            ssl_certificate_file=pki["cert"],
            ssl_key_file=pki["key"],
            ssl_key_password=SecretStr("wrong"),
        ).client_config()
        with pytest.raises(KafkaException, match=r"ssl\.key\.location failed"):
            Producer({**config, "log_level": 0})


class TestElasticsearchClientKwargs:
    @staticmethod
    def _kwargs(settings: ElasticsearchSettings) -> dict[str, Any]:
        kwargs = client_kwargs(settings)
        assert isinstance(kwargs.pop("serializer"), OrjsonSerializer)
        return kwargs

    def test_local_stack(self) -> None:
        """http:// without credentials: no auth, no TLS arguments."""
        assert self._kwargs(ElasticsearchSettings()) == {
            "hosts": ["http://127.0.0.1:9200"],
            "request_timeout": 30.0,
            "retry_on_timeout": True,
            "max_retries": 3,
        }

    def test_private_ca_and_basic_auth(self, pki: dict[str, Path]) -> None:
        es = ElasticsearchSettings(
            url="https://es.prod:9200",
            username="clickstream",
            password=SecretStr("es-secret"),
            ca_file=pki["ca"],
        )
        assert self._kwargs(es) == {
            "hosts": ["https://es.prod:9200"],
            "request_timeout": 30.0,
            "retry_on_timeout": True,
            "max_retries": 3,
            "basic_auth": ("clickstream", "es-secret"),
            "verify_certs": True,
            "ca_certs": str(pki["ca"]),
        }

    def test_fingerprint_and_api_key(self) -> None:
        es = ElasticsearchSettings(
            url="https://es.prod:9200",
            api_key=SecretStr("a2V5OnNlY3JldA=="),
            ssl_assert_fingerprint=FINGERPRINT.upper(),
        )
        kwargs = self._kwargs(es)
        assert kwargs["api_key"] == "a2V5OnNlY3JldA=="
        assert kwargs["ssl_assert_fingerprint"] == FINGERPRINT
        assert kwargs["verify_certs"] is True
        assert "ca_certs" not in kwargs
        assert "basic_auth" not in kwargs

    def test_client_certificate(self, pki: dict[str, Path]) -> None:
        es = ElasticsearchSettings(
            url="https://es.prod:9200",
            ca_file=pki["ca"],
            client_certificate_file=pki["cert"],
            client_key_file=pki["ca_key"],
        )
        kwargs = self._kwargs(es)
        assert (kwargs["ca_certs"], kwargs["client_cert"], kwargs["client_key"]) == (
            str(pki["ca"]),
            str(pki["cert"]),
            str(pki["ca_key"]),
        )

    def test_verification_off(self) -> None:
        es = ElasticsearchSettings(url="https://es.test:9200", verify_certs=False)
        assert self._kwargs(es)["verify_certs"] is False

    def test_the_client_carries_them_to_its_connections(self, pki: dict[str, Path]) -> None:
        """The arguments reach the node's connection pool (nothing connects)."""
        es = ElasticsearchSettings(
            url="https://es.prod:9200",
            ca_file=pki["ca"],
            client_certificate_file=pki["cert"],
            client_key_file=pki["ca_key"],
        )
        with connect(es) as client:
            pool = client.transport.node_pool.all()[0].pool  # type: ignore[attr-defined]
            assert (pool.ca_certs, pool.cert_file, pool.key_file, pool.cert_reqs) == (
                str(pki["ca"]),
                str(pki["cert"]),
                str(pki["ca_key"]),
                "CERT_REQUIRED",
            )
        pinned = ElasticsearchSettings(
            url="https://es.prod:9200", ssl_assert_fingerprint=FINGERPRINT
        )
        with connect(pinned) as client:
            pool = client.transport.node_pool.all()[0].pool  # type: ignore[attr-defined]
            assert pool._elastic_assert_fingerprint == FINGERPRINT


class TestRedactUrl:
    @pytest.mark.parametrize(
        ("url", "shown"),
        [
            ("https://u:p@h:9200", "https://***@h:9200"),
            ("https://elastic:pa@ss/w@es.prod:9200/", "https://***@es.prod:9200/"),
            ("https://user@h:9200", "https://***@h:9200"),
            ("u:p@h:9200", "***@h:9200"),
            ("https://h:9200/path", "https://h:9200/path"),
            ("http://127.0.0.1:9200", "http://127.0.0.1:9200"),
        ],
    )
    def test_userinfo_is_masked(self, url: str, shown: str) -> None:
        assert redact_url(url) == shown
