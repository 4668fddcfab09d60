"""Enrichment: a valid ClickEvent becomes an EnrichedClick (geo, user agent, URL, anonymised IP).

The parts live in :mod:`ingest.geo`, :mod:`ingest.agent` and :mod:`ingest.urls`; this module
composes them. The IP is anonymised *after* the geo lookup, so the database sees the full
address and the master dataset never stores it (when ``ingest.anonymize_ip`` is on).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from pathlib import Path

from clickstream.closing import Closeable
from clickstream.model import ClickEvent, EnrichedClick, Geo
from clickstream.settings import IngestSettings
from ingest.agent import AgentParser
from ingest.geo import UNKNOWN_COUNTRY, EnrichError, GeoLocator, geo_from_record
from ingest.urls import normalize_url

__all__ = [
    "UNKNOWN_COUNTRY",
    "AgentParser",
    "EnrichError",
    "Enricher",
    "GeoLocator",
    "anonymize_ip",
    "geo_from_record",
    "normalize_url",
]

_V4_MASK = (1 << 32) - (1 << 8)  # keep the /24
_V6_MASK = (1 << 128) - (1 << 80)  # keep the /48


def anonymize_ip(ip: str) -> str:
    """``ip`` truncated to its network: IPv4 to /24, IPv6 to /48 (e.g. ``203.0.113.0``).

    An IPv4-mapped IPv6 address (``::ffff:203.0.113.77``) is an IPv4 client: it becomes the
    IPv4 /24. Raises ValueError for a string that is not an IP (the validator rejects those).
    """
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if isinstance(address, ipaddress.IPv4Address):
        return str(ipaddress.IPv4Address(int(address) & _V4_MASK))
    # Integer arithmetic drops any %zone suffix along with the host bits.
    return str(ipaddress.IPv6Address(int(address) & _V6_MASK))


class Enricher(Closeable):
    """Turns validated events into enriched clicks: one per ingest process, closed at shutdown."""

    def __init__(
        self,
        locator: GeoLocator,
        agent_parser: AgentParser,
        query_allowlist: frozenset[str] = frozenset(),
        anonymize: bool = True,
    ) -> None:
        self.locator = locator
        self.agent_parser = agent_parser
        self.query_allowlist = query_allowlist
        self.anonymize = anonymize

    @classmethod
    def from_settings(cls, settings: IngestSettings, geo_paths: Sequence[Path]) -> Enricher:
        """An enricher configured by ``settings``, looking IPs up in ``geo_paths``.

        ``geo_paths`` are .mmdb files or directories of them: the entry point resolves
        ``ingest.geoip_database`` (or the stack's DB-IP download) into them. Raises EnrichError
        naming a file that cannot be opened.
        """
        return cls(
            GeoLocator(geo_paths),
            AgentParser(settings.ua_cache_size),
            frozenset(settings.url_query_allowlist),
            settings.anonymize_ip,
        )

    def enrich(self, event: ClickEvent) -> EnrichedClick:
        """The enriched form of ``event`` (pure but for the geo lookup and the UA cache)."""
        ip = event.ip
        return EnrichedClick(
            event=event,
            url_normalized=normalize_url(event.url, self.query_allowlist),
            geo=self._geo(event),
            agent=self.agent_parser.parse(event.user_agent),
            ip_anonymized=anonymize_ip(ip) if ip and self.anonymize else ip,
        )

    def _geo(self, event: ClickEvent) -> Geo:
        # Upstream geolocation wins: the sender knew more (e.g. a CDN header) than our database.
        # The database's details (region, coordinates, city) are kept only when it agrees on
        # the country, so a click never mixes two places.
        looked_up = self.locator.lookup(event.ip) if event.ip else Geo()
        if not event.country:
            return looked_up
        country = event.country.upper()
        if looked_up.country != country:
            return Geo(country=country, city=event.city)
        if event.city and event.city != looked_up.city:
            return Geo(country=country, city=event.city)
        return looked_up

    def close(self) -> None:
        """Release the geo databases."""
        self.locator.close()
