"""The real DB-IP City Lite files the stack fetches (IPv4 and IPv6 in two .mmdb files)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from clickstream.settings import Settings
from commands.stack.manager import Stack
from ingest.geo import GeoLocator
from traffic.population import GeoSample

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def dbip(base_settings: Settings) -> Iterator[GeoLocator]:
    """Both DB-IP files, fetched into the stack's cache if not there yet (no server started)."""
    with GeoLocator([Stack(base_settings).geo_dir()]) as locator:
        yield locator


class TestDbipCityLite:
    @pytest.mark.parametrize(
        ("ip", "country", "city"),
        [
            ("8.8.8.8", "US", "Mountain View"),
            ("1.1.1.1", "AU", "Sydney"),
            ("81.2.69.142", "GB", "London"),
            ("2a00:1450:4001:80b::200e", "DE", "Frankfurt am Main"),
        ],
    )
    def test_well_known_ips(self, dbip: GeoLocator, ip: str, country: str, city: str) -> None:
        """IPv4 answers from the IPv4 file, IPv6 from the IPv6 file, in the flat layout."""
        geo = dbip.lookup(ip)
        assert (geo.country, geo.city) == (country, city)
        assert geo.latitude is not None
        assert geo.longitude is not None
        assert dbip.lookup_errors == 0

    def test_private_ip_is_unknown(self, dbip: GeoLocator) -> None:
        """RFC 1918 space is in neither file: ZZ."""
        assert dbip.lookup("10.0.0.1").country == "ZZ"


class TestDbipSample:
    def test_big_database_is_sampled_and_spread(self, base_settings: Settings) -> None:
        """The generator probes DB-IP rather than reading it whole: many networks, many /8s."""
        sample = GeoSample.from_mmdb([Stack(base_settings).geo_dir()], limit=2000, seed=1)
        first_octets = {
            int(n.network.network_address) >> 24 for n in sample.networks if n.network.version == 4
        }
        assert len(sample.networks) >= 1000
        assert len(first_octets) > 100
