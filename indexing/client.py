"""Elasticsearch client built from settings (credentials unwrapped here and nowhere else)."""

from __future__ import annotations

from elasticsearch import Elasticsearch
from elasticsearch.serializer import OrjsonSerializer

from clickstream.settings import ElasticsearchSettings


def connect(settings: ElasticsearchSettings) -> Elasticsearch:
    """A client for ``settings.url``; it connects on first request. Bodies are (de)serialised
    with orjson: a query's answer can carry megabytes of sketches, which the standard library
    parses several times slower."""
    auth: dict[str, object] = {}
    if settings.api_key is not None:
        auth["api_key"] = settings.api_key.get_secret_value()
    elif settings.username is not None and settings.password is not None:
        auth["basic_auth"] = (settings.username, settings.password.get_secret_value())
    return Elasticsearch(
        settings.url,
        request_timeout=settings.request_timeout_s,
        retry_on_timeout=True,
        max_retries=3,
        serializer=OrjsonSerializer(),
        **auth,  # type: ignore[arg-type]
    )
