"""Kafka: topics created by the schema code, produce and consume through the real broker."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from clickstream.settings import Settings
from ingest.topics import (
    create_topics,
    delete_topics,
    describe_topics,
    pipeline_topics,
    topic_configs,
)

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

    def test_the_changelog_is_compacted_and_its_segments_roll_hourly(
        self, topics: Settings
    ) -> None:
        """The speed layer's state topic keeps the latest record per key, and compaction can
        run within the hour (the active segment is never compacted; the default segment.ms is
        a week). A topic an older release made without these gets them from `schema create`."""
        name = topics.kafka.speed_changelog_topic
        wanted = {
            "cleanup.policy": "compact",
            "min.compaction.lag.ms": "0",
            "segment.ms": "3600000",
            "min.cleanable.dirty.ratio": "0.25",
        }
        assert {k: topic_configs(topics.kafka, name)[k] for k in wanted} == wanted

        delete_topics(topics.kafka, [name])
        wait_until_gone(topics, name)
        admin = AdminClient(topics.kafka.client_config())
        old = NewTopic(name, topics.kafka.partitions, 1, config={"cleanup.policy": "compact"})
        admin.create_topics([old])[name].result(timeout=30)
        assert topic_configs(topics.kafka, name)["segment.ms"] == str(7 * 24 * 3600 * 1000)
        create_topics(topics.kafka)
        assert {k: topic_configs(topics.kafka, name)[k] for k in wanted} == wanted


def wait_until_gone(settings: Settings, name: str) -> None:
    """Topic deletion is asynchronous: wait until the broker no longer lists it."""
    deadline = time.monotonic() + 30
    while describe_topics(settings.kafka, [name])[0].exists:
        assert time.monotonic() < deadline, f"{name} was not deleted"
        time.sleep(0.2)


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
