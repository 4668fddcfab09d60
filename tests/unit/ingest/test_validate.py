"""Message parsing and validation: every reason code, both timestamp forms, ids, limits, fuzzing."""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import fields
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clickstream.model import ClickEvent, Reason, Rejection
from clickstream.settings import IngestSettings
from ingest import validate
from ingest.validate import Limits, fingerprint, parse_click
from tests.paths import ROOT

# 2026-11-22T10:00:00Z
NOW = 1_795_341_600_000
DAY = 86_400_000
DEFAULTS = Limits()
SCHEMA = ROOT / "ingest" / "click.schema.json"
BASE: dict[str, Any] = {
    "user_id": "u-1",
    "timestamp": "2026-11-22T09:59:00Z",
    "url": "https://shop.example/p/7?x=1",
    "ip": "203.0.113.9",
}


RAW_CASES: list[tuple[bytes | None, Reason]] = [
    (None, Reason.EMPTY),
    (b"", Reason.EMPTY),
    (b"\xff\xfe{}", Reason.NOT_UTF8),
    (b'{"user_id": "\xc3("}', Reason.NOT_UTF8),
    (b'{"user_id": "\xed\xa0\x80"}', Reason.NOT_UTF8),
    (b"{", Reason.NOT_JSON),
    (b"   ", Reason.NOT_JSON),
    (b'{"a": 1} {"b": 2}', Reason.NOT_JSON),
    (b'{"timestamp": NaN}', Reason.NOT_JSON),
    (b'{"timestamp": -Infinity}', Reason.NOT_JSON),
    (b"\xef\xbb\xbf{}", Reason.NOT_JSON),
    (b"[" * 60_000, Reason.NOT_JSON),
    (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, Reason.NOT_JSON),
    (b'{"n": ' + b"9" * 5000 + b"}", Reason.NOT_JSON),
    (b"[1, 2]", Reason.NOT_OBJECT),
    (b'"text"', Reason.NOT_OBJECT),
    (b"null", Reason.NOT_OBJECT),
    (b"42", Reason.NOT_OBJECT),
    (b" " * 65_537, Reason.TOO_LARGE),
]
FIELD_CASES: list[tuple[dict[str, Any], Reason, str]] = [
    ({"user_id": None}, Reason.MISSING_FIELD, "user_id"),
    ({"timestamp": None}, Reason.MISSING_FIELD, "timestamp"),
    ({"url": None}, Reason.MISSING_FIELD, "url"),
    ({"user_id": ""}, Reason.MISSING_FIELD, "user_id"),
    ({"ip": None}, Reason.MISSING_FIELD, "ip"),
    ({"ip": "", "country": ""}, Reason.MISSING_FIELD, "ip"),
    ({"user_id": 7}, Reason.BAD_TYPE, "user_id"),
    ({"timestamp": True}, Reason.BAD_TYPE, "timestamp"),
    ({"timestamp": [1]}, Reason.BAD_TYPE, "timestamp"),
    ({"url": {"href": "x"}}, Reason.BAD_TYPE, "url"),
    ({"ip": 3232235777}, Reason.BAD_TYPE, "ip"),
    ({"country": 49}, Reason.BAD_TYPE, "country"),
    ({"event_id": 12}, Reason.BAD_TYPE, "event_id"),
    ({"user_agent": ["a"]}, Reason.BAD_TYPE, "user_agent"),
    ({"referrer": False}, Reason.BAD_TYPE, "referrer"),
    ({"session_id": 1.5}, Reason.BAD_TYPE, "session_id"),
    ({"city": {}}, Reason.BAD_TYPE, "city"),
    ({"user_id": "u" * 257}, Reason.FIELD_TOO_LONG, "user_id"),
    ({"url": "https://a.example/" + "p" * 8200}, Reason.FIELD_TOO_LONG, "url"),
    ({"user_agent": "M" * 2049}, Reason.FIELD_TOO_LONG, "user_agent"),
    ({"event_id": "e" * 129}, Reason.FIELD_TOO_LONG, "event_id"),
    ({"referrer": "r" * 8193}, Reason.FIELD_TOO_LONG, "referrer"),
    ({"session_id": "s" * 257}, Reason.FIELD_TOO_LONG, "session_id"),
    ({"city": "c" * 257}, Reason.FIELD_TOO_LONG, "city"),
    ({"user_id": "u\ud800"}, Reason.NOT_UTF8, "user_id"),
    ({"city": "\udc00"}, Reason.NOT_UTF8, "city"),
    ({"timestamp": 1.7e12}, Reason.BAD_TIMESTAMP, "timestamp"),
    ({"timestamp": "2026-11-22T10:00:00"}, Reason.BAD_TIMESTAMP, "timestamp"),
    ({"timestamp": "2026-11-22"}, Reason.BAD_TIMESTAMP, "timestamp"),
    ({"timestamp": "yesterday"}, Reason.BAD_TIMESTAMP, "timestamp"),
    ({"timestamp": "1795341600000"}, Reason.BAD_TIMESTAMP, "timestamp"),
    ({"timestamp": "2026-13-01T00:00:00Z"}, Reason.BAD_TIMESTAMP, "timestamp"),
    ({"timestamp": NOW - 31 * DAY}, Reason.TIMESTAMP_OUT_OF_RANGE, "timestamp"),
    ({"timestamp": "2026-11-22T10:10:00Z"}, Reason.TIMESTAMP_OUT_OF_RANGE, "timestamp"),
    ({"timestamp": -1}, Reason.TIMESTAMP_OUT_OF_RANGE, "timestamp"),
    ({"timestamp": 10**300}, Reason.TIMESTAMP_OUT_OF_RANGE, "timestamp"),
    ({"url": "ftp://files.example/a"}, Reason.BAD_URL, "url"),
    ({"url": "javascript:alert(1)"}, Reason.BAD_URL, "url"),
    ({"url": "/relative/path"}, Reason.BAD_URL, "url"),
    ({"url": "https:///no-host"}, Reason.BAD_URL, "url"),
    ({"url": "http://user@:80/"}, Reason.BAD_URL, "url"),
    ({"url": "https://a.example/with space"}, Reason.BAD_URL, "url"),
    ({"url": "https://a.example/\ttab"}, Reason.BAD_URL, "url"),
    ({"url": "https://a.example/\x00"}, Reason.BAD_URL, "url"),
    ({"url": "https://a.example/\u2028"}, Reason.BAD_URL, "url"),
    ({"url": "https://a.example:http/"}, Reason.BAD_URL, "url"),
    ({"url": "https://a.example:70000/"}, Reason.BAD_URL, "url"),
    ({"url": "http://[::1/"}, Reason.BAD_URL, "url"),
    ({"ip": "256.1.1.1"}, Reason.BAD_IP, "ip"),
    ({"ip": "010.1.1.1"}, Reason.BAD_IP, "ip"),
    ({"ip": "localhost"}, Reason.BAD_IP, "ip"),
    ({"ip": "fe80::1%eth0"}, Reason.BAD_IP, "ip"),
    ({"ip": "1" * 100}, Reason.BAD_IP, "ip"),
    ({"country": "DEU"}, Reason.BAD_COUNTRY, "country"),
    ({"country": "d1"}, Reason.BAD_COUNTRY, "country"),
    ({"country": "É"}, Reason.BAD_COUNTRY, "country"),
    ({"country": "ÉÉ"}, Reason.BAD_COUNTRY, "country"),
]


def encode(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def parse(payload: dict[str, Any], limits: Limits = DEFAULTS) -> ClickEvent | Rejection:
    return parse_click(encode(payload), NOW, limits)


def click(**fields: Any) -> ClickEvent:
    """Parse BASE with ``fields`` changed (None removes one), expecting a valid click."""
    payload = {**BASE, **fields}
    result = parse({k: v for k, v in payload.items() if v is not None})
    assert isinstance(result, ClickEvent), result
    return result


def rejection(value: bytes | None, limits: Limits = DEFAULTS) -> Rejection:
    result = parse_click(value, NOW, limits)
    assert isinstance(result, Rejection), result
    return result


class TestCoverage:
    def test_every_reason_has_a_sample(self) -> None:
        """Every reason code the parser can give has a sample input below."""
        source = inspect.getsource(validate)
        possible = {reason for reason in Reason if f"Reason.{reason.name}" in source}
        produced = {r for _, r in RAW_CASES} | {r for _, r, _ in FIELD_CASES}
        assert produced == possible
        assert len(possible) >= 13


class TestRawMessage:
    @pytest.mark.parametrize(("value", "reason"), RAW_CASES)
    def test_reason_and_no_field(self, value: bytes | None, reason: Reason) -> None:
        """Message-level failures carry their reason and no field name."""
        result = rejection(value)
        assert (result.reason, result.field) == (reason, None)

    def test_size_checked_before_decoding(self) -> None:
        """An oversized message is too_large even when it is not UTF-8."""
        result = rejection(b"\xff" * 101, Limits(max_message_bytes=100))
        assert result.reason is Reason.TOO_LARGE
        assert "101 bytes" in result.detail

    def test_size_limit_is_inclusive(self) -> None:
        """A message of exactly max_message_bytes is accepted."""
        value = encode(BASE)
        limits = Limits(max_message_bytes=len(value))
        assert isinstance(parse_click(value, NOW, limits), ClickEvent)
        assert rejection(value + b" ", limits).reason is Reason.TOO_LARGE

    def test_default_size_limit_is_64_kib(self) -> None:
        """The default limit is 65536 bytes."""
        assert Limits().max_message_bytes == 65_536
        assert rejection(b" " * 65_537).reason is Reason.TOO_LARGE

    def test_surrounding_whitespace_allowed(self) -> None:
        """JSON whitespace around the object is fine."""
        assert isinstance(parse_click(b"\n " + encode(BASE) + b"\r\n", NOW), ClickEvent)

    def test_detail_names_problem(self) -> None:
        """Details are readable sentences, e.g. naming the JSON type seen."""
        assert rejection(b"[1]").detail == "message is a JSON array, not an object"
        assert "NaN" in rejection(b"NaN").detail


class TestFields:
    @pytest.mark.parametrize(("fields", "reason", "field"), FIELD_CASES)
    def test_reason_and_field(self, fields: dict[str, Any], reason: Reason, field: str) -> None:
        """Each bad field yields its reason code and names the field."""
        payload = {k: v for k, v in {**BASE, **fields}.items() if v is not None}
        result = parse(payload)
        assert isinstance(result, Rejection), result
        assert (result.reason, result.field) == (reason, field)
        assert field in result.detail

    @pytest.mark.parametrize(
        ("payload", "reason", "field"),
        [
            ({}, Reason.MISSING_FIELD, "user_id"),
            ({"user_id": 1}, Reason.MISSING_FIELD, "timestamp"),
            ({"user_id": 1, "timestamp": 1.5}, Reason.MISSING_FIELD, "url"),
            ({"user_id": 1, "timestamp": 1.5, "url": 3}, Reason.BAD_TYPE, "user_id"),
            ({"user_id": "u", "timestamp": [], "url": 3}, Reason.BAD_TYPE, "timestamp"),
            ({"user_id": "u", "timestamp": 1.5, "url": 3}, Reason.BAD_TYPE, "url"),
            (
                {**BASE, "timestamp": "x", "url": "ftp://x", "ip": "x"},
                Reason.BAD_TIMESTAMP,
                "timestamp",
            ),
            (
                {**BASE, "timestamp": 0, "url": "ftp://x", "ip": "x"},
                Reason.TIMESTAMP_OUT_OF_RANGE,
                "timestamp",
            ),
            ({**BASE, "url": "ftp://x", "ip": "x", "country": "XXX"}, Reason.BAD_URL, "url"),
            ({**BASE, "ip": "x", "country": "XXX"}, Reason.BAD_IP, "ip"),
            ({**BASE, "country": "XXX", "event_id": 1}, Reason.BAD_COUNTRY, "country"),
            ({**BASE, "ip": None, "event_id": 1}, Reason.MISSING_FIELD, "ip"),
            ({**BASE, "event_id": 1, "city": 1}, Reason.BAD_TYPE, "event_id"),
        ],
    )
    def test_check_order(self, payload: dict[str, Any], reason: Reason, field: str) -> None:
        """With several faults, the first in the documented order is reported."""
        result = parse(payload)
        assert isinstance(result, Rejection)
        assert (result.reason, result.field) == (reason, field)

    @pytest.mark.parametrize("state", ["missing", "null", "empty"])
    def test_missing_detail_says_how(self, state: str) -> None:
        """The detail tells absent, null and empty apart."""
        payload = dict(BASE)
        if state == "missing":
            del payload["url"]
        else:
            payload["url"] = None if state == "null" else ""
        result = parse(payload)
        assert isinstance(result, Rejection)
        assert result.detail == f"required field url is {state}"

    def test_echoed_input_is_truncated(self) -> None:
        """A long bad value is quoted in the detail only up to ~80 characters."""
        result = parse({**BASE, "url": "ftp://" + "x" * 5000})
        assert isinstance(result, Rejection)
        assert result.reason is Reason.BAD_URL
        assert len(result.detail) < 140
        assert "..." in result.detail

    def test_control_characters_are_escaped_in_detail(self) -> None:
        """Echoed input cannot smuggle raw control characters into a header."""
        result = parse({**BASE, "ip": "1.2.3.4\n\x1b[31m"})
        assert isinstance(result, Rejection)
        assert "\n" not in result.detail
        assert "\x1b" not in result.detail


class TestValidClick:
    def test_iso_timestamp_with_z(self) -> None:
        """'Z' is UTC."""
        assert click(timestamp="2026-11-22T10:00:00Z").timestamp_ms == NOW

    def test_iso_timestamp_with_offset(self) -> None:
        """An offset is applied: 12:00+02:00 is 10:00Z."""
        assert click(timestamp="2026-11-22T12:00:00+02:00").timestamp_ms == NOW

    def test_iso_fraction_truncated_to_ms(self) -> None:
        """Sub-millisecond digits are dropped, exactly (no float rounding)."""
        assert click(timestamp="2026-11-22T09:59:59.999999Z").timestamp_ms == NOW - 1
        assert click(timestamp="2026-11-22T09:59:58.5-00:00").timestamp_ms == NOW - 1500

    def test_epoch_milliseconds(self) -> None:
        """An integer is taken as epoch milliseconds, unchanged."""
        assert click(timestamp=NOW - 1234).timestamp_ms == NOW - 1234

    def test_both_forms_agree(self) -> None:
        """The same instant in either form gives the same click and fingerprint."""
        assert click(timestamp="2026-11-22T10:00:00Z") == click(timestamp=NOW)

    def test_fields_carried(self) -> None:
        """Every optional field lands in the ClickEvent unchanged."""
        event = click(
            event_id="e-1",
            user_agent="Mozilla/5.0",
            referrer="https://ref.example/",
            session_id="s-9",
            city="Zürich",
            country="ch",
        )
        assert event == ClickEvent(
            event_id="e-1",
            user_id="u-1",
            timestamp_ms=NOW - 60_000,
            url="https://shop.example/p/7?x=1",
            ip="203.0.113.9",
            user_agent="Mozilla/5.0",
            referrer="https://ref.example/",
            session_id="s-9",
            country="CH",
            city="Zürich",
            event_id_generated=False,
        )

    @pytest.mark.parametrize(("given", "stored"), [("de", "DE"), ("De", "DE"), ("US", "US")])
    def test_country_upper_cased(self, given: str, stored: str) -> None:
        """Country codes are case-insensitive and stored upper-case."""
        assert click(country=given).country == stored

    def test_country_replaces_ip(self) -> None:
        """With a country, the ip may be omitted."""
        event = click(ip=None, country="fr")
        assert (event.ip, event.country) == (None, "FR")

    @pytest.mark.parametrize(
        ("given", "stored"),
        [
            ("2001:db8::1", "2001:db8::1"),
            ("2001:DB8:0:0:0:0:0:0001", "2001:db8::1"),
            ("::1", "::1"),
            ("192.0.2.1", "192.0.2.1"),
        ],
    )
    def test_ip_accepted_in_canonical_form(self, given: str, stored: str) -> None:
        """IPv4 and IPv6 are accepted; IPv6 is stored compressed and lower-case."""
        assert click(ip=given).ip == stored

    def test_unknown_fields_ignored(self) -> None:
        """Extra fields, even bad or nested ones, do not matter."""
        plain = click()
        assert click(extra={"deep": [1, None, "x"]}, version=2, flag=True) == plain

    def test_empty_optional_strings_are_absent(self) -> None:
        """An empty optional string is stored as None."""
        event = click(user_agent="", referrer="", session_id="", city="")
        assert (event.user_agent, event.referrer, event.session_id, event.city) == (None,) * 4

    @pytest.mark.parametrize(
        "url",
        [
            "http://a.example",
            "HTTPS://A.EXAMPLE:8443/p#frag",
            "https://[2001:db8::1]/",
            "https://例え.jp/パス",
            "https://a.example/%20encoded?q=a%26b",
        ],
    )
    def test_urls_accepted(self, url: str) -> None:
        """Absolute http(s) URLs with a host are stored as sent."""
        assert click(url=url).url == url

    def test_limits_at_their_maximum(self) -> None:
        """Each length limit is inclusive."""
        event = click(
            user_id="u" * 256,
            user_agent="a" * 2048,
            event_id="e" * 128,
            session_id="s" * 256,
            city="c" * 256,
        )
        assert len(event.user_id) == 256
        assert event.event_id == "e" * 128


class TestEventId:
    def test_generated_when_absent(self) -> None:
        """Without an event_id, the fingerprint is used and flagged as generated."""
        event = click()
        assert event.event_id == fingerprint("u-1", NOW - 60_000, BASE["url"])
        assert event.event_id_generated is True

    @pytest.mark.parametrize("value", [None, ""])
    def test_generated_when_null_or_empty(self, value: str | None) -> None:
        """A null or empty event_id counts as absent."""
        event = parse({**BASE, "event_id": value})
        assert isinstance(event, ClickEvent)
        assert event.event_id_generated is True
        assert event.event_id.startswith("fp-")

    def test_sender_id_kept(self) -> None:
        """A sender's event_id is used as is and not flagged."""
        event = click(event_id="abc")
        assert (event.event_id, event.event_id_generated) == ("abc", False)

    def test_fingerprint_format(self) -> None:
        """'fp-' and the first 32 hex digits of sha256(user NUL ms NUL url)."""
        digest = hashlib.sha256(b"u\x0042\x00http://a.example/").hexdigest()
        assert fingerprint("u", 42, "http://a.example/") == "fp-" + digest[:32]

    def test_fingerprint_deterministic(self) -> None:
        """A replayed message gets the same id."""
        value = encode(BASE)
        first, second = parse_click(value, NOW), parse_click(value, NOW + 1000)
        assert isinstance(first, ClickEvent)
        assert isinstance(second, ClickEvent)
        assert first.event_id == second.event_id

    @pytest.mark.parametrize(
        "changed", [{"user_id": "u-2"}, {"timestamp": NOW - 1}, {"url": "https://shop.example/"}]
    )
    def test_fingerprint_depends_on_each_part(self, changed: dict[str, Any]) -> None:
        """User, time and URL each change the fingerprint."""
        assert click(**changed).event_id != click().event_id

    def test_fingerprint_ignores_other_fields(self) -> None:
        """Agent, referrer and geo do not enter the fingerprint."""
        assert click(user_agent="x", country="de").event_id == click().event_id

    @given(st.text(), st.integers(), st.text())
    def test_fingerprint_total(self, user_id: str, ts: int, url: str) -> None:
        """Any input, even with lone surrogates, gives a 35-character id."""
        result = fingerprint(user_id, ts, url)
        assert len(result) == 35
        assert result.startswith("fp-")


class TestWindow:
    limits = Limits(max_event_age_ms=10 * DAY, max_future_ms=5_000)

    @pytest.mark.parametrize(
        ("timestamp", "accepted"),
        [
            (NOW - 10 * DAY, True),
            (NOW - 10 * DAY - 1, False),
            (NOW + 5_000, True),
            (NOW + 5_001, False),
            (NOW, True),
        ],
    )
    def test_edges_inclusive(self, timestamp: int, accepted: bool) -> None:
        """The window [now - age, now + future] includes both ends."""
        result = parse({**BASE, "timestamp": timestamp}, self.limits)
        assert isinstance(result, ClickEvent) is accepted
        if not accepted:
            assert isinstance(result, Rejection)
            assert result.reason is Reason.TIMESTAMP_OUT_OF_RANGE

    def test_detail_says_how_far(self) -> None:
        """The detail states the age and the limit."""
        result = parse({**BASE, "timestamp": NOW - 12 * DAY}, self.limits)
        assert isinstance(result, Rejection)
        assert "12 days old; the limit is 10 days" in result.detail

    def test_defaults(self) -> None:
        """30 days back, 5 minutes ahead by default."""
        assert Limits() == Limits(65_536, 30 * DAY, 300_000)

    def test_from_settings(self) -> None:
        """Days and seconds in the settings become milliseconds."""
        ingest = IngestSettings(max_message_bytes=1000, max_event_age_days=2, max_future_s=7)
        assert Limits.from_settings(ingest) == Limits(1000, 2 * DAY, 7000)

    def test_from_default_settings_matches_defaults(self) -> None:
        """The settings' defaults and the Limits defaults agree."""
        assert Limits.from_settings(IngestSettings()) == Limits()


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
_fields = st.sampled_from(
    [
        "user_id",
        "timestamp",
        "url",
        "ip",
        "country",
        "event_id",
        "user_agent",
        "referrer",
        "session_id",
        "city",
    ]
)
_plausible = st.one_of(
    _json,
    st.sampled_from(
        ["u", "", "2026-11-22T09:00:00Z", "http://a.b/", "1.2.3.4", "::1", "de", "\ud800"]
    ),
    st.integers(NOW - 40 * DAY, NOW + 40 * DAY),
)


class TestNeverRaises:
    def check(self, value: bytes) -> None:
        result = parse_click(value, NOW)
        assert isinstance(result, ClickEvent | Rejection)
        if isinstance(result, Rejection):
            assert result.reason in Reason
            assert len(result.detail) < 300
            result.detail.encode()  # fit for a Kafka header

    @given(st.binary(max_size=512))
    def test_arbitrary_bytes(self, value: bytes) -> None:
        """Any bytes give a click or a rejection."""
        self.check(value)

    @given(_json)
    def test_arbitrary_json(self, value: Any) -> None:
        """Any JSON value gives a click or a rejection."""
        self.check(json.dumps(value).encode())

    @settings(suppress_health_check=[HealthCheck.too_slow])
    @given(st.just(BASE), st.dictionaries(_fields, _plausible))
    def test_near_valid_objects(self, base: dict[str, Any], fields: dict[str, Any]) -> None:
        """Objects close to valid, with fields swapped for arbitrary values, never raise."""
        self.check(json.dumps({**base, **fields}).encode())


class TestSchema:
    schema: dict[str, Any] = json.loads(SCHEMA.read_text(encoding="utf-8"))

    def test_draft_2020_12(self) -> None:
        """The schema declares the draft it is written in."""
        assert self.schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"

    def test_required_fields(self) -> None:
        """user_id, timestamp and url are required; ip or country."""
        assert self.schema["required"] == ["user_id", "timestamp", "url"]
        alternatives = [branch["required"] for branch in self.schema["anyOf"]]
        assert alternatives == [["ip"], ["country"]]

    def test_properties_match_the_model(self) -> None:
        """Every field the parser reads is documented, and nothing else."""
        documented = set(self.schema["properties"])
        model = {f.name for f in fields(ClickEvent)} - {"timestamp_ms", "event_id_generated"}
        assert documented == model | {"timestamp"}

    @pytest.mark.parametrize(
        ("name", "limit"),
        [("user_id", 256), ("url", 8192), ("user_agent", 2048), ("event_id", 128)],
    )
    def test_lengths_match_the_code(self, name: str, limit: int) -> None:
        """maxLength in the schema is the limit the parser enforces."""
        assert self.schema["properties"][name]["maxLength"] == limit
        result = parse({**BASE, name: "h" * (limit + 1)})
        assert isinstance(result, Rejection)
        assert result.reason is Reason.FIELD_TOO_LONG

    def test_examples_are_valid(self) -> None:
        """The schema's examples pass the parser."""
        for example in self.schema["examples"]:
            assert isinstance(parse(example), ClickEvent)
