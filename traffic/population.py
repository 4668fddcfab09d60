"""Who the synthetic users are: where they sit (geo networks) and what they browse with (UAs).

The expected country of a network is read with the pipeline's own rules
(:func:`ingest.geo.geo_from_record`: GeoIP2 ``country`` else ``registered_country``, DB-IP
``country_code``, ``ZZ`` when none) and checked with :class:`ingest.geo.GeoLocator` on the
network's first and last usable address, so the truth agrees with enrichment by construction.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path

import maxminddb
from maxminddb.types import Record

from ingest.geo import GeoLocator, database_files, geo_from_record

Network = IPv4Network | IPv6Network

ITERATE_NODES = 200_000
"""A database with at most this many tree nodes is read whole; a bigger one is probed."""

IPV4_SHARE = 0.7
"""Share of users on IPv4 when the sample has both families (roughly today's web)."""

_GLOBAL_V6 = IPv6Network("2000::/3")

BROWSER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Safari/537.36 Edg/130.0.2849.80",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36 OPR/115.0.0.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.7; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPad; CPU OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.6778.81 Mobile Safari/537.36",
    "Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0",
    "Mozilla/5.0 (Linux; Android 13; M2101K6G) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.6723.107 Mobile Safari/537.36 EdgA/130.0.2849.80",
    "Mozilla/5.0 (Windows NT 6.1; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/109.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0",
)
"""Real browser user agents (desktop and mobile): never bots."""

BOT_AGENTS = (
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; "
    "+http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36",
    "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "curl/8.5.0",
    "python-requests/2.32.3",
    "Feedly/1.0 (+http://www.feedly.com/fetcher.html; 3 subscribers; like FeedFetcher-Google)",
    "UniversalFeedParser/5.0.1 +http://feedparser.org/",
)
"""Real crawler, feed-reader and HTTP-client user agents: a bot user always sends one of these
(each of the bot rules of ingest/agent.py flags some of them)."""

EXTERNAL_REFERRERS = (
    "https://www.google.com/",
    "https://www.bing.com/",
    "https://duckduckgo.com/",
    "https://t.co/",
    "https://www.facebook.com/",
    "",
    "",
    "",
)
"""Where a session comes from; empty means a direct visit (no referrer)."""


@dataclass(frozen=True, slots=True)
class GeoNetwork:
    """A network of the geo database and the country every address in it maps to."""

    network: Network
    country: str

    def pick(self, rng: random.Random) -> str:
        """An address inside the network; not its network or broadcast address when it has more."""
        size = self.network.num_addresses
        offset = rng.randrange(1, size - 1) if size > 2 else rng.randrange(size)
        base = int(self.network.network_address)
        if self.network.version == 4:
            return str(IPv4Address(base + offset))
        return str(IPv6Address(base + offset))


@dataclass(frozen=True, slots=True)
class GeoSample:
    """Networks users are placed in; ``pick`` gives a user an address and its expected country."""

    networks: tuple[GeoNetwork, ...]

    def __post_init__(self) -> None:
        if not self.networks:
            raise ValueError("a geo sample needs at least one network")

    def pick(self, rng: random.Random) -> tuple[str, str]:
        """An IP address and its expected country; IPv4 ~70 % of the time when both exist."""
        v4 = [net for net in self.networks if net.network.version == 4]
        v6 = [net for net in self.networks if net.network.version == 6]
        family = v4 if v4 and (not v6 or rng.random() < IPV4_SHARE) else v6
        network = rng.choice(family)
        return network.pick(rng), network.country

    def country_of(self, ip: str) -> str:
        """The expected country of ``ip`` (``ZZ`` when no sampled network holds it)."""
        address = ipaddress.ip_address(ip)
        for net in self.networks:
            if address.version == net.network.version and address in net.network:
                return net.country
        return "ZZ"

    @classmethod
    def from_mmdb(cls, paths: Iterable[Path | str], limit: int = 2000, seed: int = 0) -> GeoSample:
        """Up to ``limit`` networks of the .mmdb files (or directories of them), spread out.

        A small database (like MaxMind's test files) is read whole and sampled; a big one (DB-IP,
        millions of networks) is probed at random addresses, which spreads the sample over the
        whole address space in well under a second.
        """
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        files = database_files(paths)
        rng = random.Random(seed)  # noqa: S311 - sampling, not secrets
        per_file = max(1, limit // len(files))
        found: dict[Network, Record] = {}
        for path in files:
            with maxminddb.open_database(path) as reader:
                metadata = reader.metadata()
                if metadata.node_count <= ITERATE_NODES:
                    candidates = list(reader)
                    picked = rng.sample(candidates, min(per_file, len(candidates)))
                else:
                    picked = list(_probe(reader, metadata.ip_version, per_file, rng))
            for network, record in picked:
                found.setdefault(network, record)
        networks = []
        with GeoLocator(files) as locator:
            for network, record in found.items():
                country = geo_from_record(record if isinstance(record, dict) else None).country
                first, last = _usable_ends(network)
                # Another file may know the address first: keep what enrichment will say.
                if locator.lookup(first).country == locator.lookup(last).country == country:
                    networks.append(GeoNetwork(network, country))
        return cls(tuple(networks))


def _usable_ends(network: Network) -> tuple[str, str]:
    if network.num_addresses > 2:
        return str(network.network_address + 1), str(network.broadcast_address - 1)
    return str(network.network_address), str(network.broadcast_address)


def _probe(
    reader: maxminddb.Reader, ip_version: int, wanted: int, rng: random.Random
) -> Iterator[tuple[Network, Record]]:
    """Distinct networks holding random addresses (IPv4, and global IPv6 in an IPv6 file)."""
    seen: set[Network] = set()
    for attempt in range(wanted * 20):
        if ip_version == 4 or attempt % 2 == 0:
            address: IPv4Address | IPv6Address = IPv4Address(rng.getrandbits(32))
        else:
            offset = rng.getrandbits(128 - _GLOBAL_V6.prefixlen)
            address = IPv6Address(int(_GLOBAL_V6.network_address) + offset)
        try:
            record, prefix = reader.get_with_prefix_len(address)
        except ValueError:  # an IPv4 probe of an IPv6-only tree
            continue
        if not record:
            continue
        network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
        if network not in seen:
            seen.add(network)
            yield network, record
            if len(seen) >= wanted:
                return
