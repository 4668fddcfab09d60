"""The real `clickstream` process against a service that is down: log lines, then one error."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

CLICKSTREAM = Path(sys.executable).with_name("clickstream")
ONE_HOUR = ("--from", "2026-11-30T00:00Z", "--to", "2026-11-30T01:00Z")


@pytest.fixture
def refused_url() -> Iterator[str]:
    """An http URL on a port bound but not listening: every connect is refused, no server needed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def _query(url: str, *options: str) -> subprocess.CompletedProcess[str]:
    """`clickstream [options] query` of one hour with Elasticsearch at *url*; stderr a pipe."""
    env = {**os.environ, "CLICKSTREAM_ELASTICSEARCH__URL": url}
    env.pop("CLICKSTREAM_CONFIG", None)
    return subprocess.run(
        [str(CLICKSTREAM), *options, "query", *ONE_HOUR],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


class TestElasticsearchUnreachable:
    def test_query_prints_one_line_per_retry_then_the_error(self, refused_url: str) -> None:
        """No traceback: one JSON warning line per retry of the client, then the error line."""
        result = _query(refused_url, "--log-json")
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        *logs, last = result.stderr.splitlines()
        assert last.startswith(f"clickstream: error: Elasticsearch at {refused_url} is unreachable")
        lines = [json.loads(line) for line in logs]
        assert {line["level"] for line in lines} == {"warning"}
        retries = [line for line in lines if line["event"].startswith("Retrying request")]
        assert len(retries) == len(lines) == 3
        assert all("ConnectionError" in line["error"] for line in retries)

    def test_debug_shows_the_client_tracebacks(self, refused_url: str) -> None:
        """`--log-level DEBUG` keeps what the client logged, tracebacks included."""
        result = _query(refused_url, "--log-level", "DEBUG")
        assert result.returncode == 1
        assert "Traceback (most recent call last)" in result.stderr
        assert result.stderr.splitlines()[-1].startswith("clickstream: error: Elasticsearch at")
