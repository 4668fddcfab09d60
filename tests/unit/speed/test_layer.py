"""SpeedLayer: restore before the first fold of an assigned partition, the generation counter
that makes the loop fold a batch again after a rebalance, and legacy changelog keys migrated."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from clickstream.times import MINUTE_MS
from speed.changelog import (
    LEGACY_PARTITION_KEY,
    PARTITION_KEY,
    Restored,
    encode_partition,
    encode_timeline,
    rebuild,
    user_key,
)
from speed.docs import Rendered, parse
from speed.layer import SpeedLayer
from speed.state import PartitionState, RollupKey, SpeedClick, SpeedDoc
from speed.store import Written

TIMEOUT = 30 * MINUTE_MS
RETENTION = 4 * 3_600_000
T0 = 1_795_334_400_000


class MemoryStore:
    """The store's contract (load what exists, write rendered documents), in memory."""

    prefix = "cs"
    lg_k = 12

    def __init__(self) -> None:
        self.saved: dict[tuple[int, RollupKey], dict[str, Any]] = {}

    def load(self, keys: Sequence[tuple[int, RollupKey]]) -> list[SpeedDoc]:
        return [parse(p, self.saved[(p, k)], self.lg_k) for p, k in keys if (p, k) in self.saved]

    def write(self, docs: list[Rendered]) -> Written:
        for doc in docs:
            source = doc.source
            key = parse(source["partition"], source, self.lg_k).key
            self.saved[(source["partition"], key)] = source
        return Written(len(docs))

    def close(self) -> None:
        pass


class Restores:
    """Counts restores; hands out empty states, or the given changelog's."""

    def __init__(self, records: dict[int, list[tuple[bytes, bytes | None]]] | None = None) -> None:
        self.calls: list[int] = []
        self.records = records or {}

    def __call__(self, partition: int) -> Restored:
        self.calls.append(partition)
        return rebuild(
            partition,
            self.records.get(partition, []),
            session_timeout_ms=TIMEOUT,
            retention_ms=RETENTION,
        )


def click(partition: int, offset: int, user: str = "u", ts: int = T0) -> SpeedClick:
    return SpeedClick(partition, offset, user, ts, f"e{offset}", "https://a/", "DE", False)


def layer(restore: Restores) -> tuple[SpeedLayer, MemoryStore]:
    store = MemoryStore()
    return SpeedLayer(store, restore), store  # type: ignore[arg-type]


class TestRestore:
    def test_an_assigned_partition_is_restored_once_before_its_first_fold(self) -> None:
        """Restored lazily, when its first message is folded; not again while owned."""
        restore = Restores()
        speed, _ = layer(restore)
        speed.assigned([0, 1])
        assert restore.calls == []
        speed.fold([click(0, 0)])
        assert sorted(restore.calls) == [0, 1]
        speed.fold([click(0, 1), click(1, 0)])
        assert sorted(restore.calls) == [0, 1]

    def test_a_reassigned_partition_is_restored_again(self) -> None:
        """After a revoke and a new assignment its state comes from the changelog again."""
        restore = Restores()
        speed, _ = layer(restore)
        speed.assigned([0])
        speed.fold([click(0, 0)])
        speed.revoked([0])
        speed.assigned([0])
        speed.fold([click(0, 1)])
        assert restore.calls == [0, 0]

    def test_the_generation_moves_on_every_assignment_and_revocation(self) -> None:
        """A batch folded before a rebalance carries the old generation: the loop refolds it."""
        speed, _ = layer(Restores())
        before = speed.generation
        batch = speed.fold([click(0, 0)])
        assert batch.generation == before
        speed.assigned([0])
        speed.revoked([0])
        assert speed.generation == before + 2
        assert speed.fold([click(0, 1)]).generation == before + 2

    def test_documents_written_then_refolded_count_once(self) -> None:
        """A replay after a restore (offset already folded into the stored doc) changes nothing."""
        restore = Restores()
        speed, store = layer(restore)
        first = speed.fold([click(0, 0), click(0, 1, user="v")])
        speed.write(first)
        speed.assigned([0])  # a rebalance: the state and the documents reload
        again = speed.fold([click(0, 0), click(0, 1, user="v")])
        assert again.docs == []
        assert len(store.saved) == 8  # one cell: every level at minute and hour grain
        assert {doc["clicks"] for doc in store.saved.values()} == {2}


class TestMigration:
    def test_legacy_keys_go_out_with_the_partitions_next_checkpoint(self) -> None:
        """A partition restored from first-layout records rewrites them in its next batch."""
        state = PartitionState(0, TIMEOUT, RETENTION)
        state.fold([click(0, 0, user="anna")])
        legacy = [
            (b"anna", encode_timeline(state.users["anna"])),
            (LEGACY_PARTITION_KEY, encode_partition(state)),
        ]
        speed, _ = layer(Restores({0: legacy}))
        batch = speed.fold([click(0, 1, user="bob", ts=T0 + 1)])
        keys = [(r.key, r.value is None) for r in batch.records]
        assert keys[:3] == [
            (LEGACY_PARTITION_KEY, True),
            (b"anna", True),
            (user_key("anna"), False),
        ]
        assert keys[-1] == (PARTITION_KEY, False)
        assert speed.fold([click(0, 2, user="bob", ts=T0 + 2)]).records[0].key == user_key("bob")
