"""The batch layer on the real stack: HBase -> Spark (local) -> Elasticsearch, against the truth."""

from __future__ import annotations

import base64
import os
import subprocess
import time
from datetime import UTC, datetime
from typing import Any

import datasketches
import pytest
from elasticsearch import Elasticsearch
from pyspark.sql import SparkSession

from clickstream.settings import Settings
from clickstream.times import HOUR_MS
from hbase_schema.late import hour_of
from indexing.state import read_watermark, state_index
from indexing.views import ViewNames, view_id
from processing.job import default_range, run_batch
from storage import late as late_ledger
from tests.integration.helpers import Spawn, make_traffic, traffic_start_ms
from tests.paths import ROOT
from traffic.generate import Traffic, publish

pytestmark = pytest.mark.integration

SUBMIT = ROOT / "deploy" / "spark" / "submit.sh"


def batch_documents(client: Elasticsearch, settings: Settings) -> dict[str, dict[str, Any]]:
    """Every batch view document by id."""
    index = ViewNames(settings.elasticsearch.index_prefix).batch_index
    client.indices.refresh(index=index)
    hits = client.search(index=index, size=10_000, query={"match_all": {}})["hits"]["hits"]
    return {hit["_id"]: hit["_source"] for hit in hits}


def test_batch_views_equal_the_ground_truth_and_rerun_replaces(
    pipeline: Settings, spawn: Spawn, views: Elasticsearch, spark: SparkSession
) -> None:
    """Every (url, country, hour) document equals the truth; a re-run leaves the same docs."""
    traffic = make_traffic(events=4000, seed=21)
    publish(traffic, pipeline.kafka, pipeline.kafka.clicks_topic, progress=lambda _: None)
    spawn("b", "--exit-when-idle", "3").finish()

    t0 = traffic_start_ms()
    t1 = t0 + 6 * HOUR_MS
    first = run_batch(spark, pipeline, t0, t1, progress=lambda _: None)
    docs = batch_documents(views, pipeline)

    truth = {view_id(g.url, g.country, g.hour_ms): g for g in traffic.truth.groups}
    assert first.views == len(truth) == len(docs)
    assert set(docs) == set(truth)
    for doc_id, group in truth.items():
        doc = docs[doc_id]
        assert (doc["url"], doc["country"], doc["start"]) == (
            group.url,
            group.country,
            group.hour_ms,
        )
        assert doc["clicks"] == group.clicks, doc
        assert doc["unique_users"] == group.unique_users, doc
        assert doc["time_spent_sum_ms"] == group.time_spent_sum_ms, doc
        assert doc["time_spent_count"] == group.time_spent_count, doc
        assert doc["bot_clicks"] == group.bot_clicks, doc
        if group.clicks:
            sketch = datasketches.hll_sketch.deserialize(base64.b64decode(doc["users_sketch"]))
            assert sketch.lg_config_k == pipeline.batch.hll_lg_k
            # Tiny sets are counted exactly by the sketch's list mode.
            assert round(sketch.get_estimate()) == group.unique_users

    state = read_watermark(views, pipeline.elasticsearch.index_prefix)
    assert state.completed_until_ms == t1
    assert views.indices.exists(index=state_index(pipeline.elasticsearch.index_prefix))

    second = run_batch(spark, pipeline, t0, t1, progress=lambda _: None)
    assert second.views == first.views
    assert batch_documents(views, pipeline) == docs


def test_spark_submit_recipe_runs_the_job(
    pipeline: Settings, spawn: Spawn, views: Elasticsearch
) -> None:
    """deploy/spark/submit.sh (spark-submit, --py-files zip, local[2]) writes the same views."""
    traffic = make_traffic(events=1500, seed=22, hours=2)
    publish(traffic, pipeline.kafka, pipeline.kafka.clicks_topic, progress=lambda _: None)
    spawn("s", "--exit-when-idle", "3").finish()

    t0 = traffic_start_ms()
    env = {
        **os.environ,
        "CLICKSTREAM_HBASE__TABLE": pipeline.hbase.table,
        "CLICKSTREAM_ELASTICSEARCH__INDEX_PREFIX": pipeline.elasticsearch.index_prefix,
    }
    result = subprocess.run(
        [str(SUBMIT), "--from", _iso(t0), "--to", _iso(t0 + 2 * HOUR_MS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert (ROOT / "build" / "spark" / "clickstream.zip").is_file()
    docs = batch_documents(views, pipeline)
    truth = {view_id(g.url, g.country, g.hour_ms): g for g in traffic.truth.groups}
    assert set(docs) == set(truth)
    assert sum(d["clicks"] for d in docs.values()) == traffic.truth.summary.clicks
    assert read_watermark(views, pipeline.elasticsearch.index_prefix).completed_until_ms == (
        t0 + 2 * HOUR_MS
    )


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


def test_late_events_are_recomputed_by_the_next_scheduled_run(
    pipeline: Settings, spawn: Spawn, views: Elasticsearch, spark: SparkSession
) -> None:
    """Events arriving after their hours were processed are tracked at ingest (the ledger) and
    the next run without a range recomputes those hours: the views equal the full truth."""
    traffic = make_traffic(events=3000, seed=23, hours=4)
    valid = [i for i, m in enumerate(traffic.messages) if m.kind == "valid"]
    held = set(valid[len(valid) // 3 : len(valid) // 3 + 150])
    on_time = Traffic([m for i, m in enumerate(traffic.messages) if i not in held], traffic.truth)
    late = Traffic([traffic.messages[i] for i in sorted(held)], traffic.truth)

    publish(on_time, pipeline.kafka, pipeline.kafka.clicks_topic, progress=lambda _: None)
    spawn("l", "--exit-when-idle", "3").finish()
    t0 = traffic_start_ms()
    run_batch(spark, pipeline, t0, t0 + 4 * HOUR_MS, progress=lambda _: None)
    before = batch_documents(views, pipeline)
    assert sum(d["clicks"] for d in before.values()) < traffic.truth.summary.clicks

    publish(late, pipeline.kafka, pipeline.kafka.clicks_topic, progress=lambda _: None)
    spawn("l", "--exit-when-idle", "3").finish()
    waiting = late_ledger.snapshot(pipeline.hbase)
    assert len(waiting) >= len(held)  # one key per late event and hour it touches
    assert {hour_of(k) for k in waiting} <= set(range(t0 - HOUR_MS, t0 + 4 * HOUR_MS, HOUR_MS))

    since, until = default_range(pipeline, int(time.time() * 1000))
    assert since == t0 + 4 * HOUR_MS
    result = run_batch(spark, pipeline, since, until, progress=lambda _: None)
    assert result.late_hours >= 1

    docs = batch_documents(views, pipeline)
    truth = {view_id(g.url, g.country, g.hour_ms): g for g in traffic.truth.groups}
    assert set(docs) == set(truth)
    for doc_id, group in truth.items():
        doc = docs[doc_id]
        assert (
            doc["clicks"],
            doc["unique_users"],
            doc["time_spent_sum_ms"],
            doc["time_spent_count"],
            doc["bot_clicks"],
        ) == (
            group.clicks,
            group.unique_users,
            group.time_spent_sum_ms,
            group.time_spent_count,
            group.bot_clicks,
        ), doc
    assert late_ledger.snapshot(pipeline.hbase) == []


def test_a_batch_over_a_quiet_range_succeeds_with_no_views_and_moves_on(
    pipeline: Settings, views: Elasticsearch, spark: SparkSession
) -> None:
    """A range without a single click (quiet hours, a new table) is done with 0 views: the
    watermark and the boundary move to its end, as after any other run."""
    t0 = traffic_start_ms()
    result = run_batch(spark, pipeline, t0, t0 + 2 * HOUR_MS, progress=lambda _: None)

    assert result.views == 0
    assert result.boundary_ms == t0 + 2 * HOUR_MS
    prefix = pipeline.elasticsearch.index_prefix
    assert read_watermark(views, prefix).completed_until_ms == t0 + 2 * HOUR_MS
    assert batch_documents(views, pipeline) == {}
