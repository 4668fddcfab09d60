"""When ``--exit-when-idle N`` may exit: the topic read to its end, then N quiet seconds.

Backfills and tests run the daemon to drain a topic. "Idle" must therefore mean "has read what
there is", not "has been running N seconds": on a freshly formatted broker the group coordinator
can take longer than N seconds to hand out the first partitions. So the daemon exits only once
it holds an assignment, every assigned partition has reported its end (librdkafka's partition
EOF) since its last message, and nothing arrived for N seconds since the later of the last
message and the last assignment. Pure: the loop feeds it events and the monotonic clock.
"""

from __future__ import annotations

from collections.abc import Iterable


class DrainWatch:
    """Tracks assignment, per-partition end of data and the last activity."""

    def __init__(self, idle_s: float) -> None:
        self.idle_s = idle_s
        self._assigned: set[tuple[str, int]] = set()
        self._at_end: set[tuple[str, int]] = set()
        self._ever_assigned = False
        self._last_activity = 0.0

    def assigned(self, partitions: Iterable[tuple[str, int]], now: float) -> None:
        """A (re)assignment: new partitions have not been read to their end yet."""
        self._assigned = set(partitions)
        self._at_end &= self._assigned
        self._ever_assigned = True
        self._last_activity = now

    def revoked(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Partitions taken away are no longer waited for."""
        gone = set(partitions)
        self._assigned -= gone
        self._at_end -= gone

    def message(self, partition: tuple[str, int], now: float) -> None:
        """A message arrived: that partition may hold more."""
        self._at_end.discard(partition)
        self._last_activity = now

    def end_of_partition(self, partition: tuple[str, int]) -> None:
        """The consumer reached the end of ``partition`` (for now)."""
        if partition in self._assigned:
            self._at_end.add(partition)

    def activity(self, now: float) -> None:
        """Work finished (a batch written and committed): the quiet time starts again."""
        self._last_activity = now

    def waiting_for(self) -> list[tuple[str, int]]:
        """Assigned partitions not yet read to their end."""
        return sorted(self._assigned - self._at_end)

    def drained(self, now: float) -> bool:
        """Whether the daemon may exit now."""
        return (
            self._ever_assigned
            and self._at_end >= self._assigned
            and now - self._last_activity >= self.idle_s
        )
