"""Composable index templates of the batch and speed views (the document is defined in
indexing/views.py), and the boundary they carry: read from the batch index's alias filter."""

from __future__ import annotations

from typing import Any

from elasticsearch import Elasticsearch

from clickstream.errors import SchemaError
from clickstream.settings import ElasticsearchSettings
from indexing.views import (
    CUBE_MAPPINGS,
    SPEED_PROPERTIES,
    VIEW_PROPERTIES,
    ViewNames,
    boundary_of,
    cube_index,
    speed_filter,
)


def template_bodies(
    settings: ElasticsearchSettings, boundary_ms: int | None = None
) -> dict[str, dict[str, Any]]:
    """Template name -> body of every template the pipeline needs.

    Speed indices join the readers' alias when they are created, filtered to their (url,
    country, minute) documents, and ``start >= boundary_ms`` once a batch run has set a boundary
    (see indexing/boundary.py).
    """
    names = ViewNames(settings.index_prefix)
    speed_alias = {"filter": speed_filter(boundary_ms)}
    index_settings = {
        "number_of_shards": settings.shards,
        "number_of_replicas": settings.replicas,
        # Batch views change once an hour: a refresh a second is plenty.
        "refresh_interval": "1s",
    }
    # Speed views change every batch; the refresh is what a reader waits for after a write.
    speed_settings = {**index_settings, "refresh_interval": settings.speed_refresh_interval}
    return {
        names.batch_template: {
            "index_patterns": [f"{names.prefix}-batch-*"],
            "priority": 100,
            "template": {
                "settings": index_settings,
                "mappings": {"dynamic": "strict", "properties": VIEW_PROPERTIES},
            },
            "_meta": {"owner": "clickstream", "view": "batch", "grain": "hour"},
        },
        names.speed_template: {
            "index_patterns": [names.speed_pattern],
            "priority": 100,
            "template": {
                "settings": speed_settings,
                "aliases": {names.alias: speed_alias},
                "mappings": {
                    "dynamic": "strict",
                    "properties": {**VIEW_PROPERTIES, **SPEED_PROPERTIES},
                },
            },
            "_meta": {"owner": "clickstream", "view": "speed", "grain": "minute, hour"},
        },
    }


def read_boundary(client: Elasticsearch, prefix: str) -> int | None:
    """The boundary in force (epoch ms), read from the batch index's alias filter; None before
    the first batch run."""
    names = ViewNames(prefix)
    found = client.options(ignore_status=404).indices.get_alias(
        index=names.batch_index, name=names.alias
    )
    aliases = dict(found).get(names.batch_index, {}).get("aliases", {})
    return boundary_of(aliases.get(names.alias, {}).get("filter"))


def create_templates(client: Elasticsearch, settings: ElasticsearchSettings) -> list[str]:
    """Put every template (idempotent: same body, same result); names written.

    The speed template's alias carries the boundary in force, if a batch run has set one.
    """
    try:
        boundary_ms = read_boundary(client, settings.index_prefix)
    except Exception as exc:
        raise SchemaError(f"cannot read the time boundary of the views alias: {exc}") from exc
    written = []
    for name, body in template_bodies(settings, boundary_ms).items():
        try:
            client.indices.put_index_template(name=name, **body)
        except Exception as exc:
            raise SchemaError(f"cannot put index template {name}: {exc}") from exc
        written.append(name)
    upgrade_view_indices(client, settings.index_prefix)
    return written


def upgrade_view_indices(client: Elasticsearch, prefix: str) -> list[str]:
    """Add the fields this release's view documents carry (the speed layer's level, grain and
    offsets; bot clicks by rule) to existing view indices made by an older release, whose
    strict mappings would refuse them; the indices changed."""
    names = ViewNames(prefix)
    changed = []
    for pattern, wanted in (
        (names.speed_pattern, {**VIEW_PROPERTIES, **SPEED_PROPERTIES}),
        (names.sealed_pattern, VIEW_PROPERTIES),
        (names.batch_index, VIEW_PROPERTIES),
        (cube_index(prefix), VIEW_PROPERTIES),
    ):
        changed.extend(_add_fields(client, pattern, wanted))
    return changed


def _add_fields(client: Elasticsearch, pattern: str, wanted: dict[str, Any]) -> list[str]:
    """Put the fields of ``wanted`` that the indices of ``pattern`` lack; the indices changed."""
    changed = []
    found = client.indices.get_mapping(
        index=pattern, allow_no_indices=True, ignore_unavailable=True
    )
    for index, body in dict(found).items():
        properties = body.get("mappings", {}).get("properties", {})
        absent = {k: v for k, v in wanted.items() if k not in properties}
        if absent:
            try:
                client.indices.put_mapping(index=index, properties=absent)
            except Exception as exc:
                raise SchemaError(f"cannot add {sorted(absent)} to {index}: {exc}") from exc
            changed.append(index)
    return changed


def ensure_batch_index(client: Elasticsearch, prefix: str) -> str:
    """Create the batch view index from its template if absent; its name. A range without
    clicks writes no document, and must not leave the index missing (refresh, alias)."""
    index = ViewNames(prefix).batch_index
    client.options(ignore_status=400).indices.create(index=index)
    return index


def ensure_cube_index(client: Elasticsearch, settings: ElasticsearchSettings) -> str:
    """Create the batch cube's index with its strict mapping if absent; its name. One shard:
    the rollups are few (levels x buckets), and terms over one shard rank exactly."""
    index = cube_index(settings.index_prefix)
    client.options(ignore_status=400).indices.create(
        index=index,
        mappings=CUBE_MAPPINGS,
        settings={"number_of_shards": 1, "number_of_replicas": settings.replicas},
    )
    return index


def describe_templates(client: Elasticsearch, settings: ElasticsearchSettings) -> dict[str, bool]:
    """Template name -> whether it exists."""
    return {
        name: bool(client.indices.exists_index_template(name=name))
        for name in template_bodies(settings)
    }


def delete_templates(client: Elasticsearch, settings: ElasticsearchSettings) -> None:
    """Remove the pipeline's templates (absent ones are fine); indices are left alone."""
    for name in template_bodies(settings):
        client.options(ignore_status=404).indices.delete_index_template(name=name)


def drop_views(client: Elasticsearch, settings: ElasticsearchSettings) -> None:
    """Delete every index under the prefix, then the templates (tests and benchmarks)."""
    # Clusters refuse wildcard deletes (action.destructive_requires_name): name each index.
    prefix = settings.index_prefix
    for index in client.indices.get(index=f"{prefix}-*", allow_no_indices=True):
        client.indices.delete(index=index)
    delete_templates(client, settings)
