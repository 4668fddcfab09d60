"""``clickstream batch-status``: the batch layer's health without reading logs.

The last successful run (the watermark document), the time boundary in force and its lag behind
now, the batch lock, and the late events waiting for the next run. The pure part renders a
:class:`BatchStatus` and decides the exit code; :func:`read_status` gathers one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clickstream.settings import Settings
from clickstream.times import HOUR_MS, MINUTE_MS, iso
from hbase_schema.late import waiting_events
from indexing.client import connect
from indexing.lock import Lease, read_lock
from indexing.state import Watermark, read_watermark
from indexing.templates import read_boundary
from storage import late as late_ledger

#: The exit code when the batch layer needs an operator: lagging, or never run.
UNHEALTHY = 3

_LABEL = 14


@dataclass(frozen=True, slots=True)
class BatchStatus:
    """What the batch layer looks like at ``now_ms``."""

    now_ms: int
    watermark: Watermark
    boundary_ms: int | None
    lock: Lease | None
    late_waiting: int | None
    late_error: str | None = None


def default_max_lag_ms(session_timeout_ms: int) -> int:
    """The most lag a healthy hourly run leaves (the session timeout, up to an hour, the run
    itself) plus an hour of slack: 2 h + the session timeout."""
    return 2 * HOUR_MS + session_timeout_ms


def exit_code(status: BatchStatus, max_lag_ms: int) -> int:
    """0 when the boundary is at most ``max_lag_ms`` behind now, else :data:`UNHEALTHY` (also
    before the first run: no view is exact then)."""
    if status.boundary_ms is None or status.now_ms - status.boundary_ms > max_lag_ms:
        return UNHEALTHY
    return 0


def _duration(ms: int) -> str:
    """``2h 05m``, ``40m``: whole minutes, rounded down."""
    hours, minutes = divmod(max(0, ms) // MINUTE_MS, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m"


def _last_run(watermark: Watermark, now_ms: int) -> str:
    if watermark.completed_until_ms is None:
        return "none: no batch run yet"
    text = ""
    if watermark.last_range is not None:
        t0, t1 = watermark.last_range
        text = f"[{iso(t0)}, {iso(t1)})"
    if watermark.updated_at_ms is not None:
        age = _duration(now_ms - watermark.updated_at_ms)
        text += f" at {iso(watermark.updated_at_ms)} ({age} ago)"
    return text.strip() or "unknown"


def _boundary(status: BatchStatus, max_lag_ms: int) -> str:
    if status.boundary_ms is None:
        return "none"
    lag = _duration(status.now_ms - status.boundary_ms)
    text = f"{iso(status.boundary_ms)}, {lag} behind now (limit {_duration(max_lag_ms)})"
    done = status.watermark.completed_until_ms
    if done is not None and status.boundary_ms < done:
        text += (
            f"; behind the watermark {iso(done)}: the last run stopped before moving it, "
            "the next run will"
        )
    return text


def _lock(lock: Lease | None, now_ms: int) -> str:
    if lock is None:
        return "free"
    if lock.expired(now_ms):
        return (
            f"EXPIRED at {iso(lock.expires_at_ms)}, held by {lock.owner} since "
            f"{iso(lock.acquired_at_ms)} (a run that crashed?); the next run takes it over"
        )
    return (
        f"held by {lock.owner} since {iso(lock.acquired_at_ms)}, "
        f"expires {iso(lock.expires_at_ms)} (in {_duration(lock.expires_at_ms - now_ms)})"
    )


def _late(status: BatchStatus) -> str:
    if status.late_waiting is None:
        return f"unknown: {status.late_error}"
    return f"{status.late_waiting} waiting for the next batch run"


def _verdict(status: BatchStatus, max_lag_ms: int) -> str:
    if status.boundary_ms is None:
        return (
            "NO BATCH RUN YET: give the first range by hand (clickstream batch --from ISO --to ISO)"
        )
    lag = status.now_ms - status.boundary_ms
    if lag > max_lag_ms:
        return (
            f"LAGGING: the boundary is {_duration(lag)} behind now, "
            f"more than {_duration(max_lag_ms)}"
        )
    return "ok"


def as_dict(status: BatchStatus, max_lag_ms: int) -> dict[str, Any]:
    """The report as plain data (``--json``): for monitoring and scripts."""
    watermark, boundary, lock = status.watermark, status.boundary_ms, status.lock
    verdict = "never_run" if boundary is None else "ok"
    if exit_code(status, max_lag_ms) and boundary is not None:
        verdict = "lagging"
    return {
        "watermark": None
        if watermark.completed_until_ms is None
        else iso(watermark.completed_until_ms),
        "last_range": None
        if watermark.last_range is None
        else [iso(t) for t in watermark.last_range],
        "boundary": None if boundary is None else iso(boundary),
        "boundary_lag_ms": None if boundary is None else status.now_ms - boundary,
        "max_lag_ms": max_lag_ms,
        "lock": None
        if lock is None
        else {
            "owner": lock.owner,
            "expires_at": iso(lock.expires_at_ms),
            "expired": lock.expired(status.now_ms),
        },
        "late_events_waiting": status.late_waiting,
        "late_error": status.late_error,
        "status": verdict,
    }


def render(status: BatchStatus, max_lag_ms: int) -> str:
    """The report, one labelled line per fact, the verdict last."""
    rows = [
        ("last run", _last_run(status.watermark, status.now_ms)),
        (
            "watermark",
            "none"
            if status.watermark.completed_until_ms is None
            else iso(status.watermark.completed_until_ms),
        ),
        ("boundary", _boundary(status, max_lag_ms)),
        ("lock", _lock(status.lock, status.now_ms)),
        ("late events", _late(status)),
        ("status", _verdict(status, max_lag_ms)),
    ]
    return "\n".join(f"{label:<{_LABEL}}{value}" for label, value in rows)


def read_status(settings: Settings, now_ms: int) -> BatchStatus:
    """The watermark, boundary and lock from Elasticsearch, the late events from HBase. An
    unreadable ledger is reported in the status, not raised: the rest is still worth seeing."""
    es = settings.elasticsearch
    with connect(es) as client:
        watermark = read_watermark(client, es.index_prefix)
        boundary = read_boundary(client, es.index_prefix)
        lock = read_lock(client, es.index_prefix)
    try:
        keys = late_ledger.snapshot(settings.hbase)
    except Exception as exc:  # noqa: BLE001 - the status reports it; the rest still stands
        return BatchStatus(now_ms, watermark, boundary, lock, None, str(exc)[:200])
    return BatchStatus(now_ms, watermark, boundary, lock, waiting_events(keys, boundary))
