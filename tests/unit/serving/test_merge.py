"""Merging views into answers: sums, sketch unions (never sums), exactness, grouping, output."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import struct
from collections.abc import Iterable

import datasketches
import pytest

from clickstream.times import DAY_MS, HOUR_MS
from serving.answer import Answer, LateEvents, answer_dict, late_events, notes_for
from serving.errors import ServingError
from serving.merge import (
    Group,
    Layer,
    Selection,
    ViewDoc,
    exact_source,
    metrics,
    select,
    sketch_estimate,
)
from serving.params import MetricsQuery
from serving.render import render

H = 1_795_341_600_000  # 2026-11-22T10:00:00Z
LG_K = 12
A, B = "https://a.example/", "https://b.example/"


def sketch(users: Iterable[str]) -> bytes:
    hll = datasketches.hll_sketch(LG_K)
    for user in users:
        hll.update(user)
    return bytes(hll.serialize_compact())


def doc(
    *,
    url: str | None = A,
    country: str | None = "DE",
    start: int = H,
    span: int = HOUR_MS,
    clicks: int = 1,
    users: Iterable[str] = ("u",),
    layer: Layer = "batch",
    spent: tuple[int, int] = (0, 0),
    bots: int = 0,
) -> ViewDoc:
    members = list(users)
    return ViewDoc(
        layer=layer,
        url=url,
        country=country,
        start_ms=start,
        span_ms=span,
        clicks=clicks,
        bot_clicks=bots,
        unique_users=len(set(members)),
        sketch=sketch(members) if members else None,
        time_spent_sum_ms=spent[0],
        time_spent_count=spent[1],
    )


def hour(**filters: object) -> MetricsQuery:
    return MetricsQuery(H, H + HOUR_MS, **filters)  # type: ignore[arg-type]


def total(query: MetricsQuery, boundary: int | None, docs: list[ViewDoc]) -> Selection:
    return select(query, boundary, docs)[0]


class TestSums:
    def test_additive_measures_are_summed_and_average_is_sum_over_count(self) -> None:
        """clicks, bots, time spent added; avg = sum / count; clicks without time reported."""
        docs = [doc(clicks=4, spent=(3000, 3), bots=2), doc(url=B, clicks=6, spent=(1000, 1))]
        m = metrics(total(hour(), None, docs), LG_K)
        assert (m.clicks, m.bot_clicks, m.time_spent_sum_ms, m.time_spent_count) == (10, 2, 4000, 4)
        assert m.clicks_without_time_spent == 6
        assert m.avg_time_spent_ms == 1000.0
        assert m.documents == 2

    def test_bot_clicks_by_rule_add_up_with_the_unknown_rest(self) -> None:
        """Rules are summed across documents; bots without a stored rule are ``unknown``."""
        docs = [
            dataclasses.replace(doc(bots=3), bot_rules={"uap-core": 2, "tools": 1}),
            dataclasses.replace(doc(url=B, bots=4), bot_rules={"uap-core": 1}),
        ]
        m = metrics(total(hour(), None, docs), LG_K)
        assert m.bot_clicks == 7
        assert m.bot_clicks_by_rule == {
            "uap-core": 3,
            "crawler-user-agents": 0,
            "tools": 1,
            "unknown": 3,
        }

    def test_no_known_time_spent_is_no_average_not_zero(self) -> None:
        """avg is None when no click has a time spent."""
        m = metrics(total(hour(), None, [doc(clicks=3)]), LG_K)
        assert m.avg_time_spent_ms is None
        assert m.clicks_without_time_spent == 3


class TestUniqueUsers:
    def test_union_counts_a_user_once_across_documents(self) -> None:
        """Overlapping users across docs (and layers) are unioned, never added."""
        first = [f"u{i}" for i in range(3000)]
        second = [f"u{i}" for i in range(2000, 6000)]
        docs = [doc(users=first, clicks=3000), doc(start=H + 60_000, users=second, layer="speed")]
        users = metrics(total(MetricsQuery(H, H + 2 * HOUR_MS), H, docs), LG_K).unique_users
        assert not users.exact
        assert users.source == "sketch"
        assert users.lower_bound <= 6000 <= users.upper_bound
        assert users.lower_bound <= users.value <= users.upper_bound
        assert users.upper_bound < 3000 + 4000  # the sum is far outside the bounds
        assert users.confidence == pytest.approx(0.9545)

    def test_estimate_is_exact_for_tiny_sets_but_still_flagged(self) -> None:
        """Small sets are exact in the sketch, yet without a stored count it is an estimate."""
        docs = [doc(users=["a", "b"]), doc(url=B, users=["b", "c"])]
        users = sketch_estimate([d.sketch for d in docs if d.sketch], LG_K)
        assert (users.value, users.lower_bound, users.upper_bound) == (3, 3, 3)
        assert not users.exact

    def test_a_corrupt_sketch_is_a_serving_error(self) -> None:
        """Garbage bytes do not pass as a sketch."""
        with pytest.raises(ServingError, match="corrupt users_sketch"):
            sketch_estimate([b"\x00garbage"], LG_K)


class TestExactness:
    def test_one_view_is_exact_for_url_and_country(self) -> None:
        """Hour behind the boundary, grouped by url,country: each doc's own exact count."""
        docs = [doc(users=["a", "b"]), doc(url=B, users=["c"])]
        _, groups, _ = select(hour(group_by=("url", "country")), H + HOUR_MS, docs)
        assert all(g.exact is not None and g.exact.view is not None for g in groups)
        values = [metrics(g, LG_K).unique_users for g in groups]
        assert [(u.value, u.exact, u.source) for u in values] == [
            (2, True, "view"),
            (1, True, "view"),
        ]

    def test_a_rollup_of_the_whole_range_is_exact(self) -> None:
        """The planner reads the level the query needs: one rollup per group whose bucket is the
        range counts it exactly (an hour or a whole UTC day)."""
        everything = doc(layer="cube", url=None, country=None, users=["a", "b", "c"])
        users = metrics(total(hour(), H + HOUR_MS, [everything]), LG_K).unique_users
        assert (users.value, users.exact, users.source) == (3, True, "uniques")
        day = H - H % DAY_MS
        rollups = [
            doc(layer="cube", url=None, start=day, span=DAY_MS, users=["a", "b"]),
            doc(layer="cube", url=None, country="FR", start=day, span=DAY_MS, users=["c"]),
        ]
        by_country = MetricsQuery(day, day + DAY_MS, group_by=("country",))
        groups = select(by_country, day + DAY_MS, rollups)[1]
        assert [(g.country, metrics(g, LG_K).unique_users.value) for g in groups] == [
            ("DE", 2),
            ("FR", 1),
        ]
        assert all(g.exact is not None for g in groups)

    def test_several_documents_are_an_estimate(self) -> None:
        """A url prefix matching several urls (their rollups in one group): never summed."""
        docs = [doc(layer="cube", country=None), doc(layer="cube", url=B, country=None)]
        assert total(hour(url_prefix="https://"), H + HOUR_MS, docs).exact is None

    @pytest.mark.parametrize(
        ("query", "boundary", "span"),
        [
            (hour(), H + HOUR_MS - 1, HOUR_MS),  # the hour is not wholly behind the boundary
            (hour(), None, HOUR_MS),  # no batch run yet
            (MetricsQuery(H, H + 2 * HOUR_MS), H + 2 * HOUR_MS, HOUR_MS),  # two hours
            (MetricsQuery(H + 60_000, H + HOUR_MS + 60_000), H + 2 * HOUR_MS, HOUR_MS),
            (MetricsQuery(H, H + DAY_MS), H + DAY_MS, HOUR_MS),  # a day not on midnight
        ],
    )
    def test_otherwise_an_estimate(
        self, query: MetricsQuery, boundary: int | None, span: int
    ) -> None:
        """Anything else: no stored count answers the selection."""
        assert total(query, boundary, [doc(span=span)]).exact is None

    def test_speed_docs_are_never_exact(self) -> None:
        """A minute doc in the group means the group is not a stored bucket."""
        speed = [doc(layer="speed", span=60_000)]
        assert exact_source(hour(), H + HOUR_MS, (None, None), speed) is None

    def test_bot_only_and_empty_selections_are_exactly_zero(self) -> None:
        """No human click in a completed hour: exactly no user."""
        bots = metrics(total(hour(), H + HOUR_MS, [doc(clicks=0, users=[], bots=3)]), LG_K)
        assert (bots.unique_users.value, bots.unique_users.exact) == (0, True)
        empty = metrics(total(hour(), H + HOUR_MS, []), LG_K)
        assert (empty.unique_users.value, empty.unique_users.exact) == (0, True)
        assert empty.unique_users.source == "empty"


class TestGrouping:
    def test_groups_by_clicks_desc_then_key_cut_to_top(self) -> None:
        """--top keeps the most clicked; ties by key; the total covers every group."""
        docs = [doc(url=B, clicks=5), doc(url=A, clicks=5), doc(url="https://c/", clicks=9)]
        everything, groups, count = select(
            MetricsQuery(H, H + HOUR_MS, group_by=("url",), top=2), None, docs
        )
        assert [g.url for g in groups] == ["https://c/", A]
        assert count == 3
        assert metrics(everything, LG_K).clicks == 19

    def test_no_grouping_is_only_the_total(self) -> None:
        """Without group_by there are no groups."""
        everything, groups, count = select(hour(), None, [doc(), doc(url=B)])
        assert (groups, count, len(everything.docs)) == ([], 0, 2)


def answer() -> Answer:
    query = MetricsQuery(H, H + HOUR_MS, group_by=("url", "country"))
    docs = [doc(clicks=2, spent=(500, 1), users=["a", "b"]), doc(url=B, clicks=1, users=["c"])]
    _, selections, count = select(query, H + HOUR_MS, docs)
    # The total comes from its own level's rollup (the service fetches it for one bucket).
    rollup = doc(layer="cube", url=None, country=None, clicks=3, spent=(500, 1), users="abc")
    everything = select(MetricsQuery(H, H + HOUR_MS), H + HOUR_MS, [rollup])[0]
    groups = tuple(Group(s.url, s.country, metrics(s, LG_K)) for s in selections)
    late = LateEvents(7, 2)
    return Answer(
        query, H + HOUR_MS, H + 2 * HOUR_MS, late, metrics(everything, LG_K), groups, count
    )


class TestOutput:
    def test_json_carries_range_boundary_freshness_late_and_exactness(self) -> None:
        """Everything a reader needs to trust the numbers is in the body."""
        body = json.loads(render(answer(), "json"))
        assert body["range"] == {"from": "2026-11-22T10:00:00Z", "to": "2026-11-22T11:00:00Z"}
        assert body["boundary"] == "2026-11-22T11:00:00Z"
        assert body["speed_until"] == "2026-11-22T12:00:00Z"
        assert body["late_events_waiting"] == 7
        assert body["late_events_in_range"] == 2
        assert body["total"]["unique_users"]["value"] == 3
        assert body["total"]["unique_users"]["exact"] is True
        assert [g["url"] for g in body["groups"]] == [A, B]
        assert body["groups"][0]["avg_time_spent_ms"] == 500.0
        assert body == answer_dict(answer())

    def test_csv_has_a_row_per_group_and_the_total(self) -> None:
        """Header, groups, then `total`; unknown averages are empty cells."""
        rows = list(csv.DictReader(io.StringIO(render(answer(), "csv"))))
        assert [r["scope"] for r in rows] == ["group", "group", "total"]
        assert rows[1]["avg_time_spent_ms"] == ""
        assert rows[2]["clicks"] == "3"
        assert rows[2]["unique_users_exact"] == "true"

    def test_table_shows_exact_and_estimates_apart(self) -> None:
        """Exact values say so; the header names boundary and late events."""
        text = render(answer(), "table")
        assert "boundary    2026-11-22T11:00:00Z" in text
        assert "7 waiting for the next batch run, 2 of them in this range" in text
        assert "3 (exact)" in text

    def test_table_says_when_late_events_are_unknown(self) -> None:
        """An unreadable ledger is 'unknown', never a zero."""
        unknown = dataclasses.replace(answer(), late=LateEvents(None, None, "HBase down"))
        assert "late events unknown (see the note)" in render(unknown, "table")

    def test_notes_say_when_hours_are_coarser_than_the_range(self) -> None:
        """A half-hour start behind the boundary is flagged."""
        notes = notes_for(MetricsQuery(H + 1_800_000, H + 2 * HOUR_MS), H + 2 * HOUR_MS, None)
        assert any("hourly" in note for note in notes)
        assert notes_for(hour(), H + HOUR_MS, None) == []
        assert "HBase" in notes_for(hour(), None, "HBase down")[0]


class TestLateEvents:
    def test_distinct_events_and_those_touching_the_range(self) -> None:
        """Keys are hour | event: an event with two hour keys counts once."""

        def key(hour: int, event: bytes) -> bytes:
            return struct.pack(">Q", hour) + event

        keys = [key(H, b"e1"), key(H - HOUR_MS, b"e1"), key(H - 5 * HOUR_MS, b"e2")]
        late = late_events(keys, MetricsQuery(H - HOUR_MS + 1, H + HOUR_MS), H + HOUR_MS, None)
        assert (late.waiting, late.touching_range, late.error) == (2, 1, None)

    def test_only_hours_behind_the_boundary_wait(self) -> None:
        """Keys at or past the boundary are the speed layer's; before any batch, none wait."""

        def key(hour: int, event: bytes) -> bytes:
            return struct.pack(">Q", hour) + event

        keys = [key(H, b"e1"), key(H - HOUR_MS, b"e2"), key(H + HOUR_MS, b"e3")]
        query = MetricsQuery(H - 2 * HOUR_MS, H + 2 * HOUR_MS)
        assert late_events(keys, query, H, None).waiting == 1
        assert late_events(keys, query, None, None).waiting == 0

    def test_an_unreadable_ledger_is_unknown_with_the_reason(self) -> None:
        """None, never a made-up zero."""
        late = late_events(None, hour(), H, "no table")
        assert (late.waiting, late.touching_range, late.error) == (None, None, "no table")
