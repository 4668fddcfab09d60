"""Prometheus metrics and the health endpoint of the ingest daemon."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class IngestMetrics:
    """The daemon's counters, on a registry of its own (tests create several daemons)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.consumed = Counter(
            "clickstream_ingest_messages_consumed_total",
            "Messages read from the clicks topic.",
            registry=self.registry,
        )
        self.stored = Counter(
            "clickstream_ingest_events_stored_total",
            "Valid events written to HBase.",
            registry=self.registry,
        )
        self.rejected = Counter(
            "clickstream_ingest_messages_rejected_total",
            "Messages sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "clickstream_ingest_batch_seconds",
            "Time to process, write and commit one batch.",
            registry=self.registry,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.write_retries = Counter(
            "clickstream_ingest_write_retries_total",
            "Failed write attempts that were retried.",
            ["target"],
            registry=self.registry,
        )
        self.lag = Gauge(
            "clickstream_ingest_consumer_lag",
            "Messages behind the partition's high watermark.",
            ["partition"],
            registry=self.registry,
        )
        self.paused = Gauge(
            "clickstream_ingest_paused",
            "1 while partitions are paused for a downstream outage.",
            registry=self.registry,
        )
        self.speed_docs = Counter(
            "clickstream_speed_documents_written_total",
            "Speed-layer minute documents sent to Elasticsearch.",
            registry=self.registry,
        )
        self.speed_beyond_horizon = Counter(
            "clickstream_speed_beyond_horizon_total",
            "Clicks too old for the speed window (speed.allowed_lateness_s): left to the batch.",
            registry=self.registry,
        )
        self.speed_rejected = Counter(
            "clickstream_speed_documents_rejected_total",
            "Speed documents Elasticsearch refused for their own value, by error type: left "
            "behind (the batch views cover their hour).",
            ["reason"],
            registry=self.registry,
        )
        self.health: dict[str, Any] = {"status": "starting"}
        self.last_progress = time.monotonic()

    def set_health(self, **values: Any) -> None:
        """Update what /healthz reports."""
        self.health = {**self.health, **values}


def serve(metrics: IngestMetrics, host: str, port: int) -> ThreadingHTTPServer:
    """Serve /metrics (Prometheus) and /healthz (JSON; 503 unless healthy) in a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                body, status, kind = generate_latest(metrics.registry), 200, CONTENT_TYPE_LATEST
            elif self.path in ("/healthz", "/health"):
                health = dict(metrics.health)
                status = 200 if health.get("status") == "ok" else 503
                body, kind = json.dumps(health).encode(), "application/json"
            else:
                body, status, kind = b"not found: try /metrics or /healthz\n", 404, "text/plain"
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Silence per-request logging (scrapes every few seconds)."""

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
