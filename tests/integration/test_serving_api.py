"""The serving layer on the real Elasticsearch (and HBase late ledger): values and fuzzing.

Known documents go into a batch index and a speed index with the boundary moved between them;
the API (FastAPI TestClient) and the CLI (a real `clickstream query` process) must return the
exact sums, a merged unique-user estimate whose bounds hold the truth, and the right exact flag.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import datasketches
import httpx
import pytest
import schemathesis
from elasticsearch import Elasticsearch
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance

from clickstream.errors import ConfigError
from clickstream.settings import Settings
from clickstream.times import HOUR_MS, MINUTE_MS
from hbase_schema.late import LATE_COLUMN, late_table
from indexing.boundary import move_boundary
from indexing.client import connect
from indexing.templates import create_templates, drop_views, ensure_cube_index
from indexing.views import GRAIN_HOUR, LEVEL_ALL, LEVEL_COUNTRY, LEVEL_URL, ViewNames, cube_id
from serving.access import key_hash, new_key
from serving.api import create_app, serve
from speed.docs import Rendered, render
from speed.state import RollupKey, SpeedDoc, rollup_keys
from storage.admin import drop_tables
from storage.connection import connect as hbase_connect
from storage.late import ensure_late_table
from traffic.harness import free_port

pytestmark = pytest.mark.integration

H = int(datetime(2026, 11, 20, 10, tzinfo=UTC).timestamp() * 1000)
BOUNDARY = H + 2 * HOUR_MS
A, B = "https://a.example/p", "https://b.example/q"
PARAMS = ("from", "to", "url", "country", "group_by", "top")


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def users(prefix: str, count: int, start: int = 0) -> list[str]:
    return [f"{prefix}{i}" for i in range(start, start + count)]


@dataclass(frozen=True)
class Doc:
    """One known view and the users behind it."""

    url: str
    country: str
    start: int
    clicks: int
    members: tuple[str, ...]
    spent: tuple[int, int] = (0, 0)
    bots: int = 0

    def source(self) -> dict[str, Any]:
        sketch = datasketches.hll_sketch(12)
        for user in self.members:
            sketch.update(user)
        return {
            "url": self.url,
            "country": self.country,
            "start": self.start,
            "clicks": self.clicks,
            "bot_clicks": self.bots,
            "unique_users": len(set(self.members)),
            "users_sketch": base64.b64encode(sketch.serialize_compact()).decode(),
            "time_spent_sum_ms": self.spent[0],
            "time_spent_count": self.spent[1],
            "avg_time_spent_ms": self.spent[0] / self.spent[1] if self.spent[1] else None,
        }


BATCH = [
    Doc(A, "DE", H, 10, tuple(users("a", 10)), spent=(6000, 6)),
    Doc(A, "FR", H, 4, tuple(users("a", 4, 5)), spent=(1000, 2)),
    Doc(B, "DE", H, 3, tuple(users("b", 3)), bots=2),
    Doc(A, "DE", H + HOUR_MS, 5, tuple(users("a", 5)), spent=(500, 1)),
]
SPEED = [
    Doc(A, "DE", BOUNDARY + MINUTE_MS, 2, ("a0", "s1"), spent=(200, 1)),
    Doc(B, "FR", BOUNDARY + 3 * MINUTE_MS, 1, ("s2",)),
]
#: Behind the boundary: in a speed index, but the alias must hide it.
HIDDEN = Doc(A, "DE", H + HOUR_MS + 5 * MINUTE_MS, 100, tuple(users("x", 50)))


def hour_rollups() -> dict[str, dict[str, Any]]:
    """The hour rollups of the coarse levels the batch job would write for BATCH: sums added,
    users unioned (an exact count and a sketch of the union)."""
    merged: dict[str, tuple[dict[str, Any], list[Doc]]] = {}
    for doc in BATCH:
        for level, url, country in (
            (LEVEL_URL, doc.url, None),
            (LEVEL_COUNTRY, None, doc.country),
            (LEVEL_ALL, None, None),
        ):
            key = cube_id(level, GRAIN_HOUR, url, country, doc.start)
            head = {"level": level, "grain": GRAIN_HOUR, "url": url, "country": country}
            merged.setdefault(key, ({**head, "start": doc.start}, []))[1].append(doc)
    rollups = {}
    for key, (head, docs) in merged.items():
        members = tuple(sorted({m for d in docs for m in d.members}))
        spent = (sum(d.spent[0] for d in docs), sum(d.spent[1] for d in docs))
        whole = Doc("", "", head["start"], sum(d.clicks for d in docs), members, spent)
        source = {**whole.source(), **head, "bot_clicks": sum(d.bots for d in docs)}
        rollups[key] = {k: v for k, v in source.items() if v is not None or k == "users_sketch"}
    return rollups


def speed_rollups(prefix: str) -> list[Rendered]:
    """The speed layer's documents for SPEED and HIDDEN (partition 0), built and rendered by
    the speed layer's own code: every level at minute and hour grain."""
    docs: dict[RollupKey, SpeedDoc] = {}
    for doc in [*SPEED, HIDDEN]:
        for key in rollup_keys((doc.url, doc.country, doc.start)):
            found = docs.setdefault(key, SpeedDoc(0, key, 12, last_offset=7))
            found.clicks += doc.clicks
            found.bot_clicks += doc.bots
            found.spent_sum += doc.spent[0]
            found.spent_count += doc.spent[1]
            if found.sketch is None:
                found.sketch = datasketches.hll_sketch(12, datasketches.tgt_hll_type.HLL_8)
            for user in doc.members:
                found.sketch.update(user)
    return [render(doc, prefix) for doc in docs.values()]


def index_all(client: Elasticsearch, settings: Settings) -> None:
    """BATCH, its hour rollups' exact counts, SPEED and HIDDEN; then the boundary moved."""
    es = settings.elasticsearch
    prefix = es.index_prefix
    for doc in BATCH:
        client.index(index=ViewNames(prefix).batch_index, document=doc.source())
    cube = ensure_cube_index(client, es)
    for doc_id, rollup in hour_rollups().items():
        client.index(index=cube, id=doc_id, document=rollup)
    for rendered in speed_rollups(prefix):
        client.index(index=rendered.index, id=rendered.doc_id, document=rendered.source)
    client.indices.refresh(index=f"{prefix}-*")
    move_boundary(client, es, BOUNDARY)


def put_late_events(settings: Settings) -> int:
    """Two late events in the ledger, one touching two hours (3 keys); how many events."""
    ensure_late_table(settings.hbase)
    event_a, event_b = b"\x01" * 21, b"\x02" * 21
    keys = [struct.pack(">Q", H) + event_a, struct.pack(">Q", H - HOUR_MS) + event_a]
    keys.append(struct.pack(">Q", H) + event_b)
    connection = hbase_connect(settings.hbase)
    try:
        table = connection.table(late_table(settings.hbase.table))
        for key in keys:
            table.put(key, {LATE_COLUMN: b""})
    finally:
        connection.close()
    return 2


@pytest.fixture
def served(settings: Settings) -> Iterator[Settings]:
    """Known views, exact uniques, a moved boundary and a late ledger under the test's names."""
    client = connect(settings.elasticsearch)
    try:
        create_templates(client, settings.elasticsearch)
        index_all(client, settings)
        put_late_events(settings)
        yield settings
    finally:  # also when the setup itself failed half-way
        drop_views(client, settings.elasticsearch)
        client.close()
        drop_tables(settings)


@pytest.fixture
def api(served: Settings) -> Iterator[TestClient]:
    """The HTTP API over the test's data."""
    with TestClient(create_app(served)) as client:
        yield client


def union(docs: Iterable[Doc]) -> set[str]:
    return {user for doc in docs for user in doc.members}


def check_totals(body: dict[str, Any], docs: list[Doc], documents: int) -> None:
    """Exact sums of ``docs`` and a unique-user estimate whose bounds hold the truth, from
    ``documents`` stored documents (the planner reads the coarsest level that answers)."""
    total = body["total"]
    assert total["clicks"] == sum(d.clicks for d in docs)
    assert total["bot_clicks"] == sum(d.bots for d in docs)
    assert total["time_spent_sum_ms"] == sum(d.spent[0] for d in docs)
    assert total["time_spent_count"] == sum(d.spent[1] for d in docs)
    assert total["clicks_without_time_spent"] == total["clicks"] - total["time_spent_count"]
    assert total["documents"] == documents
    truth = len(union(docs))
    users = total["unique_users"]
    assert users["lower_bound"] <= truth <= users["upper_bound"]


class TestValues:
    def test_range_across_the_boundary_merges_both_layers(self, api: TestClient) -> None:
        """Three hours: batch hours + the speed hour, the speed documents behind the boundary
        left out; unique users unioned across layers (an estimate), with the freshness facts."""
        response = api.get("/v1/metrics", params={"from": iso(H), "to": iso(H + 3 * HOUR_MS)})
        assert response.status_code == 200, response.text
        body = response.json()
        check_totals(body, [*BATCH, *SPEED], documents=3)  # two (all, all) hours + a speed hour
        assert body["total"]["unique_users"]["exact"] is False
        # So few users are held exactly by the sketch (list mode), yet the flag says estimate.
        assert body["total"]["unique_users"]["value"] == len(union([*BATCH, *SPEED]))
        assert body["total"]["avg_time_spent_ms"] == pytest.approx(7700 / 10)
        assert body["boundary"] == iso(BOUNDARY)
        assert body["speed_until"] == iso(SPEED[1].start + MINUTE_MS)
        assert body["late_events_waiting"] == 2
        assert body["late_events_in_range"] == 2  # both touch hour H
        assert body["range"] == {"from": iso(H), "to": iso(H + 3 * HOUR_MS)}

    def test_one_hour_behind_the_boundary_is_exact_at_every_level(self, api: TestClient) -> None:
        """Total from (*, *), url groups from (url, *), url x country from the views."""
        hour = {"from": iso(H), "to": iso(H + HOUR_MS)}
        body = api.get("/v1/metrics", params=hour).json()
        assert body["total"]["unique_users"] == {
            "value": 13,
            "exact": True,
            "lower_bound": 13,
            "upper_bound": 13,
            "confidence": 1.0,
            "source": "uniques",
        }
        by_url = api.get("/v1/metrics", params={**hour, "group_by": "url"}).json()["groups"]
        assert [(g["url"], g["clicks"], g["unique_users"]["value"]) for g in by_url] == [
            (A, 14, 10),
            (B, 3, 3),
        ]
        assert all(g["unique_users"]["exact"] for g in by_url)
        cells = api.get("/v1/metrics", params={**hour, "group_by": "url,country", "top": 2})
        groups = cells.json()["groups"]
        assert [(g["url"], g["country"], g["unique_users"]["value"]) for g in groups] == [
            (A, "DE", 10),
            (A, "FR", 4),
        ]
        assert all(g["unique_users"]["source"] == "view" for g in groups)
        assert cells.json()["group_count"] == 3

    def test_filters_are_prefix_and_upper_cased_term(self, api: TestClient) -> None:
        """url is a prefix of the keyword, country a term however it is cased."""
        params = {"from": iso(H), "to": iso(H + HOUR_MS), "url": "https://a.", "country": "de"}
        body = api.get("/v1/metrics", params=params).json()
        check_totals(body, [BATCH[0]], documents=1)
        assert body["total"]["unique_users"]["exact"] is True
        assert body["filters"] == {"url_prefix": "https://a.", "country": "DE"}

    def test_speed_only_range_is_an_estimate_with_bounds(self, api: TestClient) -> None:
        """After the boundary only the speed layer counts, grouped by country: one hour from
        its hour rollups."""
        params = {"from": iso(BOUNDARY), "to": iso(BOUNDARY + HOUR_MS), "group_by": "country"}
        body = api.get("/v1/metrics", params=params).json()
        check_totals(body, SPEED, documents=1)  # the (all, all) hour
        assert [(g["country"], g["clicks"], g["documents"]) for g in body["groups"]] == [
            ("DE", 2, 1),
            ("FR", 1, 1),
        ]
        assert not any(g["unique_users"]["exact"] for g in body["groups"])

    def test_speed_minutes_answer_the_edges(self, api: TestClient) -> None:
        """A range cutting the speed hour reads minute rollups; a minute counts when it starts
        inside."""
        start, end = BOUNDARY + MINUTE_MS + 1, BOUNDARY + 3 * MINUTE_MS + 1
        params = {"from": iso(start)[:-1] + ".001Z", "to": iso(end)[:-1] + ".001Z"}
        body = api.get("/v1/metrics", params={**params, "group_by": "url"}).json()
        check_totals(body, [SPEED[1]], documents=1)  # minute +1 starts before from
        assert [(g["url"], g["clicks"]) for g in body["groups"]] == [(B, 1)]

    def test_a_grouped_query_without_top_shows_the_default_top(self, served: Settings) -> None:
        """No top: serving.default_top groups, the answer says how many there were."""
        small = served.model_copy(
            update={"serving": served.serving.model_copy(update={"default_top": 1})}
        )
        with TestClient(create_app(small)) as client:
            params = {"from": iso(H), "to": iso(H + 3 * HOUR_MS), "group_by": "country"}
            body = client.get("/v1/metrics", params=params).json()
        assert body["top"] == 1
        assert body["group_count"] == 2
        assert [(g["country"], g["clicks"]) for g in body["groups"]] == [("DE", 20)]
        assert body["total"]["clicks"] == 25
        assert any("top 1 of 2 groups" in note for note in body["notes"])

    def test_the_cli_answers_the_same_json(self, served: Settings, api: TestClient) -> None:
        """`clickstream query --format json` in a real process, configured by environment."""
        env = {
            **os.environ,
            "CLICKSTREAM_ELASTICSEARCH__INDEX_PREFIX": served.elasticsearch.index_prefix,
            "CLICKSTREAM_HBASE__TABLE": served.hbase.table,
        }
        args = ["--from", iso(H), "--to", iso(H + 3 * HOUR_MS), "--group-by", "url"]
        result = subprocess.run(
            [sys.executable, "-m", "commands.cli", "query", *args, "--format", "json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        body = json.loads(result.stdout)
        check_totals(body, [*BATCH, *SPEED], documents=3)  # the total: (all, all) hours
        assert body["late_events_waiting"] == 2
        http = api.get(
            "/v1/metrics",
            params={"from": iso(H), "to": iso(H + 3 * HOUR_MS), "group_by": "url"},
        ).json()
        assert body == http

    def test_the_cli_names_the_flag_to_fix(self, served: Settings) -> None:
        """A bad time is one error line naming --to."""
        result = subprocess.run(
            [sys.executable, "-m", "commands.cli", "query", "--from", iso(H), "--to", iso(H)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 1
        assert result.stderr.startswith("clickstream: error: --to: ")
        assert "Traceback" not in result.stderr


def test_clickstream_serve_answers_over_http(served: Settings) -> None:
    """`clickstream serve` as a real process: /healthz, then the same answer as the app."""
    port = free_port()
    env = {
        **os.environ,
        "CLICKSTREAM_ELASTICSEARCH__INDEX_PREFIX": served.elasticsearch.index_prefix,
        "CLICKSTREAM_HBASE__TABLE": served.hbase.table,
        "CLICKSTREAM_SERVING__PORT": str(port),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "commands.cli", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"{base}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "clickstream serve did not start"
                assert process.poll() is None, "clickstream serve exited"
                time.sleep(0.2)
        assert health.json() == {"status": "ok", "elasticsearch": True}
        params = {"from": iso(H), "to": iso(H + HOUR_MS), "group_by": "country"}
        body = httpx.get(f"{base}/v1/metrics", params=params, timeout=30).json()
        check_totals(body, BATCH[:3], documents=1)  # the hour's (all, all) rollup
        assert [(g["country"], g["unique_users"]["value"]) for g in body["groups"]] == [
            ("DE", 13),
            ("FR", 4),
        ]
        assert all(g["unique_users"]["exact"] for g in body["groups"])
    finally:
        process.terminate()
        process.wait(timeout=10)


class TestRefusals:
    def test_a_too_broad_selection_is_refused(self, served: Settings) -> None:
        """More documents than serving.max_documents: 422 naming from,to and the setting (the
        (url, country) level: four hour views; the total alone would read two rollups)."""
        small = served.model_copy(
            update={"serving": served.serving.model_copy(update={"max_documents": 3})}
        )
        with TestClient(create_app(small)) as client:
            params = {"from": iso(H), "to": iso(BOUNDARY), "group_by": "url,country"}
            response = client.get("/v1/metrics", params=params)
            assert client.get("/v1/metrics", params={**params, "group_by": ""}).status_code == 200
        assert response.status_code == 422
        body = response.json()
        assert body["parameter"] == "from,to"
        assert "serving.max_documents = 3" in body["message"]

    def test_elasticsearch_down_is_503(self, settings: Settings) -> None:
        """Nothing listens: a 503 saying so, and /healthz says unavailable."""
        down = settings.model_copy(
            update={
                "elasticsearch": settings.elasticsearch.model_copy(
                    update={"url": "http://127.0.0.1:9", "request_timeout_s": 2.0}
                )
            }
        )
        with TestClient(create_app(down)) as client:
            response = client.get("/v1/metrics", params={"from": iso(H), "to": iso(BOUNDARY)})
            health = client.get("/healthz")
        assert response.status_code == 503
        assert "unreachable" in response.json()["message"]
        assert "127.0.0.1:9" not in response.text  # no internal address in a body
        assert health.status_code == 503
        assert health.json() == {"status": "unavailable", "elasticsearch": False}

    def test_openapi_schema_and_health(self, api: TestClient) -> None:
        """/openapi.json describes every parameter; /healthz is ok."""
        schema = api.get("/openapi.json").json()
        parameters = schema["paths"]["/v1/metrics"]["get"]["parameters"]
        assert {p["name"] for p in parameters} == set(PARAMS)
        assert api.get("/healthz").json() == {"status": "ok", "elasticsearch": True}


def keyed(settings: Settings, **keys: str) -> Settings:
    """``settings`` whose API accepts ``keys`` (name -> key)."""
    hashes = {name: key_hash(key) for name, key in keys.items()}
    serving = settings.serving.model_copy(update={"api_keys": hashes})
    return settings.model_copy(update={"serving": serving})


class TestAccess:
    """API keys, response caps, and what refusals show."""

    def test_data_routes_need_a_key_health_and_the_page_do_not(self, served: Settings) -> None:
        key = new_key()
        params = {"from": iso(H), "to": iso(H + 3 * HOUR_MS)}
        with TestClient(create_app(keyed(served, dashboard=key, ops=new_key()))) as client:
            missing = client.get("/v1/metrics", params=params)
            wrong = client.get("/v1/series", params=params, headers={"Authorization": "Bearer x"})
            bearer = client.get("/v1/metrics", params=params, headers=bearer_of(key))
            header = client.get("/v1/series", params=params, headers={"X-API-Key": key})
            health = client.get("/healthz")
            page = client.get("/")
            metrics = client.get("/metrics").text
            schema = client.get("/openapi.json").json()
        for refused in (missing, wrong):
            assert refused.status_code == 401
            assert refused.headers["WWW-Authenticate"] == "Bearer"
            assert refused.json()["error"] == "unauthorized"
            assert "clickstream api-key create" in refused.json()["message"]
        assert bearer.status_code == 200
        check_totals(bearer.json(), [*BATCH, *SPEED], documents=3)
        assert header.status_code == 200
        assert health.status_code == 200
        assert page.status_code == 200
        assert 'clickstream_api_rejections_total{reason="unauthorized"} 2.0' in metrics
        assert 'route="/v1/metrics",status="200"' in metrics
        assert set(schema["components"]["securitySchemes"]) == {"HTTPBearer", "APIKeyHeader"}

    def test_a_malformed_key_hash_stops_the_start(self, served: Settings) -> None:
        serving = served.serving.model_copy(update={"api_keys": {"dashboard": "cs_plain"}})
        with pytest.raises(ConfigError, match="dashboard is not sha256"):
            create_app(served.model_copy(update={"serving": serving}))

    def test_no_keys_serve_only_on_loopback(self, served: Settings) -> None:
        with pytest.raises(ConfigError, match="refusing to serve the API without keys"):
            serve(served, host="0.0.0.0")  # noqa: S104 - the refusal under test

    def test_an_answer_past_max_response_bytes_is_refused(self, served: Settings) -> None:
        serving = served.serving.model_copy(update={"max_response_bytes": 1024})
        params = {"from": iso(H), "to": iso(BOUNDARY), "group_by": "url,country"}
        with TestClient(create_app(served.model_copy(update={"serving": serving}))) as client:
            small = client.get("/v1/metrics", params={"from": iso(H), "to": iso(BOUNDARY)})
            large = client.get("/v1/metrics", params=params)
        assert small.status_code == 200
        assert large.status_code == 422
        assert "serving.max_response_bytes = 1024" in large.json()["message"]
        assert large.json()["parameter"] == "top"


def bearer_of(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class TestSeries:
    """/v1/series: clicks per bucket, the batch part and the speed part apart."""

    @staticmethod
    def points(api: TestClient, **params: str) -> dict[int, tuple[int, int, int, int]]:
        response = api.get("/v1/series", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["boundary_ms"] == BOUNDARY
        assert body["speed_until_ms"] == SPEED[1].start + MINUTE_MS
        return {
            p["start_ms"]: (
                p["batch_clicks"],
                p["batch_bot_clicks"],
                p["speed_clicks"],
                p["speed_bot_clicks"],
            )
            for p in body["points"]
        }

    def test_hours_split_at_the_boundary(self, api: TestClient) -> None:
        """Batch hours before the boundary, the speed hour after; the speed documents behind
        the boundary (HIDDEN) are not counted."""
        found = self.points(api, **{"from": iso(H), "to": iso(H + 3 * HOUR_MS), "bucket": "hour"})
        assert found == {
            H: (17, 2, 0, 0),
            H + HOUR_MS: (5, 0, 0, 0),
            H + 2 * HOUR_MS: (0, 0, 3, 0),
        }

    def test_minutes_of_the_speed_layer(self, api: TestClient) -> None:
        """Up to 3 hours: minute buckets, empty ones included."""
        start = BOUNDARY - 10 * MINUTE_MS
        found = self.points(api, **{"from": iso(start), "to": iso(BOUNDARY + 5 * MINUTE_MS)})
        assert sorted(found) == list(range(start, BOUNDARY + 5 * MINUTE_MS, MINUTE_MS))
        assert {start: v for start, v in found.items() if any(v)} == {
            BOUNDARY + MINUTE_MS: (0, 0, 2, 0),
            BOUNDARY + 3 * MINUTE_MS: (0, 0, 1, 0),
        }

    def test_a_day_holds_both_layers(self, api: TestClient) -> None:
        """A day bucket starts at UTC midnight and holds the batch and the speed part."""
        found = self.points(api, **{"from": iso(H), "to": iso(H + 3 * HOUR_MS), "bucket": "day"})
        assert found == {H - H % (24 * HOUR_MS): (22, 2, 3, 0)}

    def test_filters_apply(self, api: TestClient) -> None:
        params = {"from": iso(H), "to": iso(H + 4 * HOUR_MS), "country": "fr"}
        assert self.points(api, **params) == {
            H: (4, 0, 0, 0),
            H + HOUR_MS: (0, 0, 0, 0),
            H + 2 * HOUR_MS: (0, 0, 1, 0),
            H + 3 * HOUR_MS: (0, 0, 0, 0),
        }

    def test_refusals_name_the_parameter(self, api: TestClient) -> None:
        """An unknown bucket is a bad parameter; too many points is a range rule."""
        week = {"from": iso(H), "to": iso(H + 7 * 24 * HOUR_MS)}
        unknown = api.get("/v1/series", params={**week, "bucket": "week"})
        assert unknown.status_code == 422
        assert unknown.json()["parameter"] == "bucket"
        too_many = api.get("/v1/series", params={**week, "bucket": "minute"})
        assert too_many.status_code == 422
        assert too_many.json()["error"] == "bad_range"
        assert "10080 points" in too_many.json()["message"]


def only_range_rules_refuse_what_the_schema_allows(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> bool | None:
    """The positive-data check, told about the rules no parameter's schema can state: a
    request generated from the schema may be refused only as ``bad_range`` (to after from,
    the longest range, the most points, 30 February)."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return None
    if response.status_code >= 400:
        body = response.json()
        assert response.status_code == 422, (response.status_code, body)
        assert body["error"] == "bad_range", f"the schema allows what the API refused: {body}"
    return None


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_a_schema_fuzzer_finds_no_server_error_and_no_unstated_rule(
    served: Settings, mode: GenerationMode
) -> None:
    """schemathesis, from the app's own /openapi.json, every operation: no 5xx, every response
    matches the schema; requests the schema allows are accepted except by a stated range rule
    (positive mode), requests it forbids are refused (negative mode)."""
    key = new_key()  # authenticated, as a real client is
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(keyed(served, fuzz=key)))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} == {"/v1/metrics", "/v1/series", "/healthz"}
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and operation.path == "/healthz":
            continue  # no parameter to get wrong

        @given(case=operation.as_strategy(generation_mode=mode))
        @hypothesis_settings(
            max_examples=40,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def fuzz(case: schemathesis.Case) -> None:
            case.call_and_validate(
                headers=bearer_of(key),
                excluded_checks=[positive_data_acceptance],
                additional_checks=[only_range_rules_refuse_what_the_schema_allows],
            )

        fuzz()


TEXT = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40)
BAD_TIMES = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat()),  # no offset
    st.sampled_from(["1969-12-31T00:00:00Z", "9999-12-31T23:59:59-12:00", "now", ""]),
    TEXT,
)
OPTIONAL = {
    "url": st.one_of(
        st.sampled_from(["https://a.", A, "", "x" * 1000, "x" * 1001, "é" * 500, "🙂" * 251]), TEXT
    ),
    "country": st.one_of(st.sampled_from(["DE", "fr", "ZZ", "DEU", "1a", ""]), TEXT),
    "group_by": st.one_of(
        st.sampled_from(["url", "country", "url,country", "country,url", "none", ""]), TEXT
    ),
    "top": st.one_of(
        st.integers(min_value=-(10**30), max_value=10**30).map(str),
        st.integers(min_value=1, max_value=5).map(str),
        st.sampled_from(["0", "-1", "10001", "1e3", ""]),
        TEXT,
    ),
}


@st.composite
def queries(draw: st.DrawFn) -> dict[str, str]:
    """Mostly well-formed ranges around the data, each parameter sometimes garbage."""
    start = H + draw(st.integers(min_value=-2, max_value=8)) * HOUR_MS // 2
    length = draw(st.integers(min_value=-1, max_value=8)) * HOUR_MS // 2
    params: dict[str, str] = {"from": iso(start), "to": iso(start + length)}
    for name in ("from", "to"):
        choice = draw(st.sampled_from(["keep", "keep", "keep", "garbage", "absent"]))
        if choice == "garbage":
            params[name] = draw(BAD_TIMES)
        elif choice == "absent":
            del params[name]
    for name, values in OPTIONAL.items():
        if draw(st.booleans()):
            params[name] = draw(values)
    return params


@given(params=queries())
@hypothesis_settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_any_parameters_get_an_answer_or_a_4xx_naming_the_parameter(
    api: TestClient, params: dict[str, str]
) -> None:
    """Never a 5xx; every refusal names the offending parameter in its body."""
    response = api.get("/v1/metrics", params=params)
    assert response.status_code < 500, (params, response.text)
    body = response.json()
    event(f"status {response.status_code} {body.get('parameter') or ''}".strip())
    if response.status_code >= 400:
        named = body["parameter"].split(",")
        assert set(named) <= set(PARAMS), body
        assert all(name in body["message"] for name in named), body
    else:
        assert response.status_code == 200
        assert body["total"]["clicks"] >= 0
        assert body["boundary"] == iso(BOUNDARY)
