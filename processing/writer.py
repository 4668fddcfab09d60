"""Writing batch views to Elasticsearch from the executors, in bulk, with deterministic ids.

The id of a view document is a hash of (url, country, hour), that of a rollup of the cube a hash
of (level, grain, url, country, start): re-running any range replaces the documents and never
duplicates them. A document that Elasticsearch refuses fails the task (and
so the job) with the first errors quoted: nothing is dropped silently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from pyspark.sql import DataFrame, Row

from clickstream.errors import RetriableError
from clickstream.settings import ElasticsearchSettings
from indexing.views import BOT_RULE_FIELDS, cube_id, stored_sketch, view_id, view_source


def view_document(row: Row, start: str = "hour") -> dict[str, Any]:
    """The Elasticsearch document of one aggregated row (its bucket start in column ``start``)."""
    sketch = row["users_sketch"]
    return view_source(
        url=row["url"],
        country=row["country"],
        start_ms=int(row[start]),
        clicks=int(row["clicks"]),
        bot_clicks=int(row["bot_clicks"]),
        unique_users=int(row["unique_users"]),
        users_sketch=stored_sketch(bytes(sketch)) if sketch is not None else None,
        time_spent_sum_ms=int(row["time_spent_sum_ms"]),
        time_spent_count=int(row["time_spent_count"]),
        bot_clicks_by_rule={rule: int(row[field]) for rule, field in BOT_RULE_FIELDS.items()},
    )


def rollup_document(row: Row, grain: str) -> dict[str, Any]:
    """The Elasticsearch document of one rollup row of the cube (level and grain included)."""
    return {**view_document(row, "start"), "level": row["level"], "grain": grain}


def _view_action(index: str, row: Row) -> dict[str, Any]:
    return {
        "_op_type": "index",
        "_index": index,
        "_id": view_id(row["url"], row["country"], int(row["hour"])),
        "_source": view_document(row),
    }


def _rollup_action(grain: str) -> Callable[[str, Row], dict[str, Any]]:
    def action(index: str, row: Row) -> dict[str, Any]:
        return {
            "_op_type": "index",
            "_index": index,
            "_id": cube_id(row["level"], grain, row["url"], row["country"], int(row["start"])),
            "_source": rollup_document(row, grain),
        }

    return action


def _write_partition(
    settings: ElasticsearchSettings,
    index: str,
    rows: Iterator[Row],
    to_action: Callable[[str, Row], dict[str, Any]] = _view_action,
) -> None:
    # Runs on an executor.
    from elasticsearch.helpers import streaming_bulk  # noqa: PLC0415

    from indexing.client import connect  # noqa: PLC0415

    actions = (to_action(index, row) for row in rows)
    client = connect(settings)
    errors = []
    try:
        for ok, item in streaming_bulk(
            client, actions, chunk_size=1000, raise_on_error=False, max_retries=5, initial_backoff=1
        ):
            if not ok:
                errors.append(item)
    finally:
        client.close()
    if errors:
        raise RetriableError(
            f"Elasticsearch refused {len(errors)} documents of {index}: {errors[:3]}"
        )


def write_views(views: DataFrame, settings: ElasticsearchSettings, index: str) -> None:
    """Index every view row into ``index`` from the executors."""
    views.foreachPartition(lambda rows: _write_partition(settings, index, rows))


def write_rollups(
    rollups: DataFrame, settings: ElasticsearchSettings, index: str, grain: str
) -> None:
    """Index every rollup row (of one grain) into the cube ``index`` from the executors."""
    action = _rollup_action(grain)
    rollups.foreachPartition(lambda rows: _write_partition(settings, index, rows, action))
