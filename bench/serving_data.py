"""The synthetic site of `bench/serving_bench.py`: events drawn with numpy, aggregated per bucket.

Pure (no I/O). A site has ``urls`` URLs with Zipf popularity (exponent 1, ranks shuffled over 100
sections so that the prefix of one section matches 1 % of the URLs whatever their popularity),
``countries`` countries with a skewed popularity (Zipf, exponent 1.3) and ``users`` user ids. An
event is (url, country, user, bot?, time spent?). Aggregating events at a cube level (the keys it
keeps) per bucket gives what the batch job or the speed layer stores for that bucket: clicks,
bot clicks, time-spent sum and count, the distinct human users (exact) and the users themselves
(for the HLL sketch).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from indexing.views import LEVEL_KEYS

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]

#: Countries by popularity (the first is the most visited).
COUNTRY_CODES = (
    *("US", "DE", "GB", "FR", "IN", "BR", "JP", "CA", "IT", "ES", "NL", "AU", "MX", "PL", "SE"),
    *("KR", "TR", "CH", "BE", "ID", "AR", "AT", "NO", "DK", "FI", "IE", "PT", "CZ", "RO", "ZA"),
    *("NZ", "SG", "HK", "IL", "GR", "HU", "UA", "TH", "VN", "PH", "MY", "CL", "CO", "PE", "EG"),
    *("NG", "SA", "AE", "PK", "BG"),
)
#: URL sections: the prefix of one section selects 1 % of the URLs.
SECTIONS = 100
BOT_SHARE = 0.03
#: Share of human clicks with a known time spent (the user's next click within the timeout).
SPENT_SHARE = 0.75
SPENT_MEAN_MS = 45_000.0


@dataclass(frozen=True)
class Site:
    """The site's URLs, countries, users and their popularity."""

    urls: tuple[str, ...]
    url_p: Floats
    countries: tuple[str, ...]
    country_p: Floats
    users: int

    @property
    def cell_base(self) -> int:
        """Distinct (url or all, country or all) keys: the factor of the bucket in a key."""
        return (len(self.urls) + 1) * (len(self.countries) + 1)

    def mid_country(self) -> str:
        """A country of middling popularity (the median rank)."""
        return self.countries[len(self.countries) // 2]

    def section_prefix(self, section: int = 42) -> str:
        """A url prefix matching one section: 1 % of the URLs."""
        return f"https://shop.example/c{section % SECTIONS:02d}/"


def url_name(i: int) -> str:
    """The normalised URL of url number ``i`` (section ``i % 100``)."""
    return f"https://shop.example/c{i % SECTIONS:02d}/item-{i // SECTIONS}"


def zipf(n: int, exponent: float) -> Floats:
    """Probabilities of ranks 1..n under Zipf's law."""
    weights: Floats = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** exponent
    probabilities: Floats = weights / weights.sum()
    return probabilities


def make_site(urls: int, countries: int, users: int, seed: int) -> Site:
    """The site: Zipf URL popularity over shuffled ranks, skewed country popularity."""
    if countries > len(COUNTRY_CODES):
        raise ValueError(f"at most {len(COUNTRY_CODES)} countries")
    rng = np.random.default_rng([seed, 0])
    url_p = zipf(urls, 1.0)[rng.permutation(urls)]
    return Site(
        urls=tuple(url_name(i) for i in range(urls)),
        url_p=url_p,
        countries=tuple(COUNTRY_CODES[:countries]),
        country_p=zipf(countries, 1.3),
        users=users,
    )


@dataclass(frozen=True)
class Events:
    """Events as parallel arrays; ``bucket`` is the time bucket of each (hour or minute index)
    and ``offset`` its Kafka offset (speed layer) or 0."""

    bucket: Ints
    url: Ints
    country: Ints
    user: Ints
    bot: Bools
    spent_ms: Ints
    has_spent: Bools
    offset: Ints

    def __len__(self) -> int:
        return len(self.url)


def draw_events(
    site: Site,
    counts: Ints,
    rng: np.random.Generator,
    user_ids: Ints | None = None,
    first_offset: int = 0,
) -> Events:
    """``counts[b]`` events in bucket b, in bucket order; users drawn from ``user_ids`` (all
    the site's users when None); offsets consecutive from ``first_offset``."""
    n = int(counts.sum())
    bucket = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    pool = user_ids if user_ids is not None else np.arange(site.users, dtype=np.int64)
    bot = rng.random(n) < BOT_SHARE
    has_spent = ~bot & (rng.random(n) < SPENT_SHARE)
    return Events(
        bucket=bucket,
        url=rng.choice(len(site.urls), n, p=site.url_p).astype(np.int64),
        country=rng.choice(len(site.countries), n, p=site.country_p).astype(np.int64),
        user=pool[rng.integers(0, len(pool), n)],
        bot=bot,
        spent_ms=np.where(has_spent, rng.exponential(SPENT_MEAN_MS, n), 0).astype(np.int64),
        has_spent=has_spent,
        offset=np.arange(first_offset, first_offset + n, dtype=np.int64),
    )


def level_keys(site: Site, level: str, events: Events) -> Ints:
    """Each event's key at ``level`` and bucket: bucket, url (or "all"), country (or "all")."""
    kept = LEVEL_KEYS[level]
    url = events.url if "url" in kept else np.full(len(events), len(site.urls), np.int64)
    country = (
        events.country if "country" in kept else np.full(len(events), len(site.countries), np.int64)
    )
    cell = url * (len(site.countries) + 1) + country
    return events.bucket * site.cell_base + cell


@dataclass(frozen=True)
class Cell:
    """One group's key, decoded: bucket index, url and country (None where "all")."""

    bucket: int
    url: str | None
    country: str | None

    def pair(self) -> tuple[str, str]:
        """(url, country) of a (url, country) cell."""
        if self.url is None or self.country is None:
            raise ValueError(f"not a (url, country) cell: {self}")
        return self.url, self.country


def decode(site: Site, key: int) -> Cell:
    """The bucket, url and country of a key made by :func:`level_keys`."""
    bucket, cell = divmod(key, site.cell_base)
    url, country = divmod(cell, len(site.countries) + 1)
    return Cell(
        bucket,
        site.urls[url] if url < len(site.urls) else None,
        site.countries[country] if country < len(site.countries) else None,
    )


@dataclass(frozen=True)
class Groups:
    """Events aggregated by key: one entry per group, its distinct human users in
    ``users[bounds[g]:bounds[g + 1]]``."""

    keys: Ints
    clicks: Ints
    bot_clicks: Ints
    spent_sum: Ints
    spent_count: Ints
    last_offset: Ints
    users: Ints
    bounds: Ints

    def __len__(self) -> int:
        return len(self.keys)

    def unique_users(self, g: int) -> int:
        """The exact distinct human users of group ``g``."""
        return int(self.bounds[g + 1] - self.bounds[g])


def _sums(group_of: Ints, values: npt.NDArray[np.generic], size: int) -> Ints:
    return np.bincount(group_of, weights=values, minlength=size).round().astype(np.int64)


def aggregate(keys: Ints, events: Events) -> Groups:
    """Sum the events per key; the distinct human users of each group, sorted."""
    order = np.lexsort((events.user, keys))
    k, user, bot = keys[order], events.user[order], events.bot[order]
    new_group = np.empty(len(k), dtype=np.bool_)
    new_group[:1] = True
    new_group[1:] = k[1:] != k[:-1]
    starts = np.flatnonzero(new_group)
    group_of = (np.cumsum(new_group) - 1).astype(np.int64)
    size = len(starts)
    human = ~bot
    hk, hu, hg = k[human], user[human], group_of[human]
    first = np.empty(len(hk), dtype=np.bool_)
    first[:1] = True
    first[1:] = (hk[1:] != hk[:-1]) | (hu[1:] != hu[:-1])
    distinct = np.bincount(hg[first], minlength=size)
    bounds = np.zeros(size + 1, dtype=np.int64)
    np.cumsum(distinct, out=bounds[1:])
    return Groups(
        keys=k[starts],
        clicks=_sums(group_of, human.astype(np.float64), size),
        bot_clicks=_sums(group_of, bot.astype(np.float64), size),
        spent_sum=_sums(group_of, events.spent_ms[order].astype(np.float64), size),
        spent_count=_sums(group_of, events.has_spent[order].astype(np.float64), size),
        last_offset=np.maximum.reduceat(events.offset[order], starts) if size else starts,
        users=hu[first],
        bounds=bounds,
    )


def partition_users(site: Site, partition: int, partitions: int) -> Ints:
    """The users whose clicks land on ``partition`` (the Kafka key is the user id)."""
    return np.arange(partition, site.users, partitions, dtype=np.int64)


def poisson_counts(rng: np.random.Generator, mean: float, buckets: int) -> Ints:
    """Events per bucket at a steady rate: ``mean`` per bucket, Poisson."""
    return rng.poisson(mean, buckets).astype(np.int64)
