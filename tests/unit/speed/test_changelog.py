"""The speed changelog: keys no user id can collide with, a restore that no record can crash,
legacy records migrated, and a newer format told apart from a broken record."""

from __future__ import annotations

import json
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from clickstream.model import ClickEvent
from clickstream.times import MINUTE_MS
from ingest.urls import normalize_url
from ingest.validate import MAX_URL, MAX_USER_ID, parse_click
from speed.changelog import (
    CHUNK_BYTES,
    CHUNK_PREFIX,
    LEGACY_PARTITION_KEY,
    MALFORMED_LOGGED,
    PARTITION_KEY,
    ChangelogTooNewError,
    Record,
    chunk_key,
    encode_timeline,
    rebuild,
    records_for,
    user_key,
)
from speed.state import PartitionState, SpeedClick

TIMEOUT = 30 * MINUTE_MS
RETENTION = 4 * 3_600_000
NOW = 1_795_341_600_000
SITE = "https://shop.example/"

#: Ids a hostile or careless producer sends: the changelog's own keys, control and bidi chars.
NASTY_IDS = ["\x00partition", "\xffp", "\xffuanna", "\x00", "p", "a\nb", "\u202eevil", "\u2066x"]


def restore(records: list[Record]) -> PartitionState:
    """The state a daemon rebuilds from ``records``."""
    restored = rebuild(
        0, [(r.key, r.value) for r in records], session_timeout_ms=TIMEOUT, retention_ms=RETENTION
    )
    assert restored.malformed == 0
    return restored.state


def fold_in_batches(clicks: list[SpeedClick], size: int) -> tuple[PartitionState, list[Record]]:
    """Fold ``clicks`` batch by batch, as the daemon does; the state and every record written."""
    state = PartitionState(0, TIMEOUT, RETENTION)
    log: list[Record] = []
    for start in range(0, len(clicks), size):
        result = state.fold(clicks[start : start + size])
        log.extend(records_for(state, result.changed_users, result.expired_users))
    return state, log


user_ids = st.one_of(
    st.sampled_from(NASTY_IDS),
    st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=MAX_USER_ID),
)
# Printable, no spaces: what validation lets through in a URL path, up to the length limit.
path_chars = st.characters(exclude_categories=["Cs", "Cc", "Cf", "Zs", "Zl", "Zp", "Co", "Cn"])
paths = st.one_of(
    st.text(path_chars, max_size=40),
    st.integers(1, 3).map(lambda n: "ü/%41;,@" * n + "x" * (MAX_URL - len(SITE) - 8 * n)),
)


@st.composite
def raw_events(draw: st.DrawFn) -> list[bytes]:
    """Valid click messages as a web application sends them."""
    users = draw(st.lists(user_ids, min_size=1, max_size=5, unique=True))
    events = []
    for _ in range(draw(st.integers(1, 30))):
        event = {
            "user_id": draw(st.sampled_from(users)),
            "timestamp": NOW - draw(st.integers(0, 3 * 3_600_000)),
            "url": SITE + draw(paths),
            "country": "DE",
        }
        events.append(json.dumps(event).encode())
    return events


class TestWholePath:
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(raw_events(), st.integers(1, 7), st.booleans(), st.sampled_from([None, 1, 9_000]))
    def test_fold_then_restore_gives_the_same_state(
        self, messages: list[bytes], batch: int, with_bots: bool, chunk_bytes: int | None
    ) -> None:
        """Any valid events, folded and checkpointed, restore to the very state folded; also
        when every timeline is split into chunks (tiny CHUNK_BYTES: one entry per chunk)."""
        with patch("speed.changelog.CHUNK_BYTES", chunk_bytes or CHUNK_BYTES):
            self._fold_then_restore(messages, batch, with_bots)

    def _fold_then_restore(self, messages: list[bytes], batch: int, with_bots: bool) -> None:
        clicks = []
        for offset, message in enumerate(messages):
            event = parse_click(message, NOW)
            assert isinstance(event, ClickEvent), event
            clicks.append(
                SpeedClick(
                    0,
                    offset,
                    event.user_id,
                    event.timestamp_ms,
                    event.event_id,
                    normalize_url(event.url),
                    "DE",
                    with_bots and offset % 3 == 0,
                )
            )
        state, log = fold_in_batches(clicks, batch)
        restored = restore(log)
        assert restored.users == state.users
        assert restored.changelog_chunks == state.changelog_chunks
        assert restored.max_ts == state.max_ts
        assert restored.next_offset == state.next_offset


class TestBoundedRecords:
    """A user's record stays bounded whatever the user does, and no figure changes."""

    def shared_id_clicks(self, count: int, start: int = NOW) -> list[SpeedClick]:
        """One id behind many people (or an unflagged crawler), on URLs at the 8 KiB limit."""
        url = SITE + "p/" + "x" * (MAX_URL - len(SITE) - 12)
        return [
            SpeedClick(
                0, i, "anonymous", start + i * 1000, f"e{i}", f"{url}{i:08d}", "DE", i % 5 == 0
            )
            for i in range(count)
        ]

    def test_a_shared_id_is_split_into_bounded_records_that_restore_whole(self) -> None:
        """3,000 clicks of 8 KiB URLs (24 MB as one record, past Kafka's 1 MB limit, which
        stalled the daemon's transaction forever) go out as chunks under CHUNK_BYTES."""
        state, log = fold_in_batches(self.shared_id_clicks(3000), size=500)
        assert max(len(r.value or b"") for r in log) <= CHUNK_BYTES
        assert state.changelog_chunks["anonymous"] >= 24 * 2**20 // CHUNK_BYTES
        restored = restore(log)
        assert restored.users == state.users
        assert len(restored.users["anonymous"].humans) == 2400
        assert len(restored.users["anonymous"].bots) == 600
        assert restored.changelog_chunks == state.changelog_chunks

    def test_a_shrinking_timeline_deletes_the_chunks_it_no_longer_needs(self) -> None:
        """Once the old clicks leave the window, the timeline fits one record again: the
        chunks get tombstones, and the restore finds the one record only."""
        clicks = self.shared_id_clicks(600)
        later = SpeedClick(0, 600, "anonymous", NOW + RETENTION + 10**6, "late", SITE, "DE", False)
        state, log = fold_in_batches(clicks, size=600)
        split = state.changelog_chunks["anonymous"]
        result = state.fold([later])
        last = records_for(state, result.changed_users, result.expired_users)
        assert state.changelog_chunks == {}
        assert [r.key for r in last if r.value is None] == [
            chunk_key("anonymous", i) for i in range(1, split)
        ]
        restored = restore([*log, *last])
        assert restored.users == state.users
        assert [e[1] for e in restored.users["anonymous"].humans] == ["late"]
        assert restored.changelog_chunks == {}

    def test_a_split_timeline_missing_a_chunk_is_dropped_and_said(self) -> None:
        """A chunk that is gone (a lost record) makes that user's state incomplete: dropped
        and reported, like an unreadable record, never joined half."""
        _, log = fold_in_batches(self.shared_id_clicks(600), size=600)
        chunk = next(r for r in log if r.key.startswith(CHUNK_PREFIX))
        records = [(r.key, r.value) for r in log if r is not chunk]
        restored = rebuild(0, records, session_timeout_ms=TIMEOUT, retention_ms=RETENTION)
        assert "anonymous" not in restored.state.users
        assert restored.incomplete == 1
        assert "1 split timeline(s) incomplete" in (restored.lost() or "")


class TestKeys:
    def test_no_user_key_equals_the_partition_key_or_another_users(self) -> None:
        """Keys start with 0xFF, which no UTF-8 text does: ids cannot collide with anything."""
        keys = [user_key(user) for user in NASTY_IDS]
        assert len(set(keys)) == len(keys)
        assert PARTITION_KEY not in keys
        assert LEGACY_PARTITION_KEY not in keys


def legacy_timeline(ts: int, url: str = SITE) -> bytes:
    return json.dumps({"v": 2, "h": [[ts, f"e{ts}", url, "DE"]], "b": []}).encode()


class TestRobustRestore:
    def test_the_first_layout_still_restores_hostile_ids_included(self) -> None:
        """Bare user keys and b'\\x00partition' (the partition, or a user of that id) read back
        by their values' shape."""
        records = [
            (b"anna", legacy_timeline(NOW)),
            (LEGACY_PARTITION_KEY, legacy_timeline(NOW + 1)),  # a user named "\x00partition"
            (LEGACY_PARTITION_KEY, json.dumps({"v": 2, "max_ts": NOW + 1, "next": 9}).encode()),
        ]
        restored = rebuild(0, records, session_timeout_ms=TIMEOUT, retention_ms=RETENTION)
        assert restored.malformed == 0
        assert set(restored.state.users) == {"anna", "\x00partition"}
        assert (restored.state.max_ts, restored.state.next_offset) == (NOW + 1, 9)

    def test_legacy_keys_are_migrated_at_the_next_checkpoint(self) -> None:
        """The migration tombstones every live legacy key and rewrites its user under the new
        key: restoring the log with the migration gives the same state, no legacy key left."""
        records = [
            (b"anna", legacy_timeline(NOW)),
            (b"bob", legacy_timeline(NOW - 5)),
            (b"bob", None),  # expired under the old layout
            (LEGACY_PARTITION_KEY, json.dumps({"v": 2, "max_ts": NOW, "next": 3}).encode()),
        ]
        first = rebuild(0, records, session_timeout_ms=TIMEOUT, retention_ms=RETENTION)
        migration = first.migration()
        assert [(r.key, r.value is None) for r in migration] == [
            (LEGACY_PARTITION_KEY, True),
            (b"anna", True),
            (user_key("anna"), False),
        ]
        again = rebuild(
            0,
            records + [(r.key, r.value) for r in migration],
            session_timeout_ms=TIMEOUT,
            retention_ms=RETENTION,
        )
        assert again.state.users == first.state.users
        assert again.legacy == {}
        assert again.migration() == []

    @pytest.mark.parametrize(
        "bad",
        [
            b"\xff not json",
            b"[1, 2]",
            b'{"v": 2, "h": [[1, 2, 3]], "b": []}',
            b'{"v": 2, "h": [["1", "e", "u", "DE"]], "b": []}',
            b'{"v": 2, "h": [], "b": [[1]]}',
            b'{"v": "2", "h": [], "b": []}',
            b'{"v": 0, "h": [], "b": []}',
        ],
    )
    def test_a_malformed_user_record_is_counted_and_skipped(self, bad: bytes) -> None:
        """One unreadable record costs that user's state, never the process or other users."""
        state, log = fold_in_batches(
            [
                SpeedClick(0, 0, "anna", NOW, "e0", SITE, "DE", False),
                SpeedClick(0, 1, "bob", NOW + 1, "e1", SITE, "DE", False),
            ],
            size=2,
        )
        records = [(r.key, r.value) for r in log]
        records.insert(1, (user_key("anna"), bad))  # after anna's good one: anna is lost
        restored = rebuild(0, records, session_timeout_ms=TIMEOUT, retention_ms=RETENTION)
        assert restored.malformed == 1
        assert set(restored.state.users) == {"bob"}
        assert restored.state.max_ts == state.max_ts
        lost = restored.lost()
        assert lost is not None
        assert "1 changelog record(s) unreadable" in lost

    def test_a_partition_of_unreadable_records_is_counted_without_flooding_the_log(
        self,
    ) -> None:
        """Each bad record is counted; only the first few are logged one by one (the total is
        in the restore's summary), so a whole bad partition is not a line per record."""
        records = [(user_key(f"user-{n}"), b"not json") for n in range(500)]
        with capture_logs() as logs:
            restored = rebuild(0, records, session_timeout_ms=TIMEOUT, retention_ms=RETENTION)
        assert restored.malformed == 500
        lines = [entry for entry in logs if entry["event"] == "speed.changelog_malformed"]
        assert len(lines) == MALFORMED_LOGGED
        assert "500 changelog record(s) unreadable" in (restored.lost() or "")

    def test_a_lost_partition_record_takes_the_newest_time_from_the_timelines(self) -> None:
        """Without a readable partition record the window's floor still follows the data."""
        records = [
            (user_key("anna"), legacy_timeline(NOW)),
            (PARTITION_KEY, b'{"v": 2, "max_ts": "soon"}'),
            (PARTITION_KEY, None),
            (b"\xffz", b"{}"),
        ]
        restored = rebuild(0, records, session_timeout_ms=TIMEOUT, retention_ms=RETENTION)
        assert restored.malformed == 3
        assert restored.partition_record_lost
        assert restored.state.max_ts == NOW
        assert "newest event time was taken from the timelines" in (restored.lost() or "")

    @pytest.mark.parametrize("key", [user_key("anna"), PARTITION_KEY, b"anna"])
    def test_a_newer_format_stops_the_restore_by_name(self, key: bytes) -> None:
        """A record from a newer daemon is not malformed: it stops with the upgrade order."""
        newer = b'{"v": 4, "h": [], "b": [], "max_ts": 1, "next": 1}'
        with pytest.raises(ChangelogTooNewError, match=r"format 4 is newer.*upgrade every daemon"):
            rebuild(0, [(key, newer)], session_timeout_ms=TIMEOUT, retention_ms=RETENTION)

    def test_timelines_encode_what_they_hold(self) -> None:
        """A round trip through the encoder keeps humans, bots and their order."""
        state, _ = fold_in_batches(
            [
                SpeedClick(0, 0, "\x00partition", NOW, "e0", SITE, "DE", False),
                SpeedClick(0, 1, "\x00partition", NOW - 9, "e1", SITE + "b", "DE", True),
            ],
            size=1,
        )
        record = Record(0, user_key("\x00partition"), encode_timeline(state.users["\x00partition"]))
        assert restore([record]).users == state.users
