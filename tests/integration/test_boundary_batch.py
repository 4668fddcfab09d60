"""The batch job's part of the seam, end to end: exact coarse uniques, boundary moved, pruned."""

from __future__ import annotations

from collections import defaultdict

import pytest
from elasticsearch import Elasticsearch
from pyspark.sql import SparkSession

from clickstream.settings import Settings
from clickstream.times import HOUR_MS
from indexing.boundary import speed_indices
from indexing.templates import read_boundary
from indexing.views import LEVEL_ALL, LEVEL_COUNTRY, LEVEL_URL, uniques_id, uniques_index
from processing.job import run_batch
from processing.reader import read_clicks
from tests.integration.helpers import Spawn, make_traffic, traffic_start_ms
from traffic.generate import publish

pytestmark = pytest.mark.integration


def expected_uniques(spark: SparkSession, settings: Settings, t0: int, t1: int) -> dict[str, int]:
    """Exact distinct non-bot users per level and hour, counted in Python from the stored rows."""
    rows = read_clicks(spark, settings.hbase, t0, t1, slice_ms=HOUR_MS, caching=1000).collect()
    users: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        if row["is_bot"]:
            continue
        hour = row["ts"] // HOUR_MS * HOUR_MS
        users[uniques_id(LEVEL_URL, row["url"], None, hour)].add(row["user_id"])
        users[uniques_id(LEVEL_COUNTRY, None, row["country"], hour)].add(row["user_id"])
        users[uniques_id(LEVEL_ALL, None, None, hour)].add(row["user_id"])
    return {key: len(ids) for key, ids in users.items()}


def test_batch_writes_exact_uniques_moves_the_boundary_and_prunes(
    pipeline: Settings, spawn: Spawn, views: Elasticsearch, spark: SparkSession
) -> None:
    """Every coarse-level count equals the distinct users of the stored rows; the boundary is
    the watermark; a speed day far behind it is dropped; a re-run replaces, never adds."""
    traffic = make_traffic(events=1500, seed=41, hours=2)
    publish(traffic, pipeline.kafka, pipeline.kafka.clicks_topic, progress=lambda _: None)
    spawn("u", "--exit-when-idle", "3").finish()
    prefix = pipeline.elasticsearch.index_prefix
    old_day = f"{prefix}-speed-2020.01.01"
    views.index(index=old_day, document={"url": "x", "country": "ZZ", "start": 1577880000000})

    t0 = traffic_start_ms()
    t1 = t0 + 2 * HOUR_MS
    result = run_batch(spark, pipeline, t0, t1, progress=lambda _: None)

    index = uniques_index(prefix)
    hits = views.search(index=index, size=10_000, query={"match_all": {}})["hits"]["hits"]
    stored = {hit["_id"]: hit["_source"] for hit in hits}
    truth = expected_uniques(spark, pipeline, t0, t1)
    assert {key: doc["unique_users"] for key, doc in stored.items()} == truth
    levels = {doc["level"] for doc in stored.values()}
    assert levels == {LEVEL_URL, LEVEL_COUNTRY, LEVEL_ALL}
    assert all(
        (doc["url"] is None) == (doc["level"] != LEVEL_URL)
        and (doc["country"] is None) == (doc["level"] != LEVEL_COUNTRY)
        for doc in stored.values()
    )
    assert sum(doc["level"] == LEVEL_ALL for doc in stored.values()) == 2  # one per hour

    assert result.boundary_ms == t1
    assert read_boundary(views, prefix) == t1
    assert old_day in result.pruned
    assert old_day not in speed_indices(views, prefix)
    assert not views.indices.exists_alias(name=f"{prefix}-views", index=index)

    run_batch(spark, pipeline, t0, t1, progress=lambda _: None)
    assert views.count(index=index)["count"] == len(truth)
