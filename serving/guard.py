"""What keeps one client from taking the API down: a concurrency limit, a deadline, and the
metrics that show both (Prometheus, at ``/metrics``, beside the daemon's).

Only the data routes (``/v1/...``) are limited; ``/healthz``, ``/metrics`` and the dashboard's
files always answer. Past ``serving.max_concurrent`` requests at once a request is refused at
once with 429 (``Retry-After: 1``) rather than queued behind the others; past
``serving.request_timeout_s`` the client gets a 503 and the slot is freed (the query behind it
finishes in a worker thread, bounded by the Elasticsearch client's own timeouts and by the
server's thread pool, 40 threads).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Final

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter, Histogram

GUARDED_PREFIX: Final = "/v1/"
LATENCY_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

Next = Callable[[Request], Awaitable[Response]]


class ApiMetrics:
    """The API's Prometheus metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "clickstream_api_request_seconds",
            "Time to answer an API request, by route and status.",
            ["route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rejections = Counter(
            "clickstream_api_rejections_total",
            "Requests refused before or instead of an answer, by reason "
            "(unauthorized, busy, deadline, too_large).",
            ["reason"],
            registry=self.registry,
        )
        for reason in ("unauthorized", "busy", "deadline", "too_large"):
            self.rejections.labels(reason)


def error_body(
    status: int,
    kind: str,
    message: str,
    headers: dict[str, str] | None = None,
    parameter: str | None = None,
) -> JSONResponse:
    """A refusal in the API's error shape (ErrorOut): the kind, the parameter, the message."""
    body = {"error": kind, "parameter": parameter, "message": message}
    return JSONResponse(status_code=status, content=body, headers=headers)


class Guard:
    """The concurrency limit and the deadline of the data routes (an ASGI ``http`` middleware:
    one event loop, so a plain counter is enough)."""

    def __init__(self, max_concurrent: int, timeout_s: float, metrics: ApiMetrics) -> None:
        self.max_concurrent = max_concurrent
        self.timeout_s = timeout_s
        self.metrics = metrics
        self.active = 0

    async def __call__(self, request: Request, call_next: Next) -> Response:
        if not request.url.path.startswith(GUARDED_PREFIX):
            return await call_next(request)
        started = time.perf_counter()
        if self.active >= self.max_concurrent:
            self.metrics.rejections.labels("busy").inc()
            response: Response = error_body(
                429,
                "busy",
                f"the API is answering {self.active} requests (serving.max_concurrent); retry "
                "in a second",
                {"Retry-After": "1"},
            )
            self._observe(request, response, started)
            return response
        self.active += 1
        try:
            response = await asyncio.wait_for(call_next(request), self.timeout_s)
        except TimeoutError:
            self.metrics.rejections.labels("deadline").inc()
            response = error_body(
                503,
                "deadline",
                f"no answer within serving.request_timeout_s = {self.timeout_s:g} s; narrow "
                "the range or ask for fewer groups, or retry",
                {"Retry-After": "5"},
            )
        finally:
            self.active -= 1
        self._observe(request, response, started)
        return response

    def _observe(self, request: Request, response: Response, started: float) -> None:
        route = getattr(request.scope.get("route"), "path", request.url.path)
        self.metrics.latency.labels(route, str(response.status_code)).observe(
            time.perf_counter() - started
        )
