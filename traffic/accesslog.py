"""Apache / Nginx access logs (combined or common format) turned into click events.

A kept line becomes the JSON event the web application would have sent: ``user_id`` is
``"ip-" + sha256(ip NUL user agent)[:16]`` (a log has no user id), the timestamp is the log's,
in UTC, ``url`` is the site plus the request target, ``referrer`` is dropped when ``-``. No
``event_id``: the pipeline fingerprints user, timestamp and URL, so importing a file twice
stores each click once (and identical requests of one client within one logged second, once).

Kept: ``GET`` requests answered 200-399 for anything but a static asset (:data:`STATIC`, checked
on the path without its query). Skipped lines are counted by reason; a line that does not parse
is counted as malformed with its line number, never fatal.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import ipaddress
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from clickstream.settings import KafkaSettings
from traffic.sender import Sender

# fmt: off
STATIC = frozenset({
    ".css", ".js", ".mjs", ".map", ".json", ".xml", ".txt",
    ".png", ".jpg", ".jpeg", ".gif", ".svg", ".ico", ".webp", ".avif", ".bmp", ".tif", ".tiff",
    ".woff", ".woff2", ".ttf", ".otf", ".eot",
    ".mp3", ".mp4", ".webm", ".ogg", ".wav", ".zip", ".gz",
})
# fmt: on
"""Extensions of static assets, never page views (compared lower-cased; ``.pdf`` is kept)."""

MAX_EXAMPLES = 10

_LINE = re.compile(
    r'(?P<host>\S+) \S+ \S+ \[(?P<time>[^\]]+)\] "(?P<request>(?:[^"\\]|\\.)*)" '
    r"(?P<status>\d{3}) \S+"
    r'(?: "(?P<referrer>(?:[^"\\]|\\.)*)" "(?P<agent>(?:[^"\\]|\\.)*)")?'
)
_TIME = re.compile(
    r"(?P<day>\d{2})/(?P<month>[A-Za-z]{3})/(?P<year>\d{4}):"
    r"(?P<hour>\d{2}):(?P<minute>\d{2}):(?P<second>\d{2}) (?P<sign>[+-])(?P<oh>\d{2})(?P<om>\d{2})"
)
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}

Progress = Callable[[str], None]
Emit = Callable[[bytes, bytes], None]


class SkipReason(StrEnum):
    """Why a well-formed line is not a page view."""

    METHOD = "method"
    """Not a GET request (including request lines that are not HTTP at all, such as ``-``)."""
    STATUS = "status"
    """The response status is outside 200-399."""
    STATIC = "static"
    """The path ends in a static-asset extension."""


@dataclass(frozen=True, slots=True)
class Skip:
    """A well-formed line that is not a page view, and why."""

    reason: SkipReason


@dataclass(frozen=True, slots=True)
class Malformed:
    """A line that is not in combined or common log format."""

    line_no: int
    reason: str


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import did: lines read, events kept, skipped by reason, malformed (with examples)."""

    lines: int
    kept: int
    skipped: Mapping[str, int] = field(default_factory=dict)
    malformed: int = 0
    examples: tuple[Malformed, ...] = ()


def parse_line(line: str, site: str, line_no: int = 0) -> dict[str, Any] | Skip | Malformed:
    """One log line as a click event (a JSON-ready dict), a Skip, or Malformed."""
    matched = _LINE.fullmatch(line.rstrip("\r\n"))
    if matched is None:
        return Malformed(line_no, "not in combined or common log format")
    moment = _parse_time(matched["time"])
    if moment is None:
        return Malformed(line_no, f"bad time [{matched['time'][:40]}]")
    host = matched["host"]
    try:
        ip = str(ipaddress.ip_address(host))
    except ValueError:
        return Malformed(line_no, f"client {host[:40]!r} is not an IP address")
    target = _page_target(_unescape(matched["request"]), int(matched["status"]), line_no)
    if not isinstance(target, str):
        return target
    agent = _unescape(matched["agent"] or "")
    agent = "" if agent == "-" else agent
    referrer = _unescape(matched["referrer"] or "")
    event: dict[str, Any] = {
        "user_id": "ip-" + hashlib.sha256(f"{ip}\x00{agent}".encode()).hexdigest()[:16],
        "timestamp": moment.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "url": site.rstrip("/") + target,
        "ip": ip,
    }
    if agent:
        event["user_agent"] = agent
    if referrer and referrer != "-":
        event["referrer"] = referrer
    return event


def _page_target(request: str, status: int, line_no: int) -> str | Skip | Malformed:
    """The request target (path and query) of a page view, else why the line is not one."""
    method, _, rest = request.partition(" ")
    if method != "GET":
        return Skip(SkipReason.METHOD)
    if not 200 <= status <= 399:
        return Skip(SkipReason.STATUS)
    target = rest.rpartition(" HTTP/")[0] if " HTTP/" in rest else rest
    if target.startswith(("http://", "https://")):  # absolute form, as a proxy logs it
        parts = urlsplit(target)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
    if not target.startswith("/") or " " in target:
        return Malformed(line_no, f"request target {target[:40]!r} is not a path")
    path = target.split("?", 1)[0].split("#", 1)[0].lower()
    if any(path.endswith(extension) for extension in STATIC):
        return Skip(SkipReason.STATIC)
    return target


def _parse_time(text: str) -> datetime | None:
    matched = _TIME.fullmatch(text)
    month = _MONTHS.get(matched["month"].lower()) if matched else None
    if matched is None or month is None:
        return None
    offset = timedelta(hours=int(matched["oh"]), minutes=int(matched["om"]))
    try:
        return datetime(
            int(matched["year"]),
            month,
            int(matched["day"]),
            int(matched["hour"]),
            int(matched["minute"]),
            int(matched["second"]),
            tzinfo=timezone(-offset if matched["sign"] == "-" else offset),
        )
    except ValueError:  # 31/Feb, hour 25, an offset of a day or more
        return None


def _unescape(text: str) -> str:
    # Apache writes \" and \\; Nginx writes \x22. Decode just those, keep anything else as is.
    return re.sub(
        r"\\(x[0-9A-Fa-f]{2}|.)",
        lambda m: chr(int(m[1][1:], 16)) if len(m[1]) == 3 else m[1],
        text,
    )


def scan_log(
    lines: Iterable[str], site: str, emit: Emit, on_line: Callable[[int], None] | None = None
) -> ImportReport:
    """Parse ``lines``, hand each kept event to ``emit(key, value)``; count everything else."""
    kept = count = 0
    skipped: Counter[str] = Counter()
    malformed: list[Malformed] = []
    bad = 0
    for count, line in enumerate(lines, start=1):
        parsed = parse_line(line, site, count)
        if isinstance(parsed, Skip):
            skipped[parsed.reason.value] += 1
        elif isinstance(parsed, Malformed):
            bad += 1
            if len(malformed) < MAX_EXAMPLES:
                malformed.append(parsed)
        else:
            kept += 1
            value = json.dumps(parsed, separators=(",", ":"), ensure_ascii=False).encode()
            emit(parsed["user_id"].encode(), value)
        if on_line is not None:
            on_line(count)
    return ImportReport(count, kept, dict(skipped), bad, tuple(malformed))


def import_log(
    path: Path | str,
    site: str,
    kafka_settings: KafkaSettings,
    topic: str,
    progress: Progress = print,
) -> ImportReport:
    """Stream ``path`` (gzip when it ends in ``.gz``) to ``topic``; progress by bytes read."""
    with Sender(kafka_settings, topic) as sender:
        return read_log(path, site, sender.send, progress)


def read_log(path: Path | str, site: str, emit: Emit, progress: Progress = print) -> ImportReport:
    """Parse the file at ``path`` (gzip when ``.gz``), emitting kept events; no Kafka involved."""
    source = Path(path)
    total = max(1, source.stat().st_size)
    reported = 0
    with source.open("rb") as raw:

        def on_line(_count: int) -> None:
            nonlocal reported
            tenth = 10 * raw.tell() // total  # of the file on disk (compressed bytes for .gz)
            if tenth > reported:
                reported = tenth
                progress(f"read {min(100, 10 * tenth)}% of {source.name}")

        report = scan_log(_text_lines(raw, gz=source.suffix == ".gz"), site, emit, on_line)
    progress(
        f"{source.name}: {report.lines} lines, {report.kept} kept, "
        f"skipped {dict(report.skipped)}, {report.malformed} malformed"
    )
    return report


def _text_lines(raw: BinaryIO, *, gz: bool) -> Iterator[str]:
    # Undecodable bytes become U+FFFD: a stray byte in a user agent must not lose the line.
    binary: BinaryIO = gzip.GzipFile(fileobj=raw) if gz else raw  # type: ignore[assignment]
    with io.TextIOWrapper(binary, encoding="utf-8", errors="replace", newline="") as text:
        yield from text
