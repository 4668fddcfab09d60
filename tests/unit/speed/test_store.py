"""SpeedStore.write on bulk answers: a document refused for its own value is recorded and left
behind; an index that refuses every document stops the daemon; a busy cluster is retried."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from clickstream.errors import RetriableError, SchemaError
from speed.docs import Rendered
from speed.store import SPEED_FIELDS, SpeedStore

INDEX = "cs-speed-2026.11.22"


class FakeIndices:
    def __init__(self, properties: dict[str, Any]) -> None:
        self.properties = properties

    def get_mapping(self, index: str) -> dict[str, Any]:
        return {index: {"mappings": {"dynamic": "strict", "properties": self.properties}}}


class FakeClient:
    """Answers each bulk with the given item results, in order."""

    def __init__(self, results: list[dict[str, Any]], properties: dict[str, Any]) -> None:
        self.results = results
        self.indices = FakeIndices(properties)

    def bulk(self, operations: list[dict[str, Any]]) -> dict[str, Any]:
        return {"items": [{"index": result} for result in self.results]}


def result(doc_id: str, status: int, kind: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"_index": INDEX, "_id": doc_id, "status": status}
    if kind:
        found["error"] = {"type": kind, "reason": f"{kind} on {doc_id}"}
    return found


def write(results: list[dict[str, Any]], properties: dict[str, Any] = SPEED_FIELDS) -> Any:
    client = FakeClient(results, properties)
    store = SpeedStore(client, "cs", 12)  # type: ignore[arg-type]
    docs = [Rendered(INDEX, str(r["_id"]), 1, {}) for r in results]
    return store.write(docs)


class TestWrite:
    def test_a_document_refused_for_its_value_is_recorded_and_left_behind(self) -> None:
        """The others count as written; the refused one is returned and logged with its id."""
        with capture_logs() as logs:
            written = write(
                [result("a", 201), result("b", 409), result("c", 400, "illegal_argument_exception")]
            )
        assert (written.written, written.stale) == (1, 1)
        assert [(r.doc_id, r.reason) for r in written.rejected] == [
            ("c", "illegal_argument_exception")
        ]
        (line,) = [entry for entry in logs if entry["event"] == "speed.documents_rejected"]
        assert line["documents"][0]["id"] == "c"

    def test_a_parse_failure_under_the_pipelines_mapping_is_the_documents(self) -> None:
        """The index maps every field as the template does: the value is at fault."""
        written = write([result("a", 400, "document_parsing_exception")])
        assert [r.reason for r in written.rejected] == ["document_parsing_exception"]

    def test_a_parse_failure_under_another_mapping_stops_the_daemon(self) -> None:
        """A field mapped with another type: SchemaError naming the index, field and fix."""
        wrong = {**SPEED_FIELDS, "clicks": {"type": "date"}}
        with pytest.raises(SchemaError, match=r"clicks: date \(expected long\)") as failed:
            write([result("a", 400, "document_parsing_exception")], wrong)
        assert f"Elasticsearch index {INDEX} refuses" in str(failed.value)
        assert "clickstream schema create" in str(failed.value)

    def test_a_strict_mapping_without_a_field_stops_the_daemon(self) -> None:
        """strict_dynamic_mapping_exception is the index's, whatever the document."""
        with pytest.raises(SchemaError, match="strict_dynamic_mapping_exception"):
            write([result("a", 201), result("b", 400, "strict_dynamic_mapping_exception")])

    def test_a_busy_cluster_is_retried(self) -> None:
        """429 on any item: the whole batch is tried again (written ones answer 409 then)."""
        with pytest.raises(RetriableError, match="for now"):
            write([result("a", 201), result("b", 429, "es_rejected_execution_exception")])
