"""The real local stack, brought up once per test session (reused if already running).

If the stack cannot start, every integration test errors with the stack's own message: these
tests are never skipped. A stack this session started is stopped at the end, unless
CLICKSTREAM_KEEP_STACK=1 (handy while iterating).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator

import pytest
from elasticsearch import Elasticsearch
from pyspark.sql import SparkSession

from clickstream.settings import Settings, load_settings
from commands.defaults import admin_runtime
from commands.stack.manager import Stack
from indexing.client import connect as es_connect
from indexing.templates import create_templates, drop_views
from ingest.topics import create_topics, delete_topics, pipeline_topics
from storage.admin import create_table, drop_tables
from tests.integration.helpers import Spawn
from tests.paths import GEO_DB
from tests.stacks import running
from traffic.generate import LATE_MAX_MS
from traffic.harness import DaemonProcess, isolated


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    """Settings from the environment, as a developer's shell or CI has them."""
    return load_settings()


@pytest.fixture(scope="session")
def stack(base_settings: Settings) -> Iterator[Stack]:
    """The running local stack."""
    with running(base_settings, "stack") as stack:
        yield stack


@pytest.fixture(scope="module")
def spark(stack: Stack) -> Iterator[SparkSession]:
    """One local Spark session per test module (starting one takes ~10 s)."""
    from processing.job import spark_session  # noqa: PLC0415 - only batch tests pay for it

    session = spark_session(stack.settings, app="clickstream-tests")
    yield session
    session.stop()


@pytest.fixture
def unique(request: pytest.FixtureRequest) -> str:
    """A name no other test uses: for topics, tables and index prefixes."""
    base = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")[:40]
    return f"it_{base}_{secrets.token_hex(3)}"


@pytest.fixture
def settings(stack: Stack, unique: str) -> Settings:
    """Settings whose topics, table and index prefix are this test's own."""
    return isolated(stack.settings, unique)


@pytest.fixture
def pipeline(settings: Settings) -> Iterator[Settings]:
    """The test's topics and pre-split table, removed afterwards."""
    create_topics(settings.kafka)
    create_table(settings, admin_runtime(settings, progress=lambda _: None))
    client = es_connect(settings.elasticsearch)
    create_templates(client, settings.elasticsearch)  # the speed layer writes views too
    yield settings
    delete_topics(settings.kafka, pipeline_topics(settings.kafka))
    drop_tables(settings)
    drop_views(client, settings.elasticsearch)
    client.close()


@pytest.fixture
def views(pipeline: Settings) -> Iterator[Elasticsearch]:
    """A client on the test's view indices (templates made by `pipeline`, which drops them)."""
    client = es_connect(pipeline.elasticsearch)
    yield client
    client.close()


@pytest.fixture
def spawn(pipeline: Settings) -> Iterator[Spawn]:
    """Starts `clickstream ingest` on the test's topics and table (geo from the test DB); any
    daemon still running when the test ends, even a failed one, is killed."""
    started: list[DaemonProcess] = []

    def start(instance: str, *args: str, **env: str) -> DaemonProcess:
        defaults = {
            "CLICKSTREAM_INGEST__GEOIP_DATABASE": str(GEO_DB),
            "CLICKSTREAM_INGEST__BACKOFF_MAX_MS": "2000",
            # Generated traffic delivers 1 % of events 1-3 h late: the speed layer's window
            # must cover that for its views to be exact before the batch passes.
            "CLICKSTREAM_SPEED__ALLOWED_LATENESS_S": str(LATE_MAX_MS // 1000),
        }
        daemon = DaemonProcess.start(pipeline, instance, *args, **{**defaults, **env})
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        if daemon.process.poll() is None:
            daemon.kill()
