"""Reading the master dataset into Spark: one partition per (salt bucket x time slice).

Each partition is one happybase range scan ``[salt|t_a, salt|t_b)`` run on an executor, reading
only the columns the views need, with scanner caching set; nothing goes through the driver and
nothing outside the requested time range is read.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession

from clickstream.settings import HBaseSettings
from hbase_schema import columns
from processing.aggregate import CLICKS_SCHEMA

WANTED = [
    columns.USER_ID,
    columns.TIMESTAMP_MS,
    columns.EVENT_ID,
    columns.URL_NORMALIZED,
    columns.COUNTRY,
    columns.IS_BOT,
    columns.BOT_RULE,
]


@dataclass(frozen=True, slots=True)
class ScanSpec:
    """What one Spark partition reads."""

    salt: int
    t0_ms: int
    t1_ms: int


def scan_specs(t0_ms: int, t1_ms: int, buckets: int, slice_ms: int) -> list[ScanSpec]:
    """Bucket x slice scans covering ``[t0, t1)``: the job's cost follows the range it reads."""
    specs: list[ScanSpec] = []
    for start in range(t0_ms, t1_ms, slice_ms):
        stop = min(start + slice_ms, t1_ms)
        specs.extend(ScanSpec(salt, start, stop) for salt in range(buckets))
    return specs


def _scan(
    settings: HBaseSettings, caching: int, specs: Iterable[ScanSpec]
) -> Iterator[tuple[str, int, str, str, str, bool, str | None]]:
    # Runs on an executor: imports and connections happen there.
    from hbase_schema.rowkey import scan_ranges  # noqa: PLC0415
    from storage.connection import connect  # noqa: PLC0415

    connection = connect(settings)
    try:
        table = connection.table(settings.table)
        for spec in specs:
            start, stop = scan_ranges(spec.t0_ms, spec.t1_ms, settings.salt_buckets)[spec.salt]
            for _, cells in table.scan(
                row_start=start, row_stop=stop, columns=WANTED, batch_size=caching
            ):
                yield (
                    cells[columns.USER_ID].decode(),
                    int(cells[columns.TIMESTAMP_MS]),
                    cells[columns.EVENT_ID].decode(),
                    cells[columns.URL_NORMALIZED].decode(),
                    cells[columns.COUNTRY].decode(),
                    cells.get(columns.IS_BOT) == b"1",
                    _rule(cells),
                )
    finally:
        connection.close()


def _rule(cells: dict[bytes, bytes]) -> str | None:
    """The bot rule a row stores (rows written before it was stored have none)."""
    if cells.get(columns.IS_BOT) != b"1":
        return None
    rule = cells.get(columns.BOT_RULE)
    return rule.decode() if rule else None


def read_clicks(
    spark: SparkSession,
    settings: HBaseSettings,
    t0_ms: int,
    t1_ms: int,
    *,
    slice_ms: int,
    caching: int,
) -> DataFrame:
    """Stored clicks with event time in ``[t0, t1)`` as a DataFrame (CLICKS_SCHEMA)."""
    specs = scan_specs(t0_ms, t1_ms, settings.salt_buckets, slice_ms)
    rdd = spark.sparkContext.parallelize(specs, len(specs)).mapPartitions(
        lambda part: _scan(settings, caching, part)
    )
    return spark.createDataFrame(rdd, CLICKS_SCHEMA)
