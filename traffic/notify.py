"""A systemd notify socket for tests and the chaos run: what a daemon under systemd sends,
timestamped."""

from __future__ import annotations

import socket
import threading
import time
from itertools import pairwise


class PingClock:
    """Listens on a notify socket in a thread and timestamps each WATCHDOG=1 as it arrives."""

    def __init__(self, path: str) -> None:
        self.times: list[float] = []
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(path)
        self._socket.settimeout(0.05)
        self._running = True
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while self._running:
            try:
                message = self._socket.recv(4096)
            except TimeoutError:
                continue
            if message == b"WATCHDOG=1":
                self.times.append(time.monotonic())

    def take(self) -> list[float]:
        """The pings so far (then forgotten)."""
        time.sleep(0.1)  # let the last datagram in
        taken, self.times = self.times, []
        return taken

    def close(self) -> None:
        self._running = False
        self._thread.join()
        self._socket.close()

    def longest_gap(self, since: float, until: float) -> float:
        """The longest time without a WATCHDOG=1 between ``since`` and ``until`` (monotonic)."""
        inside = [t for t in self.times if since <= t <= until]
        return max(b - a for a, b in pairwise([since, *inside, until]))
