"""The systemd notify protocol (sd_notify), without libsystemd: one datagram per state change.

``Type=notify`` units learn READY=1 once partitions are assigned, WATCHDOG=1 from the consumer
loop itself (so a hung loop is restarted), STATUS= lines and STOPPING=1 on shutdown.
"""

from __future__ import annotations

import os
import socket
import time


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
        """WATCHDOG=1, at most once per half interval; call it from the main loop."""
        if self.watchdog_interval_s is None:
            return
        now = time.monotonic()
        if now - self._last_ping >= self.watchdog_interval_s:
            self._last_ping = now
            self.notify("WATCHDOG=1")
