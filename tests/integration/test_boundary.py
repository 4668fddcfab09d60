"""The time boundary on the real Elasticsearch: one switch, never both layers, prune by day."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import datasketches
import pytest
from elasticsearch import Elasticsearch

from clickstream.settings import Settings
from clickstream.times import HOUR_MS, MINUTE_MS
from indexing.boundary import move_boundary, prune_speed, speed_indices
from indexing.client import connect
from indexing.templates import create_templates, drop_views, read_boundary
from indexing.views import SPEED_PROPERTIES, VIEW_PROPERTIES, ViewNames, speed_filter

pytestmark = pytest.mark.integration


def ms(text: str) -> int:
    """Epoch ms of a UTC time written without offset."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


H = ms("2026-11-20T10:00:00")


def view(url: str, country: str, start: int, clicks: int, users: list[str]) -> dict[str, Any]:
    """A view document (both layers' shape) with a real sketch of ``users``."""
    sketch = datasketches.hll_sketch(12)
    for user in users:
        sketch.update(user)
    return {
        "url": url,
        "country": country,
        "start": start,
        "clicks": clicks,
        "bot_clicks": 0,
        "unique_users": len(set(users)),
        "users_sketch": base64.b64encode(sketch.serialize_compact()).decode(),
        "time_spent_sum_ms": 0,
        "time_spent_count": 0,
        "avg_time_spent_ms": None,
    }


def speed_index(prefix: str, start: int) -> str:
    """The daily speed index of a minute."""
    return f"{prefix}-speed-{datetime.fromtimestamp(start / 1000, tz=UTC):%Y.%m.%d}"


def put(client: Elasticsearch, prefix: str, doc: dict[str, Any], layer: str) -> None:
    """Index one view into the batch index or its day's speed index."""
    if layer == "batch":
        client.index(index=ViewNames(prefix).batch_index, document=doc)
    else:
        client.index(
            index=speed_index(prefix, doc["start"]),
            document={
                **doc,
                "partition": 0,
                "last_offset": 1,
                "level": "url_country",
                "grain": "minute",
            },
        )


def put_rollup(client: Elasticsearch, prefix: str, start: int, clicks: int) -> None:
    """A speed layer (all, all) hour rollup: never visible through the alias, which shows the
    (url, country, minute) views only (a reader would count its clicks twice)."""
    doc = view("x", "x", start, clicks, ["r"])
    del doc["url"], doc["country"]
    rollup = {**doc, "partition": 0, "last_offset": 1, "level": "all", "grain": "hour"}
    client.index(index=speed_index(prefix, start), document=rollup)


@pytest.fixture
def es(settings: Settings) -> Iterator[Elasticsearch]:
    """A client with the test prefix's templates; everything under the prefix dropped after."""
    client = connect(settings.elasticsearch)
    try:
        create_templates(client, settings.elasticsearch)
        yield client
    finally:
        drop_views(client, settings.elasticsearch)
        client.close()


def alias_clicks(client: Elasticsearch, prefix: str, t0: int, t1: int) -> dict[str, int]:
    """Clicks per index seen through the alias for ``[t0, t1)``."""
    response = client.search(
        index=ViewNames(prefix).alias,
        size=0,
        query={"range": {"start": {"gte": t0, "lt": t1, "format": "epoch_millis"}}},
        aggs={
            "by_index": {"terms": {"field": "_index"}, "aggs": {"c": {"sum": {"field": "clicks"}}}}
        },
    )
    buckets = response["aggregations"]["by_index"]["buckets"]
    return {b["key"]: int(b["c"]["value"]) for b in buckets}


def test_a_reader_never_sees_both_layers_for_the_same_time(
    es: Elasticsearch, settings: Settings
) -> None:
    """Batch and speed hold the same hour; through the alias it counts once, before, during
    and after the move (a reader polls while the boundary switches)."""
    prefix = settings.elasticsearch.index_prefix
    names = ViewNames(prefix)
    for minute in range(10):
        put(
            es,
            prefix,
            view("https://a.example/", "DE", H + minute * MINUTE_MS, 1, [f"u{minute}"]),
            "speed",
        )
    put(es, prefix, view("https://b.example/", "FR", H + 3 * MINUTE_MS, 5, ["v1", "v2"]), "speed")
    put(es, prefix, view("https://a.example/", "DE", H + HOUR_MS + MINUTE_MS, 2, ["u1"]), "speed")
    put(es, prefix, view("https://a.example/", "DE", H, 10, [f"u{m}" for m in range(10)]), "batch")
    put(es, prefix, view("https://b.example/", "FR", H, 5, ["v1", "v2"]), "batch")
    put_rollup(es, prefix, H, 15)
    put_rollup(es, prefix, H + HOUR_MS, 2)
    es.indices.refresh(index=f"{prefix}-*")

    before = alias_clicks(es, prefix, H, H + 2 * HOUR_MS)
    assert before == {speed_index(prefix, H): 17}
    assert read_boundary(es, prefix) is None

    seen: list[int] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            seen.append(sum(alias_clicks(es, prefix, H, H + 2 * HOUR_MS).values()))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        assert move_boundary(es, settings.elasticsearch, H + HOUR_MS) == H + HOUR_MS
    finally:
        stop.set()
        thread.join()
    after = alias_clicks(es, prefix, H, H + 2 * HOUR_MS)
    assert after == {names.batch_index: 15, speed_index(prefix, H): 2}
    assert alias_clicks(es, prefix, H, H + HOUR_MS) == {names.batch_index: 15}
    assert seen
    assert set(seen) == {17}, seen
    assert read_boundary(es, prefix) == H + HOUR_MS


def test_a_speed_index_created_after_the_move_gets_the_filter(
    es: Elasticsearch, settings: Settings
) -> None:
    """The template carries the boundary: a new day's index shows only minutes after it."""
    prefix = settings.elasticsearch.index_prefix
    boundary = ms("2026-11-22T00:00:00")
    move_boundary(es, settings.elasticsearch, boundary)
    behind = view("https://a.example/", "DE", boundary - HOUR_MS, 3, ["u"])
    ahead = view("https://a.example/", "DE", boundary + 5 * MINUTE_MS, 4, ["u"])
    put(es, prefix, behind, "speed")
    put(es, prefix, ahead, "speed")
    es.indices.refresh(index=f"{prefix}-*")

    assert alias_clicks(es, prefix, boundary - 2 * HOUR_MS, boundary + HOUR_MS) == {
        speed_index(prefix, ahead["start"]): 4
    }
    aliases = es.indices.get_alias(name=ViewNames(prefix).alias)
    for index in (speed_index(prefix, behind["start"]), speed_index(prefix, ahead["start"])):
        assert aliases[index]["aliases"][ViewNames(prefix).alias]["filter"] == speed_filter(
            boundary
        )


def test_schema_create_keeps_the_boundary_in_the_template(
    es: Elasticsearch, settings: Settings
) -> None:
    """Before any run the speed alias shows every minute view; re-running schema create after
    a move keeps the boundary in the filter (it reads the boundary in force)."""
    names = ViewNames(settings.elasticsearch.index_prefix)

    def template_alias() -> Any:
        found = es.indices.get_index_template(name=names.speed_template)
        return found["index_templates"][0]["index_template"]["template"]["aliases"]

    assert template_alias() == {names.alias: {"filter": speed_filter(None)}}
    move_boundary(es, settings.elasticsearch, H)
    create_templates(es, settings.elasticsearch)
    assert template_alias() == {names.alias: {"filter": speed_filter(H)}}


def test_schema_create_upgrades_a_speed_index_of_an_older_release(
    es: Elasticsearch, settings: Settings
) -> None:
    """A speed index made before the speed rollups has a strict mapping without level and
    grain, which would refuse every new document: schema create adds them."""
    prefix = settings.elasticsearch.index_prefix
    old = speed_index(prefix, H)
    es.indices.delete_index_template(name=ViewNames(prefix).speed_template)
    legacy = {k: v for k, v in SPEED_PROPERTIES.items() if k not in ("level", "grain")}
    es.indices.create(
        index=old, mappings={"dynamic": "strict", "properties": {**VIEW_PROPERTIES, **legacy}}
    )
    create_templates(es, settings.elasticsearch)
    properties = es.indices.get_mapping(index=old)[old]["mappings"]["properties"]
    assert properties["level"] == {"type": "keyword"}
    assert properties["grain"] == {"type": "keyword"}
    put_rollup(es, prefix, H, 1)  # accepted now


def test_the_boundary_never_moves_back(es: Elasticsearch, settings: Settings) -> None:
    """Asking for an earlier boundary leaves the one in force."""
    move_boundary(es, settings.elasticsearch, H + HOUR_MS)
    assert move_boundary(es, settings.elasticsearch, H) == H + HOUR_MS
    assert read_boundary(es, settings.elasticsearch.index_prefix) == H + HOUR_MS


def test_prune_drops_whole_days_behind_the_boundary(es: Elasticsearch, settings: Settings) -> None:
    """keep 1 day: days ending a day or more before the boundary are deleted; keep 1 hour: the
    hourly minute indices ending an hour or more before it; the rest stay."""
    prefix = settings.elasticsearch.index_prefix
    for day in ("18", "19", "20", "21"):
        put(
            es,
            prefix,
            view("https://a.example/", "DE", ms(f"2026-11-{day}T12:00:00"), 1, ["u"]),
            "speed",
        )
    for hour in ("07", "09"):  # minute rollups live in hourly indices
        minute = view("https://a.example/", "DE", ms(f"2026-11-21T{hour}:30:00"), 1, ["u"])
        es.index(
            index=f"{prefix}-speed-2026.11.21.{hour}",
            document={**minute, "partition": 0, "last_offset": 1, "level": "url_country"}
            | {"grain": "minute"},
        )
    for day in ("19", "20"):  # sealed hours (speed/seal.py) go with their day
        es.index(index=f"{prefix}-sealed-2026.11.{day}", document={"level": "all"})
    boundary = ms("2026-11-21T10:00:00")
    move_boundary(es, settings.elasticsearch, boundary)

    # Days a day behind go; minute hours one hour behind go (07:00-08:00), 09:00 stays.
    dropped = prune_speed(es, settings.elasticsearch, boundary, keep_days=1, minute_keep_hours=1)
    assert dropped == [
        f"{prefix}-sealed-2026.11.19",
        f"{prefix}-speed-2026.11.18",
        f"{prefix}-speed-2026.11.19",
        f"{prefix}-speed-2026.11.21.07",
    ]
    assert speed_indices(es, prefix) == [
        f"{prefix}-sealed-2026.11.20",
        f"{prefix}-speed-2026.11.20",
        f"{prefix}-speed-2026.11.21",
        f"{prefix}-speed-2026.11.21.09",
    ]
    assert prune_speed(es, settings.elasticsearch, boundary, keep_days=1) == []
