"""The speed layer as the consumer loop uses it: fold a batch, write it, checkpoint it.

Per batch: ``fold`` turns the batch's stored clicks into the changed minute documents and the
changelog records (restoring any newly assigned partition first); the loop writes the
documents (``write``) after HBase, then produces the records inside the Kafka transaction that
commits the offsets. A rebalance drops the revoked partitions' state; an assigned partition is
restored from the changelog (users) and, lazily, from Elasticsearch (documents) before any of
its messages is folded.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import structlog

from clickstream.times import MINUTE_MS
from speed.changelog import Record, Restored, records_for
from speed.docs import DocTable, Rendered, render
from speed.state import Contribution, PartitionState, SpeedClick
from speed.store import Rejected, SpeedStore

log = structlog.get_logger(__name__)

#: Restores one partition's state (the changelog reader, or a stand-in in unit tests).
Restore = Callable[[int], Restored]


@dataclass(slots=True)
class SpeedBatch:
    """What one batch changes in the speed layer."""

    generation: int
    docs: list[Rendered] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    folded: int = 0
    duplicates: int = 0
    beyond_horizon: int = 0
    #: Documents Elasticsearch refused for their own value at the last write (left behind).
    rejected: tuple[Rejected, ...] = ()


class SpeedLayer:
    """The speed state of the partitions this daemon owns."""

    def __init__(
        self, store: SpeedStore, restore: Restore, doc_cache_ms: int = 10 * MINUTE_MS
    ) -> None:
        self._store = store
        self._restore = restore
        #: Documents of minutes this far behind a partition's newest event leave memory; a
        #: late click that needs one again reloads it from Elasticsearch (they are all written
        #: before the next batch is folded, so the store always has the latest).
        self._doc_cache_ms = doc_cache_ms
        self._docs = DocTable(store.lg_k)
        self._states: dict[int, PartitionState] = {}
        self._pending: set[int] = set()
        #: Records that move a restored partition's legacy keys to the current layout; they
        #: go out with the partition's next checkpoint.
        self._migrations: dict[int, list[Record]] = {}
        self._evicted_at: dict[int, int] = {}
        #: Bumped on every assignment: a batch folded before it must be folded again.
        self.generation = 0

    def assigned(self, partitions: Iterable[int]) -> None:
        """Partitions to restore before their next message is folded."""
        self.generation += 1
        for partition in partitions:
            self._forget(partition)
            self._pending.add(partition)

    def revoked(self, partitions: Iterable[int]) -> None:
        """Forget revoked partitions: their next owner restores them."""
        self.generation += 1
        for partition in partitions:
            self._forget(partition)

    def fold(self, clicks: Iterable[SpeedClick]) -> SpeedBatch:
        """Fold a batch's clicks (in offset order per partition) into documents and records."""
        by_partition: dict[int, list[SpeedClick]] = defaultdict(list)
        for click in clicks:
            by_partition[click.partition].append(click)
        self._restore_pending(by_partition)
        try:
            return self._fold(by_partition)
        except Exception:
            # The timelines may hold part of the batch now: fold it again from the checkpoint.
            self.assigned(by_partition)
            raise

    def _fold(self, by_partition: dict[int, list[SpeedClick]]) -> SpeedBatch:
        batch = SpeedBatch(self.generation)
        for partition in by_partition:
            self._evict(partition)
        contributions: list[Contribution] = []
        for partition, items in sorted(by_partition.items()):
            state = self._states[partition]
            result = state.fold(items)
            contributions.extend(result.contributions)
            batch.records.extend(self._migrations.pop(partition, []))
            batch.records.extend(records_for(state, result.changed_users, result.expired_users))
            batch.folded += len(items) - result.duplicates - result.beyond_horizon
            batch.duplicates += result.duplicates
            batch.beyond_horizon += result.beyond_horizon
        missing = self._docs.missing(contributions)
        if missing:
            loaded = self._store.load(missing)
            found = {(doc.partition, doc.key) for doc in loaded}
            self._docs.add(loaded)
            self._docs.add(self._docs.new(*key) for key in missing if key not in found)
        changed = self._docs.apply(contributions)
        batch.docs = [render(doc, self._store.prefix) for doc in changed]
        if batch.beyond_horizon:
            log.warning(
                "speed.beyond_horizon",
                clicks=batch.beyond_horizon,
                note="older than the speed layer's window: counted by the next batch run",
            )
        return batch

    def write(self, batch: SpeedBatch) -> int:
        """Write the batch's documents (idempotent); how many Elasticsearch took as new. The
        documents it refused for their own value are left in ``batch.rejected``."""
        written = self._store.write(batch.docs)
        batch.rejected = written.rejected
        return written.written

    def close(self) -> None:
        """Close the Elasticsearch client."""
        self._store.close()

    @property
    def users(self) -> int:
        """Users held in memory over every partition."""
        return sum(len(state.users) for state in self._states.values())

    def _restore_pending(self, partitions: Iterable[int]) -> None:
        for partition in sorted(set(partitions) | self._pending):
            if partition in self._states:
                continue
            restored = self._restore(partition)
            state = restored.state
            self._states[partition] = state
            self._pending.discard(partition)
            migration = restored.migration()
            if migration:
                self._migrations[partition] = migration
            log.info(
                "speed.restored",
                partition=partition,
                users=len(state.users),
                records=restored.records,
                malformed=restored.malformed,
                legacy_keys=len(restored.legacy),
                next_offset=state.next_offset,
            )
            lost = restored.lost()
            if lost is not None:
                log.warning("speed.restore_lost_state", partition=partition, lost=lost)

    def _forget(self, partition: int) -> None:
        self._states.pop(partition, None)
        self._pending.discard(partition)
        self._migrations.pop(partition, None)
        self._evicted_at.pop(partition, None)
        self._docs.drop_partition(partition)

    def _evict(self, partition: int) -> None:
        floor = self._states[partition].max_ts - self._doc_cache_ms
        if floor - self._evicted_at.get(partition, 0) >= MINUTE_MS:
            self._evicted_at[partition] = floor
            self._docs.evict(partition, floor)
