"""Merging view documents into answers (pure: no I/O).

Additive measures (clicks, bot clicks, time-spent sum and count) are summed. Unique users are
never summed: they come from the union of the documents' HLL sketches (an estimate, with its
bounds), or, where a stored exact count answers exactly the group's selection, from that count.
A stored count answers a selection only when the range is one whole UTC hour or one whole UTC
day behind the boundary: then the group's documents are that range's batch views, and the
selection is one (url, country) view (an hour) or one rollup of the batch cube at a level
(url, country), (url, all countries), (all urls, country) or (all urls, all countries).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import datasketches

from clickstream.times import DAY_MS, HOUR_MS
from indexing.views import (
    GRAIN_DAY,
    GRAIN_HOUR,
    LEVEL_ALL,
    LEVEL_COUNTRY,
    LEVEL_URL,
    LEVEL_URL_COUNTRY,
    cube_id,
)
from serving.errors import ServingError
from serving.params import MetricsQuery

#: Bounds are given at two standard deviations: about 95.4 % confidence.
STD_DEVS: Final = 2
CONFIDENCE: Final = 0.9545

Layer = Literal["batch", "speed"]
GroupKey = tuple[str | None, str | None]


@dataclass(frozen=True, slots=True)
class ViewDoc:
    """One view document as the serving layer reads it (batch: an hour; speed: a minute)."""

    layer: Layer
    url: str
    country: str
    start_ms: int
    clicks: int
    bot_clicks: int
    unique_users: int
    sketch: bytes | None
    time_spent_sum_ms: int
    time_spent_count: int


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


@dataclass(frozen=True, slots=True)
class Group:
    """One group of the answer: its key (None where not grouped) and its measures."""

    url: str | None
    country: str | None
    metrics: Metrics


@dataclass(frozen=True, slots=True)
class ExactSource:
    """Where a group's exact unique users are stored: one view, or one rollup of the cube
    (neither: the selection has no document in a completed range, so exactly no user)."""

    view: ViewDoc | None = None
    rollup_id: str | None = None


@dataclass(frozen=True, slots=True)
class Selection:
    """The documents of one group and where its exact unique users live, if anywhere."""

    url: str | None
    country: str | None
    docs: tuple[ViewDoc, ...]
    exact: ExactSource | None


def group_key(doc: ViewDoc, group_by: Sequence[str]) -> GroupKey:
    """The (url, country) key of a document's group; None for a field not grouped by."""
    return (
        doc.url if "url" in group_by else None,
        doc.country if "country" in group_by else None,
    )


def exact_grain(query: MetricsQuery, boundary_ms: int | None) -> str | None:
    """The grain whose one whole bucket the range is, wholly behind the boundary (an hour or a
    UTC day), or None: only then can a stored exact count answer it."""
    if boundary_ms is None or query.to_ms > boundary_ms:
        return None
    for grain, size in ((GRAIN_HOUR, HOUR_MS), (GRAIN_DAY, DAY_MS)):
        if query.from_ms % size == 0 and query.to_ms - query.from_ms == size:
            return grain
    return None


def exact_source(
    query: MetricsQuery, boundary_ms: int | None, key: GroupKey, docs: Sequence[ViewDoc]
) -> ExactSource | None:
    """The stored exact count that answers this group's selection, or None (estimate)."""
    grain = exact_grain(query, boundary_ms)
    if grain is None:
        return None
    if not docs:
        return ExactSource()
    if any(doc.layer != "batch" or not query.from_ms <= doc.start_ms < query.to_ms for doc in docs):
        return None
    return _stored_level(query, key, docs, grain)


def _stored_level(
    query: MetricsQuery, key: GroupKey, docs: Sequence[ViewDoc], grain: str
) -> ExactSource | None:
    every_url = query.url_prefix is None and key[0] is None
    every_country = query.country is None and key[1] is None
    urls = {doc.url for doc in docs}
    countries = {doc.country for doc in docs}
    level: tuple[str, str | None, str | None] | None = None
    if every_url and every_country:
        level = (LEVEL_ALL, None, None)
    elif every_url and len(countries) == 1:
        level = (LEVEL_COUNTRY, None, next(iter(countries)))
    elif every_country and len(urls) == 1:
        level = (LEVEL_URL, next(iter(urls)), None)
    elif not every_url and not every_country and len(urls) == len(countries) == 1:
        if grain == GRAIN_HOUR:
            return ExactSource(view=docs[0])
        level = (LEVEL_URL_COUNTRY, next(iter(urls)), next(iter(countries)))
    # Otherwise a url prefix matching several urls: no stored level counts that selection.
    if level is None:
        return None
    name, url, country = level
    return ExactSource(rollup_id=cube_id(name, grain, url, country, query.from_ms))


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
        grouped.items(),
        key=lambda item: (-sum(d.clicks for d in item[1]), item[0][0] or "", item[0][1] or ""),
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


def needed_rollups(selections: Iterable[Selection]) -> list[str]:
    """Ids of the cube's rollups whose exact counts the selections need."""
    ids = {s.exact.rollup_id for s in selections if s.exact and s.exact.rollup_id}
    return sorted(ids)


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


def unique_users(selection: Selection, stored: Mapping[str, int], lg_k: int) -> UniqueUsers:
    """The selection's unique users: the stored exact count if it has one, else the estimate."""
    source = selection.exact
    if source is not None and source.view is None and source.rollup_id is None:
        return UniqueUsers(0, True, 0, 0, 1.0, "empty")
    if source is not None and source.view is not None:
        value = source.view.unique_users
        return UniqueUsers(value, True, value, value, 1.0, "view")
    if source is not None and source.rollup_id is not None:
        found = stored.get(source.rollup_id)
        if found is None and not any(doc.clicks for doc in selection.docs):
            found = 0  # only bot clicks: no human user
        if found is not None:
            return UniqueUsers(found, True, found, found, 1.0, "uniques")
        # Missing (a range processed before the cube existed): estimate instead.
    return sketch_estimate((d.sketch for d in selection.docs if d.sketch), lg_k)


def metrics(selection: Selection, stored: Mapping[str, int], lg_k: int) -> Metrics:
    """The merged measures of one selection."""
    docs = selection.docs
    clicks = sum(d.clicks for d in docs)
    spent_sum = sum(d.time_spent_sum_ms for d in docs)
    spent_count = sum(d.time_spent_count for d in docs)
    return Metrics(
        clicks=clicks,
        bot_clicks=sum(d.bot_clicks for d in docs),
        time_spent_sum_ms=spent_sum,
        time_spent_count=spent_count,
        clicks_without_time_spent=clicks - spent_count,
        avg_time_spent_ms=spent_sum / spent_count if spent_count else None,
        unique_users=unique_users(selection, stored, lg_k),
        documents=len(docs),
    )
