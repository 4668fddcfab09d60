"""Merging view documents into answers (pure: no I/O).

Additive measures (clicks, bot clicks, time-spent sum and count) are summed. Unique users are
never summed: they come from the union of the documents' HLL sketches (an estimate, with its
bounds), or, where a stored exact count answers exactly the group's selection, from that count.
A stored count answers a selection only when the range is one whole UTC hour, quarter day (6
hours from midnight) or day behind the boundary: then the group's documents are that range's
batch views, and the selection is one (url, country) view (an hour) or one rollup of the batch
cube at a level (url, country), (url, all countries), (all urls, country) or (all urls, all
countries).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

import datasketches

from clickstream.model import BOT_RULES
from indexing.views import CUBE_GRAINS
from serving.errors import ServingError
from serving.params import MetricsQuery

#: Bounds are given at two standard deviations: about 95.4 % confidence.
STD_DEVS: Final = 2
CONFIDENCE: Final = 0.9545
#: The bot clicks whose rule was not stored (ingested before it was), in ``bot_clicks_by_rule``.
UNKNOWN_RULE: Final = "unknown"

#: batch: a (url, country, hour) view; cube: a rollup of the batch cube; speed: a minute view.
Layer = Literal["batch", "cube", "speed"]
GroupKey = tuple[str | None, str | None]


@dataclass(frozen=True, slots=True)
class ViewDoc:
    """One document as the serving layer reads it: a view (batch: an hour; speed: a minute) or a
    rollup of the cube (an hour or a day; url or country None where the level counts all)."""

    layer: Layer
    url: str | None
    country: str | None
    start_ms: int
    span_ms: int
    clicks: int
    bot_clicks: int
    unique_users: int
    sketch: bytes | None
    time_spent_sum_ms: int
    time_spent_count: int
    #: Bot clicks by the rule that flagged them (clickstream.model.BOT_RULES; None: none).
    bot_rules: Mapping[str, int] | None = None


@dataclass(frozen=True, slots=True)
class UniqueUsers:
    """Distinct users of a group: exact (bounds equal the value) or an HLL estimate."""

    value: int
    exact: bool
    lower_bound: int
    upper_bound: int
    confidence: float
    source: Literal["view", "uniques", "sketch", "empty"]


@dataclass(frozen=True, slots=True)
class Metrics:
    """The merged measures of one group (or of the whole selection)."""

    clicks: int
    bot_clicks: int
    time_spent_sum_ms: int
    time_spent_count: int
    clicks_without_time_spent: int
    avg_time_spent_ms: float | None
    unique_users: UniqueUsers
    documents: int
    #: Bot clicks by rule: every rule of clickstream.model.BOT_RULES, and ``unknown`` for bots
    #: stored before the rule was recorded; they add up to ``bot_clicks``.
    bot_clicks_by_rule: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Group:
    """One group of the answer: its key (None where not grouped) and its measures."""

    url: str | None
    country: str | None
    metrics: Metrics


@dataclass(frozen=True, slots=True)
class ExactSource:
    """Where a group's exact unique users are stored: one batch view or rollup of the cube
    whose bucket is the whole range (none: no document in a completed range, so no user)."""

    view: ViewDoc | None = None


@dataclass(frozen=True, slots=True)
class Selection:
    """The documents of one group and where its exact unique users live, if anywhere."""

    url: str | None
    country: str | None
    docs: tuple[ViewDoc, ...]
    exact: ExactSource | None


def rank_order(key: GroupKey, clicks: int) -> tuple[int, str, str]:
    """How groups are ranked: most clicks first, then by key."""
    return (-clicks, key[0] or "", key[1] or "")


def group_key(doc: ViewDoc, group_by: Sequence[str]) -> GroupKey:
    """The (url, country) key of a document's group; None for a field not grouped by."""
    return (
        doc.url if "url" in group_by else None,
        doc.country if "country" in group_by else None,
    )


def exact_grain(query: MetricsQuery, boundary_ms: int | None) -> str | None:
    """The grain whose one whole bucket the range is, wholly behind the boundary (an hour, a
    quarter day or a UTC day), or None: only then can a stored exact count answer it."""
    if boundary_ms is None or query.to_ms > boundary_ms:
        return None
    for grain, size in CUBE_GRAINS.items():
        if query.from_ms % size == 0 and query.to_ms - query.from_ms == size:
            return grain
    return None


def exact_source(
    query: MetricsQuery, boundary_ms: int | None, key: GroupKey, docs: Sequence[ViewDoc]
) -> ExactSource | None:
    """The stored exact count that answers this group's selection, or None (estimate).

    The planner reads the level that keeps exactly the keys the query filters or groups by, so
    a group made of one stored document whose bucket is the whole range is counted by it. More
    than one (a url prefix matching several urls) or a speed view: an estimate.
    """
    if exact_grain(query, boundary_ms) is None:
        return None
    if not docs:
        return ExactSource()
    if len(docs) != 1:
        return None
    (doc,) = docs
    stored = doc.layer in ("batch", "cube")
    if stored and doc.start_ms == query.from_ms and doc.span_ms == query.to_ms - query.from_ms:
        return ExactSource(view=doc)
    return None


def select(
    query: MetricsQuery, boundary_ms: int | None, docs: Iterable[ViewDoc]
) -> tuple[Selection, list[Selection], int]:
    """The total, the groups (most clicks first, then by key; cut to ``top``), and how many
    groups there were before the cut."""
    everything = tuple(docs)
    grouped: dict[GroupKey, list[ViewDoc]] = {}
    if query.group_by:
        for doc in everything:
            grouped.setdefault(group_key(doc, query.group_by), []).append(doc)
    ranked = sorted(
        grouped.items(), key=lambda item: rank_order(item[0], sum(d.clicks for d in item[1]))
    )
    kept = ranked if query.top is None else ranked[: query.top]
    total = Selection(
        None, None, everything, exact_source(query, boundary_ms, (None, None), everything)
    )
    groups = [
        Selection(key[0], key[1], tuple(group), exact_source(query, boundary_ms, key, group))
        for key, group in kept
    ]
    return total, groups, len(grouped)


def sketch_estimate(sketches: Iterable[bytes], lg_k: int) -> UniqueUsers:
    """Distinct users of the union of HLL sketches: estimate and bounds at two std devs."""
    union = datasketches.hll_union(lg_k)
    merged = 0
    for raw in sketches:
        try:
            union.update(datasketches.hll_sketch.deserialize(raw))
        except (RuntimeError, ValueError) as exc:
            raise ServingError(f"a view document holds a corrupt users_sketch: {exc}") from exc
        merged += 1
    if merged == 0:
        return UniqueUsers(0, False, 0, 0, CONFIDENCE, "empty")
    result = union.get_result()
    value = round(result.get_estimate())
    # A count is a whole number: the whole numbers inside [lower, upper] are [ceil, floor].
    lower = min(math.ceil(result.get_lower_bound(STD_DEVS)), value)
    upper = max(math.floor(result.get_upper_bound(STD_DEVS)), value)
    return UniqueUsers(value, False, lower, upper, CONFIDENCE, "sketch")


def unique_users(selection: Selection, lg_k: int) -> UniqueUsers:
    """The selection's unique users: the stored exact count if it has one, else the estimate."""
    source = selection.exact
    if source is not None and source.view is None:
        return UniqueUsers(0, True, 0, 0, 1.0, "empty")
    if source is not None and source.view is not None:
        value = source.view.unique_users
        origin: Literal["view", "uniques"] = "view" if source.view.layer == "batch" else "uniques"
        return UniqueUsers(value, True, value, value, 1.0, origin)
    return sketch_estimate((d.sketch for d in selection.docs if d.sketch), lg_k)


def metrics(selection: Selection, lg_k: int) -> Metrics:
    """The merged measures of one selection."""
    docs = selection.docs
    clicks = sum(d.clicks for d in docs)
    spent_sum = sum(d.time_spent_sum_ms for d in docs)
    spent_count = sum(d.time_spent_count for d in docs)
    bot_clicks = sum(d.bot_clicks for d in docs)
    return Metrics(
        clicks=clicks,
        bot_clicks=bot_clicks,
        time_spent_sum_ms=spent_sum,
        time_spent_count=spent_count,
        clicks_without_time_spent=clicks - spent_count,
        avg_time_spent_ms=spent_sum / spent_count if spent_count else None,
        unique_users=unique_users(selection, lg_k),
        documents=len(docs),
        bot_clicks_by_rule=by_rule(docs, bot_clicks),
    )


def by_rule(docs: Iterable[ViewDoc], bot_clicks: int) -> dict[str, int]:
    """Bot clicks per rule of ``docs``, with ``unknown`` the bots no rule was stored for."""
    counts = dict.fromkeys(BOT_RULES, 0)
    for doc in docs:
        for rule, count in (doc.bot_rules or {}).items():
            counts[rule] = counts.get(rule, 0) + count
    counts[UNKNOWN_RULE] = bot_clicks - sum(counts.values())
    return counts
