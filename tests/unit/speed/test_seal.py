"""Sealed speed hours (pure part): merging the partitions' hour rollups, which hours to seal,
which seals hold."""

from __future__ import annotations

import base64
from typing import Any

import datasketches

from clickstream.times import HOUR_MS, MINUTE_MS
from indexing.seals import SpeedState
from indexing.views import GRAIN_HOUR, LEVEL_ALL, LEVEL_URL, SKETCH_TYPE, cube_id
from speed.seal import SETTLE_MS, sealed_documents, to_seal

H = 1_795_305_600_000  # 2026-11-22T00:00:00Z


def sketch_of(users: range) -> str:
    sketch = datasketches.hll_sketch(12, SKETCH_TYPE)
    for user in users:
        sketch.update(f"u{user}")
    return base64.b64encode(sketch.serialize_compact()).decode()


def partition_doc(level: str, url: str | None, users: range, **measures: int) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "level": level,
        "clicks": measures.get("clicks", len(users)),
        "bot_clicks": measures.get("bot_clicks", 0),
        "time_spent_sum_ms": measures.get("spent_sum", 0),
        "time_spent_count": measures.get("spent_count", 0),
        "users_sketch": sketch_of(users) if users else None,
    }
    if url is not None:
        doc["url"] = url
    return doc


class TestSealedDocuments:
    def test_one_document_per_group_summed_with_the_union_of_sketches(self) -> None:
        """Two partitions' rollups of /a (users overlapping) and one of /b, at level url, and
        the (all, all) level: sums add up, users are the union (not the sum), the marker is
        last, and every document carries the fingerprint it was read at."""
        docs = [
            partition_doc(
                LEVEL_URL, "/a", range(0, 600), bot_clicks=3, spent_sum=10, spent_count=2
            ),
            partition_doc(LEVEL_ALL, None, range(0, 700)),
            partition_doc(LEVEL_URL, "/a", range(400, 1000), spent_sum=5, spent_count=1),
            partition_doc(LEVEL_URL, "/b", range(5000, 5100)),
            partition_doc(LEVEL_ALL, None, range(400, 1000)),
        ]
        sealed = sealed_documents(docs, H, 12, (2, 99))
        by_id = dict(sealed)
        assert [doc_id for doc_id, _ in sealed][-1] == cube_id(LEVEL_ALL, GRAIN_HOUR, None, None, H)
        a = by_id[cube_id(LEVEL_URL, GRAIN_HOUR, "/a", None, H)]
        assert (a["clicks"], a["bot_clicks"], a["time_spent_sum_ms"], a["time_spent_count"]) == (
            1200,
            3,
            15,
            3,
        )
        assert abs(a["unique_users"] - 1000) <= 20  # 0..999, not 1,200
        assert (a["level"], a["grain"], a["start"], a["url"]) == (LEVEL_URL, GRAIN_HOUR, H, "/a")
        assert "country" not in a
        everything = by_id[cube_id(LEVEL_ALL, GRAIN_HOUR, None, None, H)]
        assert everything["clicks"] == 1300
        assert "url" not in everything
        assert {(d["seal_docs"], d["seal_offsets"]) for d in by_id.values()} == {(2, 99)}
        assert len(sealed) == 3

    def test_a_group_without_human_users_has_no_sketch(self) -> None:
        """Bot clicks only: counted, no sketch, zero users."""
        docs = [partition_doc(LEVEL_ALL, None, range(0), clicks=0, bot_clicks=4)]
        ((_, doc),) = sealed_documents(docs, H, 12, (1, 0))
        assert (doc["bot_clicks"], doc["users_sketch"], doc["unique_users"]) == (4, None, 0)


class TestWhichHours:
    def test_closed_hours_without_a_holding_seal_oldest_first(self) -> None:
        """Sealed only once the newest data is SETTLE_MS past the hour's end; a seal made at
        another fingerprint is broken and sealed again; a holding one is left alone."""
        fingerprints = {H: (4, 10), H + HOUR_MS: (4, 20), H + 2 * HOUR_MS: (4, 30)}
        until = H + 2 * HOUR_MS + SETTLE_MS  # the hour at +1 h is just closed
        assert to_seal(fingerprints, {}, until) == [H, H + HOUR_MS]
        assert to_seal(fingerprints, {H: (4, 10)}, until) == [H + HOUR_MS]
        assert to_seal(fingerprints, {H: (4, 9)}, until) == [H, H + HOUR_MS]
        assert to_seal(fingerprints, {}, until - MINUTE_MS) == [H]
        assert to_seal(fingerprints, {}, None) == []

    def test_only_seals_matching_the_hour_as_it_is_now_hold(self) -> None:
        """A new partition document or a later offset breaks a seal; a seal of an hour the
        speed layer no longer holds (pruned) does not hold either."""
        state = SpeedState(
            until_ms=H + 5 * HOUR_MS,
            fingerprints={H: (4, 10), H + HOUR_MS: (5, 20), H + 2 * HOUR_MS: (4, 31)},
            seals={H: (4, 10), H + HOUR_MS: (4, 20), H + 2 * HOUR_MS: (4, 30), H - HOUR_MS: (1, 1)},
        )
        assert state.sealed_hours == {H}
