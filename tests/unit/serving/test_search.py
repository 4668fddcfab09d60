"""The Elasticsearch edge's pure parts: the query body and reading a hit."""

from __future__ import annotations

import base64

from serving.params import MetricsQuery
from serving.search import SOURCE_FIELDS, filter_query, view_doc

H = 1_795_341_600_000


class TestFilterQuery:
    def test_only_a_range_without_filters(self) -> None:
        """[from, to) on start, in epoch ms."""
        assert filter_query(MetricsQuery(H, H + 1)) == {
            "bool": {
                "filter": [{"range": {"start": {"gte": H, "lt": H + 1, "format": "epoch_millis"}}}]
            }
        }

    def test_url_is_a_prefix_and_country_a_term(self) -> None:
        """Query-string syntax in a parameter stays a literal value."""
        query = MetricsQuery(H, H + 1, url_prefix="https://a/*?(x OR y)", country="DE")
        clauses = filter_query(query)["bool"]["filter"]
        assert clauses[1:] == [
            {"prefix": {"url": {"value": "https://a/*?(x OR y)"}}},
            {"term": {"country": {"value": "DE"}}},
        ]
        assert {next(iter(c)) for c in clauses} <= {"range", "prefix", "term", "terms"}


class TestViewDoc:
    def test_layer_comes_from_the_index(self) -> None:
        """The batch index is batch; any other (a speed day) is speed."""
        source = {"url": "u", "country": "DE", "start": H, "clicks": 3, "users_sketch": None}
        batch = view_doc({"_index": "p-batch-v1", "_source": source}, "p-batch-v1")
        speed = view_doc({"_index": "p-speed-2026.11.22", "_source": source}, "p-batch-v1")
        assert (batch.layer, speed.layer) == ("batch", "speed")
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
        assert view_doc({"_index": "x", "_source": source}, "p-batch-v1").sketch == raw

    def test_only_the_needed_fields_are_fetched(self) -> None:
        """No avg (recomputed), no partition or offset."""
        assert "avg_time_spent_ms" not in SOURCE_FIELDS
        assert "last_offset" not in SOURCE_FIELDS
        assert "users_sketch" in SOURCE_FIELDS
