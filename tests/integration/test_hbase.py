"""HBase through the real Thrift server: the pre-split table, puts and per-bucket range scans."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from clickstream.errors import SchemaError
from clickstream.settings import Settings
from commands.defaults import admin_runtime
from hbase_schema import FAMILIES, columns, encode_row_key, salt_of, scan_ranges
from storage.admin import create_table, describe_table, drop_tables
from storage.connection import connect

pytestmark = pytest.mark.integration


@pytest.fixture
def table(settings: Settings) -> Iterator[Settings]:
    """The test's master dataset table, created pre-split and dropped afterwards."""
    create_table(settings, admin_runtime(settings, progress=lambda _: None))
    yield settings
    drop_tables(settings)


class TestTable:
    def test_pre_split_at_salt_buckets(self, table: Settings) -> None:
        """One region per bucket, starting at 0x00, 0x01, ... 0x0f."""
        connection = connect(table.hbase)
        try:
            regions = connection.table(table.hbase.table).regions()
        finally:
            connection.close()
        starts = sorted(region["start_key"] for region in regions)
        assert starts == [b""] + [bytes([i]) for i in range(1, table.hbase.salt_buckets)]

    def test_families_are_single_version_with_row_bloom(self, table: Settings) -> None:
        """The three families exist with one version and a ROW bloom filter."""
        connection = connect(table.hbase)
        try:
            families = connection.table(table.hbase.table).families()
        finally:
            connection.close()
        assert sorted(families) == sorted(f.encode() for f in FAMILIES)
        for descriptor in families.values():
            assert descriptor["max_versions"] == 1
            assert descriptor["bloom_filter_type"] == b"ROW"

    def test_create_again_is_a_no_op(self, table: Settings) -> None:
        """A second create reports the table as existing and changes nothing."""
        assert (
            create_table(table, admin_runtime(table, progress=lambda _: None))["created"] is False
        )
        assert describe_table(table, admin_runtime(table, progress=lambda _: None))["regions"] == 16

    def test_other_families_is_an_error(self, settings: Settings) -> None:
        """A table of the same name with other families is reported, never altered."""
        connection = connect(settings.hbase)
        try:
            connection.create_table(settings.hbase.table, {"other": {"max_versions": 1}})
            with pytest.raises(SchemaError, match="other"):
                create_table(settings, admin_runtime(settings, progress=lambda _: None))
            assert list(connection.table(settings.hbase.table).families()) == [b"other"]
        finally:
            connection.delete_table(settings.hbase.table, disable=True)
            connection.close()


class TestRangeScans:
    def test_scan_of_one_bucket_returns_exactly_its_rows(self, table: Settings) -> None:
        """A range scan [salt|t0, salt|t1) returns that bucket's rows in range and no others."""
        buckets = table.hbase.salt_buckets
        rows = {}
        for i in range(400):
            user, ts = f"user-{i % 97}", 1_700_000_000_000 + i * 1000
            rows[encode_row_key(user, ts, f"e{i}", buckets)] = (user, ts)
        connection = connect(table.hbase)
        try:
            hbase_table = connection.table(table.hbase.table)
            with hbase_table.batch(batch_size=100) as batch:
                for key, (user, ts) in rows.items():
                    batch.put(
                        key,
                        {columns.USER_ID: user.encode(), columns.TIMESTAMP_MS: str(ts).encode()},
                    )
            t0, t1 = 1_700_000_000_000 + 50_000, 1_700_000_000_000 + 300_000
            for salt, (start, stop) in enumerate(scan_ranges(t0, t1, buckets)):
                got = {key for key, _ in hbase_table.scan(row_start=start, row_stop=stop)}
                expected = {
                    key
                    for key, (user, ts) in rows.items()
                    if salt_of(user, buckets) == salt and t0 <= ts < t1
                }
                assert got == expected, f"bucket {salt}"
            everything = {key for key, _ in hbase_table.scan()}
        finally:
            connection.close()
        assert everything == set(rows)
        assert len({key[0] for key in rows}) == buckets  # the data really spans every bucket

    def test_rewrite_is_idempotent(self, table: Settings) -> None:
        """Writing the same event twice leaves one row."""
        key = encode_row_key("u", 1_700_000_000_000, "same-event", table.hbase.salt_buckets)
        connection = connect(table.hbase)
        try:
            hbase_table = connection.table(table.hbase.table)
            for _ in range(2):
                hbase_table.put(key, {columns.URL: b"https://a.example/"})
            assert [k for k, _ in hbase_table.scan()] == [key]
        finally:
            connection.close()
