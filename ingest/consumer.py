"""The consumer loop: Kafka -> pipeline -> HBase + dead-letter topic, offsets last.

Exactly-once effect from at-least-once delivery:

* rows are written first; their keys are pure functions of the events, so a replay rewrites them;
* dead-letter records and the batch's offsets then go out in ONE Kafka transaction
  (``send_offsets_to_transaction``), so a crash at any instant either commits both or neither:
  a replayed batch never duplicates a dead letter, and an offset is never committed before the
  rows it covers are durable;
* while HBase is down the partitions are paused and the batch is retried with capped exponential
  backoff; the loop keeps calling ``consume`` so the group does not evict it, and holds one batch
  at most (bounded memory);
* a permanent failure is not retried: a table or index that refuses every write alike raises a
  SchemaError, which ends the daemon (exit 1, naming the fix); a speed document refused for its
  own value is counted and left behind (storage/failures.py, indexing/failures.py).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from clickstream.errors import RetriableError
from clickstream.model import Source
from ingest import transaction
from ingest.drain import DrainWatch
from ingest.metrics import IngestMetrics
from ingest.pipeline import Enriches, Incoming, ProcessedBatch, process, speed_clicks
from ingest.systemd import Notifier
from ingest.transaction import FatalIngestError
from ingest.validate import Limits
from speed.layer import SpeedBatch, SpeedLayer
from storage.writer import HBaseWriter

log = structlog.get_logger(__name__)


def log_batch(batch: ProcessedBatch, speed: SpeedBatch | None, seconds: float) -> None:
    """The one summary line of a batch (never one per event): counts, rejections by reason,
    duration, the offsets it commits and, with the speed layer, what that wrote."""
    extra: dict[str, int] = {}
    if speed is not None:
        extra = {"speed_docs": len(speed.docs), "speed_beyond_horizon": speed.beyond_horizon}
        if speed.rejected:
            extra["speed_rejected"] = len(speed.rejected)
    log.info(
        "ingest.batch",
        messages=batch.messages,
        rows=len(batch.rows),
        stored=len(batch.clicks),
        rejected=dict(batch.rejected),
        ms=round(seconds * 1000, 1),
        offsets={f"{t}:{p}": o for (t, p), o in batch.next_offsets.items()},
        **extra,
    )


def check_consume_error(error: KafkaError) -> None:
    """An error ``consume`` returned in place of a message: a fatal one ends the daemon (its
    consumer is unusable, e.g. fenced by another member with the same instance id; idling on
    with /healthz ok would hide it); others are logged, and librdkafka recovers from them."""
    # librdkafka hands a consumer its fatal error as code _FATAL, without the fatal flag.
    if error.fatal() or error.code() == KafkaError._FATAL:
        raise FatalIngestError(transaction.fatal_message("consume", error))
    log.warning("kafka.consume_error", error=str(error))


#: Longest one transactional call may block (librdkafka's timeout argument): well under half
#: of the systemd watchdog interval, which no blocking call may outlast without a ping.
TXN_CALL_TIMEOUT_S = 10


@dataclass(frozen=True, slots=True)
class LoopConfig:
    """What the loop needs besides its clients."""

    clicks_topic: str
    dlq_topic: str
    batch_size: int
    salt_buckets: int
    limits: Limits
    session_timeout_ms: int
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 30.0
    exit_when_idle_s: float | None = None
    #: Longest wait for a batch to fill: at low rates, how long an event may sit unprocessed.
    poll_timeout_s: float = 0.1
    #: The speed layer's compacted changelog (only used when a speed layer is given).
    changelog_topic: str = ""
    #: Table of the late-event ledger, and what says which hours the batch may have done.
    late_table: str | None = None
    late_cutoff: Callable[[], int | None] | None = None
    #: A wait on a server longer than this (without progress) is taken as hung: the watchdog
    #: pings stop (ingest/systemd.py).
    hung_after_s: float = 300.0


class IngestLoop:
    """Runs until ``stop()`` (a signal handler calls it) or, if configured, until idle."""

    def __init__(
        self,
        config: LoopConfig,
        *,
        consumer: Consumer,
        producer: Producer,
        writer: HBaseWriter,
        enricher: Enriches,
        metrics: IngestMetrics,
        notifier: Notifier,
        speed: SpeedLayer | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._consumer = consumer
        self._producer = producer
        self._writer = writer
        self._enricher = enricher
        self._metrics = metrics
        self._notifier = notifier
        self._speed = speed
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="speed-write")
        self._clock = clock
        self._stopping = False
        self._assigned: set[tuple[str, int]] = set()
        self._paused = False
        self._ready = False
        self._drain = (
            DrainWatch(config.exit_when_idle_s) if config.exit_when_idle_s is not None else None
        )
        self._last_lag_check = 0.0
        self.totals = {"consumed": 0, "stored": 0, "rejected": 0, "batches": 0}

    # ------------------------------------------------------------------ lifecycle

    def stop(self) -> None:
        """Ask the loop to finish the batch in hand and return."""
        self._stopping = True

    def run(self) -> None:
        """Consume, process, write and commit until stopped."""
        with self._notifier.waiting("Kafka init_transactions", self.config.hung_after_s):
            self._producer.init_transactions(TXN_CALL_TIMEOUT_S)
        self._consumer.subscribe(
            [self.config.clicks_topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        self._metrics.set_health(status="ok", assigned=[], paused=False)
        while not self._stopping:
            self._notifier.watchdog()
            messages = self._consumer.consume(
                self.config.batch_size, timeout=self.config.poll_timeout_s
            )
            incoming = self._incoming(messages)
            if not incoming:
                if self._drain is not None and self._drain.drained(time.monotonic()):
                    log.info("ingest.idle_exit", idle_s=self.config.exit_when_idle_s)
                    break
                self._update_lag()
                continue
            self._handle(incoming)
            if self._drain is not None:
                # Idle time counts from the end of the last batch, not its start (which may
                # have been held through a long outage).
                self._drain.activity(time.monotonic())
            self._update_lag()

    def close(self) -> None:
        """Leave the group (revoking partitions) and close the clients."""
        self._notifier.stopping()
        self._consumer.close()
        try:
            self._producer.flush(5)
        except KafkaException as exc:
            # A fenced or otherwise fatally failed producer cannot flush; the error that ended
            # the loop (raised after this) is the one to report, not this one.
            log.warning("kafka.flush_failed", error=str(exc))
        self._writer.close()
        self._pool.shutdown(wait=True)
        if self._speed is not None:
            self._speed.close()

    # ------------------------------------------------------------------ one batch

    def _incoming(self, messages: list[Message]) -> list[Incoming]:
        incoming = []
        now = time.monotonic()
        for message in messages:
            self._watch(message, now)
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    check_consume_error(error)
                continue
            timestamp_type, timestamp = message.timestamp()
            source = Source(
                message.topic() or "",
                message.partition() or 0,
                message.offset() or 0,
                timestamp if timestamp_type else None,
            )
            incoming.append(Incoming(message.key(), message.value(), source))
        return incoming

    def _handle(self, incoming: list[Incoming]) -> None:
        started = time.monotonic()
        batch = self._process(incoming)
        self._metrics.consumed.inc(batch.messages)
        attempt = 0
        speed: SpeedBatch | None = None
        while True:
            try:
                # Every blocking call below (a changelog restore, Elasticsearch, Thrift, the
                # transaction) is bounded by its client; the watchdog is fed meanwhile.
                with self._notifier.waiting("the batch's writes", self.config.hung_after_s):
                    if self._speed is not None and (
                        speed is None or speed.generation != self._speed.generation
                    ):
                        # Folded once per batch; again only if a rebalance reset the state.
                        speed = self._speed.fold(speed_clicks(batch))
                    self._write_and_commit(batch, speed)
                break
            except RetriableError as exc:
                attempt += 1
                self._metrics.write_retries.labels(target="hbase").inc()
                if attempt == 1:
                    self._pause(str(exc))
                if not self._wait_before_retry(attempt):
                    return  # stopping: the batch is not committed, so it is replayed later
                owned = [
                    m for m in incoming if (m.source.topic, m.source.partition) in self._assigned
                ]
                if len(owned) < len(incoming):
                    # Revoked meanwhile: the new owner replays those messages, and their dead
                    # letters must come from it alone, so the batch is rebuilt without them.
                    log.info("ingest.batch_trimmed", dropped=len(incoming) - len(owned))
                    incoming, batch = owned, self._process(owned)
        self._advance_past(batch)
        if self._paused:
            self._resume()
        self._account(batch, speed, time.monotonic() - started)

    def _process(self, incoming: list[Incoming]) -> ProcessedBatch:
        now_ms = int(self._clock() * 1000)
        cutoff = self.config.late_cutoff() if self.config.late_cutoff else None
        return process(
            incoming,
            self._enricher,
            self.config.limits,
            self.config.salt_buckets,
            now_ms,
            late_before_ms=cutoff,
            session_timeout_ms=self.config.session_timeout_ms,
        )

    def _write_and_commit(self, batch: ProcessedBatch, speed: SpeedBatch | None) -> None:
        # HBase and Elasticsearch are written at the same time (both are waits on a server);
        # the transaction starts only once both are durable.
        pending = (
            self._pool.submit(self._speed.write, speed)
            if speed is not None and self._speed is not None
            else None
        )
        try:
            self._writer.write(list(batch.rows.items()))
            if batch.late and self.config.late_table:
                self._writer.write(list(batch.late.items()), self.config.late_table)
        except RetriableError:
            # Never leave a write running into the next attempt; its error, if any, wins (a
            # permanent one must not be retried behind a passing HBase outage).
            if pending is not None:
                pending.result()
            raise
        except BaseException:
            if pending is not None:
                pending.exception()  # waited for; the permanent error in hand wins
            raise
        if pending is not None:
            pending.result()
        self._commit_transaction(batch, speed)

    def _commit_transaction(self, batch: ProcessedBatch, speed: SpeedBatch | None) -> None:
        """Dead letters, the speed changelog and offsets, atomically; each call with librdkafka's
        error classes applied (ingest/transaction.py): RetriableError when the batch must be
        replayed, FatalIngestError when the producer is unusable."""
        offsets = [TopicPartition(t, p, o) for (t, p), o in batch.next_offsets.items()]
        if not offsets:
            return
        producer = self._producer

        def run(what: str, call: Callable[[], object]) -> None:
            transaction.step(
                what, call, wait=self._wait_before_retry, abort=self._abort, poll=self._poll
            )

        run("begin_transaction", producer.begin_transaction)
        for record in batch.dead_letters:
            headers: list[tuple[str, str | bytes | None]] = list(record.headers)
            dead_letter = partial(
                producer.produce,
                self.config.dlq_topic,
                key=record.key,
                value=record.value,
                headers=headers,
            )
            run("produce (dead letter)", dead_letter)
        for change in speed.records if speed is not None else ():
            record_change = partial(
                producer.produce,
                self.config.changelog_topic,
                key=change.key,
                value=change.value,
                partition=change.partition,
            )
            run("produce (changelog)", record_change)
        group = self._consumer.consumer_group_metadata()
        run(
            "send_offsets_to_transaction",
            lambda: producer.send_offsets_to_transaction(offsets, group, TXN_CALL_TIMEOUT_S),
        )
        # A commit that timed out goes on in the background: repeating it waits for its result.
        run("commit_transaction", lambda: producer.commit_transaction(TXN_CALL_TIMEOUT_S))

    def _poll(self) -> None:
        """Serve the producer's delivery callbacks (room in its queue), the watchdog pinged."""
        self._notifier.watchdog()
        self._producer.poll(0.5)

    def _abort(self) -> None:
        transaction.abort(
            lambda: self._producer.abort_transaction(TXN_CALL_TIMEOUT_S),
            wait=self._wait_before_retry,
        )

    def _account(self, batch: ProcessedBatch, speed: SpeedBatch | None, seconds: float) -> None:
        rejected = sum(batch.rejected.values())
        self._metrics.stored.inc(len(batch.clicks))
        for reason, count in batch.rejected.items():
            self._metrics.rejected.labels(reason=reason).inc(count)
        self._metrics.batch_seconds.observe(seconds)
        self._metrics.last_progress = time.monotonic()
        self.totals["consumed"] += batch.messages
        self.totals["stored"] += len(batch.clicks)
        self.totals["rejected"] += rejected
        self.totals["batches"] += 1
        if speed is not None:
            self._metrics.speed_docs.inc(len(speed.docs))
            self._metrics.speed_beyond_horizon.inc(speed.beyond_horizon)
            for refused in speed.rejected:
                self._metrics.speed_rejected.labels(reason=refused.reason).inc()
        log_batch(batch, speed, seconds)
        self._notifier.status(
            f"consumed {self.totals['consumed']}, stored "
            f"{self.totals['stored']}, rejected {self.totals['rejected']}"
        )

    def _advance_past(self, batch: ProcessedBatch) -> None:
        """Move each partition's position past the batch just committed. A partition revoked
        and assigned back while the batch was held (an outage spanning a rebalance) restarts at
        the offset committed when it was assigned, i.e. before this batch: left there, the
        batch would be consumed again and its dead letters written twice."""
        for (topic, partition), next_offset in batch.next_offsets.items():
            if (topic, partition) not in self._assigned:
                continue
            (position,) = self._consumer.position([TopicPartition(topic, partition)])
            if position.offset < next_offset:  # also OFFSET_INVALID: not fetched since assign
                log.info(
                    "ingest.position_advanced",
                    partition=partition,
                    position=position.offset,
                    to=next_offset,
                )
                self._consumer.seek(TopicPartition(topic, partition, next_offset))

    # ------------------------------------------------------------------ outages

    def _pause(self, reason: str) -> None:
        assignment = self._consumer.assignment()
        if assignment:
            self._consumer.pause(assignment)
        self._paused = True
        self._metrics.paused.set(1)
        self._metrics.set_health(status="degraded", paused=True, reason=reason)
        self._notifier.status(f"paused: {reason}")
        log.warning("ingest.paused", reason=reason)

    def _resume(self) -> None:
        assignment = self._consumer.assignment()
        if assignment:
            self._consumer.resume(assignment)
        self._paused = False
        self._metrics.paused.set(0)
        self._metrics.set_health(status="ok", paused=False, reason=None)
        log.info("ingest.resumed")

    def _wait_before_retry(self, attempt: int) -> bool:
        """Back off while serving the group; False if the batch should be abandoned."""
        delay = min(self.config.backoff_max_s, self.config.backoff_initial_s * 2 ** (attempt - 1))
        deadline = time.monotonic() + delay * random.uniform(0.8, 1.0)  # noqa: S311 - jitter
        while time.monotonic() < deadline:
            if self._stopping:
                return False
            self._notifier.watchdog()
            # Paused partitions return nothing, but the call keeps the consumer in its group.
            # Never a negative timeout: librdkafka reads it as "wait forever".
            remaining = max(0.0, min(0.5, deadline - time.monotonic()))
            stray = self._consumer.consume(1, timeout=remaining)
            for message in stray:  # from a partition assigned during the outage: replayed later
                self._watch(message, time.monotonic())
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        check_consume_error(error)
                    continue
                position = (message.topic() or "", message.partition() or 0, message.offset() or 0)
                self._consumer.seek(TopicPartition(*position))
        return not self._stopping

    # ------------------------------------------------------------------ rebalances

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        consumer.assign(partitions)
        if self._paused:
            consumer.pause(partitions)
        self._assigned = {(tp.topic, tp.partition) for tp in partitions}
        if self._drain is not None:
            self._drain.assigned(self._assigned, time.monotonic())
        if self._speed is not None:
            # Restored lazily, before the first message of each is folded (in the loop, where
            # an unreachable changelog or Elasticsearch is retried, not raised in a callback).
            self._speed.assigned(tp.partition for tp in partitions)
        log.info("kafka.assigned", partitions=sorted(p for _, p in self._assigned))
        self._metrics.set_health(assigned=sorted(p for _, p in self._assigned))
        if not self._ready:
            self._ready = True
            self._notifier.ready(f"assigned partitions {sorted(p for _, p in self._assigned)}")

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Batches are written and committed before consume() returns again, so nothing done is
        # left uncommitted here; a batch held through an outage is trimmed in _handle.
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        self._assigned -= revoked
        if self._drain is not None:
            self._drain.revoked(revoked)
        if self._speed is not None:
            self._speed.revoked(p for _, p in revoked)
        log.info("kafka.revoked", partitions=sorted(p for _, p in revoked))
        consumer.unassign()

    def _watch(self, message: Message, now: float) -> None:
        """Feed --exit-when-idle's watch: a message, or the end of a partition."""
        if self._drain is None:
            return
        partition = (message.topic() or "", message.partition() or 0)
        error = message.error()
        if error is None:
            self._drain.message(partition, now)
        elif error.code() == KafkaError._PARTITION_EOF:
            self._drain.end_of_partition(partition)

    def _update_lag(self) -> None:
        now = time.monotonic()
        if now - self._last_lag_check < 5:
            return
        self._last_lag_check = now
        for topic, partition in sorted(self._assigned):
            tp = TopicPartition(topic, partition)
            try:
                _, high = self._consumer.get_watermark_offsets(tp, timeout=1, cached=True)
                (position,) = self._consumer.position([tp])
            except KafkaException:
                continue
            if position.offset >= 0 and high >= 0:
                self._metrics.lag.labels(partition=str(partition)).set(high - position.offset)
