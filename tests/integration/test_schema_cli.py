"""`clickstream schema create|describe` end to end through the CLI, on the real stack."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from clickstream.settings import Settings
from commands.cli import main
from indexing.client import connect as es_connect
from indexing.templates import delete_templates
from ingest.topics import delete_topics, pipeline_topics
from storage.admin import drop_tables

pytestmark = pytest.mark.integration


@pytest.fixture
def env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """The test's names passed to the CLI the way an operator would: environment variables."""
    monkeypatch.setenv("CLICKSTREAM_KAFKA__CLICKS_TOPIC", settings.kafka.clicks_topic)
    monkeypatch.setenv("CLICKSTREAM_KAFKA__DLQ_TOPIC", settings.kafka.dlq_topic)
    monkeypatch.setenv("CLICKSTREAM_HBASE__TABLE", settings.hbase.table)
    monkeypatch.setenv(
        "CLICKSTREAM_ELASTICSEARCH__INDEX_PREFIX", settings.elasticsearch.index_prefix
    )
    yield settings
    delete_topics(settings.kafka, pipeline_topics(settings.kafka))
    drop_tables(settings)
    es = es_connect(settings.elasticsearch)
    delete_templates(es, settings.elasticsearch)
    es.close()


def test_create_then_create_again_then_describe(
    env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first create makes everything, the second nothing; describe shows it all."""
    assert main(["schema", "create", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert [t["created"] for t in first["kafka_topics"]] == [True, True, True]
    assert first["hbase_table"]["created"] is True
    assert first["hbase_table"]["regions"] == env.hbase.salt_buckets

    assert main(["schema", "create", "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert [t["created"] for t in second["kafka_topics"]] == [False, False, False]
    assert second["hbase_table"]["created"] is False

    assert main(["schema", "describe", "--json"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert all(
        t["exists"] and t["partitions"] == env.kafka.partitions for t in described["kafka_topics"]
    )
    families = {f["name"] for f in described["hbase_table"]["families"]}
    assert families == {"click_data", "geo_data", "user_agent_data"}
    assert all(described["elasticsearch_templates"].values())
