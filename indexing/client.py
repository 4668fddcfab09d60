"""Elasticsearch client built from settings (credentials unwrapped here and nowhere else)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from elasticsearch import Elasticsearch
from elasticsearch.serializer import OrjsonSerializer

from clickstream.settings import ElasticsearchSettings


def client_kwargs(settings: ElasticsearchSettings) -> dict[str, Any]:
    """The keyword arguments of :class:`Elasticsearch` for ``settings``: the one place that builds
    them (address, timeouts, credentials, TLS), for every client the pipeline makes. Holds
    secrets: pass it to the client, never to a message or a log line.

    Bodies are (de)serialised with orjson: a query's answer can carry megabytes of sketches,
    which the standard library parses several times slower.
    """
    kwargs: dict[str, Any] = {
        "hosts": [settings.url],
        "request_timeout": settings.request_timeout_s,
        "retry_on_timeout": True,
        "max_retries": 3,
        "serializer": OrjsonSerializer(),
    }
    if settings.api_key is not None:
        kwargs["api_key"] = settings.api_key.get_secret_value()
    elif settings.username is not None and settings.password is not None:
        kwargs["basic_auth"] = (settings.username, settings.password.get_secret_value())
    if urlsplit(settings.url).scheme == "https":
        kwargs["verify_certs"] = settings.verify_certs
        if settings.ca_file is not None:
            kwargs["ca_certs"] = str(settings.ca_file)
        if settings.ssl_assert_fingerprint is not None:
            kwargs["ssl_assert_fingerprint"] = settings.ssl_assert_fingerprint
        if settings.client_certificate_file is not None:
            kwargs["client_cert"] = str(settings.client_certificate_file)
        if settings.client_key_file is not None:
            kwargs["client_key"] = str(settings.client_key_file)
    return kwargs


def connect(settings: ElasticsearchSettings) -> Elasticsearch:
    """A client for ``settings.url``; it connects on first request."""
    return Elasticsearch(**client_kwargs(settings))
