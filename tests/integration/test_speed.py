"""The speed layer on the real stack: minute views in Elasticsearch equal the ground truth,
survive SIGKILLs without counting anything twice, and agree with the batch layer."""

from __future__ import annotations

import base64
import json
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import datasketches
import pytest
from elasticsearch import Elasticsearch

from clickstream.errors import RetriableError
from clickstream.settings import Settings
from clickstream.times import HOUR_MS
from commands.stack.manager import Stack
from indexing.client import connect as es_connect
from indexing.views import BOT_RULE_FIELDS, GRAIN_HOUR, GRAIN_MINUTE
from speed.docs import Rendered, render, speed_index
from speed.state import RollupKey, SpeedDoc, rollup_keys
from speed.store import SpeedStore
from tests.integration.helpers import Spawn, health, make_traffic, metric, wait_for
from traffic.generate import Traffic, publish
from traffic.harness import committed, free_port
from traffic.sender import Sender
from traffic.truth import GroundTruth

pytestmark = pytest.mark.integration

Sums = dict[tuple[str, str, int], tuple[int, int, int, int]]


def speed_documents(settings: Settings) -> list[dict[str, Any]]:
    """Every speed document of the test's prefix: minute and hour rollups at every level."""
    client = es_connect(settings.elasticsearch)
    try:
        return all_documents(client, f"{settings.elasticsearch.index_prefix}-speed-*")
    finally:
        client.close()


def of(docs: Iterable[dict[str, Any]], level: str, grain: str) -> list[dict[str, Any]]:
    """The documents of one level and grain."""
    return [doc for doc in docs if (doc["level"], doc["grain"]) == (level, grain)]


def minutes(docs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The (url, country, minute) documents: the finest the speed layer keeps."""
    return of(docs, "url_country", "minute")


def assert_rollups_add_up(docs: list[dict[str, Any]]) -> None:
    """Every level and grain of every partition holds the sum of its (url, country, minute)
    cells, and its sketch their union: nothing is folded twice or missed in any rollup."""
    expected: dict[tuple[int, RollupKey], list[int]] = defaultdict(lambda: [0] * len(MEASURES))
    for doc in minutes(docs):
        for key in rollup_keys((doc["url"], doc["country"], doc["start"])):
            row = expected[(doc["partition"], key)]
            for i, name in enumerate(MEASURES):
                row[i] += doc[name]
    stored = {(doc["partition"], rollup_key(doc)): [doc[name] for name in MEASURES] for doc in docs}
    assert stored == expected
    # Each rollup's sketch holds the users of the minute cells it contains. The same users give
    # the same registers but not always the same estimate: a sketch reloaded from
    # Elasticsearch and updated again (after a replay) switches from the HIP to the composite
    # estimator, which differs in the sixth digit; a missed user moves it by about 1.
    cells: dict[tuple[int, RollupKey], list[dict[str, Any]]] = defaultdict(list)
    for doc in minutes(docs):
        for key in rollup_keys((doc["url"], doc["country"], doc["start"])):
            cells[(doc["partition"], key)].append(doc)
    wrong = []
    for doc in docs:
        held = merged_users([doc]).get_estimate()
        union = merged_users(cells[(doc["partition"], rollup_key(doc))]).get_estimate()
        if held != pytest.approx(union, rel=1e-4, abs=1e-3):
            wrong.append((doc["partition"], rollup_key(doc), held, union))
    assert not wrong, f"{len(wrong)} rollup sketches differ from their cells': {wrong[:5]}"


MEASURES = (
    "clicks",
    "bot_clicks",
    "time_spent_sum_ms",
    "time_spent_count",
    *BOT_RULE_FIELDS.values(),
)


def rollup_key(doc: dict[str, Any]) -> RollupKey:
    """A stored speed document's key."""
    return (doc["level"], doc["grain"], doc.get("url"), doc.get("country"), doc["start"])


def all_documents(client: Elasticsearch, index: str) -> list[dict[str, Any]]:
    """Every document of ``index``, paged with search_after on the view's natural key."""
    client.indices.refresh(index=index, allow_no_indices=True)
    out: list[dict[str, Any]] = []
    after: list[Any] | None = None
    while True:
        page = client.search(
            index=index,
            size=5000,
            sort=[
                {"start": "asc"},
                {"url": "asc"},
                {"country": "asc"},
                {"partition": {"order": "asc", "unmapped_type": "integer"}},
                {"level": {"order": "asc", "unmapped_type": "keyword"}},
                {"grain": {"order": "asc", "unmapped_type": "keyword"}},
            ],
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
    """Per (url, country, hour): clicks, bots and time spent exact, in the minute documents and
    in the hour rollups; users within the bound; every rollup adds up."""
    docs = speed_documents(settings)
    assert per_hour(minutes(docs)) == truth_sums(traffic.truth)
    assert per_hour(of(docs, "url_country", "hour")) == truth_sums(traffic.truth)
    assert_rollups_add_up(docs)
    sketch = merged_users(minutes(docs))
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


def test_no_user_id_can_stop_the_daemon_that_restores_its_partition(
    pipeline: Settings, spawn: Spawn
) -> None:
    """Valid clicks whose user ids look like the changelog's own keys, or hold control and bidi
    characters, are stored; the next daemon restores their timelines and goes on (one such
    click once made every restart exit with KeyError until compaction removed it)."""
    now = int(time.time() * 1000)
    hostile = ["\u0000partition", "\u00ffp", "\u00ffuanna", "a\nb\u202ec", "\u0000", "p"]

    def send(first: int) -> None:
        with Sender(pipeline.kafka, pipeline.kafka.clicks_topic) as sender:
            for number, user in enumerate(hostile, first):
                click = {
                    "user_id": user,
                    "timestamp": now - 60_000 + number * 1000,
                    "url": "https://shop.example/a",
                    "country": "DE",
                }
                sender.send(user.encode(), json.dumps(click).encode())

    send(0)
    spawn("h", "--exit-when-idle", "2").finish()
    send(len(hostile))
    # Restores each partition before folding its new clicks.
    log = spawn("h", "--exit-when-idle", "2").finish()
    restored = [json.loads(line) for line in log.splitlines() if "speed.restored" in line]
    assert sum(entry["users"] for entry in restored) == len(hostile)
    assert all(entry["malformed"] == 0 for entry in restored)
    docs = minutes(speed_documents(pipeline))
    assert sum(doc["clicks"] for doc in docs) == 2 * len(hostile)
    # Each user's first click knows its time spent (1 s x number of users later).
    assert sum(doc["time_spent_count"] for doc in docs) == len(hostile)


def test_a_shared_id_with_long_urls_neither_stalls_nor_loses_its_timeline(
    pipeline: Settings, spawn: Spawn
) -> None:
    """One id behind many clicks on URLs at the 8 KiB limit: its timeline (5 MB as one record,
    past Kafka's 1 MB, which made every transaction fail and the daemon retry the batch
    forever) goes to the changelog in bounded chunks. A restarted daemon restores all of it:
    each click's time spent is the gap to the next, exactly, across the restart."""
    now = int(time.time() * 1000)
    url = "https://shop.example/p/" + "x" * 8150

    def send(first: int, count: int) -> None:
        with Sender(pipeline.kafka, pipeline.kafka.clicks_topic) as sender:
            for n in range(first, first + count):
                click = {
                    "user_id": "anonymous",
                    "timestamp": now - 3_000_000 + n * 1000,
                    "url": f"{url}{n:05d}",
                    "country": "DE",
                }
                sender.send(b"anonymous", json.dumps(click).encode())

    send(0, 400)
    spawn("s", "--exit-when-idle", "3").finish(timeout=120)
    send(400, 200)
    log = spawn("s", "--exit-when-idle", "3").finish(timeout=120)
    restored = [json.loads(line) for line in log.splitlines() if "speed.restored" in line]
    assert sum(entry["users"] for entry in restored) == 1
    assert all(entry["malformed"] == 0 for entry in restored)
    docs = minutes(speed_documents(pipeline))
    assert sum(doc["clicks"] for doc in docs) == 600
    # Every click but the last has a successor 1 s later, the one across the restart included.
    assert sum(doc["time_spent_count"] for doc in docs) == 599
    assert sum(doc["time_spent_sum_ms"] for doc in docs) == 599 * 1000


class TestStore:
    """SpeedStore against the real Elasticsearch: external versions fence stale writers."""

    KEY: RollupKey = ("url", "hour", "https://a.example/", None, 1_796_083_200_000)

    def _doc(self, prefix: str, offset: int, clicks: int) -> Rendered:
        doc = SpeedDoc(0, self.KEY, 12)
        doc.clicks, doc.last_offset = clicks, offset
        return render(doc, prefix)

    def test_a_stale_owner_cannot_overwrite_a_newer_document(self, pipeline: Settings) -> None:
        """A write at a lower offset (a zombie after a rebalance) or the same one (a replay)
        is refused and leaves the newer document as it is."""
        prefix = pipeline.elasticsearch.index_prefix
        store = SpeedStore(es_connect(pipeline.elasticsearch), prefix, 12)
        try:
            assert store.write([self._doc(prefix, offset=10, clicks=5)]).written == 1
            assert store.write([self._doc(prefix, offset=7, clicks=3)]).written == 0  # stale owner
            assert store.write([self._doc(prefix, offset=10, clicks=5)]).written == 0  # replay
            (loaded,) = store.load([(0, self.KEY)])
            assert (loaded.clicks, loaded.last_offset) == (5, 10)
            assert store.write([self._doc(prefix, offset=11, clicks=6)]).written == 1
            (loaded,) = store.load([(0, self.KEY)])
            assert loaded.clicks == 6
        finally:
            store.close()

    def test_minutes_go_to_hourly_indices_and_an_older_release_s_stay_put(
        self, pipeline: Settings
    ) -> None:
        """A new minute document goes to its hour's index (dropped hours behind the boundary);
        one an older release wrote into the day's index is found there and rewritten there, so
        no minute is ever counted in two indices."""
        prefix = pipeline.elasticsearch.index_prefix
        client = es_connect(pipeline.elasticsearch)
        start = self.KEY[4] + 17 * 60_000
        old_key: RollupKey = ("url_country", "minute", "https://old.example/", "DE", start)
        new_key: RollupKey = ("url_country", "minute", "https://new.example/", "DE", start)
        older = SpeedDoc(0, old_key, 12)
        older.clicks, older.last_offset = 2, 5
        day = speed_index(prefix, start, GRAIN_HOUR)
        written = render(older, prefix)
        client.index(index=day, id=written.doc_id, document=written.source, refresh=True)
        store = SpeedStore(client, prefix, 12)
        try:
            (loaded,) = store.load([(0, old_key), (0, new_key)])
            assert (loaded.key, loaded.clicks) == (old_key, 2)
            fresh = SpeedDoc(0, new_key, 12)
            loaded.clicks, loaded.last_offset = 3, 6
            fresh.clicks, fresh.last_offset = 1, 6
            assert store.write([render(loaded, prefix), render(fresh, prefix)]).written == 2
            client.indices.refresh(index=f"{prefix}-speed-*")
            hits = client.search(index=f"{prefix}-speed-*", query={"match_all": {}})["hits"]
            where = {
                hit["_source"]["url"]: (hit["_index"], hit["_source"]["clicks"])
                for hit in hits["hits"]
            }
            assert where == {
                "https://old.example/": (day, 3),
                "https://new.example/": (speed_index(prefix, start, GRAIN_MINUTE), 1),
            }
        finally:
            store.close()

    def test_loading_from_a_missing_index_finds_nothing(self, pipeline: Settings) -> None:
        """A document of a day with no index yet is simply new."""
        store = SpeedStore(
            es_connect(pipeline.elasticsearch), pipeline.elasticsearch.index_prefix, 12
        )
        try:
            key: RollupKey = ("url_country", "minute", "https://b.example/", "FR", 0)
            assert store.load([(3, key)]) == []
        finally:
            store.close()

    def test_an_unreachable_cluster_is_a_retriable_error(self, pipeline: Settings) -> None:
        """No Elasticsearch: RetriableError, so the daemon pauses and retries, never crashes."""
        dead = pipeline.elasticsearch.model_copy(
            update={"url": "http://127.0.0.1:1", "request_timeout_s": 1.0}
        )
        prefix = pipeline.elasticsearch.index_prefix
        store = SpeedStore(es_connect(dead), prefix, 12)
        try:
            with pytest.raises(RetriableError, match="bulk of speed documents failed"):
                store.write([self._doc(prefix, offset=1, clicks=1)])
        finally:
            store.close()


def test_elasticsearch_down_daemon_waits_and_counts_everything_once(
    pipeline: Settings, stack: Stack, spawn: Spawn
) -> None:
    """With Elasticsearch stopped mid-run the daemon stays up, degraded and paused; once it is
    back, the speed views equal the truth."""
    traffic = make_traffic(events=4000, seed=23)
    port = free_port()
    running = spawn("es", "--exit-when-idle", "8", CLICKSTREAM_INGEST__METRICS_PORT=str(port))
    try:
        half = len(traffic.messages) // 2
        first = Traffic(traffic.messages[:half], traffic.truth)
        rest = Traffic(traffic.messages[half:], traffic.truth)
        publish(first, pipeline.kafka, pipeline.kafka.clicks_topic, progress=lambda _: None)
        wait_for(lambda: metric(port, "clickstream_speed_documents_written_total") > 0, 60)
        assert stack.stop_server("elasticsearch")
        publish(rest, pipeline.kafka, pipeline.kafka.clicks_topic, progress=lambda _: None)
        wait_for(lambda: health(port)["status"] == "degraded", 60)
        time.sleep(10)
        assert running.process.poll() is None, "the daemon died during the outage"
        assert health(port)["paused"] is True
    finally:
        stack.up()
    running.finish()
    assert_speed_equals_truth(pipeline, traffic)
