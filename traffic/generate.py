"""Synthetic click traffic, reproducible from a seed, with its ground truth.

The core (:func:`generate`) is pure: a spec, a seed and a geo sample in; messages in delivery
order and their true metrics out. Publishing to Kafka (:func:`publish`, through
:class:`traffic.sender.Sender`) and writing the truth file (:func:`write_truth`) are the thin
edges. The README describes the traffic; the metric rules are in :mod:`traffic.truth`.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from clickstream.errors import ConfigError
from clickstream.model import Reason
from clickstream.settings import KafkaSettings
from clickstream.times import EPOCH, HOUR_MS
from ingest.urls import normalize_url
from traffic.population import BOT_AGENTS, BROWSER_AGENTS, EXTERNAL_REFERRERS, GeoSample
from traffic.sender import Sender
from traffic.truth import UNKNOWN_COUNTRY, GroundTruth, TruthEvent, compute_truth

GAP_MEDIAN_MS = 40_000  # median time between a person's clicks within a session
BOT_GAP_MEDIAN_MS = 8_000
GAP_SIGMA = 1.0
SESSION_CLICKS = 6  # mean clicks per session: each gap ends a session with probability 1/6
SESSION_IDLE_MEAN_MS = 2 * HOUR_MS  # mean idle time beyond the timeout between two sessions
BOT_WEIGHT = 4.0  # a bot clicks this many times more than an average person
DELIVERY_JITTER_MS = 5_000  # small local shuffles: out of order by up to 5 s
LATE_MIN_MS, LATE_MAX_MS = HOUR_MS, 3 * HOUR_MS
TOO_LARGE_PAD = 70_000  # over the 64 KiB ingest limit

MALFORMED_KINDS: tuple[Reason, ...] = (
    Reason.NOT_UTF8,
    Reason.NOT_JSON,
    Reason.NOT_OBJECT,
    Reason.EMPTY,
    Reason.MISSING_FIELD,
    Reason.BAD_TYPE,
    Reason.FIELD_TOO_LONG,
    Reason.BAD_TIMESTAMP,
    Reason.TIMESTAMP_OUT_OF_RANGE,
    Reason.BAD_URL,
    Reason.BAD_IP,
    Reason.BAD_COUNTRY,
    Reason.TOO_LARGE,
)
"""Malformed messages cycle through these kinds, in this order."""

_SECTIONS = ("products", "articles", "guides", "category", "help", "stories")
_WORDS = ("alpha", "summer", "river", "garden", "copper", "winter", "harbor", "violet", "meadow")
_PLUS_TWO = timezone(timedelta(hours=2))

Progress = Callable[[str], None]


class TrafficSpecError(ConfigError, ValueError):
    """A traffic spec value is out of range; the message names the field and quotes the value."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TrafficSpec:
    """What traffic to generate; shares are of ``events`` (of users for ``bot_share``)."""

    start_ms: int
    #: The session timeout the truth's time spent follows: ``ingest.session_timeout_ms``.
    session_timeout_ms: int
    events: int = 10_000
    hours: float = 6.0
    users: int | None = None
    sites: tuple[str, ...] = (
        "https://shop.example",
        "https://news.example",
        "https://blog.example",
    )
    pages_per_site: int = 50
    zipf_s: float = 1.1
    bot_share: float = 0.03
    duplicate_share: float = 0.02
    malformed_share: float = 0.01
    late_share: float = 0.01
    missing_event_id_share: float = 0.1
    country_share: float = 0.02
    url_variant_share: float = 0.1

    def __post_init__(self) -> None:
        checks = {
            "start_ms": self.start_ms >= 0,
            "events": self.events >= 1,
            "hours": 0 < self.hours <= 24 * 366,
            "users": self.users is None or self.users >= 1,
            "sites": bool(self.sites),
            "pages_per_site": self.pages_per_site >= 1,
            "zipf_s": 0 <= self.zipf_s <= 10,
            "session_timeout_ms": self.session_timeout_ms >= 1,
        }
        for name, value in asdict(self).items():
            if name.endswith("_share"):
                checks[name] = 0 <= value <= 1
        for name, ok in checks.items():
            if not ok:
                raise TrafficSpecError(f"traffic {name} out of range: {getattr(self, name)!r}")
        for site in self.sites:
            parts = urlsplit(site)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
                raise TrafficSpecError(f"traffic site must be http(s)://host[/path]: {site!r}")

    @property
    def span_ms(self) -> int:
        """Length of the event-time span in ms."""
        return max(1, round(self.hours * HOUR_MS))

    @property
    def user_count(self) -> int:
        """``users``, else one user per 20 events."""
        return self.users or max(1, round(self.events / 20))


@dataclass(frozen=True, slots=True)
class Message:
    """One Kafka message; ``kind``, ``reason`` (malformed only), ``late`` and ``event`` (what
    the truth sees of it; None when malformed) are for tests."""

    key: bytes | None
    value: bytes
    kind: Literal["valid", "duplicate", "malformed"]
    reason: Reason | None = None
    late: bool = False
    event: TruthEvent | None = None


@dataclass(frozen=True, slots=True)
class Traffic:
    """Messages in delivery order, the true metrics of the valid ones, and each IP's country
    (as the geo database gives it)."""

    messages: list[Message]
    truth: GroundTruth
    countries: Mapping[str, str] = field(default_factory=dict)

    def truth_of(self, count: int) -> GroundTruth:
        """The ground truth of the first ``count`` messages alone (a run in progress)."""
        events = [m.event for m in self.messages[:count] if m.event is not None]
        return compute_truth(events, self.countries.__getitem__, self.truth.session_timeout_ms)


@dataclass(frozen=True, slots=True)
class _Page:
    canonical: str
    scheme: str
    host: str
    path: str


@dataclass(slots=True)
class _User:
    user_id: str
    is_bot: bool
    agent: str
    ip: str
    country: str
    clicks: int = 0


@dataclass(slots=True)
class _Draft:
    delivery_ms: int
    message: Message
    event: TruthEvent | None = None
    body: dict[str, Any] | None = None


def generate(spec: TrafficSpec, seed: int, geo: GeoSample) -> Traffic:
    """Messages for ``spec`` in delivery order, and their ground truth; same seed, same output."""
    rng = random.Random(seed)  # noqa: S311 - synthetic data, reproducible on purpose
    pages = _pages(spec)
    ranks = list(range(1, len(pages) + 1))
    rng.shuffle(ranks)  # which page is the most popular differs per seed
    weights = [1.0 / rank**spec.zipf_s for rank in ranks]
    users = _users(spec, rng, geo)
    _allocate(spec.events, users, rng)

    drafts: list[_Draft] = []
    for user in users:
        times = _timeline(spec, rng, user)
        picks = rng.choices(pages, weights=weights, k=len(times))
        referrer: str | None = None
        for position, (at, page) in enumerate(zip(times, picks, strict=True)):
            if position == 0 or at - times[position - 1] > spec.session_timeout_ms:
                referrer = rng.choice(EXTERNAL_REFERRERS) or None
            body, event = _event(spec, rng, user, at=at, page=page, referrer=referrer)
            referrer = page.canonical
            message = Message(user.user_id.encode(), _dump(body), "valid", event=event)
            drafts.append(_Draft(at + rng.randrange(DELIVERY_JITTER_MS), message, event, body))

    late = _make_late(spec, rng, drafts)
    duplicates = _duplicates(spec, rng, drafts)
    malformed = _malformed(spec, rng, drafts)
    everything = drafts + duplicates + malformed
    everything.sort(key=lambda draft: draft.delivery_ms)  # stable: ties keep creation order

    countries = {user.ip: user.country for user in users}
    events = [draft.event for draft in drafts + duplicates if draft.event is not None]
    truth = compute_truth(events, countries.__getitem__, spec.session_timeout_ms)
    summary = replace(
        truth.summary,
        messages=len(everything),
        duplicates=len(duplicates),
        malformed=dict(Counter(str(draft.message.reason) for draft in malformed)),
        late_events=late,
    )
    meta = {
        "generator": "traffic.generate",
        "seed": seed,
        "spec": {**asdict(spec), "sites": list(spec.sites)},
        "geo_networks": len(geo.networks),
    }
    truth = replace(truth, summary=summary, meta=meta)
    return Traffic([draft.message for draft in everything], truth, countries)


def _dump(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _pages(spec: TrafficSpec) -> list[_Page]:
    pages = []
    for site_index, site in enumerate(spec.sites):
        for number in range(spec.pages_per_site):
            section = _SECTIONS[number % len(_SECTIONS)]
            word = _WORDS[(number * 7 + site_index) % len(_WORDS)]
            canonical = normalize_url(f"{site.rstrip('/')}/{section}/{word}-{number}")
            parts = urlsplit(canonical)
            pages.append(_Page(canonical, parts.scheme, parts.netloc, parts.path))
    return pages


def _users(spec: TrafficSpec, rng: random.Random, geo: GeoSample) -> list[_User]:
    count = spec.user_count
    bots = set(rng.sample(range(count), round(spec.bot_share * count)))
    users = []
    for index in range(count):
        ip, country = geo.pick(rng)
        agent = rng.choice(BOT_AGENTS if index in bots else BROWSER_AGENTS)
        users.append(_User(f"u-{rng.getrandbits(48):012x}", index in bots, agent, ip, country))
    return users


def _allocate(events: int, users: list[_User], rng: random.Random) -> None:
    """Spread ``events`` over users: one each, the rest by heavy-tailed (log-normal) activity."""
    weights = [rng.lognormvariate(0.0, 0.8) * (BOT_WEIGHT if u.is_bot else 1.0) for u in users]
    base = 1 if events >= len(users) else 0
    total = sum(weights)
    shares = [(events - base * len(users)) * weight / total for weight in weights]
    for user, share in zip(users, shares, strict=True):
        user.clicks = base + int(share)
    left = events - sum(user.clicks for user in users)
    by_remainder = sorted(range(len(users)), key=lambda i: (int(shares[i]) - shares[i], i))
    for index in by_remainder[:left]:
        users[index].clicks += 1


def _timeline(spec: TrafficSpec, rng: random.Random, user: _User) -> list[int]:
    """One user's event times: log-normal gaps within sessions, sessions split by idle gaps
    longer than the timeout; squeezed (fewer sessions, shorter idles, faster clicks) to fit."""
    if user.clicks == 0:
        return []
    timeout, room = spec.session_timeout_ms, spec.span_ms - 1
    mu = math.log(BOT_GAP_MEDIAN_MS if user.is_bot else GAP_MEDIAN_MS)
    gaps = [min(rng.lognormvariate(mu, GAP_SIGMA), timeout) for _ in range(user.clicks - 1)]
    idle: dict[int, float] = {}
    if not user.is_bot:
        for index in range(len(gaps)):
            if rng.random() < 1 / SESSION_CLICKS:
                idle[index] = rng.expovariate(1 / SESSION_IDLE_MEAN_MS)
    while idle and len(idle) * (timeout + 1) > room // 2:
        idle.popitem()
    fixed = len(idle) * (timeout + 1)
    within = sum(gap for index, gap in enumerate(gaps) if index not in idle)
    spare = max(room - fixed - within, 0)
    if sum(idle.values()) > spare:
        factor = spare / sum(idle.values())
        idle = {index: value * factor for index, value in idle.items()}
    squeeze = min(1.0, (room - fixed) / within) if within else 1.0
    steps = [
        timeout + 1 + int(idle[index]) if index in idle else max(1, int(gap * squeeze))
        for index, gap in enumerate(gaps)
    ]
    at = spec.start_ms + rng.randrange(max(1, spec.span_ms - sum(steps)))
    times = [at]
    for step in steps:
        at += step
        times.append(at)
    return times


def _event(
    spec: TrafficSpec,
    rng: random.Random,
    user: _User,
    *,
    at: int,
    page: _Page,
    referrer: str | None,
) -> tuple[dict[str, Any], TruthEvent]:
    body: dict[str, Any] = {}
    event_id = None
    if rng.random() >= spec.missing_event_id_share:
        event_id = body["event_id"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    body["user_id"] = user.user_id
    body["timestamp"] = _timestamp(rng, at)
    body["url"] = _variant(rng, page) if rng.random() < spec.url_variant_share else page.canonical
    own_country = None
    if user.country != UNKNOWN_COUNTRY and rng.random() < spec.country_share:
        own_country = body["country"] = user.country
    else:
        body["ip"] = user.ip
    body["user_agent"] = user.agent
    if referrer:
        body["referrer"] = referrer
    ip = None if own_country else user.ip
    return body, TruthEvent(
        user.user_id, at, page.canonical, user.is_bot, ip, own_country, event_id
    )


def _timestamp(rng: random.Random, at: int) -> int | str:
    """Epoch ms (half), ISO-8601 in UTC with ``Z``, or ISO-8601 at +02:00: one instant."""
    draw = rng.random()
    if draw < 0.5:
        return at
    moment = EPOCH + timedelta(milliseconds=at)
    if draw < 0.85:
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return moment.astimezone(_PLUS_TWO).isoformat(timespec="milliseconds")


def _variant(rng: random.Random, page: _Page) -> str:
    """A spelling of the page that URL normalisation turns back into ``page.canonical``."""
    kind = rng.randrange(4)
    if kind == 0:
        return f"{page.scheme}://{page.host.upper()}{page.path}"
    if kind == 1:
        return f"{page.canonical}#section-{rng.randrange(1, 5)}"
    if kind == 2 and ":" not in page.host:
        port = 443 if page.scheme == "https" else 80
        return f"{page.scheme}://{page.host}:{port}{page.path}"
    return f"{page.canonical}?utm_source=newsletter&utm_medium=email"


def _make_late(spec: TrafficSpec, rng: random.Random, drafts: list[_Draft]) -> int:
    """Deliver a share of the events one to three hours after their event time."""
    count = min(len(drafts), round(spec.late_share * spec.events))
    for draft in rng.sample(drafts, count):
        assert draft.event is not None  # noqa: S101 - every valid draft carries its event
        draft.delivery_ms = draft.event.timestamp_ms + rng.randrange(LATE_MIN_MS, LATE_MAX_MS)
        draft.message = replace(draft.message, late=True)
    return count


def _duplicates(spec: TrafficSpec, rng: random.Random, drafts: list[_Draft]) -> list[_Draft]:
    """Exact re-deliveries of sent messages, 0.05 to 30 s after the original."""
    count = round(spec.duplicate_share * spec.events)
    originals = rng.choices(drafts, k=count)
    return [
        _Draft(
            original.delivery_ms + rng.randrange(50, 30_000),
            replace(original.message, kind="duplicate"),
            original.event,
        )
        for original in originals
    ]


def _malformed(spec: TrafficSpec, rng: random.Random, drafts: list[_Draft]) -> list[_Draft]:
    """Broken messages, kinds round-robin, each a valid event with exactly one defect."""
    count = round(spec.malformed_share * spec.events)
    out = []
    for index in range(count):
        reason = MALFORMED_KINDS[index % len(MALFORMED_KINDS)]
        template = rng.choice(drafts)
        assert template.body is not None  # noqa: S101 - every valid draft carries its body
        body = dict(template.body)
        body["event_id"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        delivery = spec.start_ms + rng.randrange(spec.span_ms)
        out.append(
            _Draft(
                delivery, Message(template.message.key, _break(reason, body), "malformed", reason)
            )
        )
    return out


def _break(reason: Reason, body: dict[str, Any]) -> bytes:
    """``body`` as a message value with the one defect that ``reason`` names."""
    if reason is Reason.EMPTY:
        return b""
    if reason is Reason.NOT_UTF8:
        user = body["user_id"].encode()
        return _dump(body).replace(user, user + b"\xff\xfe", 1)
    if reason is Reason.NOT_JSON:
        raw = _dump(body)
        return raw[: len(raw) // 2]
    if reason is Reason.NOT_OBJECT:
        return _dump([body])
    if reason is Reason.TOO_LARGE:
        return _dump({**body, "padding": "x" * TOO_LARGE_PAD})
    body.pop("country", None)
    body.setdefault("ip", "192.0.2.1")
    changes: dict[Reason, tuple[str, Any]] = {
        Reason.MISSING_FIELD: ("url", None),
        Reason.BAD_TYPE: ("user_id", 12345),
        Reason.FIELD_TOO_LONG: ("user_id", "u" * 300),
        Reason.BAD_TIMESTAMP: ("timestamp", "yesterday"),
        Reason.TIMESTAMP_OUT_OF_RANGE: ("timestamp", "1999-01-01T00:00:00Z"),
        Reason.BAD_URL: ("url", "ftp://x"),
        Reason.BAD_IP: ("ip", "999.1.1.1"),
        Reason.BAD_COUNTRY: ("country", "XYZ"),
    }
    name, value = changes[reason]
    if value is None:
        del body[name]
    else:
        body[name] = value
    if reason is Reason.BAD_COUNTRY:
        del body["ip"]
    return _dump(body)


def publish(
    traffic: Traffic,
    kafka_settings: KafkaSettings,
    topic: str,
    rate: float | None = None,
    progress: Progress = print,
) -> int:
    """Send every message in order, at ``rate`` messages/s (None: as fast as possible).

    Reports progress about every 10 %; returns the number delivered, or raises DeliveryError.
    """
    total = len(traffic.messages)
    step = max(1, total // 10)
    started = time.monotonic()
    with Sender(kafka_settings, topic) as sender:
        for index, message in enumerate(traffic.messages):
            if rate:
                wait = started + index / rate - time.monotonic()
                if wait > 0:
                    sender.poll(wait)
            sender.send(message.key, message.value)
            if (index + 1) % step == 0 or index + 1 == total:
                elapsed = time.monotonic() - started
                progress(
                    f"sent {index + 1}/{total} messages ({100 * (index + 1) // total}%) "
                    f"in {elapsed:.1f}s, {sender.delivered} acknowledged"
                )
    return sender.delivered


def write_truth(truth: GroundTruth, path: Path | str) -> Path:
    """Write the truth file atomically (temporary file, then rename); returns its path."""
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temporary.write_text(truth.to_json(), encoding="utf-8")
    temporary.replace(target)
    return target
