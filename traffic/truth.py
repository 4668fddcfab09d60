"""Ground truth of a traffic sample: the numbers the pipeline must report, computed directly.

The metric definitions are DESIGN.md's, applied to valid, deduplicated events:

- a **click** is a valid event counted once per dedup key (``event_id``, else the fingerprint of
  user, timestamp ms and URL); clicks by bots are counted apart, in ``bot_clicks``;
- **unique users** are distinct non-bot ``user_id``; over a range they come from the user sets,
  never from summed counts;
- **time spent** on a non-bot click is the gap to the same user's next non-bot click in event
  time when ``0 <= gap <= session timeout`` (a gap of exactly the timeout is known; a gap of 0,
  two clicks in one millisecond, is a known 0 ms); otherwise, and for a user's last click in the
  data, it is unknown. Bot clicks neither get nor end a time spent.
- a click's **country** is its own ``country`` when it carries one, else what the geo database
  says for its IP (``ZZ`` when nothing); its **hour** is the UTC hour of its event time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from clickstream.times import hour_floor, iso, parse_ms

UNKNOWN_COUNTRY = "ZZ"
FORMAT_VERSION = 1

HourRange = tuple[int, int]
"""Half-open ``[start_ms, end_ms)`` of event time: a group is in it when its hour starts inside."""


@dataclass(frozen=True, slots=True)
class TruthEvent:
    """One valid event as the truth sees it: ``url`` already normalised, ``is_bot`` known."""

    user_id: str
    timestamp_ms: int
    url: str
    is_bot: bool = False
    ip: str | None = None
    country: str | None = None
    event_id: str | None = None

    @property
    def dedup_key(self) -> str:
        """``event_id``, else a fingerprint of user, timestamp and URL (like the pipeline's)."""
        return self.event_id or f"fp\x00{self.user_id}\x00{self.timestamp_ms}\x00{self.url}"


@dataclass(frozen=True, slots=True)
class GroupTruth:
    """The true metrics of one (normalised url, country, hour) group.

    ``users`` holds the distinct non-bot user ids; it is ``None`` for a truth read from JSON,
    which keeps only the counts.
    """

    url: str
    country: str
    hour_ms: int
    clicks: int
    unique_users: int
    time_spent_sum_ms: int
    time_spent_count: int
    bot_clicks: int
    users: frozenset[str] | None = None

    def to_row(self) -> dict[str, Any]:
        """The group as a JSON row (hour as ISO-8601 with ``Z``)."""
        return {
            "url": self.url,
            "country": self.country,
            "hour": iso(self.hour_ms),
            "clicks": self.clicks,
            "unique_users": self.unique_users,
            "time_spent_sum_ms": self.time_spent_sum_ms,
            "time_spent_count": self.time_spent_count,
            "bot_clicks": self.bot_clicks,
        }


@dataclass(frozen=True, slots=True)
class Totals:
    """Metrics over a selection of groups; ``unique_users`` is None when it cannot be known."""

    clicks: int
    unique_users: int | None
    time_spent_sum_ms: int
    time_spent_count: int
    bot_clicks: int

    @property
    def average_time_spent_ms(self) -> float | None:
        """Known time spent over clicks with a known time spent; None when there are none."""
        return self.time_spent_sum_ms / self.time_spent_count if self.time_spent_count else None


@dataclass(frozen=True, slots=True)
class Summary:
    """Counts over the whole sample: what was sent and what of it is valid."""

    messages: int = 0
    valid_events: int = 0
    duplicates: int = 0
    malformed: Mapping[str, int] = field(default_factory=dict)
    late_events: int = 0
    users: int = 0
    bot_users: int = 0
    clicks: int = 0
    bot_clicks: int = 0
    time_spent_known: int = 0
    time_spent_unknown: int = 0


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """The true metrics of a sample: groups sorted by (hour, url, country), and a summary."""

    groups: tuple[GroupTruth, ...]
    summary: Summary
    session_timeout_ms: int
    unique_users: int
    meta: Mapping[str, Any] = field(default_factory=dict)

    def select(
        self, url: str | None = None, country: str | None = None, hours: HourRange | None = None
    ) -> list[GroupTruth]:
        """The groups matching every given filter."""
        return [
            group
            for group in self.groups
            if (url is None or group.url == url)
            and (country is None or group.country == country)
            and (hours is None or hours[0] <= group.hour_ms < hours[1])
        ]

    def users_in(
        self, url: str | None = None, country: str | None = None, hours: HourRange | None = None
    ) -> set[str]:
        """Distinct non-bot users of the matching groups; needs the in-memory user sets."""
        users: set[str] = set()
        for group in self.select(url, country, hours):
            if group.users is None:
                raise ValueError("this truth was read from JSON: it holds no per-group user sets")
            users |= group.users
        return users

    def totals(
        self, url: str | None = None, country: str | None = None, hours: HourRange | None = None
    ) -> Totals:
        """Clicks, unique users (from user sets), time spent and bot clicks over a selection."""
        groups = self.select(url, country, hours)
        unique: int | None = None
        if not self.groups or self.groups[0].users is not None:
            unique = len(self.users_in(url, country, hours))
        elif url is None and country is None and hours is None:
            unique = self.unique_users
        return Totals(
            clicks=sum(group.clicks for group in groups),
            unique_users=unique,
            time_spent_sum_ms=sum(group.time_spent_sum_ms for group in groups),
            time_spent_count=sum(group.time_spent_count for group in groups),
            bot_clicks=sum(group.bot_clicks for group in groups),
        )

    def to_json(self) -> str:
        """The truth file: format version, timeout, summary, overall uniques, group rows."""
        summary = asdict(self.summary)
        summary["malformed"] = dict(sorted(self.summary.malformed.items()))
        document = {
            "format": FORMAT_VERSION,
            "session_timeout_ms": self.session_timeout_ms,
            "meta": dict(self.meta),
            "summary": summary,
            "unique_users": self.unique_users,
            "groups": [group.to_row() for group in self.groups],
        }
        return json.dumps(document, indent=1, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> GroundTruth:
        """Read a truth file written by :meth:`to_json` (user sets are not in it)."""
        document = json.loads(text)
        if document.get("format") != FORMAT_VERSION:
            raise ValueError(f"unknown truth file format {document.get('format')!r}")
        groups = tuple(
            GroupTruth(
                url=row["url"],
                country=row["country"],
                hour_ms=parse_ms(row["hour"]),
                clicks=row["clicks"],
                unique_users=row["unique_users"],
                time_spent_sum_ms=row["time_spent_sum_ms"],
                time_spent_count=row["time_spent_count"],
                bot_clicks=row["bot_clicks"],
            )
            for row in document["groups"]
        )
        return cls(
            groups=groups,
            summary=Summary(**document["summary"]),
            session_timeout_ms=document["session_timeout_ms"],
            unique_users=document["unique_users"],
            meta=document.get("meta", {}),
        )


@dataclass(slots=True)
class _Group:
    clicks: int = 0
    users: set[str] = field(default_factory=set)
    spent_sum: int = 0
    spent_count: int = 0
    bot_clicks: int = 0


def compute_truth(
    events: Iterable[TruthEvent],
    geo_country_of: Callable[[str], str],
    session_timeout_ms: int,
) -> GroundTruth:
    """The ground truth of ``events`` (duplicates by dedup key are counted once).

    ``geo_country_of`` maps an IP to the country the geo database gives it. The summary holds
    the event-derived counts only; message counts are the caller's to add.
    """
    unique: dict[str, TruthEvent] = {}
    for event in events:
        unique.setdefault(event.dedup_key, event)
    by_user: dict[str, list[TruthEvent]] = {}
    for event in unique.values():
        by_user.setdefault(event.user_id, []).append(event)

    groups: dict[tuple[str, str, int], _Group] = {}
    known = unknown = 0
    bot_users: set[str] = set()
    for user_id, clicks in by_user.items():
        # Sorting by dedup key too makes ties (one user, one ms) deterministic.
        clicks.sort(key=lambda event: (event.timestamp_ms, event.dedup_key))
        humans = [event for event in clicks if not event.is_bot]
        for event in clicks:
            if event.is_bot:
                bot_users.add(user_id)
                _group_of(groups, event, geo_country_of).bot_clicks += 1
        for position, event in enumerate(humans):
            group = _group_of(groups, event, geo_country_of)
            group.clicks += 1
            group.users.add(user_id)
            if position + 1 < len(humans):
                gap = humans[position + 1].timestamp_ms - event.timestamp_ms
                if gap <= session_timeout_ms:
                    group.spent_sum += gap
                    group.spent_count += 1
                    known += 1
                    continue
            unknown += 1

    frozen = tuple(
        GroupTruth(
            url=url,
            country=country,
            hour_ms=hour,
            clicks=group.clicks,
            unique_users=len(group.users),
            time_spent_sum_ms=group.spent_sum,
            time_spent_count=group.spent_count,
            bot_clicks=group.bot_clicks,
            users=frozenset(group.users),
        )
        for (url, country, hour), group in sorted(groups.items(), key=lambda kv: _order(kv[0]))
    )
    human_users = {user for user, clicks in by_user.items() if any(not e.is_bot for e in clicks)}
    summary = Summary(
        valid_events=len(unique),
        users=len(human_users),
        bot_users=len(bot_users),
        clicks=sum(group.clicks for group in frozen),
        bot_clicks=sum(group.bot_clicks for group in frozen),
        time_spent_known=known,
        time_spent_unknown=unknown,
    )
    return GroundTruth(frozen, summary, session_timeout_ms, len(human_users))


def _order(key: tuple[str, str, int]) -> tuple[int, str, str]:
    url, country, hour = key
    return hour, url, country


def _group_of(
    groups: dict[tuple[str, str, int], _Group],
    event: TruthEvent,
    geo_country_of: Callable[[str], str],
) -> _Group:
    if event.country:
        country = event.country.upper()
    elif event.ip:
        country = geo_country_of(event.ip)
    else:
        country = UNKNOWN_COUNTRY
    key = (event.url, country, hour_floor(event.timestamp_ms))
    group = groups.get(key)
    if group is None:
        group = groups[key] = _Group()
    return group
