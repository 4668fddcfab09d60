"""Driving `clickstream ingest` and `clickstream serve` as real processes: for the integration
tests and the benchmarks.

The daemon is configured the way an operator would configure it, through CLICKSTREAM_*
environment variables, and logs to a file (never a pipe nobody reads, which would block it).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Consumer, TopicPartition

from clickstream.errors import ClickstreamError
from clickstream.settings import Settings
from clickstream.times import parse_ms


class HarnessError(ClickstreamError):
    """A harnessed daemon did not end as asked (still running, or a non-zero exit); the
    message carries the end of its log."""


def isolated(base: Settings, name: str) -> Settings:
    """``base`` with topics, table and index prefix all named after ``name``: a run of its own
    on a shared stack (tests, benchmarks)."""
    return base.model_copy(
        update={
            "kafka": base.kafka.model_copy(
                update={"clicks_topic": f"{name}.clicks", "dlq_topic": f"{name}.dlq"}
            ),
            "hbase": base.hbase.model_copy(update={"table": name}),
            "elasticsearch": base.elasticsearch.model_copy(update={"index_prefix": name}),
        }
    )


def group_of(settings: Settings) -> str:
    """The consumer group a harnessed daemon uses: one per table, so runs never share offsets."""
    return f"{settings.hbase.table}-group"


@dataclass
class DaemonProcess:
    """A running `clickstream ingest` and its log file."""

    process: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    def start(cls, settings: Settings, instance: str, *args: str, **env: str) -> DaemonProcess:
        """Start one daemon on ``settings``' topics and table; ``env`` overrides variables."""
        variables = {
            **os.environ,
            "CLICKSTREAM_KAFKA__CLICKS_TOPIC": settings.kafka.clicks_topic,
            "CLICKSTREAM_KAFKA__DLQ_TOPIC": settings.kafka.dlq_topic,
            "CLICKSTREAM_HBASE__TABLE": settings.hbase.table,
            "CLICKSTREAM_ELASTICSEARCH__INDEX_PREFIX": settings.elasticsearch.index_prefix,
            "CLICKSTREAM_INGEST__GROUP_ID": group_of(settings),
            "CLICKSTREAM_INGEST__METRICS_PORT": "0",
            **env,
        }
        if settings.ingest.geoip_database is not None:
            variables.setdefault(
                "CLICKSTREAM_INGEST__GEOIP_DATABASE", str(settings.ingest.geoip_database)
            )
        log_path = Path(tempfile.mkstemp(prefix=f"ingest-{instance}-", suffix=".log")[1])
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "commands.cli",
                    "--log-json",
                    "ingest",
                    "--instance",
                    instance,
                    *args,
                ],
                env=variables,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        return cls(process, log_path)

    def log(self) -> str:
        """Everything it has logged so far."""
        return self.log_path.read_text(errors="replace")

    def finish(self, timeout: float = 300) -> str:
        """Wait for it to exit (it should run with --exit-when-idle); its log. Raises unless 0."""
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            message = f"daemon still running after {timeout}s:\n{self.log()[-3000:]}"
            raise HarnessError(message) from None
        if self.process.returncode != 0:
            raise HarnessError(f"daemon exited {self.process.returncode}:\n{self.log()[-3000:]}")
        text = self.log()
        self.log_path.unlink()  # kept only when something went wrong
        return text

    def kill(self) -> None:
        """SIGKILL it and reap it; its log file goes too."""
        self.process.kill()
        self.process.wait(10)
        self.log_path.unlink(missing_ok=True)


def batches_in(log: str) -> list[dict[str, Any]]:
    """The per-batch summary lines of a daemon's log, parsed."""
    return [json.loads(line) for line in log.splitlines() if '"event": "ingest.batch"' in line]


def committed(settings: Settings) -> int:
    """Offsets the harness's group has committed on the clicks topic, summed over partitions."""
    topic = settings.kafka.clicks_topic
    consumer = Consumer({**settings.kafka.client_config(), "group.id": group_of(settings)})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        # After a crash, a transaction left open keeps the offsets "unstable" (unreadable)
        # until it is fenced or times out (transaction.timeout.ms, 10 s): wait past that.
        offsets = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=30)
    finally:
        consumer.close()
    return sum(max(tp.offset, 0) for tp in offsets)


def batch_throughput(batches: list[dict[str, Any]]) -> float:
    """Messages per second from the start of the first batch to the end of the last."""
    started = float(batches[0]["ms"]) / 1000
    first = parse_ms(batches[0]["timestamp"]) / 1000 - started
    last = parse_ms(batches[-1]["timestamp"]) / 1000
    messages = sum(int(b["messages"]) for b in batches)
    return messages / max(last - first, 1e-9)


def free_port() -> int:
    """A TCP port nobody listens on (now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ApiProcess:
    """A running `clickstream serve` on ``settings``' index prefix and table, logging to a file."""

    process: subprocess.Popen[bytes]
    log_path: Path
    base_url: str

    @classmethod
    def start(cls, settings: Settings, timeout: float = 90) -> ApiProcess:
        """Start it on a free port and wait for /healthz."""
        port = free_port()
        env = {
            **os.environ,
            "CLICKSTREAM_ELASTICSEARCH__INDEX_PREFIX": settings.elasticsearch.index_prefix,
            "CLICKSTREAM_HBASE__TABLE": settings.hbase.table,
        }
        log_path = Path(tempfile.mkstemp(prefix="serve-bench-", suffix=".log")[1])
        command = [sys.executable, "-m", "commands.cli", "serve"]
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [*command, "--host", "127.0.0.1", "--port", str(port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        api = cls(process, log_path, f"http://127.0.0.1:{port}")
        api.wait_healthy(timeout)
        return api

    def wait_healthy(self, timeout: float) -> None:
        """Poll /healthz until 200; exit with the log's end if it dies or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        log = self.log_path.read_text(errors="replace")[-3000:]
        self.stop()
        raise SystemExit(f"clickstream serve did not become healthy:\n{log}")

    def stop(self) -> None:
        """Terminate it (by its pid) and reap it; its log goes too."""
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.log_path.unlink(missing_ok=True)
