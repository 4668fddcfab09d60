"""The secure local stack (``stack.secure``), brought up once per session on its own home and
ports, beside (never instead of) the plain stack: Kafka 19092/19093, Elasticsearch 19200/19300,
no HBase. Run with ``pytest -m secure tests/secure`` (``make test-secure``); other runs skip these
tests. A stack this session started is stopped at the end, unless CLICKSTREAM_KEEP_STACK=1.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from clickstream.settings import Settings, load_settings
from commands.stack.manager import Stack
from commands.stack.secure import SecureFiles
from tests.stacks import running

SECURE_HOME = Path(os.environ.get("CLICKSTREAM_SECURE_TEST_HOME", "/var/tmp/clickstream-secure"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the secure suite unless it was asked for (``-m secure``): it starts servers."""
    if "secure" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="the secure stack suite runs with -m secure")
    for item in items:
        if item.get_closest_marker("secure") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def secure_settings() -> Settings:
    """Settings of the secure stack: its own home and ports, Kafka and Elasticsearch only."""
    return load_settings(
        stack={
            "home": SECURE_HOME,
            "secure": True,
            "hbase": False,
            "kafka_controller_port": 19093,
            "elasticsearch_transport_port": 19300,
        },
        kafka={"bootstrap_servers": "127.0.0.1:19092"},
        elasticsearch={"url": "https://127.0.0.1:19200"},
    )


@pytest.fixture(scope="session")
def secure_stack(secure_settings: Settings) -> Iterator[Stack]:
    """The running secure stack (started if needed)."""
    with running(secure_settings, "secure") as stack:
        yield stack


@pytest.fixture(scope="session")
def files(secure_stack: Stack) -> SecureFiles:
    """The secure stack's CA, passwords and client settings."""
    return SecureFiles(secure_stack.settings.stack.home)
