"""Query parameters: every rule names the parameter and the fix (CLI and API share them)."""

from __future__ import annotations

import re

import pytest

from clickstream.settings import ServingSettings
from clickstream.times import iso
from serving.errors import QueryError, RangeRuleError
from serving.params import TIME_PATTERN, MetricsQuery, build_query, parse_time

SETTINGS = ServingSettings(max_range_days=2, max_top=50, max_url_prefix_bytes=16)
H = 1_795_341_600_000  # 2026-11-22T10:00:00Z


def query(**params: str | int | None) -> MetricsQuery:
    base: dict[str, str | int | None] = {
        "since": "2026-11-22T10:00:00Z",
        "until": "2026-11-22T11:00:00Z",
    }
    return build_query(SETTINGS, **{**base, **params})  # type: ignore[arg-type]


def refused(**params: str | int | None) -> QueryError:
    with pytest.raises(QueryError) as caught:
        query(**params)
    return caught.value


class TestTimes:
    def test_iso_with_offset_is_epoch_ms(self) -> None:
        """Z, +00:00 and other offsets give the same instant."""
        assert parse_time("2026-11-22T10:00:00Z", "from") == H
        assert parse_time("2026-11-22T12:00:00+02:00", "from") == H
        assert parse_time("2026-11-22T10:00:00.250Z", "from") == H + 250

    def test_plus_sent_unencoded_in_a_url_is_read_as_plus(self) -> None:
        """'+02:00' arrives as ' 02:00' from a query string; it is still the offset."""
        assert parse_time("2026-11-22T12:00:00 02:00", "to") == H

    @pytest.mark.parametrize(
        ("text", "problem"),
        [
            ("yesterday", "not an ISO-8601 time"),
            ("2026-11-22T10:00:00", "no UTC offset"),
            ("1969-12-31T23:00:00Z", "before 1970"),
            ("0001-01-01T00:00:00+01:00", "before 1970"),
            ("9999-12-31T23:59:00-01:00", "after 9999"),
            ("", "not an ISO-8601 time"),
        ],
    )
    def test_bad_times_name_the_parameter_and_the_fix(self, text: str, problem: str) -> None:
        """Each malformed time is refused with what is wrong and an example."""
        error = refused(since=text)
        assert error.parameter == "from"
        assert problem in error.problem
        assert str(error).startswith("from: ")
        assert "2026-11-22T10:00:00Z" in error.fix or "time" in error.fix

    def test_to_must_be_after_from(self) -> None:
        """An empty or inverted range is refused on `to`."""
        assert refused(until="2026-11-22T10:00:00Z").parameter == "to"
        assert refused(until="2026-11-22T09:00:00Z").parameter == "to"

    def test_an_over_long_range_names_the_setting(self) -> None:
        """More than max_range_days is refused, naming the setting to raise."""
        error = refused(until="2026-11-25T10:00:00Z")
        assert error.parameter == "to"
        assert "serving.max_range_days = 2" in str(error)
        assert "CLICKSTREAM_SERVING__MAX_RANGE_DAYS" in str(error)

    def test_iso_renders_utc(self) -> None:
        """Milliseconds appear only when there are some."""
        assert iso(H) == "2026-11-22T10:00:00Z"
        assert iso(H + 5) == "2026-11-22T10:00:00.005Z"


class TestFilters:
    def test_defaults(self) -> None:
        """No filter, no grouping, no top."""
        assert query() == MetricsQuery(H, H + 3_600_000)

    def test_country_is_upper_cased(self) -> None:
        """de -> DE; empty means none."""
        assert query(country="de").country == "DE"
        assert query(country="").country is None

    @pytest.mark.parametrize("country", ["DEU", "D", "d1", "ÉÉ", " de"])
    def test_a_bad_country_is_refused(self, country: str) -> None:
        """Anything but two ASCII letters."""
        assert refused(country=country).parameter == "country"

    def test_url_prefix_is_kept_as_given(self) -> None:
        """The prefix matches the normalised URL, case and all."""
        assert query(url="https://a.ex/P").url_prefix == "https://a.ex/P"

    def test_an_over_long_url_prefix_is_refused_in_bytes(self) -> None:
        """The limit is UTF-8 bytes: 8 two-byte letters fit 16, 9 do not."""
        assert query(url="é" * 8).url_prefix == "é" * 8
        error = refused(url="é" * 9)
        assert error.parameter == "url"
        assert "18 bytes" in error.problem

    def test_a_lone_surrogate_is_refused(self) -> None:
        """Text that cannot be UTF-8 never reaches Elasticsearch."""
        assert refused(url="\ud800").parameter == "url"

    @pytest.mark.parametrize(
        ("text", "fields"),
        [
            (None, ()),
            ("", ()),
            ("url", ("url",)),
            ("country", ("country",)),
            ("url,country", ("url", "country")),
            ("country, url", ("url", "country")),
        ],
    )
    def test_group_by(self, text: str | None, fields: tuple[str, ...]) -> None:
        """The accepted spellings of the grouping."""
        assert query(group_by=text).group_by == fields

    def test_a_bad_group_by_lists_the_choices(self) -> None:
        """An unknown grouping names the valid ones."""
        error = refused(group_by="browser")
        assert error.parameter == "group_by"
        assert "url, country, url,country" in error.fix

    @pytest.mark.parametrize("top", [0, -1, 51, "ten", "1.5"])
    def test_a_bad_top_is_refused(self, top: int | str) -> None:
        """top is a whole number from 1 to max_top."""
        assert refused(top=top).parameter == "top"

    def test_top(self) -> None:
        """A number or its text."""
        assert query(top=5).top == 5
        assert query(top="50").top == 50

    def test_cli_spelling_of_the_parameter(self) -> None:
        """The CLI shows flags: group_by -> --group-by."""
        assert refused(group_by="x").for_cli().startswith("--group-by: ")


class TestTimePattern:
    """The API's schema pattern for times, against the parser behind it."""

    @pytest.mark.parametrize(
        "text",
        [
            "2026-11-22T10:00:00Z",
            "2026-11-22T10:00Z",
            "2026-11-22 10:00:00.123456+02:00",
            "2026-11-22T10:00:00+0200",
            "2026-11-22T10:00:00 02:00",  # an unencoded '+' arrives as a space
            "1970-01-01T00:00:00Z",
        ],
    )
    def test_what_the_pattern_allows_parses(self, text: str) -> None:
        assert re.fullmatch(TIME_PATTERN, text)
        assert parse_time(text, "from") >= 0

    @pytest.mark.parametrize(
        "text",
        [
            "",
            "now",
            "2026-11-22",
            "2026-11-22T10:00:00",
            "1969-12-31T23:59:59Z",
            "2026-13-01T00:00Z",
        ],
    )
    def test_the_pattern_refuses(self, text: str) -> None:
        assert not re.fullmatch(TIME_PATTERN, text)

    @pytest.mark.parametrize("text", ["2026-02-30T10:00Z", "1970-01-01T00:30+01:00"])
    def test_what_only_the_calendar_refuses_is_a_range_rule(self, text: str) -> None:
        assert re.fullmatch(TIME_PATTERN, text)
        with pytest.raises(RangeRuleError):
            parse_time(text, "from")
