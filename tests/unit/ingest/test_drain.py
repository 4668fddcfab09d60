"""DrainWatch: --exit-when-idle exits only once the topic is read to its end."""

from __future__ import annotations

from ingest.drain import DrainWatch

P0, P1 = ("clicks", 0), ("clicks", 1)


class TestDrainWatch:
    def test_never_drained_before_any_assignment(self) -> None:
        """A slow group coordinator cannot make the daemon exit with the topic unread."""
        watch = DrainWatch(idle_s=5)
        assert not watch.drained(now=1_000)

    def test_quiet_time_counts_from_the_assignment(self) -> None:
        """Partitions handed out late start the idle clock; their end must be seen."""
        watch = DrainWatch(idle_s=5)
        watch.assigned([P0, P1], now=100)
        watch.end_of_partition(P0)
        watch.end_of_partition(P1)
        assert not watch.drained(now=104)
        assert watch.drained(now=105)

    def test_a_partition_not_read_to_its_end_keeps_it_running(self) -> None:
        """Idle for long, but one partition has not reported its end: no exit."""
        watch = DrainWatch(idle_s=1)
        watch.assigned([P0, P1], now=0)
        watch.end_of_partition(P0)
        assert not watch.drained(now=60)
        assert watch.waiting_for() == [P1]

    def test_a_message_after_the_end_needs_a_new_end(self) -> None:
        """More data on a partition that was at its end: wait for the end again."""
        watch = DrainWatch(idle_s=1)
        watch.assigned([P0], now=0)
        watch.end_of_partition(P0)
        watch.message(P0, now=10)
        assert not watch.drained(now=20)
        watch.end_of_partition(P0)
        assert watch.drained(now=20)
        assert not watch.drained(now=10.5)

    def test_a_reassignment_forgets_ends_of_new_partitions_only(self) -> None:
        """After a rebalance a newly assigned partition must be read to its end again."""
        watch = DrainWatch(idle_s=1)
        watch.assigned([P0], now=0)
        watch.end_of_partition(P0)
        watch.assigned([P0, P1], now=10)
        assert watch.waiting_for() == [P1]
        watch.revoked([P1])
        assert watch.drained(now=11)

    def test_an_end_of_a_partition_not_held_is_ignored(self) -> None:
        """A late EOF of a revoked partition does not count for the current assignment."""
        watch = DrainWatch(idle_s=0)
        watch.assigned([P0], now=0)
        watch.end_of_partition(P1)
        assert not watch.drained(now=5)

    def test_an_empty_assignment_is_drained_after_the_quiet_time(self) -> None:
        """More daemons than partitions: one with none exits once quiet."""
        watch = DrainWatch(idle_s=2)
        watch.assigned([], now=0)
        assert not watch.drained(now=1)
        assert watch.drained(now=2)

    def test_activity_restarts_the_quiet_time(self) -> None:
        """A batch held through an outage ends later than it began: idle counts from its end."""
        watch = DrainWatch(idle_s=3)
        watch.assigned([P0], now=0)
        watch.end_of_partition(P0)
        watch.activity(now=50)
        assert not watch.drained(now=52)
        assert watch.drained(now=53)
