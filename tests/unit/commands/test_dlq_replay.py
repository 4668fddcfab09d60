"""`clickstream dlq replay`, its pure part: which dead letters are replayed, why not the rest."""

from __future__ import annotations

import pytest

from clickstream.errors import ConfigError
from clickstream.model import Reason, Rejection, Source
from clickstream.settings import KafkaSettings
from clickstream.times import MINUTE_MS, parse_ms
from commands.cli import main
from commands.dlq_replay import (
    ReplayFilter,
    ReplayReport,
    Skip,
    render,
    replay,
    select,
)
from ingest.dlq import MAX_VALUE_BYTES, REJECTED_AT, DlqRecord, dead_letter

T0 = parse_ms("2026-11-22T10:00Z")


def record(
    offset: int,
    value: bytes | None = b'{"user_id": "u1"}',
    *,
    reason: Reason = Reason.MISSING_FIELD,
    at: int = T0,
    partition: int = 0,
    key: bytes | None = b"u1",
) -> DlqRecord:
    """A dead letter as the daemon writes it, read back at (partition, offset)."""
    rejection = Rejection(reason, f"detail of {offset}")
    letter = dead_letter(key, value, rejection, Source("clicks", 2, 100 + offset), at)
    return DlqRecord(partition, offset, letter.key, letter.value, tuple(letter.headers))


def distinct(
    n: int, *, reason: Reason = Reason.MISSING_FIELD, at: int = T0, partition: int = 0
) -> list[DlqRecord]:
    """``n`` dead letters at offsets 0..n-1, each with its own bytes."""
    return [
        record(i, f'{{"n": {i}}}'.encode(), reason=reason, at=at, partition=partition)
        for i in range(n)
    ]


def offsets(records: tuple[DlqRecord, ...]) -> list[tuple[int, int]]:
    return [(r.partition, r.offset) for r in records]


class TestSelect:
    def test_no_filter_chooses_every_record_in_partition_offset_order(self) -> None:
        """Whatever order the reader interleaves partitions in, the choice is ordered."""
        records = [
            record(5, b"a", partition=1),
            record(3, b"b", partition=0),
            record(4, b"c", partition=0),
        ]
        selection = select(records, ReplayFilter())
        assert offsets(selection.chosen) == [(0, 3), (0, 4), (1, 5)]
        assert selection.skipped == ()

    def test_reasons_keep_only_the_named_ones(self) -> None:
        """--reason (repeatable) chooses those reasons; the others are skipped as such."""
        records = [
            record(0, b"a", reason=Reason.MISSING_FIELD),
            record(1, b"b", reason=Reason.NOT_JSON),
            record(2, b"c", reason=Reason.BAD_URL),
        ]
        filters = ReplayFilter(reasons=frozenset({"missing_field", "bad_url"}))
        selection = select(records, filters)
        assert offsets(selection.chosen) == [(0, 0), (0, 2)]
        assert selection.chosen_by_reason() == {"missing_field": 1, "bad_url": 1}
        assert [(s.offset, s.reason, s.why) for s in selection.skipped] == [
            (1, "not_json", Skip.REASON)
        ]

    def test_since_is_inclusive_and_until_exclusive_on_the_rejected_at_time(self) -> None:
        """A record rejected exactly at --since is in; one exactly at --until is out."""
        records = [record(i, f"{i}".encode(), at=T0 + (i - 1) * MINUTE_MS) for i in range(4)]
        filters = ReplayFilter(since_ms=T0, until_ms=T0 + 2 * MINUTE_MS)
        selection = select(records, filters)
        assert offsets(selection.chosen) == [(0, 1), (0, 2)]
        assert {s.offset: s.why for s in selection.skipped} == {
            0: Skip.BEFORE_SINCE,
            3: Skip.NOT_BEFORE_UNTIL,
        }

    def test_a_record_without_rejected_at_cannot_match_a_time_filter(self) -> None:
        """No header: skipped under --since, replayed without a time filter."""
        bare = record(0)
        bare = DlqRecord(
            0, 0, bare.key, bare.value, tuple(h for h in bare.headers if h[0] != REJECTED_AT)
        )
        assert select([bare], ReplayFilter(since_ms=T0)).skipped[0].why is Skip.NO_REJECTED_AT
        assert select([bare], ReplayFilter()).chosen == (bare,)

    def test_partition_and_offsets_are_inclusive_at_both_ends(self) -> None:
        """--partition 1 --from-offset 2 --to-offset 3 keeps offsets 2 and 3 of partition 1."""
        records = [*distinct(5, partition=1), record(2, b"other", partition=0)]
        filters = ReplayFilter(partition=1, from_offset=2, to_offset=3)
        selection = select(records, filters)
        assert offsets(selection.chosen) == [(1, 2), (1, 3)]
        assert selection.skipped_by_why() == {Skip.OFFSET: 3, Skip.PARTITION: 1}

    def test_a_value_stub_is_never_replayed(self) -> None:
        """A too-large original kept as a stub matches the filters but is skipped as a stub."""
        big = record(0, b"x" * (MAX_VALUE_BYTES + 1), reason=Reason.TOO_LARGE)
        selection = select([big], ReplayFilter(reasons=frozenset({"too_large"})))
        assert selection.chosen == ()
        assert selection.skipped[0].why is Skip.STUB

    def test_a_key_stub_is_never_replayed(self) -> None:
        """A key replaced by its hash would land on the wrong partition: skipped too."""
        letter = record(0, b"{}", key=b"k" * 20_000)
        assert select([letter], ReplayFilter()).skipped[0].why is Skip.STUB

    def test_a_tombstone_has_nothing_to_replay(self) -> None:
        """A null value (reason empty) is skipped; a zero-length value is replayed as it was."""
        records = [record(0, None, reason=Reason.EMPTY), record(1, b"", reason=Reason.EMPTY)]
        selection = select(records, ReplayFilter())
        assert offsets(selection.chosen) == [(0, 1)]
        assert selection.skipped[0].why is Skip.TOMBSTONE

    def test_the_same_key_and_bytes_are_replayed_once(self) -> None:
        """A message dead-lettered again after a replay is the same event: chosen once."""
        records = [record(0, b"same"), record(1, b"same"), record(2, b"same", key=b"u2")]
        selection = select(records, ReplayFilter())
        assert offsets(selection.chosen) == [(0, 0), (0, 2)]
        assert selection.skipped[0].why is Skip.DUPLICATE

    def test_limit_takes_the_first_that_would_be_replayed(self) -> None:
        """Skipped records (here a stub) do not use up --limit."""
        big = record(0, b"x" * (MAX_VALUE_BYTES + 1))
        selection = select([big, *distinct(5)[1:]], ReplayFilter(limit=2))
        assert offsets(selection.chosen) == [(0, 1), (0, 2)]
        assert selection.skipped_by_why() == {Skip.STUB: 1, Skip.LIMIT: 2}

    def test_every_record_ends_chosen_or_skipped_exactly_once(self) -> None:
        """No record is lost or counted twice, whatever the filters."""
        records = distinct(6, at=T0) + distinct(4, reason=Reason.NOT_JSON, partition=1)
        filters = ReplayFilter(reasons=frozenset({"not_json"}), since_ms=T0, limit=3)
        selection = select(records, filters)
        ends = offsets(selection.chosen) + [(s.partition, s.offset) for s in selection.skipped]
        assert sorted(ends) == sorted((r.partition, r.offset) for r in records)


class TestReplayFilter:
    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"from_offset": 3}, "need --partition"),
            ({"partition": 0, "from_offset": 5, "to_offset": 4}, "--from-offset 5 is past"),
            ({"partition": -1}, "--partition must be 0 or more"),
            ({"limit": 0}, "--limit must be 1 or more"),
            ({"since_ms": T0, "until_ms": T0}, "--since must be before --until"),
        ],
    )
    def test_contradictory_filters_are_refused(self, kwargs: dict[str, int], message: str) -> None:
        """Each refusal names the option at fault."""
        with pytest.raises(ConfigError, match=message):
            ReplayFilter(**kwargs)  # type: ignore[arg-type]

    def test_reading_starts_at_the_offset_of_the_one_partition(self) -> None:
        """--partition/--from-offset let the reader seek; without them it reads everything."""
        assert ReplayFilter(partition=2, from_offset=40).starts() == {2: 40}
        assert ReplayFilter(partition=2).starts() == {2: 0}
        assert ReplayFilter().starts() is None


class TestRender:
    def test_a_dry_run_shows_counts_and_the_first_records(self) -> None:
        """Counts by reason and by why skipped, then the first few with source and detail."""
        records = [*distinct(7), record(9, b"j", reason=Reason.NOT_JSON)]
        selection = select(records, ReplayFilter(reasons=frozenset({"missing_field"})))
        text = render(ReplayReport(selection, "clicks.dlq", "clicks", dry_run=True, acknowledged=0))
        assert "read 8 dead letters from clicks.dlq" in text
        assert "dry run: would replay 7 to clicks (nothing produced)" in text
        assert "       7  missing_field" in text
        assert f"       1  {Skip.REASON}" in text
        assert "first 5 that would be replayed:" in text
        assert (
            "clicks.dlq:0:0  missing_field  rejected 2026-11-22T10:00:00Z  from clicks:2:100: "
            "detail of 0"
        ) in text
        assert "clicks.dlq:0:5" not in text
        assert "never deletes" in text

    def test_a_replay_says_what_the_broker_acknowledged(self) -> None:
        """The real run reports replayed and acknowledged, without the examples."""
        selection = select(distinct(2), ReplayFilter())
        text = render(
            ReplayReport(selection, "clicks.dlq", "clicks", dry_run=False, acknowledged=2)
        )
        assert "replayed 2 to clicks (2 acknowledged)" in text
        assert "would replay" not in text
        assert "skipped 0" in text


class TestRefusals:
    def test_replaying_the_dead_letter_topic_into_itself_is_refused(self) -> None:
        """Refused before anything is read or produced."""
        settings = KafkaSettings(bootstrap_servers="127.0.0.1:1")
        with pytest.raises(ConfigError, match="into itself"):
            replay(settings, ReplayFilter(), settings.dlq_topic, dry_run=True)

    @pytest.mark.parametrize(
        ("words", "message"),
        [
            (["--since", "2026-11-22T10:00"], "give a UTC offset"),
            (["--from-offset", "3"], "need --partition"),
        ],
    )
    def test_bad_options_are_one_line_exit_1(
        self, words: list[str], message: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The command refuses them before touching Kafka."""
        assert main(["dlq", "replay", *words]) == 1
        assert message in capsys.readouterr().err
