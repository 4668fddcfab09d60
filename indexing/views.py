"""The view document: its fields and mapping, the index/alias names, the document ids, the levels.

One definition that the batch writer, the speed layer, the templates, the boundary and the
serving layer all import. Batch and speed views share one document shape so one query can read
both; they differ in time grain (batch: hour, speed: minute) and owner (batch: the job; speed:
one Kafka partition, which adds ``partition`` and ``last_offset``). ``users_sketch`` holds a
serialised DataSketches HLL sketch (base64), merged at query time. Pure: no I/O.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from datasketches import hll_sketch, hll_union, tgt_hll_type

from clickstream.model import RULE_CRAWLER_LIST, RULE_TOOLS, RULE_UAP_CORE
from clickstream.times import DAY_MS, HOUR_MS

#: Bot clicks by the rule that flagged them (clickstream.model.BOT_RULES), one field each.
#: Their sum can be less than ``bot_clicks``: bots stored before the rule was recorded count in
#: ``bot_clicks`` only (the API reports them as ``unknown``).
BOT_RULE_FIELDS: Final[dict[str, str]] = {
    RULE_UAP_CORE: "bot_clicks_uap_core",
    RULE_CRAWLER_LIST: "bot_clicks_crawler_list",
    RULE_TOOLS: "bot_clicks_tools",
}

#: Mapping of the fields every view document has.
VIEW_PROPERTIES: Final[dict[str, Any]] = {
    "url": {"type": "keyword"},
    "country": {"type": "keyword"},
    "start": {"type": "date", "format": "strict_date_optional_time||epoch_millis"},
    "clicks": {"type": "long"},
    "bot_clicks": {"type": "long"},
    **{field: {"type": "long"} for field in BOT_RULE_FIELDS.values()},
    "unique_users": {"type": "long"},
    "users_sketch": {"type": "binary"},
    "time_spent_sum_ms": {"type": "long"},
    "time_spent_count": {"type": "long"},
    "avg_time_spent_ms": {"type": "double"},
}
#: What a speed document adds: its owning partition and the last offset folded in, and (like
#: the cube) its level and grain: the speed layer rolls up at minute and hour grain.
SPEED_PROPERTIES: Final[dict[str, Any]] = {
    "partition": {"type": "integer"},
    "last_offset": {"type": "long"},
    "level": {"type": "keyword"},
    "grain": {"type": "keyword"},
}
#: The fields a reader needs to merge views (``avg_time_spent_ms`` is derived, for Kibana).
MEASURE_FIELDS: Final = tuple(name for name in VIEW_PROPERTIES if name != "avg_time_spent_ms")

#: The cube's levels: (url, country), (url, all countries), (all urls, country), (all, all).
LEVEL_URL_COUNTRY: Final = "url_country"
LEVEL_URL: Final = "url"
LEVEL_COUNTRY: Final = "country"
LEVEL_ALL: Final = "all"
#: The group keys each level keeps (the others are "all").
LEVEL_KEYS: Final[dict[str, tuple[str, ...]]] = {
    LEVEL_URL_COUNTRY: ("url", "country"),
    LEVEL_URL: ("url",),
    LEVEL_COUNTRY: ("country",),
    LEVEL_ALL: (),
}
#: The levels above (url, country): at hour grain the cube holds these, the (url, country)
#: hours being the batch views themselves.
COARSE_LEVELS: Final = (LEVEL_URL, LEVEL_COUNTRY, LEVEL_ALL)
LEVELS: Final = (LEVEL_URL_COUNTRY, *COARSE_LEVELS)
GRAIN_MINUTE: Final = "minute"
GRAIN_HOUR: Final = "hour"
#: Six hours (00:00, 06:00, 12:00, 18:00 UTC): a range that cuts days reads at most 5 hours
#: and 3 quarter days on each side instead of up to 23 hours.
GRAIN_QUARTER_DAY: Final = "quarter_day"
GRAIN_DAY: Final = "day"
#: The batch cube's grains, finest first, and the span of each.
CUBE_GRAINS: Final[dict[str, int]] = {
    GRAIN_HOUR: HOUR_MS,
    GRAIN_QUARTER_DAY: 6 * HOUR_MS,
    GRAIN_DAY: DAY_MS,
}

#: Mapping of the batch cube's rollups: the view measures, exact unique users of the bucket, and
#: which level and grain the document is (url and country are absent where the level is "all").
CUBE_MAPPINGS: Final[dict[str, Any]] = {
    "dynamic": "strict",
    "properties": {
        **VIEW_PROPERTIES,
        "level": {"type": "keyword"},
        "grain": {"type": "keyword"},
    },
}


@dataclass(frozen=True, slots=True)
class ViewNames:
    """Index, template and alias names derived from ``elasticsearch.index_prefix``."""

    prefix: str

    @property
    def batch_template(self) -> str:
        """Template of the batch view index."""
        return f"{self.prefix}-batch"

    @property
    def batch_index(self) -> str:
        """The batch view index (one; documents replaced by deterministic id)."""
        return f"{self.prefix}-batch-v1"

    @property
    def speed_template(self) -> str:
        """Template of the time-based speed view indices."""
        return f"{self.prefix}-speed"

    @property
    def speed_pattern(self) -> str:
        """Index pattern of the speed view indices (one per UTC day, dropped when behind)."""
        return f"{self.prefix}-speed-*"

    @property
    def alias(self) -> str:
        """The alias readers (API, Kibana) query: batch before the boundary, speed after."""
        return f"{self.prefix}-views"

    @property
    def sealed_pattern(self) -> str:
        """Index pattern of the sealed speed hours (one per UTC day, see speed/seal.py)."""
        return f"{self.prefix}-sealed-*"


def cube_index(prefix: str) -> str:
    """The batch cube's rollups (not in the views alias: a reader would count them twice)."""
    return f"{prefix}-cube-v1"


def speed_filter(boundary_ms: int | None) -> dict[str, Any]:
    """The alias filter of a speed index: its (url, country, minute) documents (the grain and
    level the batch views continue), at or after the time boundary if there is one. Readers of
    the alias (Kibana) see each click once; the speed layer's rollups stay out of it."""
    clauses: list[dict[str, Any]] = [
        {"term": {"level": LEVEL_URL_COUNTRY}},
        {"term": {"grain": GRAIN_MINUTE}},
    ]
    if boundary_ms is not None:
        clauses.append({"range": {"start": {"gte": boundary_ms, "format": "epoch_millis"}}})
    return {"bool": {"filter": clauses}}


def batch_filter(boundary_ms: int) -> dict[str, Any]:
    """The alias filter of the batch index: hours before the boundary."""
    return {"range": {"start": {"lt": boundary_ms, "format": "epoch_millis"}}}


def boundary_of(batch_alias_filter: Any) -> int | None:
    """The boundary a batch alias filter holds (``range.start.lt``), None if it holds none."""
    try:
        value = batch_alias_filter["range"]["start"]["lt"]
    except (KeyError, TypeError):
        return None
    return int(value)


def _digest(*parts: object, length: int) -> str:
    """The hex sha256 of the parts joined by NUL, cut to ``length``: every id's hash."""
    return hashlib.sha256("\0".join(str(part) for part in parts).encode()).hexdigest()[:length]


def view_id(url: str, country: str, hour_ms: int) -> str:
    """The id of one batch (url, country, hour) view: a re-run replaces it."""
    return _digest(url, country, hour_ms, length=40)


def speed_doc_id(partition: int, key: tuple[str, str, str | None, str | None, int]) -> str:
    """The id of the speed document ``key`` = (level, grain, url, country, start) owned by
    ``partition``: two partitions never write the same document. A (url, country, minute)
    document keeps the id of the releases that had only those."""
    level, grain, url, country, start_ms = key
    if level == LEVEL_URL_COUNTRY and grain == GRAIN_MINUTE:
        return f"p{partition}-{_digest(url, country, start_ms, length=32)}"
    return f"p{partition}-{_digest(level, grain, url or '', country or '', start_ms, length=32)}"


def cube_id(level: str, grain: str, url: str | None, country: str | None, start_ms: int) -> str:
    """The id of one rollup of the cube: a re-run replaces it."""
    return _digest(level, grain, url or "", country or "", start_ms, length=40)


#: How stored sketches are typed: HLL_4 serialises to half the bytes of HLL_8 (2 KiB against
#: 4 KiB at lgK 12, once out of the sparse modes) with the same estimate, and a query that
#: merges thousands of them is bound by those bytes. Unions accept any mix of types.
SKETCH_TYPE: Final = tgt_hll_type.HLL_4


def stored_sketch(raw: bytes) -> bytes:
    """A serialised HLL sketch of any type as the compact ``SKETCH_TYPE`` form the views store
    (Spark's hll_sketch_agg builds HLL_8)."""
    sketch = hll_sketch.deserialize(raw)
    if sketch.tgt_type == SKETCH_TYPE:
        return bytes(raw)
    union = hll_union(sketch.lg_config_k)
    union.update(sketch)
    return bytes(union.get_result(SKETCH_TYPE).serialize_compact())


def bot_rules_of(source: Mapping[str, Any]) -> dict[str, int] | None:
    """A stored document's bot clicks by rule (the rules with any; None when none)."""
    found = {rule: int(source.get(field) or 0) for rule, field in BOT_RULE_FIELDS.items()}
    kept = {rule: count for rule, count in found.items() if count}
    return kept or None


def view_source(
    *,
    url: str | None,
    country: str | None,
    start_ms: int,
    clicks: int,
    bot_clicks: int,
    unique_users: int,
    users_sketch: bytes | None,
    time_spent_sum_ms: int,
    time_spent_count: int,
    bot_clicks_by_rule: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The ``_source`` of a view document (the speed layer adds its partition and offset).
    ``bot_clicks_by_rule``: bot clicks per rule of :data:`BOT_RULE_FIELDS` (absent rules 0)."""
    by_rule = bot_clicks_by_rule or {}
    return {
        "url": url,
        "country": country,
        "start": start_ms,
        "clicks": clicks,
        "bot_clicks": bot_clicks,
        **{field: by_rule.get(rule, 0) for rule, field in BOT_RULE_FIELDS.items()},
        "unique_users": unique_users,
        "users_sketch": base64.b64encode(users_sketch).decode() if users_sketch else None,
        "time_spent_sum_ms": time_spent_sum_ms,
        "time_spent_count": time_spent_count,
        "avg_time_spent_ms": time_spent_sum_ms / time_spent_count if time_spent_count else None,
    }
