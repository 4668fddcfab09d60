"""``clickstream dlq replay``: chosen dead letters back into the clicks topic, once the producer
bug that caused them is fixed.

The middle is pure: :func:`select` turns the dead-letter records and the operator's filters into
what to replay, with a reason for every record it skips. The edges read the dead-letter topic
(``read_committed``) and produce each chosen original (its key and bytes, unchanged) with an
idempotent producer. Nothing is deleted from the dead-letter topic: it is a log.

Replaying is safe to repeat: ingest writes an event under a row key that is a pure function of
the event (an HBase put of the same row again changes nothing) and the speed layer folds an event
it already holds once, so an event stored since its rejection is not counted twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from clickstream.errors import ConfigError
from clickstream.settings import KafkaSettings
from clickstream.times import iso
from ingest.dlq import DlqRecord, scan_dead_letters
from traffic.sender import Sender

#: Records a dry run shows.
EXAMPLES = 5


class Skip(StrEnum):
    """Why a dead letter is not replayed."""

    REASON = "another reason than --reason"
    BEFORE_SINCE = "rejected before --since"
    NOT_BEFORE_UNTIL = "rejected at or after --until"
    NO_REJECTED_AT = "no rejected-at header (cannot match --since/--until)"
    PARTITION = "another partition than --partition"
    OFFSET = "outside --from-offset/--to-offset"
    STUB = "a stub of an original too large to keep: not replayable"
    TOMBSTONE = "a null value (tombstone): nothing to replay"
    DUPLICATE = "same key and bytes as a record already chosen"
    LIMIT = "past --limit"


@dataclass(frozen=True, slots=True)
class ReplayFilter:
    """Which dead letters to replay: each given filter must match (none given: all of them).

    ``since_ms`` is inclusive and ``until_ms`` exclusive (the rejected-at time); the offsets
    of the dead-letter topic are inclusive at both ends and need ``partition``.
    """

    reasons: frozenset[str] = frozenset()
    since_ms: int | None = None
    until_ms: int | None = None
    partition: int | None = None
    from_offset: int | None = None
    to_offset: int | None = None
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.partition is None and (self.from_offset, self.to_offset) != (None, None):
            raise ConfigError("--from-offset and --to-offset need --partition")
        for name, value in [
            ("--partition", self.partition),
            ("--from-offset", self.from_offset),
            ("--to-offset", self.to_offset),
        ]:
            if value is not None and value < 0:
                raise ConfigError(f"{name} must be 0 or more, not {value}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit must be 1 or more, not {self.limit}")
        since, until = self.since_ms, self.until_ms
        if since is not None and until is not None and since >= until:
            raise ConfigError("--since must be before --until")
        first, last = self.from_offset, self.to_offset
        if first is not None and last is not None and first > last:
            raise ConfigError(f"--from-offset {first} is past --to-offset {last}")

    def starts(self) -> dict[int, int] | None:
        """Where reading the dead-letter topic can begin (partition -> offset); None: everywhere."""
        if self.partition is None:
            return None
        return {self.partition: self.from_offset or 0}


def skip_of(record: DlqRecord, filters: ReplayFilter) -> Skip | None:
    """Why ``record`` is not replayed on its own account (filters, stub, tombstone), or None."""
    first, last = filters.from_offset, filters.to_offset
    since, until = filters.since_ms, filters.until_ms
    at = record.rejected_at_ms
    checks = [
        (filters.partition not in (None, record.partition), Skip.PARTITION),
        (first is not None and record.offset < first, Skip.OFFSET),
        (last is not None and record.offset > last, Skip.OFFSET),
        (bool(filters.reasons) and record.reason not in filters.reasons, Skip.REASON),
        ((since, until) != (None, None) and at is None, Skip.NO_REJECTED_AT),
        (since is not None and at is not None and at < since, Skip.BEFORE_SINCE),
        (until is not None and at is not None and at >= until, Skip.NOT_BEFORE_UNTIL),
        (record.is_stub, Skip.STUB),
        (record.value is None, Skip.TOMBSTONE),
    ]
    return next((why for failed, why in checks if failed), None)


@dataclass(frozen=True, slots=True)
class Skipped:
    """A dead letter left where it is, and why."""

    partition: int
    offset: int
    reason: str
    why: Skip


@dataclass(frozen=True, slots=True)
class Selection:
    """Every dead letter read ends as exactly one chosen record or one skipped one."""

    chosen: tuple[DlqRecord, ...]
    skipped: tuple[Skipped, ...]

    def chosen_by_reason(self) -> Counter[str]:
        """Chosen records by rejection reason."""
        return Counter(record.reason for record in self.chosen)

    def skipped_by_why(self) -> Counter[Skip]:
        """Skipped records by why."""
        return Counter(skipped.why for skipped in self.skipped)


def select(records: Iterable[DlqRecord], filters: ReplayFilter) -> Selection:
    """What to replay, in (partition, offset) order whatever order the records come in; records
    with the same key and bytes are chosen once (they are the same event), at most
    ``filters.limit``. Only the records that match are held, so a large topic fits in memory."""
    matching: list[DlqRecord] = []
    skipped: list[Skipped] = []
    for record in records:
        why = skip_of(record, filters)
        if why is None:
            matching.append(record)
        else:
            skipped.append(Skipped(record.partition, record.offset, record.reason, why))
    chosen: list[DlqRecord] = []
    seen: set[tuple[bytes | None, bytes | None]] = set()
    for record in sorted(matching, key=lambda r: (r.partition, r.offset)):
        if (record.key, record.value) in seen:
            why = Skip.DUPLICATE
        elif filters.limit is not None and len(chosen) >= filters.limit:
            why = Skip.LIMIT
        else:
            chosen.append(record)
            seen.add((record.key, record.value))
            continue
        skipped.append(Skipped(record.partition, record.offset, record.reason, why))
    skipped.sort(key=lambda s: (s.partition, s.offset))
    return Selection(tuple(chosen), tuple(skipped))


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What a replay chose and skipped, where it produced, and what the broker acknowledged."""

    selection: Selection
    dlq_topic: str
    topic: str
    dry_run: bool
    acknowledged: int


def replay(
    settings: KafkaSettings, filters: ReplayFilter, topic: str, *, dry_run: bool
) -> ReplayReport:
    """Read the dead-letter topic, select, and (unless ``dry_run``) produce the chosen originals
    to ``topic``; raises DeliveryError unless the broker acknowledged every one."""
    if topic == settings.dlq_topic:
        raise ConfigError(f"will not replay {settings.dlq_topic!r} into itself; give --topic")
    selection = select(scan_dead_letters(settings, filters.starts()), filters)
    acknowledged = 0
    if not dry_run and selection.chosen:
        with Sender(settings, topic) as sender:
            for record in selection.chosen:
                sender.send(record.key, record.value or b"")  # tombstones were skipped
        acknowledged = sender.delivered
    return ReplayReport(selection, settings.dlq_topic, topic, dry_run, acknowledged)


def render(report: ReplayReport) -> str:
    """The summary: chosen by reason, skipped by why, and (dry run) the first few chosen with
    their rejected-at time, source and detail."""
    selection = report.selection
    chosen, skipped = selection.chosen, selection.skipped
    lines = [f"read {len(chosen) + len(skipped)} dead letters from {report.dlq_topic}"]
    if report.dry_run:
        lines.append(f"dry run: would replay {len(chosen)} to {report.topic} (nothing produced)")
    else:
        lines.append(
            f"replayed {len(chosen)} to {report.topic} ({report.acknowledged} acknowledged)"
        )
    lines += [f"  {n:>8}  {reason}" for reason, n in sorted(selection.chosen_by_reason().items())]
    lines.append(f"skipped {len(skipped)}")
    lines += [f"  {n:>8}  {why}" for why, n in sorted(selection.skipped_by_why().items())]
    if report.dry_run and chosen:
        lines.append(f"first {min(EXAMPLES, len(chosen))} that would be replayed:")
        lines += [
            f"  {report.dlq_topic}:{r.partition}:{r.offset}  {r.reason}  rejected "
            f"{'?' if r.rejected_at_ms is None else iso(r.rejected_at_ms)}  from {r.source}: "
            f"{r.detail}"
            for r in chosen[:EXAMPLES]
        ]
    lines.append(f"{report.dlq_topic} is unchanged: a replay never deletes dead letters")
    return "\n".join(lines)
