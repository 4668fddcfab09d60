"""Dead-letter records: the original bytes when they fit, a marked stub when they cannot."""

from __future__ import annotations

import hashlib
import json

from clickstream.model import Reason, Rejection, Source
from ingest.dlq import (
    MAX_KEY_BYTES,
    MAX_VALUE_BYTES,
    ORIGINAL_SHA256,
    ORIGINAL_SIZE,
    REASON,
    REJECTED_AT,
    STUB,
    DlqRecord,
    dead_letter,
    header,
)

SOURCE = Source("clicks", 3, 41)
TOO_LARGE = Rejection(Reason.TOO_LARGE, "message is 1000000 bytes, over the limit of 65536")


class TestDeadLetter:
    def test_a_value_that_fits_is_kept_byte_for_byte(self) -> None:
        """The usual case: same key, same bytes, reasons in headers, no stub mark."""
        letter = dead_letter(b"u1", b"{bad", Rejection(Reason.NOT_JSON, "x"), SOURCE, 7)
        assert (letter.key, letter.value) == (b"u1", b"{bad")
        assert header(letter.headers, REASON) == "not_json"
        assert header(letter.headers, STUB) is None

    def test_a_value_too_large_for_the_topic_becomes_a_marked_stub(self) -> None:
        """A message near the broker's maximum cannot be re-produced with headers: its dead
        letter holds its size, its hash and its first bytes instead, and says so."""
        value = b'{"user_id": "u", "padding": "' + b"x" * 999_000 + b'"}'
        letter = dead_letter(b"u1", value, TOO_LARGE, SOURCE, 7)
        assert letter.value is not None
        assert len(letter.value) <= MAX_VALUE_BYTES
        stub = json.loads(letter.value)
        assert stub["clickstream_stub"] is True
        assert stub["size"] == len(value)
        assert stub["sha256"] == hashlib.sha256(value).hexdigest()
        assert stub["head"] == value[:1024].decode()
        assert header(letter.headers, STUB) == "value"
        assert header(letter.headers, ORIGINAL_SIZE) == str(len(value))
        assert header(letter.headers, ORIGINAL_SHA256) == hashlib.sha256(value).hexdigest()
        assert header(letter.headers, REASON) == "too_large"

    def test_a_huge_key_is_replaced_by_its_hash(self) -> None:
        """Keys are bounded too; the value stays when it fits."""
        key = b"k" * (MAX_KEY_BYTES + 1)
        letter = dead_letter(key, b"{}", TOO_LARGE, SOURCE, 7)
        assert letter.key == b"sha256:" + hashlib.sha256(key).hexdigest().encode()
        assert letter.value == b"{}"
        assert header(letter.headers, STUB) == "key"

    def test_a_binary_head_is_kept_as_escapes(self) -> None:
        """Bytes that are not UTF-8 still give a readable, valid JSON stub."""
        value = b"\xff\xfe" * 600_000
        stub = json.loads(dead_letter(None, value, TOO_LARGE, SOURCE, 7).value or b"")
        assert stub["head"].startswith("\\xff\\xfe")


class TestDlqRecord:
    def test_headers_read_back_as_reason_source_time_and_stub(self) -> None:
        """What the replay filters on is read from the headers the daemon wrote."""
        letter = dead_letter(b"u1", b"{bad", Rejection(Reason.NOT_JSON, "x"), SOURCE, 7)
        record = DlqRecord(0, 5, letter.key, letter.value, tuple(letter.headers))
        assert (record.reason, record.detail, record.source) == ("not_json", "x", "clicks:3:41")
        assert (record.rejected_at_ms, record.is_stub) == (7, False)

    def test_missing_or_unreadable_headers_are_none_not_errors(self) -> None:
        """A record another tool wrote still reads: unknown reason, no time."""
        record = DlqRecord(0, 5, None, b"{}", ((REJECTED_AT, b"soon"), ("other", None)))
        assert (record.reason, record.source, record.rejected_at_ms) == ("unknown", "?:?:?", None)
