"""The batch lock's pure parts: expiry, the owner id, the message a refused run prints."""

from __future__ import annotations

from clickstream.times import MINUTE_MS, parse_ms
from indexing.lock import Lease, held_message, new_owner

NOW = parse_ms("2026-11-22T10:40Z")


class TestLease:
    def test_expires_at_its_expiry_not_before(self) -> None:
        """The expiry instant itself is expired: a takeover may start then."""
        lease = Lease("a", NOW - MINUTE_MS, NOW)
        assert not lease.expired(NOW - 1)
        assert lease.expired(NOW)


class TestOwner:
    def test_is_unique_per_run_and_names_the_host_and_pid(self) -> None:
        """Two runs of one process still get different ids."""
        first, second = new_owner(), new_owner()
        assert first != second
        assert first.rsplit(":", 1)[0] == second.rsplit(":", 1)[0]
        assert len(first.split(":")) == 3


class TestHeldMessage:
    def test_names_the_holder_since_and_the_expiry(self) -> None:
        """A refused run learns who holds the lock and when it lapses."""
        lease = Lease("host:42:ab", NOW - 10 * MINUTE_MS, NOW + 50 * MINUTE_MS)
        message = held_message(lease, NOW)
        assert "host:42:ab" in message
        assert "since 2026-11-22T10:30:00Z" in message
        assert "expires at 2026-11-22T11:30:00Z (in 50 min)" in message
