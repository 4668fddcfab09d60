"""Kafka: topics created by the schema code, produce and consume through the real broker."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer

from clickstream.settings import Settings
from ingest.topics import create_topics, delete_topics, describe_topics, pipeline_topics

pytestmark = pytest.mark.integration


@pytest.fixture
def topics(settings: Settings) -> Iterator[Settings]:
    """The test's clicks, DLQ and changelog topics, deleted afterwards."""
    create_topics(settings.kafka)
    yield settings
    delete_topics(settings.kafka, pipeline_topics(settings.kafka))


class TestTopics:
    def test_create_is_idempotent(self, topics: Settings) -> None:
        """A second create finds all three topics and creates nothing."""
        again = create_topics(topics.kafka)
        assert [(t.name, t.exists, t.created) for t in again] == [
            (name, True, False) for name in pipeline_topics(topics.kafka)
        ]
        assert {t.partitions for t in again} == {topics.kafka.partitions}

    def test_describe_reports_missing(self, settings: Settings) -> None:
        """Topics never created are reported as absent."""
        assert [t.exists for t in describe_topics(settings.kafka)] == [False, False, False]

    def test_the_changelog_is_compacted(self, topics: Settings) -> None:
        """The speed layer's state topic keeps the latest record per key."""
        from confluent_kafka.admin import AdminClient, ConfigResource  # noqa: PLC0415

        admin = AdminClient(topics.kafka.client_config())
        resource = ConfigResource("topic", topics.kafka.speed_changelog_topic)
        config = admin.describe_configs([resource])[resource].result(timeout=30)
        assert config["cleanup.policy"].value == "compact"


class TestRoundTrip:
    def test_produce_and_consume_keyed(self, topics: Settings) -> None:
        """Every produced message comes back once; one key always lands on one partition."""
        topic = topics.kafka.clicks_topic
        producer = Producer({**topics.kafka.client_config(), "enable.idempotence": True})
        sent = {f"m{i}".encode(): f"user{i % 7}".encode() for i in range(200)}
        for value, key in sent.items():
            producer.produce(topic, key=key, value=value)
        assert producer.flush(30) == 0

        consumer = Consumer(
            {
                **topics.kafka.client_config(),
                "group.id": f"{topic}-group",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        consumer.subscribe([topic])
        received: dict[bytes, tuple[bytes, int]] = {}
        deadline = time.monotonic() + 60
        try:
            while len(received) < len(sent) and time.monotonic() < deadline:
                message = consumer.poll(1.0)
                if message is None or message.error() is not None:
                    continue
                assert message.value() not in received, "a message was delivered twice"
                received[message.value()] = (message.key(), message.partition())
        finally:
            consumer.close()

        assert {value: key for value, (key, _) in received.items()} == sent
        partitions_of_key: dict[bytes, set[int]] = {}
        for key, partition in received.values():
            partitions_of_key.setdefault(key, set()).add(partition)
        assert all(len(parts) == 1 for parts in partitions_of_key.values())
        assert len({p for parts in partitions_of_key.values() for p in parts}) > 1
