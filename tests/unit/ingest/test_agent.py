"""User-agent parsing and the bot flag."""

from __future__ import annotations

import pytest

from clickstream.model import Agent
from ingest.agent import AgentParser, is_automation

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
    @pytest.mark.parametrize(
        "ua",
        [
            GOOGLEBOT,
            "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
            "curl/8.5.0",
            "Wget/1.21.4",
            "python-requests/2.31.0",
            "Apache-HttpClient/4.5.14 (Java/17.0.9)",
            "Go-http-client/1.1",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "HeadlessChrome/124.0.6367.60 Safari/537.36",
            "MyCompanyMonitorBot/1.0",
        ],
    )
    def test_bots(self, parser: AgentParser, ua: str) -> None:
        """Crawlers (uap Spider) and automation tools are bots."""
        assert parser.parse(ua).is_bot is True

    def test_googlebot_is_a_spider(self, parser: AgentParser) -> None:
        """Googlebot is recognised by ua-parser itself."""
        assert parser.parse(GOOGLEBOT).device_family == "Spider"

    @pytest.mark.parametrize("ua", [CHROME, FIREFOX, IPHONE_SAFARI, CUBOT_PHONE])
    def test_browsers_are_not_bots(self, parser: AgentParser, ua: str) -> None:
        """Real browsers, including a phone brand that contains 'bot', are not bots."""
        assert parser.parse(ua).is_bot is False

    def test_automation_regex_alone(self) -> None:
        """The supplementary regex catches tools that ua-parser leaves as ordinary software."""
        assert is_automation("python-requests/2.31.0")
        assert not is_automation(CHROME)
