"""Query parameters, validated once for the CLI and the HTTP API (pure: no I/O).

Every rule raises :class:`~serving.errors.QueryError` naming the parameter, what is wrong and
the fix, so a caller can show it as a command-line error or a 4xx body.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from clickstream.settings import ServingSettings
from clickstream.times import (
    DAY_MS,
    EPOCH,
    NotIsoTimeError,
    NoUtcOffsetError,
    iso,
    parse_ms,
)
from serving.errors import QueryError, RangeRuleError

#: The last millisecond an answer can show (ISO-8601 years have four digits).
LAST_MS: Final = (datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC) - EPOCH) // timedelta(
    milliseconds=1
)
EXAMPLE_TIME: Final = "2026-11-22T10:00:00Z"
#: The times the HTTP API accepts, as its OpenAPI schema states them: a date from 1970, ``T``
#: (or a space), hours and minutes, optional seconds and fraction, and a UTC offset (``Z`` or
#: ``+HH:MM``; a space for the ``+`` an unencoded URL turns into one). What a pattern cannot say
#: (30 February; an offset that moves the instant before 1970) is a :class:`RangeRuleError`.
TIME_PATTERN: Final = (
    r"^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[T ]"
    r"([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?"
    r"(Z|[+ -]([01][0-9]|2[0-3])(:?[0-5][0-9])?)$"
)

#: Accepted spellings of group_by -> the group key fields, in output order.
GROUPINGS: Final[dict[str, tuple[str, ...]]] = {
    "": (),
    "none": (),
    "url": ("url",),
    "country": ("country",),
    "url,country": ("url", "country"),
    "country,url": ("url", "country"),
}
GROUP_BY_CHOICES: Final = ("url", "country", "url,country")


@dataclass(frozen=True, slots=True)
class MetricsQuery:
    """A validated query: ``[from_ms, to_ms)``, optional filters, grouping and top N."""

    from_ms: int
    to_ms: int
    url_prefix: str | None = None
    country: str | None = None
    group_by: tuple[str, ...] = ()
    top: int | None = None
    #: Whether ``top`` is serving.default_top because the query gave none.
    default_top: bool = False


def parse_time(text: str, parameter: str) -> int:
    """An ISO-8601 time with a UTC offset as epoch milliseconds."""
    fix = f"give an ISO-8601 time with a UTC offset, e.g. {EXAMPLE_TIME}"
    # In a URL query string an unencoded '+' arrives as a space: "10:00:00 02:00" means +02:00.
    cleaned = re.sub(r" (\d\d(:?\d\d)?)$", r"+\1", text.strip())
    try:
        ms = parse_ms(cleaned)
    except NotIsoTimeError:
        if re.fullmatch(TIME_PATTERN, text):  # well formed, but no such day (30 February)
            raise RangeRuleError(parameter, f"{text!r} is not a date", fix) from None
        raise QueryError(parameter, f"not an ISO-8601 time: {text!r}", fix) from None
    except NoUtcOffsetError:
        raise QueryError(
            parameter, f"{text!r} has no UTC offset", f"{fix} (a trailing Z)"
        ) from None
    except OverflowError:
        raise QueryError(parameter, f"{text!r} is out of range", fix) from None
    if ms < 0:
        raise RangeRuleError(parameter, f"{text!r} is before 1970-01-01", "give a later time")
    if ms > LAST_MS:
        raise RangeRuleError(parameter, f"{text!r} is after 9999-12-31", "give an earlier time")
    return ms


def parse_group_by(text: str | None) -> tuple[str, ...]:
    """``url``, ``country``, ``url,country`` (or nothing: only the total)."""
    key = (text or "").strip().lower().replace(" ", "")
    if key not in GROUPINGS:
        raise QueryError(
            "group_by", f"unknown grouping {text!r}", f"use one of {', '.join(GROUP_BY_CHOICES)}"
        )
    return GROUPINGS[key]


def parse_country(text: str | None) -> str | None:
    """An ISO 3166-1 alpha-2 code, upper-cased (``ZZ`` is the unknown country)."""
    if text is None or text == "":
        return None
    if not re.fullmatch(r"[A-Za-z]{2}", text):
        raise QueryError(
            "country", f"{text!r} is not two letters", "give an ISO 3166-1 alpha-2 code, e.g. DE"
        )
    return text.upper()


def parse_url_prefix(text: str | None, max_bytes: int) -> str | None:
    """A prefix of the normalised URL (the group key), at most ``max_bytes`` in UTF-8."""
    if text is None or text == "":
        return None
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise QueryError("url", "is not valid Unicode text", "give a URL prefix as UTF-8") from None
    if size > max_bytes:
        raise QueryError(
            "url",
            f"the prefix is {size} bytes, more than serving.max_url_prefix_bytes = {max_bytes}",
            "give a shorter prefix",
        )
    return text


def parse_top(value: int | str | None, max_top: int) -> int | None:
    """How many groups to keep (the most clicked), 1 .. ``max_top``."""
    if value is None or value == "":
        return None
    try:
        top = int(value)
    except ValueError:
        raise QueryError("top", f"{value!r} is not a whole number", "give e.g. 10") from None
    if not 1 <= top <= max_top:
        raise QueryError(
            "top",
            f"{top} is out of bounds",
            f"give a number from 1 to {max_top} (serving.max_top)",
        )
    return top


def build_query(
    settings: ServingSettings,
    *,
    since: str,
    until: str,
    url: str | None = None,
    country: str | None = None,
    group_by: str | None = None,
    top: int | str | None = None,
) -> MetricsQuery:
    """Validate every parameter (first fault wins, in the order of the signature)."""
    from_ms = parse_time(since, "from")
    to_ms = parse_time(until, "to")
    if to_ms <= from_ms:
        raise RangeRuleError(
            "to",
            f"{until!r} is not after from ({iso(from_ms)})",
            "give a later end or an earlier start",
        )
    days = (to_ms - from_ms) / DAY_MS
    if days > settings.max_range_days:
        raise RangeRuleError(
            "to",
            f"the range spans {days:.1f} days, more than serving.max_range_days = "
            f"{settings.max_range_days}",
            "narrow the range (or raise CLICKSTREAM_SERVING__MAX_RANGE_DAYS)",
        )
    grouping = parse_group_by(group_by)
    kept = parse_top(top, settings.max_top)
    defaulted = bool(grouping) and kept is None
    return MetricsQuery(
        from_ms=from_ms,
        to_ms=to_ms,
        url_prefix=parse_url_prefix(url, settings.max_url_prefix_bytes),
        country=parse_country(country),
        group_by=grouping,
        top=settings.default_top if defaulted else kept,
        default_top=defaulted,
    )
