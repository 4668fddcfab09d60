"""IP geolocation from MaxMind DB (.mmdb) files, in either of two record layouts.

- GeoIP2 / GeoLite2 City or Country (nested): ``country.iso_code`` (else
  ``registered_country.iso_code``), ``city.names.en``, ``subdivisions[0].names.en`` (else its
  ``iso_code``), ``location.latitude`` / ``location.longitude``.
- DB-IP City Lite (flat): ``country_code``, ``city``, ``state1``, ``latitude``, ``longitude``;
  empty strings mean unknown.

Lookups are not cached: a memory-mapped lookup costs ~2 µs (measured on DB-IP City Lite),
about what an LRU cache keyed on the IP would cost on a miss, and IPs have a long tail.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import maxminddb
from maxminddb import InvalidDatabaseError
from maxminddb.reader import Reader

from clickstream.closing import Closeable
from clickstream.errors import ClickstreamError
from clickstream.model import Geo

UNKNOWN_COUNTRY = "ZZ"


class EnrichError(ClickstreamError):
    """Enrichment cannot start: a geo database is missing, unreadable or corrupt."""


def geo_from_record(record: Mapping[str, Any] | None) -> Geo:
    """The Geo of one database record, GeoIP2 (nested) or DB-IP (flat); ``Geo()`` if unknown."""
    if not record:
        return Geo()
    if "country_code" in record or isinstance(record.get("city"), str):
        return Geo(
            country=_country_code(record.get("country_code")),
            city=_text(record.get("city")),
            region=_text(record.get("state1")),
            latitude=_coordinate(record.get("latitude")),
            longitude=_coordinate(record.get("longitude")),
        )
    country = _country_code(_get(record, "country", "iso_code"))
    if country == UNKNOWN_COUNTRY:
        country = _country_code(_get(record, "registered_country", "iso_code"))
    subdivisions = record.get("subdivisions")
    region = None
    if isinstance(subdivisions, list) and subdivisions and isinstance(subdivisions[0], Mapping):
        first = subdivisions[0]
        region = _text(_get(first, "names", "en")) or _text(first.get("iso_code"))
    return Geo(
        country=country,
        city=_text(_get(record, "city", "names", "en")),
        region=region,
        latitude=_coordinate(_get(record, "location", "latitude")),
        longitude=_coordinate(_get(record, "location", "longitude")),
    )


def _get(record: Mapping[str, Any], *keys: str) -> Any:
    value: Any = record
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _country_code(value: Any) -> str:
    if isinstance(value, str) and len(value) == 2 and value.isascii() and value.isalpha():
        return value.upper()
    return UNKNOWN_COUNTRY


def _coordinate(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _unmapped(ip: str) -> tuple[str, bool]:
    try:
        mapped = ipaddress.IPv6Address(ip).ipv4_mapped
    except ValueError:
        return ip, True
    return (str(mapped), False) if mapped is not None else (ip, True)


def database_files(paths: Iterable[Path | str]) -> list[Path]:
    """The .mmdb files named by ``paths``: a directory stands for its ``*.mmdb``, sorted."""
    files: list[Path] = []
    for entry in map(Path, paths):
        if entry.is_dir():
            found = sorted(entry.glob("*.mmdb"))
            if not found:
                raise EnrichError(f"geo database directory {entry} holds no *.mmdb file")
            files.extend(found)
        else:
            files.append(entry)
    if not files:
        raise EnrichError("no geo database given (ingest.geoip_database or the stack's DB-IP)")
    return files


class GeoLocator(Closeable):
    """Looks IPs up in one or more .mmdb files; the first file that knows the IP wins.

    Files open (memory-mapped) in ``__init__``: a missing or corrupt file fails at start-up,
    naming the file. A lookup never raises: a corrupt record counts in ``lookup_errors`` (its
    message kept in ``last_error`` for the batch summary) and the next file is tried.
    """

    def __init__(self, paths: Iterable[Path | str]) -> None:
        self._readers: list[tuple[Reader, int]] = []
        self.paths: tuple[Path, ...] = tuple(database_files(paths))
        self.lookup_errors = 0
        self.last_error: str | None = None
        for path in self.paths:
            try:
                reader = maxminddb.open_database(path, maxminddb.MODE_AUTO)
            except (OSError, InvalidDatabaseError, ValueError) as exc:
                self.close()
                raise EnrichError(f"cannot open geo database {path}: {exc}") from exc
            self._readers.append((reader, reader.metadata().ip_version))

    def lookup(self, ip: str) -> Geo:
        """Where ``ip`` is; ``Geo()`` (country ``ZZ``) when no file knows it or a lookup fails."""
        is_v6 = ":" in ip
        if is_v6 and ip[:7].lower() == "::ffff:":
            # An IPv4-mapped address is an IPv4 client; DB-IP's IPv6 file lacks that range.
            ip, is_v6 = _unmapped(ip)
        for reader, ip_version in self._readers:
            if is_v6 and ip_version == 4:
                continue  # an IPv4-only file cannot answer for IPv6 (maxminddb raises)
            try:
                record = reader.get(ip)
            except (InvalidDatabaseError, ValueError) as exc:
                self.lookup_errors += 1
                self.last_error = str(exc)
                continue
            if isinstance(record, Mapping) and record:
                return geo_from_record(record)
        return Geo()

    def close(self) -> None:
        """Unmap every file; the locator cannot look up afterwards. Safe to call twice."""
        for reader, _ in self._readers:
            reader.close()
        self._readers.clear()
