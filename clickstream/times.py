"""Time in the pipeline: epoch milliseconds in UTC, and ISO-8601 text that must say its offset.

One definition of the units and one parser, so the daemon, the batch job, the serving layer and
the commands read a time the same way: a time without a UTC offset is refused everywhere (it
would otherwise be read as the machine's local time).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

MINUTE_MS: Final = 60_000
HOUR_MS: Final = 3_600_000
DAY_MS: Final = 86_400_000

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS: Final = timedelta(milliseconds=1)


class NotIsoTimeError(ValueError):
    """The text is not an ISO-8601 time."""


class NoUtcOffsetError(ValueError):
    """An ISO-8601 time without a UTC offset: its instant is unknown."""


def parse_utc(text: str) -> datetime:
    """An ISO-8601 time with a UTC offset (``Z`` or ``+02:00``), timezone-aware.

    Raises :class:`NotIsoTimeError` or :class:`NoUtcOffsetError` (both ``ValueError``).
    """
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise NotIsoTimeError(f"not an ISO-8601 time: {text!r}") from None
    if moment.tzinfo is None:
        raise NoUtcOffsetError(f"{text!r} has no UTC offset")
    return moment


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime, exactly (floor; no float rounding)."""
    return (moment - EPOCH) // _ONE_MS


def parse_ms(text: str) -> int:
    """Epoch milliseconds of an ISO-8601 time with a UTC offset (see :func:`parse_utc`)."""
    return to_ms(parse_utc(text))


def iso(ms: int) -> str:
    """``2026-06-05T13:00:00Z``: a whole-second time in UTC (milliseconds appended if any)."""
    text = (EPOCH + ms * _ONE_MS).strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{ms % 1000:03d}Z" if ms % 1000 else "Z")


def hour_floor(ms: int) -> int:
    """The start of the UTC hour holding ``ms``."""
    return ms - ms % HOUR_MS
