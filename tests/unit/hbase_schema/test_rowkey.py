"""The row-key codec: layout, determinism, salting and scan ranges."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hbase_schema import decode_row_key, encode_row_key, salt_of, scan_ranges
from hbase_schema.rowkey import KEY_LENGTH, split_keys, user_hash


class TestEncode:
    def test_layout_is_salt_time_user_event(self) -> None:
        """Bytes: salt, 8-byte big-endian ms, 8-byte user hash, 4-byte event hash."""
        key = encode_row_key("alice", 1_700_000_000_123, "e1", 16)
        assert len(key) == KEY_LENGTH
        assert key[0] == salt_of("alice", 16)
        assert int.from_bytes(key[1:9], "big") == 1_700_000_000_123
        assert key[9:17] == user_hash("alice")

    def test_same_event_same_key(self) -> None:
        """A replayed event maps to the same row."""
        assert encode_row_key("u", 5, "e", 16) == encode_row_key("u", 5, "e", 16)

    def test_distinct_events_distinct_keys(self) -> None:
        """Two events of one user in one millisecond get two rows."""
        assert encode_row_key("u", 5, "e1", 16) != encode_row_key("u", 5, "e2", 16)

    def test_user_stays_in_one_bucket(self) -> None:
        """All clicks of a user share the salt."""
        salts = {encode_row_key("bob", t, f"e{t}", 16)[0] for t in range(0, 10**9, 10**7)}
        assert salts == {salt_of("bob", 16)}

    def test_negative_time_rejected(self) -> None:
        """Event times before the epoch have no key."""
        with pytest.raises(ValueError, match="non-negative"):
            encode_row_key("u", -1, "e", 16)

    @pytest.mark.parametrize("buckets", [0, 257])
    def test_bucket_count_bounded(self, buckets: int) -> None:
        """The salt is one byte."""
        with pytest.raises(ValueError, match=r"1\.\.256"):
            encode_row_key("u", 1, "e", buckets)

    @given(st.text(min_size=1), st.integers(0, 2**63), st.text(), st.integers(1, 256))
    def test_round_trip(self, user: str, ts: int, event: str, buckets: int) -> None:
        """decode(encode(x)) gives back salt and time."""
        decoded = decode_row_key(encode_row_key(user, ts, event, buckets))
        assert decoded.timestamp_ms == ts
        assert decoded.salt == salt_of(user, buckets)
        assert decoded.salt < buckets

    @given(st.integers(0, 2**40), st.integers(0, 2**40))
    def test_keys_sort_by_time_within_a_bucket(self, t1: int, t2: int) -> None:
        """Within one bucket, byte order is time order, which makes range scans work."""
        k1, k2 = encode_row_key("u", t1, "a", 16), encode_row_key("u", t2, "a", 16)
        assert (k1 < k2) == (t1 < t2) or t1 == t2


class TestDecode:
    def test_wrong_length_rejected(self) -> None:
        """A foreign key is reported with its length."""
        with pytest.raises(ValueError, match="21 bytes, got 3"):
            decode_row_key(b"abc")


class TestScanRanges:
    def test_one_range_per_bucket_covering_the_interval(self) -> None:
        """[salt|t0, salt|t1) for each salt; an event at t0 is inside, one at t1 outside."""
        ranges = scan_ranges(1000, 2000, 4)
        assert [start[0] for start, _ in ranges] == [0, 1, 2, 3]
        key_in = encode_row_key("u", 1000, "e", 4)
        key_out = encode_row_key("u", 2000, "e", 4)
        start, stop = ranges[key_in[0]]
        assert start <= key_in < stop
        assert not start <= key_out < stop

    def test_reversed_interval_rejected(self) -> None:
        """t1 < t0 is a caller bug."""
        with pytest.raises(ValueError, match="t0 <= t1"):
            scan_ranges(5, 4, 16)

    def test_split_keys_are_bucket_starts(self) -> None:
        """A table split at 0x01..0x0f has one region per bucket."""
        assert split_keys(16) == [bytes([i]) for i in range(1, 16)]
        assert split_keys(1) == []
