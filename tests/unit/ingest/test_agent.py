"""User-agent parsing and the bot flag."""

from __future__ import annotations

import crawleruseragents
import pytest

from clickstream.model import BOT_RULES, RULE_CRAWLER_LIST, RULE_TOOLS, RULE_UAP_CORE, Agent
from ingest.agent import (
    AgentParser,
    BotMatch,
    CrawlerPatterns,
    automation_token,
    crawler_patterns,
)

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
IPHONE_SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
CUBOT_PHONE = (
    "Mozilla/5.0 (Linux; Android 11; CUBOT P50) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/99.0.4844.88 Mobile Safari/537.36"
)
SAMSUNG_INTERNET = (
    "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36"
)
CURL = "curl/8.5.0"
FEED_FETCHERS = [
    # (user agent, the rule that flags it, what matched), as seen in a real access log.
    (
        "Feedly/1.0 (+http://www.feedly.com/fetcher.html; 5 subscribers; like FeedFetcher-Google)",
        RULE_CRAWLER_LIST,
        "Feedly",
    ),
    ("FeedBurner/1.0 (http://www.FeedBurner.com)", RULE_CRAWLER_LIST, "FeedBurner"),
    (
        "Feedfetcher-Google; (+http://www.google.com/feedfetcher.html; 1 subscribers; "
        "feed-id=3894172658385340745)",
        RULE_CRAWLER_LIST,
        "Feedfetcher-Google",
    ),
    (
        "Mozilla/5.0 (compatible; theoldreader.com; 3 subscribers; feed-id=5f1a3c0e2e4b7d00)",
        RULE_CRAWLER_LIST,
        r"theoldreader\.com",
    ),
    (
        "SimplePie/1.3.1 (Feed Parser; http://simplepie.org; Allow like Gecko) "
        "Build/20121030175403",
        RULE_CRAWLER_LIST,
        "SimplePie",
    ),
    ("UniversalFeedParser/5.0.1 +http://feedparser.org/", RULE_TOOLS, "feedparser"),
    ("fetch libfetch/2.0", RULE_TOOLS, "libfetch"),
]


@pytest.fixture(scope="module")
def parser() -> AgentParser:
    """One parser for the module: building it compiles the uap-core rules."""
    return AgentParser(cache_size=100)


class TestParse:
    def test_chrome_on_windows(self, parser: AgentParser) -> None:
        """Desktop Chrome: family, major version and OS."""
        assert parser.parse(CHROME) == Agent("Chrome", "124", "Windows", "Other", is_bot=False)

    def test_firefox_on_linux(self, parser: AgentParser) -> None:
        """Desktop Firefox on Linux."""
        assert parser.parse(FIREFOX) == Agent("Firefox", "125", "Linux", "Other", is_bot=False)

    def test_iphone_safari(self, parser: AgentParser) -> None:
        """Mobile Safari on an iPhone: the device family is iPhone."""
        assert parser.parse(IPHONE_SAFARI) == Agent(
            "Mobile Safari", "17", "iOS", "iPhone", is_bot=False
        )

    @pytest.mark.parametrize("ua", [None, ""])
    def test_missing_ua_is_default_agent(self, parser: AgentParser, ua: str | None) -> None:
        """No user agent: all Other, not a bot."""
        assert parser.parse(ua) == Agent()

    def test_repeated_ua_hits_the_cache(self) -> None:
        """The second parse of one string comes from the cache."""
        parser = AgentParser(cache_size=10)
        first = parser.parse(CHROME)
        assert parser.parse(CHROME) is first
        assert parser.cache_hits() == (1, 1)

    def test_zero_cache_size_still_parses(self) -> None:
        """ingest.ua_cache_size = 0 turns caching off, not parsing."""
        assert AgentParser(cache_size=0).parse(FIREFOX).browser_family == "Firefox"


class TestBotFlag:
    @pytest.mark.parametrize(("ua", "rule", "detail"), FEED_FETCHERS)
    def test_feed_fetchers_are_bots(
        self, parser: AgentParser, ua: str, rule: str, detail: str
    ) -> None:
        """Feed fetchers and readers, once counted as people, are bots, each by its rule."""
        agent = parser.parse(ua)
        assert agent.is_bot is True
        assert agent.bot_rule == rule
        assert parser.explain(ua) == BotMatch(rule, detail)

    @pytest.mark.parametrize("ua", [CHROME, FIREFOX, IPHONE_SAFARI, SAMSUNG_INTERNET, CUBOT_PHONE])
    def test_browsers_are_not_bots(self, parser: AgentParser, ua: str) -> None:
        """Real browsers, including a phone brand that contains 'bot', are people: no rule."""
        agent = parser.parse(ua)
        assert agent.is_bot is False
        assert agent.bot_rule is None
        assert parser.explain(ua) is None

    def test_googlebot_is_flagged_by_uap_core(self, parser: AgentParser) -> None:
        """Googlebot is a Spider to uap-core, the first rule, though the list has it too."""
        agent = parser.parse(GOOGLEBOT)
        assert agent.device_family == "Spider"
        assert (agent.is_bot, agent.bot_rule) == (True, RULE_UAP_CORE)
        assert parser.explain(GOOGLEBOT) == BotMatch(RULE_UAP_CORE, "Googlebot")
        assert crawler_patterns().first(GOOGLEBOT) == r"Googlebot\/"

    def test_curl_is_flagged_by_the_crawler_list(self, parser: AgentParser) -> None:
        """uap-core leaves curl as ordinary software; the list's ``^curl`` catches it first."""
        agent = parser.parse(CURL)
        assert agent.device_family == "Other"
        assert (agent.is_bot, agent.bot_rule) == (True, RULE_CRAWLER_LIST)
        assert parser.explain(CURL) == BotMatch(RULE_CRAWLER_LIST, "^curl")

    @pytest.mark.parametrize(
        ("ua", "match"),
        [
            ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
             BotMatch(RULE_UAP_CORE, "bingbot")),
            ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
             BotMatch(RULE_UAP_CORE, "FacebookBot")),
            ("MyCompanyMonitorBot/1.0", BotMatch(RULE_UAP_CORE, "MyCompanyMonitorBot")),
            ("python-urllib3/2.2.1", BotMatch(RULE_UAP_CORE, "Spider")),
            ("Python-urllib/3.11", BotMatch(RULE_UAP_CORE, "Python-urllib")),
            ("Scrapy/2.11.0 (+https://scrapy.org)", BotMatch(RULE_UAP_CORE, "Scrapy")),
            ("Wget/1.21.4", BotMatch(RULE_CRAWLER_LIST, "[wW]get")),
            ("python-requests/2.31.0", BotMatch(RULE_CRAWLER_LIST, "python-requests")),
            ("python-httpx/0.27.0", BotMatch(RULE_CRAWLER_LIST, "httpx")),
            ("Python/3.11 aiohttp/3.9.5", BotMatch(RULE_CRAWLER_LIST, "aiohttp")),
            ("Apache-HttpClient/4.5.14 (Java/17.0.9)",
             BotMatch(RULE_CRAWLER_LIST, "^Apache-HttpClient")),
            ("Go-http-client/1.1", BotMatch(RULE_CRAWLER_LIST, "Go-http-client")),
            ("okhttp/4.12.0", BotMatch(RULE_CRAWLER_LIST, "okhttp")),
            ("libwww-perl/6.67", BotMatch(RULE_CRAWLER_LIST, "libwww-perl")),
            ("node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
             BotMatch(RULE_CRAWLER_LIST, "node-fetch")),
            ("axios/1.6.8", BotMatch(RULE_CRAWLER_LIST, "axios")),
            ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
             "HeadlessChrome/124.0.6367.60 Safari/537.36",
             BotMatch(RULE_CRAWLER_LIST, "HeadlessChrome")),
            ("Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) "
             "PhantomJS/2.1.1 Safari/538.1", BotMatch(RULE_CRAWLER_LIST, "PhantomJS")),
            ("Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit/537.36 (KHTML, "
             "like Gecko) Chrome/114.0.0.0 Mobile Safari/537.36 Chrome-Lighthouse",
             BotMatch(RULE_CRAWLER_LIST, "Chrome-Lighthouse")),
            ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like "
             "Gecko) Chrome/124.0.0.0 Safari/537.36 Puppeteer/22.6.0",
             BotMatch(RULE_CRAWLER_LIST, "Puppeteer")),
            ("Playwright/1.43.0", BotMatch(RULE_CRAWLER_LIST, "Playwright")),
            ("Mozilla/5.0 (compatible; Yahoo! Slurp; http://help.yahoo.com/help/us/ysearch/slurp)",
             BotMatch(RULE_UAP_CORE, "Yahoo! Slurp")),
        ],
    )  # fmt: skip
    def test_tools_left_to_the_lists(self, parser: AgentParser, ua: str, match: BotMatch) -> None:
        """Tools dropped from the private list: uap-core or crawler-user-agents still flags them."""
        assert parser.explain(ua) == match
        assert parser.parse(ua).bot_rule == match.rule

    @pytest.mark.parametrize(
        ("ua", "token"),
        [
            ("PycURL/7.45.2 libcurl/7.81.0 OpenSSL/3.0.2", "curl/"),
            ("Jakarta Commons-HttpClient/3.1", "httpclient"),
            ("Java-http-client/17.0.9", "java-http-client"),
            ("selenium/4.18.1 (python linux)", "selenium"),
            ("Mozilla/5.0 (Linux; Android 10; SM-G970F) AppleWebKit/537.36 (KHTML, like Gecko) "
             "Chrome/120.0.0.0 Mobile Safari/537.36 (compatible; FooCrawler/1.0)", "crawler"),
            ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
             "(KHTML, like Gecko) Mobile/15E148 acme-spider", "spider"),
        ],
    )  # fmt: skip
    def test_tools_only_the_private_list_catches(
        self, parser: AgentParser, ua: str, token: str
    ) -> None:
        """What both lists miss is left to the private tokens, rule ``tools``."""
        assert parser.explain(ua) == BotMatch(RULE_TOOLS, token)
        assert parser.parse(ua).bot_rule == RULE_TOOLS

    def test_rule_order(self) -> None:
        """The rules' names, in the order they are tried."""
        assert BOT_RULES == ("uap-core", "crawler-user-agents", "tools")

    @pytest.mark.parametrize("ua", [None, ""])
    def test_missing_ua_explains_nothing(self, parser: AgentParser, ua: str | None) -> None:
        """No user agent, no bot rule."""
        assert parser.explain(ua) is None

    def test_automation_token_alone(self) -> None:
        """The private list names the token (or ``bot``) it found."""
        assert automation_token("fetch libfetch/2.0") == "libfetch"
        assert automation_token("UniversalFeedParser/5.0.1") == "feedparser"
        assert automation_token("AcmeBot/1.0") == "bot"
        assert automation_token(CUBOT_PHONE) is None
        assert automation_token(CHROME) is None


class TestCrawlerPatterns:
    def test_compiled_once_per_process(self) -> None:
        """Every parser shares one compiled list."""
        assert crawler_patterns() is crawler_patterns()
        assert len(crawler_patterns().patterns) == len(crawleruseragents.CRAWLER_USER_AGENTS_DATA)

    def test_rust_engine_when_available(self) -> None:
        """With ua-parser-rs installed every pattern runs in Rust (a new list version that it
        cannot parse would fall back to re, ~100x slower: this test says so)."""
        pytest.importorskip("ua_parser_rs")
        assert crawler_patterns().engine == "rust"

    def test_first_pattern_in_list_order(self) -> None:
        """Of several matching patterns the first in the list is named, by both engines."""
        for rust in (True, False):
            patterns = CrawlerPatterns(["Zeta", "[Bb]eta", "Alpha"], rust=rust)
            assert patterns.first("Alpha Beta") == "[Bb]eta"
            assert patterns.first("alpha") is None

    def test_python_fallback_agrees_with_the_engine(self) -> None:
        """On every example the list ships and on browsers, re finds the same first pattern."""
        patterns = crawler_patterns()
        fallback = CrawlerPatterns(patterns.patterns, rust=False)
        assert fallback.engine == "python"
        examples = [ua for e in crawleruseragents.CRAWLER_USER_AGENTS_DATA for ua in e["instances"]]
        browsers = [CHROME, FIREFOX, IPHONE_SAFARI, SAMSUNG_INTERNET, CUBOT_PHONE]
        for ua in examples + browsers:
            assert patterns.first(ua) == fallback.first(ua), ua
        assert all(patterns.first(ua) is not None for ua in examples)
        assert all(patterns.first(ua) is None for ua in browsers)
