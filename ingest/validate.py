"""Parse and validate one Kafka message value: a ``ClickEvent``, or a ``Rejection`` saying why not.

Pure functions, no I/O. Every byte sequence ends as one of the two; nothing raises. When several
things are wrong, the first check that fails names the reason, in this order: empty, size, UTF-8,
JSON, object, required fields (user_id, timestamp, url), their types and lengths, timestamp
parse, timestamp window, url, ip and country, optional fields. An empty string counts as absent.
The contract is documented for producers in ``click.schema.json`` and the README.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

from clickstream.model import ClickEvent, Reason, Rejection
from clickstream.times import DAY_MS, NotIsoTimeError, NoUtcOffsetError, parse_ms

if TYPE_CHECKING:
    from clickstream.settings import IngestSettings

MAX_USER_ID = 256
MAX_URL = 8192
MAX_USER_AGENT = 2048
MAX_EVENT_ID = 128
MAX_REFERRER = 8192
MAX_SESSION_ID = 256
MAX_CITY = 256
_MAX_IP = 45  # the longest IPv6 text: six hextets and a dotted IPv4 tail
_ECHO = 80
_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "number", float: "number"}
_JSON_TYPES |= {bool: "boolean", type(None): "null"}


@dataclass(frozen=True, slots=True)
class Limits:
    """The size and time-window limits a message is checked against."""

    max_message_bytes: int = 65536
    max_event_age_ms: int = 30 * DAY_MS
    max_future_ms: int = 300_000

    @classmethod
    def from_settings(cls, settings: IngestSettings) -> Limits:
        """The limits configured in the ingest settings."""
        return cls(
            max_message_bytes=settings.max_message_bytes,
            max_event_age_ms=settings.max_event_age_days * DAY_MS,
            max_future_ms=settings.max_future_s * 1000,
        )


class _RejectedError(Exception):
    """Carries a rejection out of the checks; caught in ``parse_click`` and never escapes."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.detail)
        self.rejection = rejection


def _reject(reason: Reason, detail: str, field: str | None = None) -> NoReturn:
    raise _RejectedError(Rejection(reason, detail, field))


class _NonFiniteError(ValueError):
    pass


def _no_constants(name: str) -> NoReturn:
    raise _NonFiniteError(name)


# One decoder, built once: json.loads with keyword arguments would build one per message.
_DECODER = json.JSONDecoder(parse_constant=_no_constants)


def parse_click(
    value: bytes | None, now_ms: int, limits: Limits = Limits()
) -> ClickEvent | Rejection:
    """Turn one message value into a click, or into a rejection with a reason code and detail.

    ``now_ms`` (epoch ms, the time of ingest) anchors the accepted timestamp window.
    """
    try:
        return _parse(value, now_ms, limits)
    except _RejectedError as rejected:
        return rejected.rejection


def fingerprint(user_id: str, timestamp_ms: int, url: str) -> str:
    """The event id of a click sent without one: a hash of user, event time (ms) and URL."""
    key = f"{user_id}\x00{timestamp_ms}\x00{url}".encode("utf-8", "surrogatepass")
    return "fp-" + hashlib.sha256(key).hexdigest()[:32]


def _parse(value: bytes | None, now_ms: int, limits: Limits) -> ClickEvent:
    if not value:
        _reject(Reason.EMPTY, "message value is empty (a tombstone or null payload)")
    if len(value) > limits.max_message_bytes:
        _reject(
            Reason.TOO_LARGE,
            f"message is {len(value)} bytes, over the limit of {limits.max_message_bytes}",
        )
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        _reject(Reason.NOT_UTF8, f"message is not valid UTF-8 ({exc.reason} at byte {exc.start})")
    data = _load_json(text)
    if not isinstance(data, dict):
        _reject(Reason.NOT_OBJECT, f"message is a JSON {_json_type(data)}, not an object")

    raw_user, raw_ts, raw_url = (_required(data, name) for name in ("user_id", "timestamp", "url"))
    user_id = _string(raw_user, "user_id", MAX_USER_ID)
    if not isinstance(raw_ts, str | int | float) or isinstance(raw_ts, bool):
        _reject(
            Reason.BAD_TYPE,
            f"timestamp must be a string or an integer, got {_json_type(raw_ts)}",
            "timestamp",
        )
    url = _string(raw_url, "url", MAX_URL)

    timestamp_ms = _timestamp_ms(raw_ts)
    _check_window(timestamp_ms, now_ms, limits)
    _check_url(url)
    ip = _ip(data.get("ip"))
    country = _country(data.get("country"))
    if ip is None and country is None:
        _reject(Reason.MISSING_FIELD, "required field ip is missing (and no country given)", "ip")

    event_id = _optional(data, "event_id", MAX_EVENT_ID)
    return ClickEvent(
        event_id=event_id or fingerprint(user_id, timestamp_ms, url),
        user_id=user_id,
        timestamp_ms=timestamp_ms,
        url=url,
        ip=ip,
        user_agent=_optional(data, "user_agent", MAX_USER_AGENT),
        referrer=_optional(data, "referrer", MAX_REFERRER),
        session_id=_optional(data, "session_id", MAX_SESSION_ID),
        country=country,
        city=_optional(data, "city", MAX_CITY),
        event_id_generated=event_id is None,
    )


def _load_json(text: str) -> Any:
    try:
        return _DECODER.decode(text)
    except _NonFiniteError as exc:
        _reject(Reason.NOT_JSON, f"message is not JSON: {exc} is not a JSON number")
    except json.JSONDecodeError as exc:
        hint = " (starts with a byte order mark)" if text.startswith("\ufeff") else ""
        _reject(
            Reason.NOT_JSON,
            f"message is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}{hint}",
        )
    except RecursionError:
        _reject(Reason.NOT_JSON, "message is not JSON this parser accepts: nested too deeply")
    except ValueError as exc:  # e.g. an integer beyond the interpreter's digit limit
        _reject(Reason.NOT_JSON, f"message is not JSON this parser accepts: {_cut(str(exc))}")


def _required(data: dict[str, Any], name: str) -> Any:
    value = data.get(name)
    if value is None or value == "":
        state = "missing" if name not in data else "null" if value is None else "empty"
        _reject(Reason.MISSING_FIELD, f"required field {name} is {state}", name)
    return value


def _optional(data: dict[str, Any], name: str, max_length: int) -> str | None:
    value = data.get(name)
    if value is None or value == "":
        return None
    return _string(value, name, max_length)


def _string(value: Any, name: str, max_length: int) -> str:
    if not isinstance(value, str):
        _reject(Reason.BAD_TYPE, f"{name} must be a string, got {_json_type(value)}", name)
    if len(value) > max_length:
        _reject(
            Reason.FIELD_TOO_LONG,
            f"{name} is {len(value)} characters, over the limit of {max_length}",
            name,
        )
    if not value.isascii():
        try:  # a lone surrogate ("\ud800" escape) decodes but can never be written as UTF-8
            value.encode()
        except UnicodeEncodeError:
            _reject(Reason.NOT_UTF8, f"{name} holds an unpaired surrogate, not valid text", name)
    return value


def _timestamp_ms(value: str | int | float) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        _reject(
            Reason.BAD_TIMESTAMP,
            f"timestamp {_cut(repr(value))} is a float; send integer epoch milliseconds",
            "timestamp",
        )
    try:
        return parse_ms(value)  # exact integer ms (floor), no float rounding
    except NoUtcOffsetError:
        _reject(Reason.BAD_TIMESTAMP, f"timestamp {_echo(value)} has no UTC offset", "timestamp")
    except NotIsoTimeError:
        _reject(
            Reason.BAD_TIMESTAMP,
            f"timestamp {_echo(value)} is not ISO-8601 (with a UTC offset) nor epoch ms",
            "timestamp",
        )


def _check_window(timestamp_ms: int, now_ms: int, limits: Limits) -> None:
    # Integer arithmetic only: a JSON integer may have thousands of digits.
    shown = _cut(str(timestamp_ms))
    if timestamp_ms < now_ms - limits.max_event_age_ms:
        days = _cut(str((now_ms - timestamp_ms) // DAY_MS))
        limit = limits.max_event_age_ms / DAY_MS
        _reject(
            Reason.TIMESTAMP_OUT_OF_RANGE,
            f"timestamp {shown} is {days} days old; the limit is {limit:g} days",
            "timestamp",
        )
    if timestamp_ms > now_ms + limits.max_future_ms:
        ahead = _cut(str((timestamp_ms - now_ms) // 1000))
        limit = limits.max_future_ms / 1000
        _reject(
            Reason.TIMESTAMP_OUT_OF_RANGE,
            f"timestamp {shown} is {ahead} s ahead of now; the limit is {limit:g} s",
            "timestamp",
        )


def _check_url(url: str) -> None:
    # isprintable() is False for control characters and every Unicode separator but " ".
    if " " in url or not url.isprintable():
        _reject(Reason.BAD_URL, f"url {_echo(url)} contains whitespace or control chars", "url")
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced "[" in an IPv6 host
        _reject(Reason.BAD_URL, f"url {_echo(url)} cannot be parsed", "url")
    if parts.scheme not in ("http", "https"):
        _reject(Reason.BAD_URL, f"url {_echo(url)} is not http or https", "url")
    if not parts.hostname:
        _reject(Reason.BAD_URL, f"url {_echo(url)} has no host", "url")
    try:
        parts.port  # noqa: B018 - parsed for its ValueError on a bad port
    except ValueError:
        _reject(Reason.BAD_URL, f"url {_echo(url)} has an invalid port", "url")


def _ip(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        _reject(Reason.BAD_TYPE, f"ip must be a string, got {_json_type(value)}", "ip")
    canonical = _canonical_ip(value) if len(value) <= _MAX_IP else None
    if canonical is None:
        _reject(Reason.BAD_IP, f"ip {_echo(value)} is not an IPv4 or IPv6 address", "ip")
    return canonical


@lru_cache(maxsize=16384)
def _canonical_ip(text: str) -> str | None:
    # Cached: ipaddress is pure Python (3-8 us a call) and a user's clicks repeat one address.
    if "%" in text:  # an IPv6 zone index means nothing off the sender's host
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _country(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        _reject(Reason.BAD_TYPE, f"country must be a string, got {_json_type(value)}", "country")
    if len(value) != 2 or not (value.isascii() and value.isalpha()):
        detail = f"country {_echo(value)} is not an ISO 3166-1 alpha-2 code"
        _reject(Reason.BAD_COUNTRY, detail, "country")
    return value.upper()


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _echo(text: str) -> str:
    """The input quoted for a detail: control characters escaped, cut to ~80 characters."""
    return _cut(repr(text[: _ECHO + 1]))


def _cut(text: str) -> str:
    return text if len(text) <= _ECHO else text[: _ECHO - 3] + "..."
