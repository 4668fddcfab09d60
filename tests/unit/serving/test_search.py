"""The Elasticsearch edge's pure parts: the query body and reading a hit."""

from __future__ import annotations

import base64

from clickstream.times import HOUR_MS, MINUTE_MS
from serving.params import MetricsQuery
from serving.plan import Plan
from serving.search import SOURCE_FIELDS, combined, filter_query, parts, view_doc

H = 1_795_341_600_000


def any_of(*spans: tuple[int, int]) -> dict[str, object]:
    """The clause of start in any of the spans."""
    ranges = [
        {"range": {"start": {"gte": lo, "lt": hi, "format": "epoch_millis"}}} for lo, hi in spans
    ]
    return {"bool": {"should": ranges, "minimum_should_match": 1}}


class TestFilterQuery:
    def test_only_a_range_without_filters(self) -> None:
        """[from, to) on start, in epoch ms."""
        assert filter_query(MetricsQuery(H, H + 1)) == {"bool": {"filter": [any_of((H, H + 1))]}}

    def test_spans_and_a_rollup_select_the_cube_documents(self) -> None:
        """The planner's spans replace the range (any matches); level and grain are terms."""
        query = MetricsQuery(H, H + 10, country="DE")
        body = filter_query(query, ((H, H + 1), (H + 5, H + 6)), ("country", "day"))
        assert body["bool"]["filter"] == [
            any_of((H, H + 1), (H + 5, H + 6)),
            {"term": {"level": {"value": "country"}}},
            {"term": {"grain": {"value": "day"}}},
            {"term": {"country": {"value": "DE"}}},
        ]

    def test_url_is_a_prefix_and_country_a_term(self) -> None:
        """Query-string syntax in a parameter stays a literal value."""
        query = MetricsQuery(H, H + 1, url_prefix="https://a/*?(x OR y)", country="DE")
        clauses = filter_query(query)["bool"]["filter"]
        assert clauses[1:] == [
            {"prefix": {"url": {"value": "https://a/*?(x OR y)"}}},
            {"term": {"country": {"value": "DE"}}},
        ]
        assert {next(iter(c)) for c in clauses} <= {"bool", "prefix", "term", "terms"}


class TestViewDoc:
    def test_layer_and_span_come_from_the_index(self) -> None:
        """The batch index holds hours; the cube hours or days (its grain); any other index (a
        speed day) minutes."""
        source = {"url": "u", "country": "DE", "start": H, "clicks": 3, "users_sketch": None}
        batch = view_doc({"_index": "p-batch-v1", "_source": source}, "p")
        speed = view_doc({"_index": "p-speed-2026.11.22", "_source": source}, "p")
        day = view_doc({"_index": "p-cube-v1", "_source": {**source, "grain": "day"}}, "p")
        assert (batch.layer, batch.span_ms) == ("batch", 3_600_000)
        assert (speed.layer, speed.span_ms) == ("speed", 60_000)
        assert (day.layer, day.span_ms) == ("cube", 86_400_000)
        hour = view_doc(
            {"_index": "p-speed-2026.11.22", "_source": {**source, "grain": "hour"}}, "p"
        )
        assert (hour.layer, hour.span_ms) == ("speed", 3_600_000)
        assert (batch.clicks, batch.bot_clicks, batch.time_spent_count, batch.sketch) == (
            3,
            0,
            0,
            None,
        )

    def test_sketch_is_decoded(self) -> None:
        """users_sketch is base64 on the wire, bytes in the document."""
        raw = b"\x02\x01\x07\x0c"
        source = {"url": "u", "country": "DE", "start": H, "users_sketch": base64.b64encode(raw)}
        assert view_doc({"_index": "x", "_source": source}, "p").sketch == raw

    def test_only_the_needed_fields_are_fetched(self) -> None:
        """No avg (recomputed), no partition or offset."""
        assert "avg_time_spent_ms" not in SOURCE_FIELDS
        assert "last_offset" not in SOURCE_FIELDS
        assert "users_sketch" in SOURCE_FIELDS


class TestParts:
    PLAN = Plan(
        "url",
        hours=((H - 2 * HOUR_MS, H),),
        days=((H - 10 * 24 * HOUR_MS, H - 2 * 24 * HOUR_MS),),
        speed_hours=((H, H + HOUR_MS),),
        speed_minutes=((H + HOUR_MS, H + HOUR_MS + 5 * MINUTE_MS),),
    )

    def test_each_part_reads_its_index_level_and_grain(self) -> None:
        """Batch hours and days from the cube at the plan's level; speed hours and minutes
        from the speed indices directly (the alias shows only their minute views)."""
        found = parts("p", MetricsQuery(H - 11 * 24 * HOUR_MS, H + 2 * HOUR_MS), self.PLAN)
        assert [(part.index, part.body["bool"]["filter"][1:]) for part in found] == [
            ("p-cube-v1", [level("url"), grain("hour")]),
            ("p-cube-v1", [level("url"), grain("day")]),
            ("p-speed-*", [level("url"), grain("hour")]),
            ("p-speed-*", [level("url"), grain("minute")]),
        ]
        assert found[2].index_clause == {"prefix": {"_index": "p-speed-"}}

    def test_url_country_hours_are_the_batch_views(self) -> None:
        """At (url, country) the batch hours are the views: no level or grain to match."""
        plan = Plan("url_country", hours=((H - HOUR_MS, H),))
        (part,) = parts("p", MetricsQuery(H - HOUR_MS, H), plan)
        assert part.index == "p-batch-v1"
        assert part.body == filter_query(MetricsQuery(H - HOUR_MS, H), ((H - HOUR_MS, H),))

    def test_one_search_reads_every_part_each_in_its_own_index(self) -> None:
        """Parts are or-ed, each tied to its index; an index is named once."""
        found = parts("p", MetricsQuery(H - 11 * 24 * HOUR_MS, H + 2 * HOUR_MS), self.PLAN)
        indices, body = combined(found)
        assert indices == "p-cube-v1,p-speed-*"
        (should,) = body["bool"]["filter"]
        assert [c["bool"]["filter"][0] for c in should["bool"]["should"]] == [
            {"term": {"_index": "p-cube-v1"}},
            {"term": {"_index": "p-cube-v1"}},
            {"prefix": {"_index": "p-speed-"}},
            {"prefix": {"_index": "p-speed-"}},
        ]

    def test_groups_shown_restrict_the_fetch(self) -> None:
        """Urls as terms; (url, country) groups as exact pairs, never their cross product."""
        found = parts("p", MetricsQuery(H, H + HOUR_MS), Plan("url", speed_hours=((H, H + 1),)))
        assert combined(found, [("b", None), ("a", None)])[1]["bool"]["filter"][1] == {
            "terms": {"url": ["a", "b"]}
        }
        pairs = combined(found, [("a", "DE"), ("b", "FR")])[1]["bool"]["filter"][1]
        assert pairs["bool"]["should"] == [
            {"bool": {"filter": [{"term": {"url": "a"}}, {"term": {"country": "DE"}}]}},
            {"bool": {"filter": [{"term": {"url": "b"}}, {"term": {"country": "FR"}}]}},
        ]


def level(name: str) -> dict[str, object]:
    return {"term": {"level": {"value": name}}}


def grain(name: str) -> dict[str, object]:
    return {"term": {"grain": {"value": name}}}
