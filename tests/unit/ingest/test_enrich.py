"""Enrichment: composing geo, agent and URL, upstream geolocation, IP anonymisation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from clickstream.model import Agent, ClickEvent, Geo
from clickstream.settings import IngestSettings
from ingest.agent import AgentParser
from ingest.enrich import Enricher, EnrichError, anonymize_ip
from ingest.geo import GeoLocator
from tests.paths import GEO_DIR

CITY = GEO_DIR / "GeoIP2-City-Test.mmdb"
LONDON = Geo("GB", "London", "England", 51.5142, -0.0931)
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"


@pytest.fixture(scope="module")
def agent_parser() -> AgentParser:
    """One parser for the module: building it compiles the uap-core rules."""
    return AgentParser(cache_size=100)


@pytest.fixture
def enricher(agent_parser: AgentParser) -> Iterator[Enricher]:
    """An anonymising enricher on the GeoIP2 City test database, keeping ``q``."""
    with Enricher(GeoLocator([CITY]), agent_parser, frozenset({"q"}), anonymize=True) as e:
        yield e


def click(
    ip: str | None = None,
    user_agent: str | None = None,
    country: str | None = None,
    city: str | None = None,
) -> ClickEvent:
    """A valid event on a search page, with the given optional fields."""
    return ClickEvent(
        event_id="e1",
        user_id="u1",
        timestamp_ms=1_700_000_000_000,
        url="https://Shop.example/s?q=1&x=2#top",
        ip=ip,
        user_agent=user_agent,
        country=country,
        city=city,
    )


class TestAnonymizeIp:
    @pytest.mark.parametrize(
        ("ip", "expected"),
        [
            ("203.0.113.77", "203.0.113.0"),
            ("203.0.113.0", "203.0.113.0"),
            ("2001:db8:abcd:12::1", "2001:db8:abcd::"),
            ("2001:DB8:ABCD:FFFF:FFFF:FFFF:FFFF:FFFF", "2001:db8:abcd::"),
            ("::ffff:203.0.113.77", "203.0.113.0"),
            ("fe80::1%eth0", "fe80::"),
        ],
    )
    def test_truncation(self, ip: str, expected: str) -> None:
        """IPv4 keeps its /24, IPv6 its /48; a mapped IPv4 is treated as IPv4."""
        assert anonymize_ip(ip) == expected

    def test_not_an_ip_raises(self) -> None:
        """A non-IP string is a ValueError (the validator rejects it first)."""
        with pytest.raises(ValueError, match="does not appear to be"):
            anonymize_ip("example.com")


class TestEnricher:
    def test_full_enrichment(self, enricher: Enricher) -> None:
        """URL normalised, geo from the full IP, agent parsed, IP stored anonymised."""
        event = click(ip="81.2.69.142", user_agent=FIREFOX)
        result = enricher.enrich(event)
        assert result.event is event
        assert result.url_normalized == "https://shop.example/s?q=1"
        assert result.geo == LONDON
        assert result.agent == Agent("Firefox", "125", "Linux", "Other", is_bot=False)
        assert result.ip_anonymized == "81.2.69.0"

    def test_anonymize_off_keeps_ip(self, agent_parser: AgentParser) -> None:
        """With ingest.anonymize_ip false the IP is stored as sent."""
        with Enricher(GeoLocator([CITY]), agent_parser, anonymize=False) as enricher:
            assert enricher.enrich(click(ip="81.2.69.142")).ip_anonymized == "81.2.69.142"

    def test_upstream_country_wins(self, enricher: Enricher) -> None:
        """An event's own country overrides the database; the database city is not mixed in."""
        result = enricher.enrich(click(ip="81.2.69.142", country="FR", city="Paris"))
        assert result.geo == Geo(country="FR", city="Paris")

    def test_upstream_country_agreeing_keeps_details(self, enricher: Enricher) -> None:
        """When the database agrees on the country, its city, region and coordinates stay."""
        assert enricher.enrich(click(ip="81.2.69.142", country="gb")).geo == LONDON

    def test_upstream_city_wins_over_database_city(self, enricher: Enricher) -> None:
        """A city sent with the event replaces the database's, dropping its coordinates."""
        geo = enricher.enrich(click(ip="81.2.69.142", country="GB", city="Leeds")).geo
        assert geo == Geo(country="GB", city="Leeds")

    def test_no_ip_uses_event_country(self, enricher: Enricher) -> None:
        """Without an IP the country comes from the event, and nothing is anonymised."""
        result = enricher.enrich(click(country="DE"))
        assert result.geo == Geo(country="DE")
        assert result.ip_anonymized is None

    def test_no_ip_no_country_is_unknown(self, enricher: Enricher) -> None:
        """Neither IP nor country: ZZ."""
        assert enricher.enrich(click()).geo == Geo()

    def test_unknown_ip_is_zz(self, enricher: Enricher) -> None:
        """An IP the database does not cover is ZZ, still anonymised."""
        result = enricher.enrich(click(ip="2001:db8::1"))
        assert result.geo == Geo()
        assert result.ip_anonymized == "2001:db8::"

    def test_bot_flag_carried(self, enricher: Enricher) -> None:
        """A curl request is marked as a bot."""
        assert enricher.enrich(click(user_agent="curl/8.5.0")).agent.is_bot is True


class TestFromSettings:
    def test_settings_are_applied(self) -> None:
        """Allow-list, anonymisation and cache size come from IngestSettings."""
        settings = IngestSettings(url_query_allowlist=("x",), anonymize_ip=False, ua_cache_size=5)
        with Enricher.from_settings(settings, [GEO_DIR / "GeoLite2-Country-Test.mmdb"]) as e:
            result = e.enrich(click(ip="81.2.69.142"))
        assert result.url_normalized == "https://shop.example/s?x=2"
        assert result.ip_anonymized == "81.2.69.142"
        assert result.geo == Geo(country="GB")

    def test_bad_geo_path_raises(self, tmp_path: Path) -> None:
        """A geo database that cannot be opened stops start-up, naming the file."""
        with pytest.raises(EnrichError, match=r"missing\.mmdb"):
            Enricher.from_settings(IngestSettings(), [tmp_path / "missing.mmdb"])
