"""The whole lambda architecture on the real stack: speed layer + batch layer + serving.

A generated run (late, out-of-order, duplicated, malformed traffic) is published in five
chunks; after each, the merged answer equals the ground truth of what was ingested so far.
The daemon is SIGKILLed mid-run. Then a batch run moves the boundary into the middle of the
data: the totals do not move, single hours behind the boundary become exact, and the batch and
speed layers agree document for document.
"""

from __future__ import annotations

import base64
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import datasketches
import pytest
from pyspark.sql import SparkSession

from clickstream.settings import Settings
from clickstream.times import HOUR_MS
from indexing.client import connect as es_connect
from indexing.views import (
    BOT_RULE_FIELDS,
    COARSE_LEVELS,
    GRAIN_HOUR,
    LEVEL_URL_COUNTRY,
    ViewNames,
    cube_index,
)
from processing.job import run_batch
from serving.merge import Metrics
from serving.params import MetricsQuery
from serving.service import MetricsService
from tests.integration.helpers import (
    Spawn,
    bots_by_rule,
    make_traffic,
    traffic_start_ms,
    wait_for,
)
from tests.integration.test_speed import (
    MEASURES,
    all_documents,
    merged_users,
    minutes,
    of,
    per_hour,
)
from traffic.generate import Traffic, publish
from traffic.harness import committed
from traffic.truth import GroundTruth

pytestmark = pytest.mark.integration


def by_bucket(docs: Iterable[dict[str, Any]]) -> dict[tuple[Any, ...], tuple[int, ...]]:
    """Measures per (url, country, start) summed over documents (partitions), empty left out."""
    sums: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0] * len(MEASURES))
    for doc in docs:
        row = sums[(doc.get("url"), doc.get("country"), doc["start"])]
        for i, name in enumerate(MEASURES):
            row[i] += doc[name]
    return {key: tuple(row) for key, row in sums.items() if row[0] or row[1]}


def rules_per_hour(docs: Iterable[dict[str, Any]]) -> dict[tuple[Any, ...], tuple[int, ...]]:
    """Bot clicks by rule per (url, country, hour), empty groups left out."""
    sums: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0] * len(BOT_RULE_FIELDS))
    for doc in docs:
        row = sums[(doc["url"], doc["country"], doc["start"] // HOUR_MS * HOUR_MS)]
        for i, field in enumerate(BOT_RULE_FIELDS.values()):
            row[i] += doc[field]
    return {key: tuple(row) for key, row in sums.items() if any(row)}


def _refresh(settings: Settings) -> None:
    client = es_connect(settings.elasticsearch)
    try:
        client.indices.refresh(index=f"{settings.elasticsearch.index_prefix}-*")
    finally:
        client.close()


def assert_totals(metrics: Metrics, truth: GroundTruth, hours: tuple[int, int] | None) -> None:
    """Clicks, bots and time spent exact; unique users inside the answer's stated bounds."""
    expected = truth.totals(hours=hours)
    assert metrics.clicks == expected.clicks
    assert metrics.bot_clicks == expected.bot_clicks
    assert metrics.time_spent_sum_ms == expected.time_spent_sum_ms
    assert metrics.time_spent_count == expected.time_spent_count
    assert metrics.clicks_without_time_spent == expected.clicks - expected.time_spent_count
    users = metrics.unique_users
    assert expected.unique_users is not None
    assert users.lower_bound <= expected.unique_users <= users.upper_bound
    if users.exact:
        assert users.value == expected.unique_users


def test_merged_answers_follow_the_truth_through_kills_and_the_batch(
    pipeline: Settings, spawn: Spawn, spark: SparkSession
) -> None:
    """Five instants exact, one SIGKILL, then the boundary moves and nothing changes."""
    traffic = make_traffic(events=5000, seed=31)
    start = traffic_start_ms()
    everything = MetricsQuery(from_ms=start, to_ms=start + 8 * HOUR_MS)
    service = MetricsService(pipeline)
    total = len(traffic.messages)
    cuts = [total * k // 5 for k in range(1, 6)]
    daemon = spawn("a")
    sent = 0
    try:
        for instant, cut in enumerate(cuts):
            chunk = Traffic(traffic.messages[sent:cut], traffic.truth)
            publish(chunk, pipeline.kafka, pipeline.kafka.clicks_topic, progress=lambda _: None)
            if instant == 2:  # SIGKILL mid-chunk, then a new incarnation takes over
                floor = sent
                wait_for(lambda floor=floor: committed(pipeline) > floor, 60)
                daemon.kill()
                daemon = spawn("a")
            sent = cut
            wait_for(lambda cut=cut: committed(pipeline) >= cut, 120)
            _refresh(pipeline)
            answer = service.query(everything)
            assert answer.boundary_ms is None
            assert_totals(answer.total, traffic.truth_of(cut), None)
        truth = traffic.truth_of(total)
        assert truth.summary.clicks == traffic.truth.summary.clicks

        # The batch covers the first three hours: the boundary lands inside the data.
        boundary = start + 3 * HOUR_MS
        run_batch(spark, pipeline, start, boundary, progress=lambda _: None)
        assert_after_batch(service, truth, everything, boundary)
    finally:
        service.close()


def assert_after_batch(
    service: MetricsService, truth: GroundTruth, everything: MetricsQuery, boundary: int
) -> None:
    """Totals unchanged across the seam; single hours behind the boundary exact, per country
    too; every other answer an estimate whose bounds hold the truth."""
    start = everything.from_ms
    answer = service.query(everything)
    assert answer.boundary_ms == boundary
    assert answer.speed_until_ms is not None
    assert answer.speed_until_ms > boundary
    assert answer.late_events_waiting == 0
    assert_totals(answer.total, truth, None)
    assert not answer.total.unique_users.exact
    for hour in range(start, start + 6 * HOUR_MS, HOUR_MS):
        one_hour = service.query(MetricsQuery(from_ms=hour, to_ms=hour + HOUR_MS))
        assert one_hour.total.unique_users.exact is (hour < boundary)
        assert_totals(one_hour.total, truth, (hour, hour + HOUR_MS))
        by_country = service.query(
            MetricsQuery(from_ms=hour, to_ms=hour + HOUR_MS, group_by=("country",))
        )
        for group in by_country.groups:
            assert group.metrics.unique_users.exact is (hour < boundary)
            expected = truth.totals(country=group.country, hours=(hour, hour + HOUR_MS))
            assert group.metrics.clicks == expected.clicks
            if hour < boundary:
                assert group.metrics.unique_users.value == expected.unique_users


def test_speed_and_batch_layers_agree_on_the_same_events(
    pipeline: Settings, spawn: Spawn, spark: SparkSession
) -> None:
    """Per (url, country, hour): equal clicks, time spent, bots, and the same user sketch; and
    at every level of the hour grain, the speed layer's rollups (summed over partitions) equal
    the batch cube's."""
    traffic = make_traffic(events=2000, seed=32)
    start = traffic_start_ms()
    publish(traffic, pipeline.kafka, pipeline.kafka.clicks_topic, progress=lambda _: None)
    spawn("a", "--exit-when-idle", "3").finish()
    # Keep the speed minutes the batch passes (they are pruned an hour behind the boundary by
    # default): the two layers are compared on the same hours.
    serving = pipeline.serving.model_copy(update={"speed_minute_keep_hours": 48})
    settings = pipeline.model_copy(update={"serving": serving})
    run_batch(spark, settings, start, start + 7 * HOUR_MS, progress=lambda _: None)

    client = es_connect(pipeline.elasticsearch)
    try:
        prefix = pipeline.elasticsearch.index_prefix
        stored = all_documents(client, f"{prefix}-speed-*")
        batch = all_documents(client, ViewNames(prefix).batch_index)
        cube = all_documents(client, cube_index(prefix))
    finally:
        client.close()
    speed = minutes(stored)
    assert per_hour(speed) == per_hour(batch)
    assert per_hour(of(stored, LEVEL_URL_COUNTRY, GRAIN_HOUR)) == per_hour(batch)
    for level in COARSE_LEVELS:
        from_speed = by_bucket(of(stored, level, GRAIN_HOUR))
        from_cube = by_bucket(d for d in cube if (d["level"], d["grain"]) == (level, GRAIN_HOUR))
        assert from_speed == from_cube, level
    assert len(batch) == len(traffic.truth.groups)
    # Bot clicks by rule: the same per (url, country, hour) in both layers, and in all as the
    # ingest's own parser finds them in the events' user agents (several rules at work).
    assert rules_per_hour(speed) == rules_per_hour(batch)
    expected = bots_by_rule(traffic.messages)
    assert sum(expected.values()) == traffic.truth.totals().bot_clicks
    found = {rule: sum(doc[field] for doc in batch) for rule, field in BOT_RULE_FIELDS.items()}
    assert found == expected
    assert sum(found.values()) == sum(doc["bot_clicks"] for doc in batch)

    speed_by_group: dict[tuple[str, str, int], list[dict[str, object]]] = {}
    for doc in speed:
        key = (str(doc["url"]), str(doc["country"]), int(str(doc["start"])) // HOUR_MS * HOUR_MS)
        speed_by_group.setdefault(key, []).append(doc)
    for doc in batch:
        if not doc["clicks"]:
            continue
        key = (doc["url"], doc["country"], doc["start"])
        from_speed = merged_users(speed_by_group[key])
        from_batch = datasketches.hll_sketch.deserialize(base64.b64decode(doc["users_sketch"]))
        # One hash, one format: the union of both sketches of one user set is that set.
        union = datasketches.hll_union(12)
        union.update(from_speed)
        union.update(from_batch)
        assert from_speed.get_estimate() == pytest.approx(from_batch.get_estimate())
        assert union.get_result().get_estimate() == pytest.approx(from_batch.get_estimate())
        assert round(from_speed.get_estimate()) == doc["unique_users"]
