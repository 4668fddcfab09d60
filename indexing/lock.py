"""The batch lock: one batch run at a time moves the watermark and the boundary.

A lease document in the state index, created with ``op_type=create`` so that of two runs
starting together exactly one wins. It names its owner and an expiry, so a crashed run's lock
lapses: the next run takes an expired lock over with a compare-and-swap on the document's
sequence number (of two runs taking over, one wins). The holder renews it between steps, which
is where it learns that it lost it, and deletes it at the end only if it is still its own.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import structlog
from elasticsearch import ApiError, ConflictError, Elasticsearch, NotFoundError, TransportError

from clickstream.errors import ClickstreamError
from clickstream.times import MINUTE_MS, iso
from indexing.state import state_index

log = structlog.get_logger(__name__)

LOCK_ID = "batch-lock"


class LockHeldError(ClickstreamError):
    """Another batch run holds the lock (the message names it and when the lock expires)."""


class LockLostError(ClickstreamError):
    """This run's lock lapsed and another run took it over: this run must stop."""


@dataclass(frozen=True, slots=True)
class Lease:
    """Who holds the lock, since when and until when (epoch ms)."""

    owner: str
    acquired_at_ms: int
    expires_at_ms: int

    def expired(self, now_ms: int) -> bool:
        """True once the expiry has passed: the lock may be taken over."""
        return now_ms >= self.expires_at_ms


def new_owner() -> str:
    """An owner id unique to this process's run: host, pid and a random tag."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def held_message(lease: Lease, now_ms: int) -> str:
    """Why a run may not start: the holder, since when, and when its lock expires."""
    minutes = max(0, lease.expires_at_ms - now_ms) // MINUTE_MS
    return (
        f"another batch run holds the lock: {lease.owner}, since {iso(lease.acquired_at_ms)}; "
        f"it expires at {iso(lease.expires_at_ms)} (in {minutes} min) unless renewed. Wait for "
        "that run to end (`clickstream batch-status` shows the lock)"
    )


def _lease(source: dict[str, Any]) -> Lease:
    return Lease(source["owner"], source["acquired_at_ms"], source["expires_at_ms"])


def _read(client: Elasticsearch, prefix: str) -> tuple[Lease, int, int] | None:
    """The lock with its sequence number and primary term (for a compare-and-swap)."""
    try:
        doc = client.get(index=state_index(prefix), id=LOCK_ID)
    except NotFoundError:
        return None
    return _lease(doc["_source"]), doc["_seq_no"], doc["_primary_term"]


def read_lock(client: Elasticsearch, prefix: str) -> Lease | None:
    """The lock as stored (expired or not), or None when free."""
    found = _read(client, prefix)
    return None if found is None else found[0]


def _document(lease: Lease) -> dict[str, Any]:
    return {
        "owner": lease.owner,
        "acquired_at_ms": lease.acquired_at_ms,
        "expires_at_ms": lease.expires_at_ms,
    }


def acquire_lock(client: Elasticsearch, prefix: str, owner: str, now_ms: int, ttl_ms: int) -> Lease:
    """Take the lock for ``ttl_ms`` from ``now_ms``; :class:`LockHeldError` if another run
    holds it and it has not expired."""
    lease = Lease(owner, now_ms, now_ms + ttl_ms)
    index = state_index(prefix)
    # Two passes: the lock may be released between a refused create and the read that follows.
    for _ in range(2):
        try:
            client.create(index=index, id=LOCK_ID, document=_document(lease), refresh="wait_for")
        except ConflictError:
            pass
        else:
            return lease
        found = _read(client, prefix)
        if found is None:
            continue
        current, seq_no, primary_term = found
        if not current.expired(now_ms):
            raise LockHeldError(held_message(current, now_ms))
        try:
            client.index(
                index=index,
                id=LOCK_ID,
                document=_document(lease),
                if_seq_no=seq_no,
                if_primary_term=primary_term,
                refresh="wait_for",
            )
        except ConflictError:
            # Another run took the expired lock over first: it holds it now.
            winner = read_lock(client, prefix)
            if winner is None:
                continue
            raise LockHeldError(held_message(winner, now_ms)) from None
        log.warning(
            "batch_lock.taken_over", expired_owner=current.owner, expired_at=current.expires_at_ms
        )
        return lease
    raise LockHeldError(f"the batch lock in {index} changed hands twice while taking it: retry")


def renew_lock(client: Elasticsearch, prefix: str, lease: Lease, now_ms: int, ttl_ms: int) -> Lease:
    """Extend this run's lock to ``now_ms + ttl_ms``; :class:`LockLostError` if it is no longer
    this run's (it lapsed and another run took it over)."""
    found = _read(client, prefix)
    if found is None or found[0].owner != lease.owner:
        holder = "nobody" if found is None else found[0].owner
        raise LockLostError(
            f"this batch run ({lease.owner}) lost the lock (now held by {holder}): its lease "
            f"lapsed at {iso(lease.expires_at_ms)}; stopping before it moves the watermark"
        )
    _, seq_no, primary_term = found
    renewed = Lease(lease.owner, lease.acquired_at_ms, now_ms + ttl_ms)
    try:
        client.index(
            index=state_index(prefix),
            id=LOCK_ID,
            document=_document(renewed),
            if_seq_no=seq_no,
            if_primary_term=primary_term,
            refresh="wait_for",
        )
    except ConflictError:
        raise LockLostError(
            f"this batch run ({lease.owner}) lost the lock while renewing it"
        ) from None
    return renewed


def release_lock(client: Elasticsearch, prefix: str, lease: Lease) -> bool:
    """Delete the lock if it is still this run's; False if another run holds it now."""
    found = _read(client, prefix)
    if found is None or found[0].owner != lease.owner:
        return False
    _, seq_no, primary_term = found
    try:
        client.delete(
            index=state_index(prefix),
            id=LOCK_ID,
            if_seq_no=seq_no,
            if_primary_term=primary_term,
            refresh="wait_for",
        )
    except (ConflictError, NotFoundError):
        return False
    return True


class BatchLock:
    """One run's hold on the lock: taken when its ``with`` block starts (or
    :class:`LockHeldError`), extended by :meth:`renew` between steps (or :class:`LockLostError`),
    released when the block ends, whatever ended it. Failing to release only logs: the lock
    lapses at its expiry, and the block's own error is the one worth reporting."""

    def __init__(
        self,
        client: Elasticsearch,
        prefix: str,
        ttl_ms: int,
        owner: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._ttl_ms = ttl_ms
        self._owner = owner or new_owner()
        self._clock = clock
        self.lease: Lease | None = None

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def __enter__(self) -> BatchLock:
        self.lease = acquire_lock(
            self._client, self._prefix, self._owner, self._now_ms(), self._ttl_ms
        )
        return self

    def renew(self) -> None:
        """Extend the lock by its lifetime from now; raises if this run lost it."""
        if self.lease is None:
            raise LockLostError("the batch lock is not held: renew it inside its `with` block")
        self.lease = renew_lock(
            self._client, self._prefix, self.lease, self._now_ms(), self._ttl_ms
        )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        lease, self.lease = self.lease, None
        if lease is None:
            return
        try:
            release_lock(self._client, self._prefix, lease)
        except (ApiError, TransportError) as error:
            log.warning("batch_lock.not_released", owner=lease.owner, error=str(error)[:200])
