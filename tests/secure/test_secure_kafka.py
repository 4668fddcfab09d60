"""Kafka on the secure stack: SASL_SSL + SCRAM-SHA-512, ACLs, TLS with the stack's CA."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from clickstream.settings import Settings
from commands.stack.certs import make_ca
from commands.stack.secure import SecureFiles
from commands.stack.secure_setup import kafka_client_config

pytestmark = pytest.mark.secure


def _config(settings: Settings, files: SecureFiles, user: str, **extra: Any) -> dict[str, Any]:
    return {**kafka_client_config(settings, files, user), "log_level": 0, **extra}


def _errors_of_metadata_request(config: dict[str, Any]) -> list[KafkaError]:
    """The errors a client reports while it tries (and fails) to read the cluster's metadata."""
    errors: list[KafkaError] = []
    admin = AdminClient({**config, "error_cb": errors.append, "socket.timeout.ms": 3000})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=8)
    admin.poll(1)
    return errors


@pytest.fixture(scope="module")
def clicks(secure_settings: Settings, files: SecureFiles) -> str:
    """The clicks topic, created by the admin principal (its CREATE ACL)."""
    topic = secure_settings.kafka.clicks_topic
    admin = AdminClient(_config(secure_settings, files, "admin"))
    for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        try:
            future.result(30)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return topic


def test_scram_round_trip_producer_to_ingest(
    secure_settings: Settings, files: SecureFiles, clicks: str
) -> None:
    marker = uuid.uuid4().hex.encode()
    producer = Producer(_config(secure_settings, files, "producer", acks="all"))
    delivered: list[KafkaError | None] = []
    producer.produce(clicks, value=marker, on_delivery=lambda err, _msg: delivered.append(err))
    assert producer.flush(30) == 0
    assert delivered == [None]

    consumer = Consumer(
        _config(
            secure_settings,
            files,
            "ingest",
            **{
                "group.id": secure_settings.ingest.group_id,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            },
        )
    )
    consumer.subscribe([clicks])
    seen: list[bytes] = []
    try:
        for _ in range(60):
            message = consumer.poll(1)
            if message is None:
                continue
            assert message.error() is None, message.error()
            seen.append(message.value())
            if marker in seen:
                break
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    assert marker in seen


def test_wrong_password_fails_naming_authentication(
    secure_settings: Settings, files: SecureFiles
) -> None:
    config = _config(secure_settings, files, "producer", **{"sasl.password": "not-the-password"})
    errors = _errors_of_metadata_request(config)
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors
    assert any("authentication" in e.str().lower() for e in errors), errors


def test_principal_without_acl_cannot_produce(
    secure_settings: Settings, files: SecureFiles, clicks: str
) -> None:
    producer = Producer(_config(secure_settings, files, "serving", **{"message.timeout.ms": 10000}))
    delivered: list[KafkaError] = []
    producer.produce(clicks, value=b"x", on_delivery=lambda err, _msg: delivered.append(err))
    producer.flush(15)
    assert len(delivered) == 1
    error = delivered[0]
    assert error is not None
    assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, error
    assert "authoriz" in error.str().lower(), error


def test_producer_cannot_read_clicks(
    secure_settings: Settings, files: SecureFiles, clicks: str
) -> None:
    consumer = Consumer(
        _config(
            secure_settings,
            files,
            "producer",
            **{"group.id": secure_settings.ingest.group_id, "auto.offset.reset": "earliest"},
        )
    )
    consumer.subscribe([clicks])
    try:
        error = None
        for _ in range(20):
            message = consumer.poll(1)
            if message is not None and message.error() is not None:
                error = message.error()
                break
    finally:
        consumer.close()
    assert error is not None
    assert "authoriz" in error.str().lower(), error


def test_wrong_ca_fails_naming_the_certificate(
    secure_settings: Settings, files: SecureFiles, tmp_path: Path
) -> None:
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(make_ca("some other CA").cert_pem)
    config = _config(secure_settings, files, "producer", **{"ssl.ca.location": str(other_ca)})
    errors = _errors_of_metadata_request(config)
    assert any(e.code() == KafkaError._SSL for e in errors), errors
    assert any("certificate verify failed" in e.str() for e in errors), errors


class _Lines(logging.Handler):
    """Keeps librdkafka's log lines (its ``logger`` setting) for assertions."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_plaintext_connection_to_the_secure_port_fails(secure_settings: Settings) -> None:
    handler = _Lines()
    logger = logging.getLogger(f"rdkafka.{uuid.uuid4().hex}")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    admin = AdminClient(
        {
            "bootstrap.servers": secure_settings.kafka.bootstrap_servers,
            "security.protocol": "plaintext",
            "socket.timeout.ms": 3000,
            "logger": logger,
        }
    )
    with pytest.raises(KafkaException) as caught:
        admin.list_topics(timeout=6)
    admin.poll(1)
    assert caught.value.args[0].code() == KafkaError._TRANSPORT
    # The TLS listener drops a plaintext Kafka request at the first bytes.
    assert any(
        "connection closed by peer" in line and "APIVERSION_QUERY" in line for line in handler.lines
    ), handler.lines[:5]


def test_sasl_without_tls_to_the_secure_port_fails(
    secure_settings: Settings, files: SecureFiles
) -> None:
    config = _config(secure_settings, files, "producer", **{"security.protocol": "sasl_plaintext"})
    config.pop("ssl.ca.location")
    errors = _errors_of_metadata_request(config)
    assert errors
    assert not any(e.code() == KafkaError._AUTHENTICATION for e in errors)


@pytest.fixture(scope="module")
def pipeline_topics(secure_settings: Settings, files: SecureFiles, clicks: str) -> list[str]:
    """The dead-letter and changelog topics too, created by the admin principal."""
    kafka = secure_settings.kafka
    admin = AdminClient(_config(secure_settings, files, "admin"))
    names = [kafka.dlq_topic, kafka.speed_changelog_topic]
    for future in admin.create_topics([NewTopic(name, 1, 1) for name in names]).values():
        try:
            future.result(30)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return [clicks, *names]


def test_ingest_transaction_reads_clicks_writes_changelog_and_dead_letters(
    secure_settings: Settings, files: SecureFiles, pipeline_topics: list[str]
) -> None:
    """The daemon's Kafka work, as its principal: a transaction over the changelog and the
    dead-letter topic that commits the group's clicks offsets; then the dead-letter reader
    reads the dead letter."""
    clicks, dlq, changelog = pipeline_topics
    group = secure_settings.ingest.group_id
    marker = uuid.uuid4().hex.encode()
    producer = Producer(_config(secure_settings, files, "producer"))
    producer.produce(clicks, value=marker)
    assert producer.flush(30) == 0

    consumer = Consumer(
        _config(
            secure_settings,
            files,
            "ingest",
            **{
                "group.id": group,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            },
        )
    )
    transactional = Producer(
        _config(secure_settings, files, "ingest", **{"transactional.id": f"{group}-test"})
    )
    transactional.init_transactions(30)
    consumer.subscribe([clicks])
    try:
        message = None
        for _ in range(60):
            message = consumer.poll(1)
            if message is not None and message.error() is None and message.value() == marker:
                break
        assert message is not None
        assert message.value() == marker
        transactional.begin_transaction()
        transactional.produce(changelog, key=b"user", value=marker)
        transactional.produce(dlq, value=marker)
        transactional.send_offsets_to_transaction(
            consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 30
        )
        transactional.commit_transaction(30)
    finally:
        consumer.close()

    reader = Consumer(
        _config(
            secure_settings,
            files,
            "dlq-reader",
            **{"group.id": "clickstream-dlq-reader", "auto.offset.reset": "earliest"},
        )
    )
    reader.subscribe([dlq])
    try:
        seen = []
        for _ in range(60):
            got = reader.poll(1)
            if got is not None and got.error() is None:
                seen.append(got.value())
                if marker in seen:
                    break
    finally:
        reader.close()
    assert marker in seen


def test_ingest_cannot_use_a_transactional_id_outside_its_prefix(
    secure_settings: Settings, files: SecureFiles
) -> None:
    producer = Producer(
        _config(secure_settings, files, "ingest", **{"transactional.id": "other-1"})
    )
    with pytest.raises(KafkaException) as caught:
        producer.init_transactions(20)
    error = caught.value.args[0]
    assert error.code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, error
    assert "authoriz" in error.str().lower()
