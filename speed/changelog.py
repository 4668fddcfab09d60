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
PARTITION_KEY = KEY_MARK + b"p"
#: The partition record's key in the first releases' layout (bare user ids beside it).
LEGACY_PARTITION_KEY = b"\x00partition"
FORMAT = 2


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


def encode_timeline(timeline: Timeline) -> bytes:
    """A user's timeline as compact JSON."""
    body = {
        "v": FORMAT,
        "h": [[ts, event_id, url, country] for ts, event_id, (url, country, _) in timeline.humans],
        "b": sorted([ts, event_id] for ts, event_id in timeline.bots),
    }
    return json.dumps(body, separators=(",", ":")).encode()


def decode_timeline(value: bytes, state: PartitionState | None = None) -> Timeline:
    """The timeline :func:`encode_timeline` wrote (doc keys shared through ``state``).

    Format 1 (the first release) kept row keys instead of bot event ids; its bot clicks are
    read back with the row key standing in for the event id, which only matters for the dedup
    of a bot click re-delivered across the upgrade. Raises :class:`ChangelogTooNewError` for a newer
    format and :class:`MalformedRecordError` for anything that is not a timeline.
    """
    body = _body(value)
    version = body["v"]
    try:
        humans: list[Entry] = []
        for item in _list(body["h"]):
            ts, event_id, url, country = _human(item) if version == FORMAT else _format_1(item)
            key = (url, country, ts - ts % MINUTE_MS)
            humans.append((ts, event_id, state.doc_key(key) if state is not None else key))
        bots = _bots(body["b"]) if version == FORMAT else _bots_1(body["b"])
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
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT:
        raise ChangelogTooNewError(
            f"speed changelog record format {version} is newer than this daemon reads "
            f"({FORMAT}): run the newer release (upgrade every daemon of the group before "
            "starting an older one again)"
        )
    if version not in (1, FORMAT):
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
    records = [
        Record(state.partition, user_key(user), encode_timeline(state.users[user]))
        for user in sorted(changed)
        if user in state.users
    ]
    records.extend(Record(state.partition, user_key(user), None) for user in sorted(expired))
    records.append(Record(state.partition, PARTITION_KEY, encode_partition(state)))
    return records


@dataclass(slots=True)
class Restored:
    """A partition's state rebuilt from its changelog, and what the rebuild met on the way."""

    state: PartitionState
    records: int = 0
    #: Records skipped as unreadable: each one's state (a user's recent clicks, or the
    #: partition's newest event time) is lost, see :meth:`lost`.
    malformed: int = 0
    partition_record_lost: bool = False
    #: Keys of the first releases' layout still live: rewritten by :meth:`migration`.
    legacy: dict[bytes, str | None] = field(default_factory=dict)

    def lost(self) -> str | None:
        """What the skipped records cost, in words for the log (None if nothing)."""
        if not self.malformed:
            return None
        return (
            f"{self.malformed} changelog record(s) unreadable and skipped: those users' recent "
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
            Record(partition, user_key(user), encode_timeline(self.state.users[user]))
            for user in users
            if user in self.state.users
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
    partition_seen = False
    for key, value in records:
        restored.records += 1
        user: str | None = None
        try:
            user = _user_of(key, value)
            if key[:1] != KEY_MARK:
                if value is None:
                    restored.legacy.pop(key, None)  # gone at the next compaction anyway
                else:
                    restored.legacy[key] = user
            if user is None:
                if value is None:
                    raise MalformedRecordError("a tombstone for the partition record")
                state.max_ts, state.next_offset = decode_partition(value)
                partition_seen = True
            elif value is None:
                state.users.pop(user, None)
            else:
                state.users[user] = decode_timeline(value, state)
        except (MalformedRecordError, UnicodeDecodeError) as exc:
            restored.malformed += 1
            if user is not None:
                # An older record of the same user is stale now: time spent from it is wrong.
                state.users.pop(user, None)
            _log_malformed(restored, key, exc)
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
