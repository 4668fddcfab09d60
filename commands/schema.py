"""``clickstream schema create|describe``: topics, table and index templates, in one place."""

from __future__ import annotations

import json
from typing import Any

from clickstream.settings import Settings
from commands.defaults import admin_runtime
from indexing.client import connect as es_connect
from indexing.templates import create_templates, describe_templates
from ingest.topics import create_topics, describe_topics
from storage.admin import create_table, describe_table


def create_all(settings: Settings) -> dict[str, Any]:
    """Create every missing piece; report what was created and what already existed."""
    topics = create_topics(settings.kafka)
    table = create_table(settings, admin_runtime(settings))
    client = es_connect(settings.elasticsearch)
    try:
        templates = create_templates(client, settings.elasticsearch)
    finally:
        client.close()
    return {
        "kafka_topics": [
            {"name": t.name, "partitions": t.partitions, "created": t.created} for t in topics
        ],
        "hbase_table": table,
        "elasticsearch_templates": templates,
    }


def describe_all(settings: Settings) -> dict[str, Any]:
    """What exists of the topics, the table and the templates."""
    client = es_connect(settings.elasticsearch)
    try:
        templates = describe_templates(client, settings.elasticsearch)
    finally:
        client.close()
    return {
        "kafka_topics": [
            {"name": t.name, "exists": t.exists, "partitions": t.partitions}
            for t in describe_topics(settings.kafka)
        ],
        "hbase_table": describe_table(settings, admin_runtime(settings)),
        "elasticsearch_templates": templates,
    }


def render(report: dict[str, Any], as_json: bool) -> str:
    """A report as indented JSON (for scripts) or one line per object (for people)."""
    if as_json:
        return json.dumps(report, indent=2, sort_keys=True)
    lines = []
    for topic in report["kafka_topics"]:
        state = _state(topic.get("created"), topic.get("exists", True))
        detail = f" ({topic['partitions']} partitions)" if topic["partitions"] else ""
        lines.append(f"kafka topic {topic['name']}: {state}{detail}")
    table = report["hbase_table"]
    name = table.get("table", "")
    if table.get("exists", True):
        families = ", ".join(
            f"{f['name']} ({f['compression']}, ttl {f['ttl_seconds'] or 'forever'}, "
            f"{f['max_versions']} version, bloom {f['bloom_filter']})"
            for f in table.get("families", [])
        )
        lines.append(
            f"hbase table {name}: {_state(table.get('created'), True)} "
            f"({table.get('regions')} regions; {families})"
        )
        lines.extend(f"  note: {diff}" for diff in table.get("settings_differ", []))
        if "late_table" in table:
            late = table["late_table"]
            lines.append(
                f"hbase table {late['name']}: {_state(late['created'], True)} (late-event ledger)"
            )
    else:
        lines.append(f"hbase table {name}: missing")
    templates = report["elasticsearch_templates"]
    if isinstance(templates, dict):
        lines.extend(
            f"elasticsearch template {n}: {'exists' if ok else 'missing'}"
            for n, ok in templates.items()
        )
    else:
        lines.extend(f"elasticsearch template {n}: written" for n in templates)
    return "\n".join(lines)


def _state(created: bool | None, exists: bool) -> str:
    if created:
        return "created"
    return "exists" if exists else "missing"
