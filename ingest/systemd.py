"""The systemd notify protocol (sd_notify), without libsystemd: one datagram per state change.

``Type=notify`` units learn READY=1 once partitions are assigned, WATCHDOG=1 from the consumer
loop itself (so a hung loop is restarted), STATUS= lines and STOPPING=1 on shutdown.

While the loop waits on a server (a batch's writes and transaction, a changelog restore) it
cannot ping, so it declares the wait with ``waiting(what, bound_s)``: a helper thread keeps the
watchdog fed for at most ``bound_s`` (extended by each ``progress()`` the wait reports). A call
that outlives its bound is taken as hung: the pings stop and systemd restarts the daemon, which
replays the uncommitted batch.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import structlog

log = structlog.get_logger(__name__)


class Wait:
    """One declared wait: the watchdog is fed until ``deadline`` (monotonic seconds)."""

    def __init__(self, what: str, bound_s: float) -> None:
        self.what = what
        self.bound_s = bound_s
        self.deadline = time.monotonic() + bound_s
        self.overran = False

    def progress(self) -> None:
        """The wait is moving (records read, a call returned): its bound starts again."""
        self.deadline = time.monotonic() + self.bound_s


class Notifier:
    """Sends notifications to ``$NOTIFY_SOCKET``; a no-op when not run by systemd."""

    def __init__(self, socket_path: str | None = None, watchdog_usec: str | None = None) -> None:
        path = socket_path if socket_path is not None else os.environ.get("NOTIFY_SOCKET")
        # An abstract socket is written with a leading '@' and addressed with a NUL byte.
        self._address = ("\0" + path[1:]) if path and path.startswith("@") else path
        usec = watchdog_usec if watchdog_usec is not None else os.environ.get("WATCHDOG_USEC")
        # Ping at half the watchdog interval, as sd_watchdog_enabled(3) recommends.
        self.watchdog_interval_s = int(usec) / 2_000_000 if usec and usec.isdigit() else None
        self._last_ping = 0.0
        self._lock = threading.Lock()
        self._wait: Wait | None = None
        self._keeper: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        """True when systemd (or a test) listens."""
        return bool(self._address)

    def notify(self, *states: str) -> None:
        """Send ``KEY=value`` lines in one datagram; errors are ignored (systemd may be gone)."""
        if not self._address:
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            try:
                sock.connect(self._address)
                sock.sendall("\n".join(states).encode())
            except OSError:
                pass

    def ready(self, status: str) -> None:
        """READY=1 with a status line."""
        self.notify("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        """A STATUS= line, shown by `systemctl status`."""
        self.notify(f"STATUS={status}")

    def stopping(self) -> None:
        """STOPPING=1: shutdown has begun."""
        self.notify("STOPPING=1", "STATUS=stopping")

    def watchdog(self) -> None:
        """WATCHDOG=1, at most once per half interval; call it from the main loop (which is
        alive, so a wait it declared is making progress)."""
        self.progress()
        self._ping()

    def _ping(self) -> None:
        if self.watchdog_interval_s is None:
            return
        with self._lock:
            now = time.monotonic()
            if now - self._last_ping < self.watchdog_interval_s:
                return
            self._last_ping = now
        self.notify("WATCHDOG=1")

    @contextmanager
    def waiting(self, what: str, bound_s: float) -> Iterator[Wait]:
        """Keep the watchdog fed while the calling thread waits on a server, for at most
        ``bound_s`` seconds without ``progress()``. Waits do not nest: an inner one replaces
        the outer until it ends."""
        wait = Wait(what, bound_s)
        outer, self._wait = self._wait, wait
        self._start_keeper()
        try:
            yield wait
        finally:
            self._wait = outer
            self._ping()

    def progress(self) -> None:
        """The wait in hand is moving: its bound starts again (a no-op outside a wait)."""
        wait = self._wait
        if wait is not None:
            wait.progress()

    def _start_keeper(self) -> None:
        if self.watchdog_interval_s is None or self._keeper is not None:
            return
        self._keeper = threading.Thread(
            target=self._keep,
            args=(self.watchdog_interval_s,),
            name="watchdog-keeper",
            daemon=True,
        )
        self._keeper.start()

    def _keep(self, interval_s: float) -> None:
        tick = min(1.0, interval_s / 4)
        while True:
            time.sleep(tick)
            wait = self._wait
            if wait is None:
                continue
            if time.monotonic() < wait.deadline:
                self._ping()
            elif not wait.overran:
                wait.overran = True
                log.error(
                    "ingest.wait_hung",
                    waiting_for=wait.what,
                    bound_s=wait.bound_s,
                    hint="the watchdog pings stop; systemd restarts the daemon",
                )
