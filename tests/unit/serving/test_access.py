"""API keys (pure) and the guard of the data routes (on a tiny ASGI app: no server needed)."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from clickstream.security import is_loopback
from serving.access import (
    key_hash,
    key_name,
    new_key,
    valid_hash,
)
from serving.guard import ApiMetrics, Guard


class TestKeys:
    def test_a_key_matches_only_its_own_hash(self) -> None:
        first, second = new_key(), new_key()
        assert first != second
        assert first.startswith("cs_")
        assert len(first) == 46
        keys = {"dashboard": key_hash(first), "ops": key_hash(second)}
        assert key_name(first, keys) == "dashboard"
        assert key_name(second, keys) == "ops"
        assert key_name(first + "x", keys) is None
        assert key_name("", keys) is None
        assert key_name(None, keys) is None

    def test_the_stored_form_is_a_sha256_hex_digest(self) -> None:
        stored = key_hash("cs_known")
        assert stored == "sha256:" + hashlib.sha256(b"cs_known").hexdigest()
        assert valid_hash(stored)
        assert len(stored) == len("sha256:") + 64
        assert not valid_hash("cs_known")
        assert not valid_hash("sha256:" + "g" * 64)
        assert not valid_hash("md5:" + "a" * 64)

    @pytest.mark.parametrize(
        ("host", "expected"),
        [
            ("127.0.0.1", True),
            ("::1", True),
            ("localhost", True),
            ("0.0.0.0", False),  # noqa: S104 - the case under test
            ("10.0.0.5", False),
            ("api.example", False),
        ],
    )
    def test_loopback(self, host: str, expected: bool) -> None:
        assert is_loopback(host) is expected


def guarded_app(max_concurrent: int, timeout_s: float, metrics: ApiMetrics) -> FastAPI:
    """A data route that takes as long as asked, behind the guard."""
    app = FastAPI()
    app.middleware("http")(Guard(max_concurrent, timeout_s, metrics))

    @app.get("/v1/slow")
    async def slow(seconds: float) -> dict[str, float]:
        await asyncio.sleep(seconds)
        return {"slept": seconds}

    @app.get("/healthz")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


class TestGuard:
    def test_past_the_deadline_the_answer_is_a_503(self) -> None:
        metrics = ApiMetrics()
        with TestClient(guarded_app(4, 0.2, metrics)) as client:
            assert client.get("/v1/slow", params={"seconds": 0}).json() == {"slept": 0}
            late = client.get("/v1/slow", params={"seconds": 2})
        assert late.status_code == 503
        assert late.json()["error"] == "deadline"
        assert "serving.request_timeout_s = 0.2 s" in late.json()["message"]
        assert metrics.rejections.labels("deadline")._value.get() == 1

    def test_past_the_concurrency_limit_a_request_is_refused_at_once(self) -> None:
        metrics = ApiMetrics()
        with TestClient(guarded_app(1, 10, metrics)) as client:
            results: list[int] = []
            busy = threading.Thread(
                target=lambda: results.append(
                    client.get("/v1/slow", params={"seconds": 1.5}).status_code
                )
            )
            busy.start()
            time.sleep(0.5)
            started = time.monotonic()
            refused = client.get("/v1/slow", params={"seconds": 0})
            waited = time.monotonic() - started
            health = client.get("/healthz")  # not a data route: never limited
            busy.join()
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "1"
        assert refused.json()["error"] == "busy"
        assert waited < 1.0  # refused, not queued behind the slow one
        assert health.status_code == 200
        assert results == [200]
        assert metrics.rejections.labels("busy")._value.get() == 1
