"""An enriched click as the cells of its master-dataset row, and back.

Pure: the ingest daemon writes what ``to_row`` returns; the batch job reads with ``from_row``.
Absent optional values are simply not written (HBase stores no nulls); so is the bot rule of a
human. Rows written by older releases decode too: a missing optional cell reads as None.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from clickstream.model import Agent, ClickEvent, EnrichedClick, Geo, Source
from hbase_schema import columns as c
from hbase_schema.rowkey import encode_row_key


def _text(value: object) -> bytes:
    return str(value).encode()


def _flag(value: bool) -> bytes:
    return b"1" if value else b"0"


def to_row(
    click: EnrichedClick, buckets: int, source: Source | None = None
) -> tuple[bytes, dict[bytes, bytes]]:
    """The row key and cells of one click (the key is a pure function of the event)."""
    event, geo, agent = click.event, click.geo, click.agent
    cells: dict[bytes, bytes] = {
        c.EVENT_ID: event.event_id.encode(),
        c.EVENT_ID_GENERATED: _flag(event.event_id_generated),
        c.USER_ID: event.user_id.encode(),
        c.TIMESTAMP_MS: _text(event.timestamp_ms),
        c.URL: event.url.encode(),
        c.URL_NORMALIZED: click.url_normalized.encode(),
        c.COUNTRY: geo.country.encode(),
        c.BROWSER_FAMILY: agent.browser_family.encode(),
        c.OS_FAMILY: agent.os_family.encode(),
        c.DEVICE_FAMILY: agent.device_family.encode(),
        c.IS_BOT: _flag(agent.is_bot),
    }
    optional: dict[bytes, object | None] = {
        c.REFERRER: event.referrer,
        c.SESSION_ID: event.session_id,
        c.IP: click.ip_anonymized,
        c.USER_AGENT: event.user_agent,
        c.CITY: geo.city,
        c.REGION: geo.region,
        c.LATITUDE: geo.latitude,
        c.LONGITUDE: geo.longitude,
        c.BROWSER_MAJOR: agent.browser_major,
        c.BOT_RULE: agent.bot_rule if agent.is_bot else None,
    }
    cells.update({col: _text(value) for col, value in optional.items() if value is not None})
    if source is not None:
        # Where the row came from, for tracing a row back to its Kafka message.
        cells[c.SOURCE] = f"{source.topic}:{source.partition}:{source.offset}".encode()
    key = encode_row_key(event.user_id, event.timestamp_ms, event.event_id, buckets)
    return key, cells


@dataclass(frozen=True, slots=True)
class StoredClick:
    """A click as read back from HBase."""

    click: EnrichedClick
    source: str | None


def from_row(cells: Mapping[bytes, bytes]) -> StoredClick:
    """The click stored in ``cells`` (KeyError if a required cell is missing)."""

    def opt(col: bytes) -> str | None:
        value = cells.get(col)
        return None if value is None else value.decode()

    def opt_float(col: bytes) -> float | None:
        value = cells.get(col)
        return None if value is None else float(value)

    event = ClickEvent(
        event_id=cells[c.EVENT_ID].decode(),
        user_id=cells[c.USER_ID].decode(),
        timestamp_ms=int(cells[c.TIMESTAMP_MS]),
        url=cells[c.URL].decode(),
        ip=opt(c.IP),
        user_agent=opt(c.USER_AGENT),
        referrer=opt(c.REFERRER),
        session_id=opt(c.SESSION_ID),
        event_id_generated=cells.get(c.EVENT_ID_GENERATED) == b"1",
    )
    geo = Geo(
        country=cells[c.COUNTRY].decode(),
        city=opt(c.CITY),
        region=opt(c.REGION),
        latitude=opt_float(c.LATITUDE),
        longitude=opt_float(c.LONGITUDE),
    )
    is_bot = cells.get(c.IS_BOT) == b"1"
    agent = Agent(
        browser_family=cells[c.BROWSER_FAMILY].decode(),
        browser_major=opt(c.BROWSER_MAJOR),
        os_family=cells[c.OS_FAMILY].decode(),
        device_family=cells[c.DEVICE_FAMILY].decode(),
        is_bot=is_bot,
        # None for a human, and for a bot in a row written before the rule was stored.
        bot_rule=opt(c.BOT_RULE) if is_bot else None,
    )
    click = EnrichedClick(
        event=event,
        url_normalized=cells[c.URL_NORMALIZED].decode(),
        geo=geo,
        agent=agent,
        ip_anonymized=opt(c.IP),
    )
    return StoredClick(click, opt(c.SOURCE))
