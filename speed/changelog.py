"""The speed state's changelog: a compacted Kafka topic, one record per user, as Kafka Streams
keeps its stores.

Record ``user_key(u)`` on changelog partition ``p`` is the timeline of user ``u`` of clicks
partition ``p`` (a tombstone once it expires); the record ``PARTITION_KEY`` holds the
partition's newest event time and next offset. Records go out in the same Kafka transaction as
the input offsets, so the restored state is exactly the state at the committed offset.

Keys. A user id is any valid text up to 256 characters, NUL, newlines and bidi controls
included (ids are opaque; storing them is the rule, see ingest/README.md). So keys start with
the byte 0xFF, which UTF-8 never produces: no user id, encoded, equals another user's key or
the partition key. The first releases keyed a user by the bare id and the partition by
``b"\x00partition"``, which a user id could equal; those *legacy* records still restore (a key
without the mark is legacy), and the first checkpoint after a restore rewrites them under the
new keys and tombstones the old ones.

Size. A record stays bounded whatever a user does (a shared id such as "anonymous", a crawler
not flagged as a bot, URLs at the 8 KiB limit): a timeline whose record would exceed
``CHUNK_BYTES`` is split into chunks, the first under ``user_key(u)`` (format 3, saying how
many), the others under ``chunk_key(u, i)``; all are rewritten together, in the same
transaction, and chunks a shrunk timeline no longer needs get tombstones. Nothing is truncated,
so the speed and batch layers still agree. Timelines that fit (nearly all) keep the one record
of format 2, which every release reads.

Restore never lets one record stop the daemon: a record that is not what it claims to be is
counted, logged and skipped (:class:`Restored` says what was lost). Only a record of a *newer
format* stops it (:class:`ChangelogTooNewError`): a newer daemon wrote it, and the fix is to upgrade
this one, never to guess.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import structlog
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from clickstream.errors import RetriableError, SchemaError
from clickstream.settings import KafkaSettings
from clickstream.times import MINUTE_MS
from speed.state import Entry, PartitionState, Timeline

log = structlog.get_logger(__name__)

#: Unreadable records logged one by one per restore; the rest are only counted (a whole
#: partition of them would otherwise flood the log).
MALFORMED_LOGGED = 10

#: First byte of every key of this layout: never the first byte of a UTF-8 string.
KEY_MARK = b"\xff"
USER_PREFIX = KEY_MARK + b"u"
CHUNK_PREFIX = KEY_MARK + b"c"
PARTITION_KEY = KEY_MARK + b"p"
#: The partition record's key in the first releases' layout (bare user ids beside it).
LEGACY_PARTITION_KEY = b"\x00partition"
#: Format of a timeline that fits one record, and of the partition record.
FORMAT = 2
#: Format of a timeline split into chunks (the newest this release reads).
CHUNKED_FORMAT = 3
#: Largest body of one user record: a quarter of Kafka's default 1 MB message.max.bytes
#: (producer and broker), so a chunk never comes near it.
CHUNK_BYTES = 256 * 1024


class ChangelogTooNewError(SchemaError):
    """A record of a newer format than this daemon reads: upgrade it (never guessed at)."""


class MalformedRecordError(SchemaError):
    """A record that is not what its key says: skipped at restore, its state lost."""


@dataclass(frozen=True, slots=True)
class Record:
    """One changelog record to produce: ``value`` None is a tombstone."""

    partition: int
    key: bytes
    value: bytes | None


def user_key(user: str) -> bytes:
    """The changelog key of ``user``'s timeline."""
    return USER_PREFIX + user.encode()


def chunk_key(user: str, index: int) -> bytes:
    """The changelog key of chunk ``index`` (1, 2, ...) of ``user``'s timeline (chunk 0 is
    ``user_key``); the index comes first, at a fixed width, so any user id may follow."""
    return CHUNK_PREFIX + index.to_bytes(4, "big") + user.encode()


def user_records(user: str, timeline: Timeline) -> list[tuple[bytes, bytes]]:
    """``user``'s timeline as changelog (key, value) pairs: one record when it fits in
    ``CHUNK_BYTES``, else chunks of at most that size (chunk 0 says how many)."""
    humans = [[ts, event_id, url, country] for ts, event_id, (url, country, _) in timeline.humans]
    bots = sorted([ts, event_id] for ts, event_id in timeline.bots)
    pieces = _pieces(humans, bots)
    if len(pieces) == 1:
        return [(user_key(user), _dumps({"v": FORMAT, "h": humans, "b": bots}))]
    records = []
    for index, (chunk_humans, chunk_bots) in enumerate(pieces):
        body: dict[str, Any] = {"v": CHUNKED_FORMAT, "h": chunk_humans, "b": chunk_bots}
        if index == 0:
            body["n"] = len(pieces)
        key = user_key(user) if index == 0 else chunk_key(user, index)
        records.append((key, _dumps(body)))
    return records


def _dumps(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _human_size(entry: list[Any]) -> int:
    """An upper bound of a human entry's JSON (6 bytes per character covers any \\u escape)."""
    return 6 * (len(entry[1]) + len(entry[2]) + len(entry[3])) + 40


def _bot_size(entry: list[Any]) -> int:
    return 6 * len(entry[1]) + 30


def _pieces(humans: list[list[Any]], bots: list[list[Any]]) -> list[tuple[list[Any], list[Any]]]:
    """Entries cut into runs whose JSON stays under CHUNK_BYTES. Sizes are bounded from above
    without encoding, so the common case, a timeline far below the limit, costs one sum of
    len() and no list (this runs for every user a batch touches)."""
    room = CHUNK_BYTES - 40
    if sum(map(_human_size, humans)) + sum(map(_bot_size, bots)) <= room:
        return [(humans, bots)]
    pieces: list[tuple[list[Any], list[Any]]] = [([], [])]
    for entries, size_of, slot in ((humans, _human_size, 0), (bots, _bot_size, 1)):
        for entry in entries:
            size = size_of(entry)
            if size > room and (pieces[-1][0] or pieces[-1][1]):
                pieces.append(([], []))
                room = CHUNK_BYTES - 40
            pieces[-1][slot].append(entry)
            room -= size
    return pieces


def encode_timeline(timeline: Timeline) -> bytes:
    """A user's timeline as compact JSON."""
    body = {
        "v": FORMAT,
        "h": [[ts, event_id, url, country] for ts, event_id, (url, country, _) in timeline.humans],
        "b": sorted([ts, event_id] for ts, event_id in timeline.bots),
    }
    return json.dumps(body, separators=(",", ":")).encode()


def decode_user(value: bytes, state: PartitionState | None = None) -> tuple[Timeline, int]:
    """A user record's timeline (all of it, or the chunk it holds) and how many chunks the
    whole timeline takes (1 unless split)."""
    body = _body(value)
    count = body.get("n", 1) if body["v"] == CHUNKED_FORMAT else 1
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise MalformedRecordError(f"a chunk count that is not a positive integer: {count!r:.20}")
    return _timeline(body, state), count


def decode_timeline(value: bytes, state: PartitionState | None = None) -> Timeline:
    """The timeline :func:`encode_timeline` wrote (doc keys shared through ``state``).

    Format 1 (the first release) kept row keys instead of bot event ids; its bot clicks are
    read back with the row key standing in for the event id, which only matters for the dedup
    of a bot click re-delivered across the upgrade. Raises :class:`ChangelogTooNewError` for a newer
    format and :class:`MalformedRecordError` for anything that is not a timeline.
    """
    return _timeline(_body(value), state)


def _timeline(body: dict[str, Any], state: PartitionState | None) -> Timeline:
    version = body["v"]
    try:
        humans: list[Entry] = []
        for item in _list(body["h"]):
            ts, event_id, url, country = _human(item) if version != 1 else _format_1(item)
            key = (url, country, ts - ts % MINUTE_MS)
            humans.append((ts, event_id, state.doc_key(key) if state is not None else key))
        bots = _bots(body["b"]) if version != 1 else _bots_1(body["b"])
    except (ValueError, KeyError, TypeError) as exc:
        raise MalformedRecordError(f"unreadable speed changelog record: {exc!r}") from exc
    # Written sorted; sorting again costs little and keeps time spent right if one was not.
    humans.sort()
    return Timeline(humans, bots)


def _body(value: bytes) -> dict[str, Any]:
    """The record's JSON object, its format checked: too new, or not a record at all."""
    try:
        body = json.loads(value)
    except ValueError as exc:
        raise MalformedRecordError(f"unreadable speed changelog record: {exc}") from exc
    version = body.get("v") if isinstance(body, dict) else None
    if isinstance(version, int) and not isinstance(version, bool) and version > CHUNKED_FORMAT:
        raise ChangelogTooNewError(
            f"speed changelog record format {version} is newer than this daemon reads "
            f"({CHUNKED_FORMAT}): run the newer release (upgrade every daemon of the group "
            "before starting an older one again)"
        )
    if version not in (1, FORMAT, CHUNKED_FORMAT):
        raise MalformedRecordError(f"speed changelog record without a known format: v={version!r}")
    return body  # type: ignore[no-any-return]


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r:.40}")
    return value


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r:.40}")
    return value


def _list(value: object) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {value!r:.40}")
    return value


def _human(item: object) -> tuple[int, str, str, str]:
    ts, event_id, url, country = _list(item)
    return _int(ts), _str(event_id), _str(url), _str(country)


def _bots(items: object) -> set[tuple[int, str]]:
    bots = set()
    for item in _list(items):
        ts, event_id = _list(item)
        bots.add((_int(ts), _str(event_id)))
    return bots


def _format_1(item: object) -> tuple[int, str, str, str]:
    ts, event_id, _row_key, url, country = _list(item)
    return _int(ts), _str(event_id), _str(url), _str(country)


def _bots_1(items: object) -> set[tuple[int, str]]:
    bots = set()
    for item in _list(items):
        key, ts = _list(item)
        bots.add((_int(ts), f"rowkey:{_str(key)}"))
    return bots


def encode_partition(state: PartitionState) -> bytes:
    """The partition record: newest event time and next offset."""
    return json.dumps({"v": FORMAT, "max_ts": state.max_ts, "next": state.next_offset}).encode()


def decode_partition(value: bytes) -> tuple[int, int]:
    """(newest event time, next offset) of a partition record."""
    body = _body(value)
    try:
        return _int(body["max_ts"]), _int(body["next"])
    except (KeyError, TypeError) as exc:
        raise MalformedRecordError(f"unreadable speed changelog partition record: {exc!r}") from exc


def records_for(state: PartitionState, changed: set[str], expired: set[str]) -> list[Record]:
    """The records that checkpoint ``state`` after a fold touched ``changed`` users."""
    records = []
    for user in sorted(changed):
        if user in state.users:
            records.extend(_user_records(state, user))
    for user in sorted(expired):
        records.append(Record(state.partition, user_key(user), None))
        records.extend(_stale_chunks(state, user, 1))
    records.append(Record(state.partition, PARTITION_KEY, encode_partition(state)))
    return records


def _user_records(state: PartitionState, user: str) -> list[Record]:
    """A user's timeline records, and tombstones for the chunks it no longer needs."""
    pairs = user_records(user, state.users[user])
    records = [Record(state.partition, key, value) for key, value in pairs]
    records.extend(_stale_chunks(state, user, len(pairs)))
    if len(pairs) > 1:
        state.changelog_chunks[user] = len(pairs)
    return records


def _stale_chunks(state: PartitionState, user: str, needed: int) -> list[Record]:
    """Tombstones for ``user``'s chunks from ``needed`` on (forgotten from the state)."""
    written = state.changelog_chunks.pop(user, 1)
    return [Record(state.partition, chunk_key(user, i), None) for i in range(needed, written)]


@dataclass(slots=True)
class Restored:
    """A partition's state rebuilt from its changelog, and what the rebuild met on the way."""

    state: PartitionState
    records: int = 0
    #: Records skipped as unreadable: each one's state (a user's recent clicks, or the
    #: partition's newest event time) is lost, see :meth:`lost`.
    malformed: int = 0
    partition_record_lost: bool = False
    #: Split timelines with a chunk missing (its record lost): dropped, as if unreadable.
    incomplete: int = 0
    #: Keys of the first releases' layout still live: rewritten by :meth:`migration`.
    legacy: dict[bytes, str | None] = field(default_factory=dict)

    def note_legacy(self, key: bytes, user: str | None, tombstone: bool) -> None:
        """A record under a first-release key: live ones are migrated after the restore."""
        if tombstone:
            self.legacy.pop(key, None)  # gone at the next compaction anyway
        else:
            self.legacy[key] = user

    def lost(self) -> str | None:
        """What the skipped records cost, in words for the log (None if nothing)."""
        if not self.malformed and not self.incomplete:
            return None
        return (
            f"{self.malformed} changelog record(s) unreadable and skipped"
            + (f", {self.incomplete} split timeline(s) incomplete" if self.incomplete else "")
            + ": those users' recent "
            "clicks are forgotten, so until the batch layer passes their next click gives no "
            "time spent to the previous one and a re-delivery of one of those clicks may count "
            "twice in the speed views"
            + (
                "; the partition's newest event time was taken from the timelines"
                if self.partition_record_lost
                else ""
            )
        )

    def migration(self) -> list[Record]:
        """Tombstones for the legacy keys, and their users' timelines under the new keys."""
        partition = self.state.partition
        records = [Record(partition, key, None) for key in sorted(self.legacy)]
        users = sorted({user for user in self.legacy.values() if user is not None})
        records.extend(
            Record(partition, key, value)
            for user in users
            if user in self.state.users
            for key, value in user_records(user, self.state.users[user])
        )
        return records


def rebuild(
    partition: int,
    records: Iterable[tuple[bytes, bytes | None]],
    *,
    session_timeout_ms: int,
    retention_ms: int,
) -> Restored:
    """Replay changelog records (in log order) into a partition's state. Pure.

    Raises :class:`ChangelogTooNewError` only; any other bad record is counted and skipped.
    """
    state = PartitionState(partition, session_timeout_ms, retention_ms)
    restored = Restored(state)
    chunks = _Chunks()
    partition_seen = False
    for key, value in records:
        restored.records += 1
        user: str | None = None
        try:
            user, index = _key_of(key, value)
            if key[:1] != KEY_MARK:
                restored.note_legacy(key, user, value is None)
            if user is None:
                if value is None:
                    raise MalformedRecordError("a tombstone for the partition record")
                state.max_ts, state.next_offset = decode_partition(value)
                partition_seen = True
            elif index:
                chunks.put(user, index, None if value is None else decode_user(value, state)[0])
            elif value is None:
                state.users.pop(user, None)
                chunks.forget(user)
            else:
                state.users[user], count = decode_user(value, state)
                chunks.expect(user, count)
        except (MalformedRecordError, UnicodeDecodeError) as exc:
            restored.malformed += 1
            if user is not None:
                # An older record of the same user is stale now: time spent from it is wrong.
                state.users.pop(user, None)
                chunks.forget(user)
            _log_malformed(restored, key, exc)
    restored.incomplete = chunks.join(state)
    if restored.malformed and not partition_seen:
        restored.partition_record_lost = True
    if not partition_seen and state.users:
        # The floor of the window follows the newest event: take it from what is known.
        state.max_ts = max(timeline.newest() for timeline in state.users.values())
    return restored


def _log_malformed(restored: Restored, key: bytes, exc: Exception) -> None:
    """The first few unreadable records one by one; the rest only counted (the total is in
    `speed.restored` and `speed.restore_lost_state`)."""
    if restored.malformed <= MALFORMED_LOGGED:
        log.warning(
            "speed.changelog_malformed",
            partition=restored.state.partition,
            key_sha256=hashlib.sha256(key).hexdigest()[:16],
            error=str(exc)[:200],
        )


class _Chunks:
    """The chunks of split timelines met during a restore, joined to their first chunk (in
    ``state.users``) at the end. All chunks of a user are written in one transaction, so the
    live ones at any committed offset are complete; a missing one means a lost record."""

    def __init__(self) -> None:
        self._count: dict[str, int] = {}
        self._parts: dict[str, dict[int, Timeline]] = {}

    def expect(self, user: str, count: int) -> None:
        if count > 1:
            self._count[user] = count
        else:
            self._count.pop(user, None)

    def put(self, user: str, index: int, timeline: Timeline | None) -> None:
        parts = self._parts.setdefault(user, {})
        if timeline is None:
            parts.pop(index, None)
        else:
            parts[index] = timeline

    def forget(self, user: str) -> None:
        self._count.pop(user, None)

    def join(self, state: PartitionState) -> int:
        """Complete each split user's timeline in ``state``; how many could not be (dropped:
        their state is lost, as for an unreadable record)."""
        incomplete = 0
        for user, count in self._count.items():
            first = state.users.get(user)
            parts = self._parts.get(user, {})
            if first is None:
                continue
            if any(index not in parts for index in range(1, count)):
                incomplete += 1
                del state.users[user]
                continue
            for index in range(1, count):
                first.humans.extend(parts[index].humans)
                first.bots |= parts[index].bots
            first.humans.sort()
            state.changelog_chunks[user] = count
        return incomplete


def _key_of(key: bytes, value: bytes | None) -> tuple[str | None, int]:
    """The user a record's key names (None for the partition record) and the chunk index (0
    for the user's own key)."""
    if key.startswith(CHUNK_PREFIX) and len(key) >= len(CHUNK_PREFIX) + 4:
        index = int.from_bytes(key[len(CHUNK_PREFIX) : len(CHUNK_PREFIX) + 4], "big")
        if index == 0:
            raise MalformedRecordError("a chunk key with index 0")
        return key[len(CHUNK_PREFIX) + 4 :].decode(), index
    return _user_of(key, value), 0


def _user_of(key: bytes, value: bytes | None) -> str | None:
    """The user a record's key names, None for the partition record."""
    if key == PARTITION_KEY:
        return None
    if key.startswith(USER_PREFIX):
        return key[len(USER_PREFIX) :].decode()
    if key[:1] == KEY_MARK:
        raise MalformedRecordError(f"unknown changelog key kind {key[:2]!r}")
    if key == LEGACY_PARTITION_KEY and _is_partition_record(value):
        # The first layout's partition record, or a user whose id was "\x00partition": only
        # the value tells them apart (a timeline has no max_ts).
        return None
    return key.decode()


def _is_partition_record(value: bytes | None) -> bool:
    try:
        body = json.loads(value) if value is not None else None
    except ValueError:
        return False
    return isinstance(body, dict) and "max_ts" in body


def restore(
    settings: KafkaSettings,
    topic: str,
    partition: int,
    *,
    session_timeout_ms: int,
    retention_ms: int,
    stall_s: float = 60.0,
    progress: Callable[[], None] = lambda: None,
    call_timeout_s: float = 10.0,
) -> Restored:
    """Rebuild one partition's state from the changelog (committed records only).

    Progress-based: RetriableError only if no record arrives for ``stall_s`` seconds, however
    long the whole read takes; ``progress`` is called after each fetch that brought records
    (the daemon feeds its watchdog with it), and no single client call blocks longer than
    ``call_timeout_s``."""
    return rebuild(
        partition,
        _read(
            settings,
            topic,
            partition,
            stall_s=stall_s,
            progress=progress,
            call_timeout_s=call_timeout_s,
        ),
        session_timeout_ms=session_timeout_ms,
        retention_ms=retention_ms,
    )


def _read(
    settings: KafkaSettings,
    topic: str,
    partition: int,
    *,
    stall_s: float,
    progress: Callable[[], None],
    call_timeout_s: float,
) -> Iterator[tuple[bytes, bytes | None]]:
    consumer = Consumer(
        {
            **settings.client_config(),
            "group.id": f"{topic}-restore",  # never commits; assign() needs no group
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=call_timeout_s).topics.get(topic)
        if metadata is None or metadata.error is not None or partition not in metadata.partitions:
            raise SchemaError(
                f"no partition {partition} in the speed changelog topic {topic}: run "
                "`clickstream schema create` (it needs as many partitions as the clicks topic)"
            )
        low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=call_timeout_s
        )
        if high <= low:
            return
        consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
        read, last_read = 0, time.monotonic()
        while time.monotonic() - last_read < stall_s:
            messages = consumer.consume(1000, timeout=min(1.0, call_timeout_s))
            if messages:
                read += len(messages)
                last_read = time.monotonic()
                progress()
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        return
                    raise RetriableError(f"reading the speed changelog failed: {error}")
                key = message.key()
                if key is not None:
                    yield key, message.value()
        raise RetriableError(
            f"restoring {topic}[{partition}] stalled: nothing read for {stall_s:.0f}s after "
            f"{read} records (offsets {low}..{high})"
        )
    except KafkaException as exc:
        raise RetriableError(f"cannot read the speed changelog {topic}: {exc}") from exc
    finally:
        consumer.close()
