"""Classifying Elasticsearch bulk items: done, retriable, the document's own, or the index's."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from clickstream.errors import Failure
from indexing.failures import classify_bulk_item, error_type, mapping_mismatches


def item(status: int, kind: str | None = None) -> dict[str, Any]:
    """A bulk item's ``index`` result."""
    result: dict[str, Any] = {"_index": "cs-speed-2026.11.22", "_id": "d", "status": status}
    if kind is not None:
        result["error"] = {"type": kind, "reason": "..."}
    return result


class TestClassifyBulkItem:
    @pytest.mark.parametrize("status", [200, 201, 409])
    def test_written_or_already_done_is_no_failure(self, status: int) -> None:
        """2xx, and 409 under external versions (a replay or a stale owner), need nothing."""
        kind = "version_conflict_engine_exception" if status == 409 else None
        assert classify_bulk_item(item(status, kind)) is None

    @pytest.mark.parametrize(
        ("status", "kind"),
        [
            (429, "es_rejected_execution_exception"),
            (429, "cluster_block_exception"),  # flood-stage disk: lifted once disk is freed
            (503, "unavailable_shards_exception"),
            (500, "internal_server_error"),
            (408, "timeout_exception"),
            (429, "circuit_breaking_exception"),
            (403, "cluster_block_exception"),  # an index write block an operator lifts
        ],
    )
    def test_an_overloaded_or_blocked_cluster_is_retriable(self, status: int, kind: str) -> None:
        """Load, blocks and recovery pass: retry the batch."""
        assert classify_bulk_item(item(status, kind)) is Failure.RETRIABLE

    @pytest.mark.parametrize(
        ("status", "kind"),
        [
            (400, "strict_dynamic_mapping_exception"),
            (404, "index_not_found_exception"),
            (400, "invalid_index_name_exception"),
            (403, "security_exception"),
            (401, "authentication_exception"),
        ],
    )
    def test_an_index_that_refuses_every_document_is_configuration(
        self, status: int, kind: str
    ) -> None:
        """Every document would fail alike: exit naming the fix."""
        assert classify_bulk_item(item(status, kind)) is Failure.CONFIGURATION

    @pytest.mark.parametrize(
        "kind", ["illegal_argument_exception", "document_parsing_exception", "anything_else"]
    )
    def test_other_client_errors_are_the_documents_own(self, kind: str) -> None:
        """A 400 on one document's value (parsing is then checked against the mapping)."""
        assert classify_bulk_item(item(400, kind)) is Failure.DOCUMENT

    def test_an_item_without_a_status_is_retriable(self) -> None:
        """No status at all is read as a server error."""
        assert classify_bulk_item({"_id": "d"}) is Failure.RETRIABLE

    def test_error_type(self) -> None:
        """The error's type, or "" when the item has none."""
        assert error_type(item(400, "x_exception")) == "x_exception"
        assert error_type(item(201)) == ""


class TestMappingMismatches:
    EXPECTED: ClassVar[dict[str, Any]] = {"url": {"type": "keyword"}, "clicks": {"type": "long"}}

    def test_the_pipelines_mapping_has_none(self) -> None:
        """Same types (extra options and extra fields aside): the document is at fault."""
        mapping = {
            "dynamic": "strict",
            "properties": {
                "url": {"type": "keyword", "ignore_above": 10},
                "clicks": {"type": "long"},
                "other": {"type": "text"},
            },
        }
        assert mapping_mismatches(self.EXPECTED, mapping) == []

    def test_a_field_of_another_type_or_absent(self) -> None:
        """Each differing field is named with both types."""
        mapping = {"properties": {"url": {"type": "long"}}}
        assert mapping_mismatches(self.EXPECTED, mapping) == [
            "url: long (expected keyword)",
            "clicks: absent (expected long)",
        ]
