"""The speed layer on the real stack: minute views in Elasticsearch equal the ground truth,
survive SIGKILLs without counting anything twice, and agree with the batch layer."""

from __future__ import annotations

import base64
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import datasketches
import pytest
from elasticsearch import Elasticsearch

from clickstream.settings import Settings
from indexing.client import connect as es_connect
from ingest.generate import Traffic, publish
from ingest.harness import committed
from ingest.truth import GroundTruth
from tests.integration.helpers import HOUR_MS, Spawn, make_traffic

pytestmark = pytest.mark.integration

Sums = dict[tuple[str, str, int], tuple[int, int, int, int]]


def speed_documents(settings: Settings) -> list[dict[str, Any]]:
    """Every speed document of the test's prefix."""
    client = es_connect(settings.elasticsearch)
    try:
        return all_documents(client, f"{settings.elasticsearch.index_prefix}-speed-*")
    finally:
        client.close()


def all_documents(client: Elasticsearch, index: str) -> list[dict[str, Any]]:
    """Every document of ``index`` (search_after over _id-less sort on start, then doc)."""
    client.indices.refresh(index=index, allow_no_indices=True)
    out: list[dict[str, Any]] = []
    after: list[Any] | None = None
    while True:
        page = client.search(
            index=index,
            size=5000,
            sort=[{"start": "asc"}, {"url": "asc"}, {"country": "asc"}, {"partition": "asc"}],
            search_after=after,
            allow_no_indices=True,
        )["hits"]["hits"]
        out.extend(hit["_source"] for hit in page)
        if len(page) < 5000:
            return out
        after = page[-1]["sort"]


def per_hour(docs: Iterable[dict[str, Any]]) -> Sums:
    """(clicks, bot clicks, time-spent sum, count) per (url, country, hour)."""
    sums: dict[tuple[str, str, int], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for doc in docs:
        row = sums[(doc["url"], doc["country"], doc["start"] // HOUR_MS * HOUR_MS)]
        row[0] += doc["clicks"]
        row[1] += doc["bot_clicks"]
        row[2] += doc["time_spent_sum_ms"]
        row[3] += doc["time_spent_count"]
    return {k: (a, b, c, d) for k, (a, b, c, d) in sums.items() if a or b}


def truth_sums(truth: GroundTruth) -> Sums:
    """The same figures from the generator's ground truth."""
    return {
        (g.url, g.country, g.hour_ms): (
            g.clicks,
            g.bot_clicks,
            g.time_spent_sum_ms,
            g.time_spent_count,
        )
        for g in truth.groups
    }


def merged_users(docs: Iterable[dict[str, Any]], lg_k: int = 12) -> datasketches.hll_sketch:
    """The union of the documents' user sketches."""
    union = datasketches.hll_union(lg_k)
    for doc in docs:
        if doc.get("users_sketch"):
            union.update(datasketches.hll_sketch.deserialize(base64.b64decode(doc["users_sketch"])))
    return union.get_result()


def assert_speed_equals_truth(settings: Settings, traffic: Traffic) -> None:
    """Per (url, country, hour): clicks, bots and time spent exact; users within the bound."""
    docs = speed_documents(settings)
    assert per_hour(docs) == truth_sums(traffic.truth)
    sketch = merged_users(docs)
    users = traffic.truth.unique_users
    assert sketch.get_lower_bound(2) <= users <= sketch.get_upper_bound(2)


def test_speed_views_equal_the_truth(pipeline: Settings, spawn: Spawn) -> None:
    """Out-of-order, late and duplicated traffic folds into exact minute views."""
    traffic = make_traffic(events=3000, seed=21)
    publish(traffic, pipeline.kafka, pipeline.kafka.clicks_topic, progress=lambda _: None)
    log = spawn("a", "--exit-when-idle", "3").finish()
    assert '"speed_docs"' in log
    assert '"speed_beyond_horizon": 0' in log
    assert_speed_equals_truth(pipeline, traffic)


def test_sigkilled_daemons_count_nothing_twice(pipeline: Settings, spawn: Spawn) -> None:
    """Two SIGKILLs mid-stream, then a clean run: the views still equal the truth exactly."""
    traffic = make_traffic(events=6000, seed=22)
    publish(traffic, pipeline.kafka, pipeline.kafka.clicks_topic, progress=lambda _: None)
    total = len(traffic.messages)
    for share in (0.25, 0.6):
        daemon = spawn("a", CLICKSTREAM_INGEST__BATCH_SIZE="200")
        deadline = time.monotonic() + 120
        while committed(pipeline) < share * total and time.monotonic() < deadline:
            time.sleep(0.2)
        daemon.kill()
    log = spawn("a", "--exit-when-idle", "3").finish()
    assert '"event": "speed.restored"' in log
    assert_speed_equals_truth(pipeline, traffic)
