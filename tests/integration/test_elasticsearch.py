"""Elasticsearch: the view templates, index, refresh and search on the real server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from elasticsearch import BadRequestError, Elasticsearch

from clickstream.settings import Settings
from indexing.client import connect
from indexing.templates import create_templates, describe_templates, drop_views
from indexing.views import ViewNames

pytestmark = pytest.mark.integration


@pytest.fixture
def es(settings: Settings) -> Iterator[Elasticsearch]:
    """A client; the test's indices and templates are deleted afterwards."""
    client = connect(settings.elasticsearch)
    yield client
    drop_views(client, settings.elasticsearch)
    client.close()


class TestTemplates:
    def test_templates_apply_strict_mappings(self, es: Elasticsearch, settings: Settings) -> None:
        """An index matching the batch pattern gets the explicit mapping and rejects strays."""
        assert set(create_templates(es, settings.elasticsearch)) == set(
            describe_templates(es, settings.elasticsearch)
        )
        names = ViewNames(settings.elasticsearch.index_prefix)
        es.index(index=names.batch_index, id="a", document={"url": "https://x/", "clicks": 3})
        mapping = es.indices.get_mapping(index=names.batch_index)[names.batch_index]
        assert mapping["mappings"]["properties"]["url"]["type"] == "keyword"
        assert mapping["mappings"]["properties"]["users_sketch"]["type"] == "binary"
        with pytest.raises(BadRequestError, match="strict"):
            es.index(index=names.batch_index, id="b", document={"surprise": 1})

    def test_create_twice_is_idempotent(self, es: Elasticsearch, settings: Settings) -> None:
        """Putting the templates again succeeds and leaves them present."""
        create_templates(es, settings.elasticsearch)
        create_templates(es, settings.elasticsearch)
        assert all(describe_templates(es, settings.elasticsearch).values())


class TestIndexAndSearch:
    def test_index_refresh_search_aggregate(self, es: Elasticsearch, settings: Settings) -> None:
        """Documents are searchable after a refresh and aggregate to the right sums."""
        create_templates(es, settings.elasticsearch)
        index = ViewNames(settings.elasticsearch.index_prefix).batch_index
        docs = [("https://a/", "DE", 3), ("https://a/", "FR", 4), ("https://b/", "DE", 5)]
        for i, (url, country, clicks) in enumerate(docs):
            es.index(
                index=index, id=str(i), document={"url": url, "country": country, "clicks": clicks}
            )
        es.indices.refresh(index=index)
        result = es.search(
            index=index,
            size=0,
            query={"term": {"url": "https://a/"}},
            aggs={
                "clicks": {"sum": {"field": "clicks"}},
                "countries": {"cardinality": {"field": "country"}},
            },
        )
        assert result["hits"]["total"]["value"] == 2
        assert result["aggregations"]["clicks"]["value"] == 7
        assert result["aggregations"]["countries"]["value"] == 2
