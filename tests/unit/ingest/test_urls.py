"""URL normalisation rules."""

from __future__ import annotations

import pytest

from ingest.urls import normalize_url


class TestNormalizeUrl:
    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("HTTP://Example.COM/Path", "http://example.com/Path"),
            ("https://example.com", "https://example.com/"),
            ("https://example.com?", "https://example.com/"),
            ("http://example.com:80/a", "http://example.com/a"),
            ("https://example.com:443/a", "https://example.com/a"),
            ("http://example.com:443/a", "http://example.com:443/a"),
            ("https://example.com:8443/a", "https://example.com:8443/a"),
            ("https://example.com/a#section", "https://example.com/a"),
            ("https://example.com/a/?utm_source=x&id=1", "https://example.com/a/"),
            ("https://user:secret@example.com/a", "https://example.com/a"),
            ("http://[2001:DB8::1]:8080/a", "http://[2001:db8::1]:8080/a"),
            ("http://[2001:db8::1]:80/", "http://[2001:db8::1]/"),
            ("https://example.com/A%2Fb/", "https://example.com/A%2Fb/"),
            ("https://example.com//a//", "https://example.com//a//"),
        ],
    )
    def test_rules_without_allowlist(self, url: str, expected: str) -> None:
        """Scheme/host lower-cased, default port, fragment, query and userinfo dropped."""
        assert normalize_url(url) == expected

    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("https://e.com/s?q=Shoes&utm_source=x&page=2", "https://e.com/s?page=2&q=Shoes"),
            ("https://e.com/s?utm_source=x", "https://e.com/s"),
            ("https://e.com/s?q=a%20b+c", "https://e.com/s?q=a%20b+c"),
            ("https://e.com/s?tag=b&q=1&tag=a", "https://e.com/s?q=1&tag=b&tag=a"),
            ("https://e.com/s?q=&page", "https://e.com/s?page&q="),
            ("https://e.com/s?Q=1&q=2", "https://e.com/s?q=2"),
            ("https://e.com/s?%71=1&&q=2#frag", "https://e.com/s?%71=1&q=2"),
        ],
    )
    def test_allow_listed_query(self, url: str, expected: str) -> None:
        """Only allow-listed parameters stay, sorted by name, with their original spelling."""
        assert normalize_url(url, frozenset({"q", "page", "tag"})) == expected

    def test_idempotent(self) -> None:
        """Normalising a normalised URL changes nothing."""
        once = normalize_url("HTTPS://A.b:443?page=1&x=2#f", frozenset({"page"}))
        assert normalize_url(once, frozenset({"page"})) == once == "https://a.b/?page=1"

    def test_url_without_host_raises(self) -> None:
        """A URL with no host is a programming error here (the validator rejects it)."""
        with pytest.raises(ValueError, match="host"):
            normalize_url("https:///path")
