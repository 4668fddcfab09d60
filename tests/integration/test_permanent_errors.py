"""Permanent errors on the real stack: a table without a column family and a speed index whose
mapping is not the pipeline's make the daemon exit non-zero, naming the fix, instead of pausing
and retrying forever."""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer

from clickstream.settings import Settings
from hbase_schema import FAMILIES, columns
from indexing.client import connect as es_connect
from indexing.views import SPEED_PROPERTIES, VIEW_PROPERTIES, ViewNames
from storage.connection import connect
from tests.integration.helpers import Spawn, health, make_traffic, metric, wait_for
from traffic.generate import Traffic, publish
from traffic.harness import HarnessError, free_port, group_of

pytestmark = pytest.mark.integration


def recreate_without(settings: Settings, family: str) -> None:
    """Drop the test's table and create it again with every family but ``family``."""
    connection = connect(settings.hbase)
    try:
        connection.delete_table(settings.hbase.table, disable=True)
        connection.create_table(
            settings.hbase.table, {name: {"max_versions": 1} for name in FAMILIES if name != family}
        )
    finally:
        connection.close()


def exit_message(run: Any, timeout: float) -> str:
    """The log of a daemon that must exit non-zero within ``timeout`` seconds."""
    with pytest.raises(HarnessError, match="daemon exited 1") as failed:
        run.finish(timeout=timeout)
    return str(failed.value)


def test_a_table_without_a_family_stops_the_daemon_at_start(
    pipeline: Settings, spawn: Spawn
) -> None:
    """The start check reads the families too: exit 1 naming the table, the family, the fix."""
    recreate_without(pipeline, columns.GEO_DATA)
    traffic = make_traffic(events=200, seed=31)
    publish(traffic, pipeline.kafka, pipeline.kafka.clicks_topic, progress=lambda _: None)
    message = exit_message(spawn("f", "--exit-when-idle", "5"), timeout=30)
    assert f"HBase table {pipeline.hbase.table} has no column family geo_data" in message
    assert "clickstream schema create" in message


def test_a_family_dropped_while_running_stops_the_daemon(pipeline: Settings, spawn: Spawn) -> None:
    """A put to a family the table lost mid-run is permanent: exit 1, not a pause forever."""
    traffic = make_traffic(events=600, seed=32)
    half = len(traffic.messages) // 2
    port = free_port()
    running = spawn("d", "--exit-when-idle", "20", CLICKSTREAM_INGEST__METRICS_PORT=str(port))
    first = Traffic(traffic.messages[:half], traffic.truth)
    publish(first, pipeline.kafka, pipeline.kafka.clicks_topic, progress=lambda _: None)
    wait_for(lambda: metric(port, "clickstream_ingest_events_stored_total") > 0, 60)
    recreate_without(pipeline, columns.USER_AGENT_DATA)
    rest = Traffic(traffic.messages[half:], traffic.truth)
    publish(rest, pipeline.kafka, pipeline.kafka.clicks_topic, progress=lambda _: None)
    message = exit_message(running, timeout=30)
    assert f"HBase table {pipeline.hbase.table} has no column family user_agent_data" in message
    assert "clickstream schema create" in message


@pytest.mark.parametrize(
    ("properties", "dynamic", "refused"),
    [
        # A field of another type: every document fails to parse the same way.
        ({**VIEW_PROPERTIES, **SPEED_PROPERTIES, "url": {"type": "long"}}, True, "url"),
        # A strict mapping without a field the daemon writes.
        ({**VIEW_PROPERTIES}, "strict", "strict_dynamic_mapping_exception"),
    ],
    ids=["field_of_another_type", "strict_without_a_field"],
)
def test_a_speed_index_with_a_wrong_mapping_stops_the_daemon(
    pipeline: Settings, spawn: Spawn, properties: dict[str, Any], dynamic: object, refused: str
) -> None:
    """The speed documents refused by the index's mapping: exit 1 naming the index and the fix."""
    names = ViewNames(pipeline.elasticsearch.index_prefix)
    client = es_connect(pipeline.elasticsearch)
    try:
        # Above the pipeline's own template, as a stray template of an operator would be.
        client.indices.put_index_template(
            name=f"{names.prefix}-wrong",
            index_patterns=[names.speed_pattern],
            priority=200,
            template={"mappings": {"dynamic": dynamic, "properties": properties}},
        )
        traffic = make_traffic(events=200, seed=33)
        publish(traffic, pipeline.kafka, pipeline.kafka.clicks_topic, progress=lambda _: None)
        message = exit_message(spawn("m", "--exit-when-idle", "5"), timeout=40)
    finally:
        client.indices.delete_index_template(name=f"{names.prefix}-wrong")
        client.close()
    assert f"Elasticsearch index {names.prefix}-speed-" in message
    assert refused in message
    assert "clickstream schema create" in message


def test_a_fenced_producer_stops_the_daemon_naming_the_fix(
    pipeline: Settings, spawn: Spawn
) -> None:
    """Another producer with the daemon's transactional id (the same --instance started twice)
    fences it: librdkafka's error is fatal, so the daemon exits 1 naming the cause, instead of
    retrying a producer that can never commit again."""
    traffic = make_traffic(events=600, seed=33)
    half = len(traffic.messages) // 2
    port = free_port()
    running = spawn("z", "--exit-when-idle", "20", CLICKSTREAM_INGEST__METRICS_PORT=str(port))
    first = Traffic(traffic.messages[:half], traffic.truth)
    publish(first, pipeline.kafka, pipeline.kafka.clicks_topic, progress=lambda _: None)
    wait_for(lambda: metric(port, "clickstream_ingest_events_stored_total") > 0, 60)
    rival = Producer(
        {**pipeline.kafka.client_config(), "transactional.id": f"{group_of(pipeline)}-z"}
    )
    rival.init_transactions(30)  # bumps the epoch: the daemon's producer is now fenced
    rest = Traffic(traffic.messages[half:], traffic.truth)
    publish(rest, pipeline.kafka, pipeline.kafka.clicks_topic, progress=lambda _: None)
    message = exit_message(running, timeout=60)
    assert "failed fatally" in message
    assert "own --instance" in message


def test_a_fenced_consumer_stops_the_daemon_naming_the_fix(
    pipeline: Settings, spawn: Spawn
) -> None:
    """Another member joins the group with the daemon's static instance id (the same --instance
    started twice): the broker fences the daemon's consumer, a fatal error. The daemon exits 1
    naming the cause, instead of idling with /healthz ok and its partitions gone."""
    port = free_port()
    running = spawn("y", CLICKSTREAM_INGEST__METRICS_PORT=str(port))
    wait_for(lambda: bool(health(port).get("assigned")), 60)
    group = group_of(pipeline)
    rival = Consumer(
        {
            **pipeline.kafka.client_config(),
            "group.id": group,
            "group.instance.id": f"{group}-y",
            "auto.offset.reset": "earliest",
        }
    )
    rival.subscribe([pipeline.kafka.clicks_topic])
    try:
        deadline = time.monotonic() + 60
        while running.process.poll() is None and time.monotonic() < deadline:
            rival.poll(0.5)
        message = exit_message(running, timeout=10)
    finally:
        rival.close()
    assert "Kafka consume failed fatally" in message
    assert "own --instance" in message
