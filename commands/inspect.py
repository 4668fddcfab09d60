"""``clickstream inspect``: what landed in the master dataset and the dead-letter topic."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from elasticsearch import Elasticsearch

from clickstream.settings import Settings
from hbase_schema import columns
from indexing.client import connect as es_connect
from indexing.views import ViewNames
from ingest.dlq import count_dead_letters
from storage.scan import scan_time_range


@dataclass(frozen=True, slots=True)
class Landed:
    """Rows of an event-time range, by country and bot flag, and dead letters by reason."""

    rows: int
    bot_rows: int
    by_country: Counter[str]
    by_url: Counter[str]
    dead_letters: Counter[str]
    #: (url, country) -> clicks in the batch views of the range, top first.
    batch_top: list[tuple[str, str, int]]


def inspect(settings: Settings, t0_ms: int, t1_ms: int) -> Landed:
    """Read the range with one scan per salt bucket (only the columns counted here)."""
    wanted = [columns.COUNTRY, columns.URL_NORMALIZED, columns.IS_BOT]
    by_country: Counter[str] = Counter()
    by_url: Counter[str] = Counter()
    rows = bots = 0
    for _, cells in scan_time_range(
        settings.hbase, t0_ms, t1_ms, columns=wanted, caching=settings.batch.scan_caching
    ):
        rows += 1
        if cells.get(columns.IS_BOT) == b"1":
            bots += 1
            continue
        by_country[cells.get(columns.COUNTRY, b"?").decode()] += 1
        by_url[cells.get(columns.URL_NORMALIZED, b"?").decode()] += 1
    client = es_connect(settings.elasticsearch)
    try:
        top = batch_top(
            client, ViewNames(settings.elasticsearch.index_prefix).batch_index, t0_ms, t1_ms
        )
    finally:
        client.close()
    return Landed(rows, bots, by_country, by_url, count_dead_letters(settings.kafka), top)


def batch_top(
    client: Elasticsearch, index: str, t0_ms: int, t1_ms: int, top: int = 10
) -> list[tuple[str, str, int]]:
    """Clicks per (url, country) summed over the batch views in range, highest first."""
    if not client.indices.exists(index=index):
        return []
    totals: Counter[tuple[str, str]] = Counter()
    after = None
    while True:
        composite: dict[str, object] = {
            "size": 1000,
            "sources": [
                {"url": {"terms": {"field": "url"}}},
                {"country": {"terms": {"field": "country"}}},
            ],
        }
        if after is not None:
            composite["after"] = after
        result = client.search(
            index=index,
            size=0,
            query={"range": {"start": {"gte": t0_ms, "lt": t1_ms}}},
            aggs={
                "groups": {"composite": composite, "aggs": {"clicks": {"sum": {"field": "clicks"}}}}
            },
        )
        groups = result["aggregations"]["groups"]
        for bucket in groups["buckets"]:
            totals[(bucket["key"]["url"], bucket["key"]["country"])] += int(
                bucket["clicks"]["value"]
            )
        after = groups.get("after_key")
        if after is None or not groups["buckets"]:
            break
    return [(url, country, n) for (url, country), n in totals.most_common(top)]


def render(landed: Landed, table: str, dlq_topic: str, top: int = 5) -> str:
    """A short human-readable report."""
    lines = [f"hbase {table}: {landed.rows} rows in range ({landed.bot_rows} from bots)"]
    lines += [f"  {n:>8}  {country}" for country, n in landed.by_country.most_common(top)]
    lines.append("  top URLs (non-bot clicks):")
    lines += [f"  {n:>8}  {url}" for url, n in landed.by_url.most_common(top)]
    total = sum(landed.dead_letters.values())
    lines.append(f"dead letters in {dlq_topic}: {total}")
    lines += [f"  {n:>8}  {reason}" for reason, n in sorted(landed.dead_letters.items())]
    if landed.batch_top:
        lines.append("batch views in Elasticsearch, top URL x country by clicks:")
        lines += [f"  {n:>8}  {country}  {url}" for url, country, n in landed.batch_top]
    else:
        lines.append("batch views in Elasticsearch: none in range yet (run `clickstream batch`)")
    return "\n".join(lines)
