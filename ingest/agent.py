"""User-agent parsing (ua-parser 1.x, uap-core rules) and the bot flag.

Backend: the Rust resolver (``ua-parser-rs``, the ``ua-parser[regex]`` extra) when installed,
else ua-parser's pure-Python resolver, which gives the same answers ~25x slower on a cache miss
(measured: ~24 µs vs ~620 µs per new UA string; see the README). Parsed agents are cached per
UA string (an LRU of ``ingest.ua_cache_size`` entries): real traffic repeats a few hundred
strings, so most events never reach the resolver nor the bot rules.

Bot rules, in this order; the first that matches flags the UA and is named in ``Agent.bot_rule``:

1. :data:`RULE_UAP_CORE`: uap-core classifies the device as ``Spider`` (named crawlers:
   Googlebot, bingbot, AhrefsBot, GPTBot, facebookexternalhit, ...);
2. :data:`RULE_CRAWLER_LIST`: a pattern of the maintained ``crawler-user-agents`` list matches
   (~1,500 case-sensitive regexes: feed fetchers, SEO and monitoring bots, HTTP clients,
   headless browsers; :class:`CrawlerPatterns`);
3. :data:`RULE_TOOLS`: :func:`automation_token`, the project's short list of tools both miss.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from crawleruseragents import CRAWLER_USER_AGENTS_DATA
from ua_parser import (
    BasicResolver,
    DefaultedResult,
    Domain,
    Resolver,
    load_builtins,
    load_lazy_builtins,
)

from clickstream.model import (
    RULE_CRAWLER_LIST,
    RULE_TOOLS,
    RULE_UAP_CORE,
    Agent,
)

AUTOMATION_TOKENS = (
    "crawler", "spider",
    "curl/", "httpclient", "java-http-client", "selenium",
    "feedparser", "libfetch",
)  # fmt: skip
"""Lower-case substrings of tools that neither uap-core nor crawler-user-agents flags.

``crawler`` and ``spider`` catch small crawlers neither list names when the UA also names a
phone (uap-core then reports the phone, not ``Spider``). The others are spellings the list's
case-sensitive or anchored patterns miss: ``libcurl/`` and ``PycURL`` (the list has ``^curl``),
``Jakarta Commons-HttpClient`` (``^Apache-HttpClient``), the JDK's ``Java-http-client/``,
Selenium's own ``selenium/4.x``, ``UniversalFeedParser`` and FreeBSD's ``fetch libfetch/2.0``.
Tools the two lists catch in every spelling seen (``python-requests``, ``Python-urllib``,
``Wget``, ``Go-http-client``, ``okhttp``, ``HeadlessChrome``, ``Scrapy``, ...) are left to them;
``tests/unit/ingest/test_agent.py`` checks that they still are.
"""

BOT_WORD = re.compile(r"bot[/;)_-]|\bbot\b")
"""``bot`` as a word or before a version/separator (``MonitorBot/1.0``), but not the ``Cubot``
phone brand (``CUBOT P50``), matched against the lower-cased UA."""

SPIDER = "Spider"

CRAWLER_CHUNK = 25
"""Patterns per regex of the pure-Python crawler matcher (as crawler-user-agents' own
``is_crawler``): :mod:`re` runs one alternation of all the patterns ~5x slower than chunks."""


@dataclass(frozen=True, slots=True)
class BotMatch:
    """Why a UA is a bot: the rule (one of :data:`BOT_RULES`) and what in the UA matched it.

    ``detail`` is uap-core's name of the crawler (``Spider`` when it has none), the
    crawler-user-agents pattern, or the tool's token (``bot`` for :data:`BOT_WORD`).
    """

    rule: str
    detail: str


def automation_token(ua: str) -> str | None:
    """The :data:`AUTOMATION_TOKENS` entry (or ``bot``, :data:`BOT_WORD`) in ``ua``, if any.

    Plain substring tests: ~4 µs per UA where one case-insensitive regex alternation took ~25.
    """
    lowered = ua.lower()
    if "bot" in lowered and BOT_WORD.search(lowered):
        return "bot"
    return next((token for token in AUTOMATION_TOKENS if token in lowered), None)


_FirstMatch = Callable[[str], int | None]


def _rust_first(patterns: Sequence[str]) -> _FirstMatch | None:
    """The index of the first pattern matching a UA, by ua-parser-rs; None if it cannot run them."""
    try:
        from ua_parser_rs import UserAgentExtractor  # noqa: PLC0415 - optional backend
    except ImportError:
        return None
    try:
        # uap-core's contract, which ua-parser-rs implements: the first rule (in order) whose
        # regex matches wins. The "family" of each rule is its pattern's index.
        extractor = UserAgentExtractor(
            (pattern, str(index), None, None, None, None) for index, pattern in enumerate(patterns)
        )
    except ValueError:  # a pattern the Rust regex crate cannot parse (look-around, backreference)
        return None

    def first(ua: str) -> int | None:
        found = extractor.extract(ua)
        return None if found is None else int(found.family)

    return first


def _python_first(patterns: Sequence[str]) -> _FirstMatch:
    """The index of the first pattern matching a UA, by :mod:`re`: chunked alternations."""
    starts = range(0, len(patterns), CRAWLER_CHUNK)
    chunks = [
        re.compile("|".join(f"(?:{p})" for p in patterns[s : s + CRAWLER_CHUNK])) for s in starts
    ]
    members: dict[int, list[re.Pattern[str]]] = {}

    def first(ua: str) -> int | None:
        for start, chunk in zip(starts, chunks, strict=True):
            if chunk.search(ua):  # a hit: only now find which of its patterns matched
                if (compiled := members.get(start)) is None:
                    chunk_patterns = patterns[start : start + CRAWLER_CHUNK]
                    compiled = members.setdefault(start, [re.compile(p) for p in chunk_patterns])
                return start + next(i for i, p in enumerate(compiled) if p.search(ua))
        return None

    return first


class CrawlerPatterns:
    """The crawler-user-agents patterns, compiled once: the first one (in list order) in a UA.

    ``engine`` says what runs them. ``rust``: one ua-parser-rs extractor, the engine that runs
    uap-core's own rules: ~2 µs per UA that matches none, 2 to 5 µs on a hit. ``python``
    (ua-parser-rs missing, or unable to parse a pattern): chunked :mod:`re` alternations, ~0.3 ms
    per UA that matches none. Both give the same answers (checked on every example UA the list
    ships), but for two corner cases only :mod:`re` matches: ``\\d`` on a non-ASCII digit and
    ``$`` before a trailing newline. ``rust=False`` forces :mod:`re` (for tests).
    """

    def __init__(self, patterns: Sequence[str], *, rust: bool = True) -> None:
        self.patterns = tuple(patterns)
        fast = _rust_first(self.patterns) if rust else None
        self.engine = "python" if fast is None else "rust"
        self._first = _python_first(self.patterns) if fast is None else fast

    def first(self, ua: str) -> str | None:
        """The first pattern, in list order, that ``ua`` matches (case-sensitively); or None."""
        index = self._first(ua)
        return None if index is None else self.patterns[index]


@functools.cache
def crawler_patterns() -> CrawlerPatterns:
    """The installed crawler-user-agents list, compiled once per process (~25 ms)."""
    return CrawlerPatterns([entry["pattern"] for entry in CRAWLER_USER_AGENTS_DATA])


def _best_resolver() -> tuple[str, Resolver]:
    try:
        from ua_parser.regex import Resolver as RustResolver  # noqa: PLC0415 - optional backend
    except ImportError:
        return "python", BasicResolver(load_builtins())
    # The Rust resolver compiles the rules itself: lazy matchers skip compiling them in Python.
    return "rust", RustResolver(load_lazy_builtins())


class AgentParser:
    """Parses user-agent strings into :class:`Agent`, caching the last ``cache_size`` strings.

    ``backend`` says which ua-parser resolver runs (``rust`` or ``python``), for the start-up log.
    Building one compiles ~1,000 uap-core rules (~0.1 s): make one per process. The
    crawler-user-agents patterns are compiled once per process, whatever the parsers.
    """

    def __init__(self, cache_size: int = 10_000) -> None:
        self.backend, self._resolver = _best_resolver()
        self._crawlers = crawler_patterns()
        self._cached = functools.lru_cache(maxsize=cache_size)(self._parse)

    def parse(self, ua: str | None) -> Agent:
        """The browser, OS, device and bot flag of ``ua``; ``Agent()`` for a missing or empty UA."""
        if not ua:
            return Agent()
        return self._cached(ua)

    def explain(self, ua: str | None) -> BotMatch | None:
        """Which rule flags ``ua`` as a bot and what matched it; None for a human (uncached)."""
        if not ua:
            return None
        return self._bot(ua, self._resolve(ua))

    def cache_hits(self) -> tuple[int, int]:
        """Cache hits and misses so far, for the batch summary line."""
        info = self._cached.cache_info()
        return info.hits, info.misses

    def _resolve(self, ua: str) -> DefaultedResult:
        return self._resolver(ua, Domain.ALL).complete().with_defaults()

    def _bot(self, ua: str, result: DefaultedResult) -> BotMatch | None:
        if result.device.family == SPIDER:
            family = result.user_agent.family
            return BotMatch(RULE_UAP_CORE, SPIDER if family == "Other" else family)
        if (pattern := self._crawlers.first(ua)) is not None:
            return BotMatch(RULE_CRAWLER_LIST, pattern)
        if (token := automation_token(ua)) is not None:
            return BotMatch(RULE_TOOLS, token)
        return None

    def _parse(self, ua: str) -> Agent:
        result = self._resolve(ua)
        bot = self._bot(ua, result)
        return Agent(
            browser_family=result.user_agent.family,
            browser_major=result.user_agent.major,
            os_family=result.os.family,
            device_family=result.device.family,
            is_bot=bot is not None,
            bot_rule=None if bot is None else bot.rule,
        )
