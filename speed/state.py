"""The speed layer's pure core: user timelines and cumulative rollup documents.

A click's time spent is the gap to the same user's next human click in event time (DESIGN.md),
so each user's recent human clicks are kept sorted by ``(ts, event_id)``, the order the batch
job uses. A click arriving out of order is inserted where it belongs: its predecessor's time
spent changes and it takes the gap to its successor. Folding a click yields *contributions*
(deltas per document, tagged with the message offset); a document applies a contribution
only if the offset is past the last one it folded in. That makes a replay of any message, after
a crash or a rebalance, a no-op for every document already holding it.

Documents are rollups, as the batch cube's: per partition, at the levels (url, country), (url,
all), (all, country) and (all, all), each at minute and hour grain. A click's deltas are computed
once at its (url, country, minute) and added to the eight documents that contain it
(:func:`rollup_keys`), merged per message so that one offset reaches each document once.

Retention: a partition keeps the clicks within ``retention_ms`` of its newest event time
(allowed lateness + session timeout). A click older than that is *beyond the horizon*: it is
not folded (the batch layer counts it at its next run) and is reported, so nothing is counted
twice and nothing is dropped silently.
"""

from __future__ import annotations

import bisect
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

from datasketches import hll_sketch

from clickstream.times import HOUR_MS, MINUTE_MS
from indexing.views import (
    GRAIN_HOUR,
    GRAIN_MINUTE,
    LEVEL_KEYS,
    LEVELS,
    SKETCH_TYPE,
    speed_doc_id,
)

DocKey = tuple[str, str, int]
"""(normalised url, country, minute start ms): the finest cell a click counts in."""

RollupKey = tuple[str, str, str | None, str | None, int]
"""(level, grain, url or None, country or None, bucket start ms): one speed document per
partition; url / country are None where the level counts all of them."""

#: Bucket length of each speed grain.
GRAIN_MS: dict[str, int] = {GRAIN_MINUTE: MINUTE_MS, GRAIN_HOUR: HOUR_MS}


def rollup_keys(key: DocKey) -> tuple[RollupKey, ...]:
    """The documents a click of cell ``key`` counts in: every level at minute and hour grain."""
    url, country, minute = key
    found: list[RollupKey] = []
    for grain, size in GRAIN_MS.items():
        start = minute - minute % size
        for level in LEVELS:
            kept = LEVEL_KEYS[level]
            found.append(
                (
                    level,
                    grain,
                    url if "url" in kept else None,
                    country if "country" in kept else None,
                    start,
                )
            )
    return tuple(found)


def span_of(key: RollupKey) -> int:
    """The bucket length of a document (its grain's)."""
    return GRAIN_MS[key[1]]


@dataclass(frozen=True, slots=True)
class SpeedClick:
    """What the speed layer needs of one stored click, and where it came from. Within one
    user, ``(ts, event_id)`` identifies the event as its HBase row key does."""

    partition: int
    offset: int
    user_id: str
    ts: int
    event_id: str
    url: str
    country: str
    is_bot: bool
    #: The rule that flagged a bot (clickstream.model.BOT_RULES; None for people).
    bot_rule: str | None = None

    @property
    def doc_key(self) -> DocKey:
        """The minute document this click counts in."""
        return (self.url, self.country, self.ts - self.ts % MINUTE_MS)


Entry = tuple[int, str, DocKey]
"""A human click kept in its user's timeline: (ts, event_id, doc key). Plain tuples, ordered
as the batch orders a user's clicks, with the doc key shared per document: they are the bulk
of the state."""

Identity = tuple[int, str]


@dataclass(slots=True)
class Timeline:
    """One user's recent clicks: humans sorted for time spent, bot clicks for dedup."""

    humans: list[Entry] = field(default_factory=list)
    bots: set[Identity] = field(default_factory=set)

    def newest(self) -> int:
        """Event time of the newest click kept (0 when empty)."""
        human = self.humans[-1][0] if self.humans else 0
        return max(human, max((ts for ts, _ in self.bots), default=0))

    def holds(self, identity: Identity, is_bot: bool) -> bool:
        """Whether this event is already folded (a duplicate delivery)."""
        if is_bot:
            return identity in self.bots
        # A prefix sorts before every tuple it starts: bisect_left lands on the event if held.
        position = bisect.bisect_left(self.humans, identity)
        return position < len(self.humans) and self.humans[position][:2] == identity

    def expire(self, floor_ms: int) -> None:
        """Forget the clicks older than ``floor_ms``."""
        del self.humans[: bisect.bisect_left(self.humans, (floor_ms,))]
        self.bots = {bot for bot in self.bots if bot[0] >= floor_ms}


def add_counts(into: dict[str, int] | None, counts: dict[str, int]) -> dict[str, int]:
    """``into`` plus ``counts`` (a new dict when ``into`` is None; deltas shared between
    documents are never mutated: a bot's delta is copied before another is added to it)."""
    total = dict(into) if into else {}
    for name, count in counts.items():
        total[name] = total.get(name, 0) + count
    return total


@dataclass(slots=True)
class Delta:
    """What one message changes in one document."""

    clicks: int = 0
    bot_clicks: int = 0
    spent_sum: int = 0
    spent_count: int = 0
    users: list[str] = field(default_factory=list)
    #: Bot clicks by the rule that flagged them (a bot without a rule counts in bot_clicks only).
    bot_rules: dict[str, int] | None = None

    def add(self, other: Delta) -> None:
        """Add ``other`` into this delta."""
        self.clicks += other.clicks
        self.bot_clicks += other.bot_clicks
        if other.bot_rules:
            self.bot_rules = add_counts(self.bot_rules, other.bot_rules)
        self.spent_sum += other.spent_sum
        self.spent_count += other.spent_count
        self.users.extend(other.users)


@dataclass(frozen=True, slots=True)
class Contribution:
    """A message's delta to one document; applied once, by offset."""

    partition: int
    offset: int
    doc_key: RollupKey
    delta: Delta


@dataclass(slots=True)
class SpeedDoc:
    """A cumulative rollup document owned by one partition."""

    partition: int
    key: RollupKey
    lg_k: int
    clicks: int = 0
    bot_clicks: int = 0
    spent_sum: int = 0
    spent_count: int = 0
    last_offset: int = -1
    sketch: hll_sketch | None = None
    bot_rules: dict[str, int] | None = None

    def apply(self, contribution: Contribution) -> bool:
        """Fold ``contribution`` in unless its offset is already folded; True if applied."""
        if contribution.offset <= self.last_offset:
            return False
        delta = contribution.delta
        self.clicks += delta.clicks
        self.bot_clicks += delta.bot_clicks
        if delta.bot_rules:
            self.bot_rules = add_counts(self.bot_rules, delta.bot_rules)
        self.spent_sum += delta.spent_sum
        self.spent_count += delta.spent_count
        if delta.users:
            if self.sketch is None:
                self.sketch = hll_sketch(self.lg_k, SKETCH_TYPE)
            for user in delta.users:
                self.sketch.update(user)
        self.last_offset = contribution.offset
        return True

    @property
    def doc_id(self) -> str:
        """Its Elasticsearch id (see :func:`indexing.views.speed_doc_id`)."""
        return speed_doc_id(self.partition, self.key)


@dataclass(frozen=True, slots=True)
class FoldResult:
    """What folding a batch of one partition produced."""

    contributions: list[Contribution]
    changed_users: set[str]
    expired_users: set[str]
    duplicates: int
    beyond_horizon: int


class PartitionState:
    """The speed state of one Kafka partition: timelines, newest event time, and retention."""

    def __init__(self, partition: int, session_timeout_ms: int, retention_ms: int) -> None:
        self.partition = partition
        self.session_timeout_ms = session_timeout_ms
        self.retention_ms = retention_ms
        self.users: dict[str, Timeline] = {}
        #: Users whose timeline takes more than one changelog record, and how many (kept by
        #: speed/changelog.py, so that records a shrunk timeline no longer needs are deleted).
        self.changelog_chunks: dict[str, int] = {}
        self.max_ts = 0
        #: The next offset to fold (restored from the changelog's partition record).
        self.next_offset = 0
        self._expired_at = 0
        self._doc_keys: dict[DocKey, DocKey] = {}
        self._rollups: dict[DocKey, tuple[RollupKey, ...]] = {}

    @property
    def floor_ms(self) -> int:
        """Clicks older than this are beyond the horizon."""
        return self.max_ts - self.retention_ms

    def fold(self, clicks: Iterable[SpeedClick]) -> FoldResult:
        """Fold clicks in offset order; contributions to apply, users to checkpoint."""
        contributions: list[Contribution] = []
        changed: set[str] = set()
        duplicates = beyond = 0
        for click in clicks:
            self.next_offset = max(self.next_offset, click.offset + 1)
            if click.ts < self.floor_ms:
                beyond += 1
                continue
            timeline = self.users.setdefault(click.user_id, Timeline())
            identity = (click.ts, click.event_id)
            if timeline.holds(identity, click.is_bot):
                duplicates += 1
                continue
            changed.add(click.user_id)
            self.max_ts = max(self.max_ts, click.ts)
            if click.is_bot:
                timeline.bots.add(identity)
                rules = None if click.bot_rule is None else {click.bot_rule: 1}
                deltas = {self.doc_key(click.doc_key): Delta(bot_clicks=1, bot_rules=rules)}
            else:
                deltas = self._insert(timeline, click)
            contributions.extend(
                Contribution(self.partition, click.offset, key, delta)
                for key, delta in self._rolled_up(deltas).items()
            )
        expired = self._expire()
        return FoldResult(contributions, changed - expired, expired, duplicates, beyond)

    def _insert(self, timeline: Timeline, click: SpeedClick) -> dict[DocKey, Delta]:
        """Insert a human click; the deltas of its own and its predecessor's documents."""
        entry: Entry = (click.ts, click.event_id, self.doc_key(click.doc_key))
        humans = timeline.humans
        position = bisect.bisect_left(humans, entry[:2])
        before = humans[position - 1] if position > 0 else None
        if before is not None and before[0] < self.floor_ms:
            # Expired or not, a click below the floor is outside the window: the answer must
            # not depend on when the timeline was last trimmed (a restore trims differently).
            before = None
        after = humans[position] if position < len(humans) else None
        humans.insert(position, entry)
        own = Delta(clicks=1, users=[click.user_id])
        deltas = {entry[2]: own}
        spent = self._spent(entry, after)
        if spent is not None:
            own.spent_sum, own.spent_count = spent, 1
        if before is not None:
            old, new = self._spent(before, after), self._spent(before, entry)
            change = deltas.setdefault(before[2], Delta())
            change.spent_sum += (new or 0) - (old or 0)
            change.spent_count += (new is not None) - (old is not None)
        return deltas

    def doc_key(self, key: DocKey) -> DocKey:
        """The one shared instance of ``key``: timelines hold references, not copies."""
        found = self._doc_keys.get(key)
        if found is None:
            # Every minute of a URL shares one string (each click brings its own copy): the
            # state's memory grows with the distinct URLs, not with their length x minutes.
            # The stored key is the shared tuple too: a dict keeps its first key object.
            url, country, minute = key
            found = (sys.intern(url), country, minute)
            self._doc_keys[found] = found
        return found

    def _rolled_up(self, deltas: dict[DocKey, Delta]) -> dict[RollupKey, Delta]:
        """One message's cell deltas added into the documents containing each cell (one delta
        per document: a document applies one contribution per offset)."""
        if len(deltas) == 1:
            ((key, delta),) = deltas.items()
            return dict.fromkeys(self._rollups_of(key), delta)  # shared, never mutated
        merged: dict[RollupKey, Delta] = {}
        for key, delta in deltas.items():
            for rollup in self._rollups_of(key):
                total = merged.get(rollup)
                if total is None:
                    merged[rollup] = total = Delta()
                total.add(delta)
        return merged

    def _rollups_of(self, key: DocKey) -> tuple[RollupKey, ...]:
        found = self._rollups.get(key)
        if found is None:
            found = self._rollups[key] = rollup_keys(key)
        return found

    def _spent(self, entry: Entry, following: Entry | None) -> int | None:
        if following is None:
            return None
        gap = following[0] - entry[0]
        return gap if gap <= self.session_timeout_ms else None

    def _expire(self) -> set[str]:
        floor = self.floor_ms
        expired: set[str] = set()
        # Trimming walks every user: once per minute of event time is enough.
        if floor - self._expired_at < MINUTE_MS:
            return expired
        self._expired_at = floor
        for user, timeline in list(self.users.items()):
            if timeline.newest() < floor:
                del self.users[user]
                expired.add(user)
            elif (timeline.humans and timeline.humans[0][0] < floor) or any(
                ts < floor for ts, _ in timeline.bots
            ):
                timeline.expire(floor)
        cutoff = floor - floor % MINUTE_MS
        self._doc_keys = {key: key for key in self._doc_keys if key[2] >= cutoff}
        self._rollups = {key: found for key, found in self._rollups.items() if key[2] >= cutoff}
        return expired
