"""The Kibana dashboard against the real Elasticsearch: fields, aggregations, values.

Kibana itself cannot be installed here, so each Lens visualisation is translated into the search
it runs (tests.kibana) and that search runs on the live views, read through the alias the way
Kibana reads it: batch view before the boundary, speed view from it (indexing.boundary).
The saved objects are the ones `deploy/kibana/import.sh --dry-run --prefix <test prefix>` prints.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from clickstream.settings import Settings
from clickstream.times import HOUR_MS
from indexing.boundary import move_boundary
from indexing.client import connect
from indexing.templates import create_templates, drop_views, ensure_cube_index
from indexing.views import ViewNames
from tests.kibana import FIELD_TYPES, SavedObject, by_type, lens_layers, parse_ndjson
from tests.paths import ROOT

pytestmark = pytest.mark.integration

IMPORT = ROOT / "deploy" / "kibana" / "import.sh"
BOUNDARY = "2026-11-30T12:00:00Z"
TIME_FROM, TIME_TO = "2026-11-30T00:00:00.000Z", "2026-11-30T23:59:59.999Z"


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


Row = tuple[str, str, str, int, int, int, int]


def _view(row: Row) -> dict[str, Any]:
    """(url, country, start, clicks, bot clicks, time spent sum, count) as a view document,
    as both layers write it (the average is there only to show that nothing reads it)."""
    url, country, start, clicks, bots, spent, timed = row
    return {
        "url": url,
        "country": country,
        "start": _ms(start),
        "clicks": clicks,
        "bot_clicks": bots,
        "unique_users": clicks,
        "time_spent_sum_ms": spent,
        "time_spent_count": timed,
        "avg_time_spent_ms": spent / timed if timed else None,
    }


A, B, C, D = (
    "https://shop.example/a",
    "https://shop.example/b",
    "https://shop.example/c",
    "https://shop.example/d",
)
BATCH = [
    _view((A, "DE", "2026-11-30T10:00:00Z", 10, 2, 60_000, 6)),
    _view((A, "FR", "2026-11-30T11:00:00Z", 4, 0, 40_000, 2)),
    _view((B, "DE", "2026-11-30T10:00:00Z", 6, 6, 5_000, 5)),
    # Outside the dashboard's time range.
    _view((D, "DE", "2026-11-29T10:00:00Z", 1_000, 0, 1_000, 1)),
]
MINUTE = {"partition": 0, "last_offset": 1, "level": "url_country", "grain": "minute"}
SPEED = [
    {**_view((A, "DE", "2026-11-30T12:00:00Z", 3, 1, 3_000, 1)), **MINUTE},
    {**_view((C, "US", "2026-11-30T12:01:00Z", 8, 0, 0, 0)), **MINUTE},
    # Behind the boundary, not yet pruned: the alias must hide it (or B would top the chart).
    {**_view((B, "DE", "2026-11-30T11:30:00Z", 100, 50, 9_000, 9)), **MINUTE},
    # The speed layer's hour rollup of the two minutes: hidden by the alias (counted twice).
    {
        **_view((A, "DE", "2026-11-30T12:00:00Z", 11, 1, 3_000, 1)),
        **MINUTE,
        "level": "url",
        "grain": "hour",
    },
]


@dataclass(frozen=True)
class Views:
    """The test's views, their alias, and the saved objects as imported for its prefix."""

    es: Elasticsearch
    names: ViewNames
    speed_index: str
    objects: list[SavedObject]

    def rows(self, lens_id: str) -> list[dict[str, Any]]:
        """The table the visualisation ``lens_id`` draws over the test's time range."""
        (obj,) = [o for o in by_type(self.objects, "lens") if o.id == lens_id]
        (data_view,) = by_type(self.objects, "index-pattern")
        (layer,) = lens_layers(obj)
        body = layer.search_body(data_view.attributes["timeFieldName"], TIME_FROM, TIME_TO)
        response = self.es.search(index=data_view.title, **body)
        return layer.rows(response.body)


@pytest.fixture
def views(settings: Settings) -> Iterator[Views]:
    """Templates, a batch and a speed index with known documents, the boundary moved by the
    pipeline's own move_boundary; everything under the test's prefix is dropped afterwards."""
    es = connect(settings.elasticsearch)
    names = ViewNames(settings.elasticsearch.index_prefix)
    speed_index = f"{names.prefix}-speed-2026.11.30"
    try:
        create_templates(es, settings.elasticsearch)
        for index, docs in ((names.batch_index, BATCH), (speed_index, SPEED)):
            for i, doc in enumerate(docs):
                es.index(index=index, id=str(i), document=doc)
            es.indices.refresh(index=index)
        # The cube lives beside the views, out of the alias: its rollups must not reach a chart.
        cube = ensure_cube_index(es, settings.elasticsearch)
        es.index(
            index=cube,
            id="u",
            document={
                "level": "url",
                "grain": "hour",
                "url": A,
                "start": _ms(BOUNDARY) - HOUR_MS,
                "clicks": 1000,
                "unique_users": 9,
            },
            refresh=True,
        )
        # The batch job's own switch: batch start < boundary, speed start >= boundary.
        move_boundary(es, settings.elasticsearch, _ms(BOUNDARY))
        printed = subprocess.run(
            [str(IMPORT), "--dry-run", "--prefix", names.prefix],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        yield Views(es, names, speed_index, parse_ndjson(printed))
    finally:
        drop_views(es, settings.elasticsearch)
        es.close()


class TestDataView:
    def test_title_is_the_alias_and_time_field_start(self, views: Views) -> None:
        """The imported data view reads the test prefix's alias, by `start`, which is a date."""
        (data_view,) = by_type(views.objects, "index-pattern")
        assert data_view.title == views.names.alias
        assert data_view.attributes["timeFieldName"] == "start"
        caps = views.es.field_caps(index=data_view.title, fields="start")
        assert set(caps["fields"]["start"]) == {"date"}


class TestFields:
    def test_every_field_exists_with_an_aggregatable_type(self, views: Views) -> None:
        """Through the alias, every (field, operation) of every visualisation has one mapped,
        aggregatable type that the operation accepts, in both the batch and speed index."""
        uses = {
            use
            for obj in by_type(views.objects, "lens")
            for use in lens_layers(obj)[0].field_uses()
        }
        assert len(uses) == 7, uses
        caps = views.es.field_caps(
            index=views.names.alias, fields=sorted({name for name, _ in uses})
        )
        assert set(caps["indices"]) == {views.names.batch_index, views.speed_index}
        for name, operation in sorted(uses):
            assert name in caps["fields"], f"{name} is not mapped"
            ((mapped, cap),) = caps["fields"][name].items()  # one type: no conflict
            assert cap["aggregatable"], name
            assert mapped in FIELD_TYPES[operation], (name, operation, mapped)
            assert "indices" not in cap, f"{name} is {mapped} in only some indices"


class TestValues:
    def test_top_urls_by_clicks(self, views: Views) -> None:
        """URLs ordered by summed clicks across batch and speed; the stale speed doc and the
        out-of-range day do not count."""
        rows = views.rows("clickstream-top-urls")
        assert [(r["url"], r["clicks"]) for r in rows] == [(A, 17.0), (C, 8.0), (B, 6.0)]

    def test_clicks_by_country(self, views: Views) -> None:
        """Countries ordered by summed clicks."""
        rows = views.rows("clickstream-clicks-by-country")
        assert [(r["country"], r["clicks"]) for r in rows] == [
            ("DE", 19.0),
            ("US", 8.0),
            ("FR", 4.0),
        ]

    def test_average_time_spent_is_a_ratio_of_sums(self, views: Views) -> None:
        """A: (60 + 40 + 3 s) / (6 + 2 + 1) clicks, not the 11 s mean of the documents'
        averages; C has no known time spent: empty, not 0; untimed clicks are shown."""
        rows = {r["url"]: r for r in views.rows("clickstream-avg-time-per-url")}
        assert rows[A]["avg_time_spent"] == pytest.approx(103_000 / 9)
        assert rows[A]["avg_time_spent"] != pytest.approx((10_000 + 20_000 + 3_000) / 3)
        assert rows[B]["avg_time_spent"] == pytest.approx(1_000.0)
        assert rows[C]["avg_time_spent"] is None
        untimed = {
            url: (r["clicks"], r["timed_clicks"], r["untimed_clicks"]) for url, r in rows.items()
        }
        assert untimed == {A: (17.0, 9.0, 8.0), B: (6.0, 5.0, 1.0), C: (8.0, 0.0, 8.0)}

    def test_clicks_over_time_per_hour(self, views: Views) -> None:
        """Hourly sums: batch hours 10 and 11, speed minutes of hour 12 folded into it; the
        other hours of the day are empty buckets."""
        rows = views.rows("clickstream-clicks-over-time")
        assert len(rows) == 24
        filled = {r["start"]: r["clicks"] for r in rows if r["clicks"] is not None}
        assert filled == {
            _ms("2026-11-30T10:00:00Z"): 16.0,
            _ms("2026-11-30T11:00:00Z"): 4.0,
            _ms("2026-11-30T12:00:00Z"): 11.0,
        }
        assert rows[0]["start"] == _ms(TIME_FROM.replace(".000Z", "Z"))
        assert datetime.fromtimestamp(rows[-1]["start"] / 1000, UTC).hour == 23

    def test_bot_share(self, views: Views) -> None:
        """9 bot clicks over 31 human + 9 bot clicks."""
        (row,) = views.rows("clickstream-bot-share")
        assert row["bot_share"] == pytest.approx(9 / 40)
        assert row["bot_clicks"] == 9.0

    def test_alias_hides_the_speed_document_behind_the_boundary(self, views: Views) -> None:
        """The stale speed document and the rollup are in their index but not behind the
        alias."""
        assert views.es.count(index=views.speed_index)["count"] == 4
        assert views.es.count(index=views.names.alias)["count"] == 6
