"""Access-log import: which lines become clicks, what the events hold, plain and gzip files."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest

from clickstream.model import ClickEvent
from ingest.validate import parse_click
from traffic.accesslog import Malformed, Skip, SkipReason, parse_line, read_log

SITE = "https://www.example.com"
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
PAGE = (
    '203.0.113.7 - frank [10/Oct/2026:13:55:36 -0700] "GET /products/42?ref=mail HTTP/1.1" 200 '
    f'2326 "https://www.google.com/" "{UA}"'
)


def _line(request: str = "GET /a HTTP/1.1", status: int = 200, referrer: str = "-") -> str:
    return f'198.51.100.1 - - [10/Oct/2026:13:55:36 +0000] "{request}" {status} 10 "{referrer}" "x"'


class TestParseLine:
    def test_page_view_becomes_an_event(self) -> None:
        """A GET 200 becomes the JSON event: hashed user, UTC time, site + target, ip, UA."""
        expected_user = "ip-" + hashlib.sha256(f"203.0.113.7\x00{UA}".encode()).hexdigest()[:16]
        assert parse_line(PAGE, SITE) == {
            "user_id": expected_user,
            "timestamp": "2026-10-10T20:55:36Z",
            "url": "https://www.example.com/products/42?ref=mail",
            "ip": "203.0.113.7",
            "user_agent": UA,
            "referrer": "https://www.google.com/",
        }

    def test_event_passes_the_validator(self) -> None:
        """The pipeline accepts the event as a click (no event_id: it is fingerprinted)."""
        event = parse_line(PAGE, SITE + "/")
        assert isinstance(event, dict)
        click = parse_click(json.dumps(event).encode(), now_ms=1_791_666_000_000)
        assert isinstance(click, ClickEvent)
        assert click.event_id_generated
        assert click.url == "https://www.example.com/products/42?ref=mail"

    def test_dash_referrer_is_absent(self) -> None:
        """A ``-`` referrer is left out of the event."""
        event = parse_line(_line(referrer="-"), SITE)
        assert isinstance(event, dict)
        assert "referrer" not in event

    def test_user_is_ip_and_agent(self) -> None:
        """Same IP and UA, same user; another UA on that IP, another user."""
        first = parse_line(PAGE, SITE)
        second = parse_line(PAGE.replace("/products/42", "/about"), SITE)
        other = parse_line(PAGE.replace("Firefox/133.0", "Firefox/132.0"), SITE)
        assert isinstance(first, dict)
        assert isinstance(second, dict)
        assert isinstance(other, dict)
        assert first["user_id"] == second["user_id"] != other["user_id"]

    def test_common_log_format_without_agent(self) -> None:
        """A common-format line (no referrer, no UA) is kept without user_agent."""
        line = '192.0.2.5 - - [01/Jan/2026:00:00:00 +0100] "GET /x HTTP/1.0" 304 -'
        event = parse_line(line, SITE)
        assert isinstance(event, dict)
        assert event["timestamp"] == "2025-12-31T23:00:00Z"
        assert "user_agent" not in event

    def test_escaped_quotes_in_agent(self) -> None:
        """Apache's \\" and Nginx's \\x22 inside the UA are unescaped."""
        line = _line().replace('"x"', r'"say \"hi\" \x22x\x22"')
        event = parse_line(line, SITE)
        assert isinstance(event, dict)
        assert event["user_agent"] == 'say "hi" "x"'

    def test_ipv6_client(self) -> None:
        """An IPv6 client address is kept, in canonical form."""
        event = parse_line(_line().replace("198.51.100.1", "2001:DB8::1"), SITE)
        assert isinstance(event, dict)
        assert event["ip"] == "2001:db8::1"

    @pytest.mark.parametrize(
        ("request_line", "status", "reason"),
        [
            ("POST /cart HTTP/1.1", 200, SkipReason.METHOD),
            ("HEAD / HTTP/1.1", 200, SkipReason.METHOD),
            ("-", 408, SkipReason.METHOD),
            ("GET /missing HTTP/1.1", 404, SkipReason.STATUS),
            ("GET /boom HTTP/1.1", 500, SkipReason.STATUS),
            ("GET /old HTTP/1.1", 199, SkipReason.STATUS),
            ("GET /static/app.CSS?v=3 HTTP/1.1", 200, SkipReason.STATIC),
            ("GET /img/logo.webp HTTP/1.1", 200, SkipReason.STATIC),
            ("GET /favicon.ico HTTP/1.1", 200, SkipReason.STATIC),
            ("GET /fonts/a.woff2 HTTP/2.0", 304, SkipReason.STATIC),
        ],
    )
    def test_skipped(self, request_line: str, status: int, reason: SkipReason) -> None:
        """Non-GET, status outside 200-399 and static assets are skipped with the reason."""
        assert parse_line(_line(request_line, status), SITE) == Skip(reason)

    @pytest.mark.parametrize(
        ("request_line", "status"),
        [("GET /moved HTTP/1.1", 301), ("GET /cached HTTP/1.1", 304), ("GET /doc.pdf", 200)],
    )
    def test_kept(self, request_line: str, status: int) -> None:
        """Redirects, not-modified and documents (.pdf) count as page views."""
        assert isinstance(parse_line(_line(request_line, status), SITE), dict)

    @pytest.mark.parametrize(
        ("line", "detail"),
        [
            ("garbage", "not in combined or common log format"),
            ("", "not in combined or common log format"),
            (_line().replace("Oct", "Okt"), "bad time"),
            (_line().replace("13:55:36", "25:55:36"), "bad time"),
            (_line().replace("198.51.100.1", "crawler.example.net"), "is not an IP address"),
            (_line("GET index.html HTTP/1.1"), "is not a path"),
        ],
    )
    def test_malformed_with_line_number(self, line: str, detail: str) -> None:
        """A line that does not parse is Malformed, with its number and a reason."""
        result = parse_line(line, SITE, line_no=17)
        assert isinstance(result, Malformed)
        assert result.line_no == 17
        assert detail in result.reason


SAMPLE = [
    PAGE,
    _line("POST /cart HTTP/1.1"),
    _line("GET /style.css HTTP/1.1"),
    "not a log line",
    _line("GET /missing HTTP/1.1", 404),
    _line("GET /b HTTP/1.1"),
]


class TestReadLog:
    @pytest.mark.parametrize("name", ["access.log", "access.log.gz"])
    def test_counts_and_emits(self, tmp_path: Path, name: str) -> None:
        """Plain and gzip files: 2 kept (emitted, keyed by user), 3 skipped, 1 malformed."""
        path = tmp_path / name
        data = ("\n".join(SAMPLE) + "\n").encode()
        path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
        emitted: list[tuple[bytes, bytes]] = []
        progress: list[str] = []
        report = read_log(
            path, SITE, lambda key, value: emitted.append((key, value)), progress.append
        )
        assert (report.lines, report.kept, report.malformed) == (6, 2, 1)
        assert report.skipped == {"method": 1, "static": 1, "status": 1}
        assert report.examples == (Malformed(4, "not in combined or common log format"),)
        urls = [json.loads(value)["url"] for _, value in emitted]
        assert urls == [f"{SITE}/products/42?ref=mail", f"{SITE}/b"]
        assert all(key == json.loads(value)["user_id"].encode() for key, value in emitted)
        summary = "6 lines, 2 kept, skipped {'method': 1, 'static': 1, 'status': 1}, 1 malformed"
        assert progress[-1] == f"{name}: {summary}"

    def test_undecodable_bytes_do_not_lose_the_line(self, tmp_path: Path) -> None:
        """A stray non-UTF-8 byte in the UA is replaced, the line still counts."""
        path = tmp_path / "latin1.log"
        path.write_bytes(_line().replace('"x"', '"caf\xe9"').encode("latin-1") + b"\n")
        emitted: list[bytes] = []
        report = read_log(path, SITE, lambda _key, value: emitted.append(value), lambda _: None)
        assert report.kept == 1
        assert json.loads(emitted[0])["user_agent"] == "caf\ufffd"

    def test_progress_by_bytes(self, tmp_path: Path) -> None:
        """A big file reports progress in steps of 10 % of its size, ending at 100 %."""
        path = tmp_path / "big.log"
        path.write_text("\n".join([_line()] * 5000) + "\n")
        progress: list[str] = []
        read_log(path, SITE, lambda _k, _v: None, progress.append)
        percents = [line for line in progress if line.startswith("read ")]
        assert percents[-1] == "read 100% of big.log"
        assert 3 <= len(percents) <= 10
