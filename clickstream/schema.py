"""``clickstream schema create|describe``: topics, table and index templates, in one place."""

from __future__ import annotations

import json
from typing import Any

from clickstream.settings import Settings
from indexing.client import connect as es_connect
from indexing.templates import create_templates, describe_templates
from ingest.topics import create_topics, describe_topics
from storage.admin import create_table, describe_table


def create_all(settings: Settings) -> dict[str, Any]:
    """Create every missing piece; report what was created and what already existed."""
    topics = create_topics(settings.kafka)
    table = create_table(settings)
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
        "hbase_table": describe_table(settings),
        "elasticsearch_templates": templates,
    }


def render(report: dict[str, Any]) -> str:
    """A report as indented JSON (stable for scripts and readable for people)."""
    return json.dumps(report, indent=2, sort_keys=True)
