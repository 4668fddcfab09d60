"""``clickstream ingest``: the daemon's wiring — clients from settings, signals, metrics, systemd.

systemd runs it as ``Type=notify`` (see deploy/systemd/): READY=1 once partitions are assigned,
WATCHDOG=1 from the loop, STOPPING=1 on SIGTERM; then it finishes the batch in hand, commits,
leaves the group and exits 0.
"""

from __future__ import annotations

import faulthandler
import signal
import socket
from pathlib import Path
from types import FrameType

import structlog
from confluent_kafka import Consumer, Producer

from clickstream.errors import ConfigError, SchemaError
from clickstream.settings import Settings, env_var
from hbase_schema import FAMILIES
from hbase_schema.late import LATE_FAMILY, late_table
from indexing.client import connect as es_connect
from ingest.consumer import TXN_CALL_TIMEOUT_S, IngestLoop, LoopConfig
from ingest.enrich import Enricher
from ingest.late import LateCutoff, watermark_reader
from ingest.metrics import IngestMetrics, serve
from ingest.systemd import Notifier
from ingest.topics import describe_topics
from ingest.validate import Limits
from speed.changelog import Restored, restore
from speed.layer import SpeedLayer
from speed.store import SpeedStore
from storage.connection import connect
from storage.failures import missing_families_message
from storage.writer import HBaseWriter

log = structlog.get_logger(__name__)


def build_loop(
    settings: Settings,
    instance: str,
    *,
    exit_when_idle_s: float | None,
    metrics: IngestMetrics,
    notifier: Notifier,
    geo_paths: list[Path],
) -> IngestLoop:
    """The loop with real clients (nothing connects until it runs)."""
    kafka, ingest = settings.kafka, settings.ingest
    consumer = Consumer(
        {
            **kafka.client_config(),
            "group.id": ingest.group_id,
            # Static membership: a restarted instance (systemd, a crash) takes its partitions back
            # at once instead of waiting out the session timeout and a rebalance of the group.
            "group.instance.id": f"{ingest.group_id}-{instance}",
            "client.id": f"clickstream-ingest-{instance}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            # End-of-partition events tell --exit-when-idle that the topic has been read.
            "enable.partition.eof": exit_when_idle_s is not None,
            # Fetch enough for a batch per round trip, not the 64 MiB default per partition.
            "queued.max.messages.kbytes": 16384,
        }
    )
    producer = Producer(
        {
            **kafka.client_config(),
            "client.id": f"clickstream-ingest-{instance}-dlq",
            # A stable id per instance: a restarted instance fences its previous incarnation.
            "transactional.id": f"{ingest.group_id}-{instance}",
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            # A transaction spans only the dead letters and the offsets of one batch (HBase is
            # written before it begins), so it is short. A crashed instance's open transaction
            # blocks read_committed offset fetches of its partitions until it times out: keep
            # that short too (the default is 60 s).
            "transaction.timeout.ms": 10_000,
        }
    )
    enricher = Enricher.from_settings(ingest, geo_paths)
    config = LoopConfig(
        clicks_topic=kafka.clicks_topic,
        dlq_topic=kafka.dlq_topic,
        batch_size=ingest.batch_size,
        poll_timeout_s=ingest.poll_timeout_ms / 1000,
        salt_buckets=settings.hbase.salt_buckets,
        limits=Limits.from_settings(ingest),
        backoff_initial_s=ingest.backoff_initial_ms / 1000,
        backoff_max_s=ingest.backoff_max_ms / 1000,
        exit_when_idle_s=exit_when_idle_s,
        session_timeout_ms=ingest.session_timeout_ms,
        late_table=late_table(settings.hbase.table),
        late_cutoff=LateCutoff(watermark_reader(settings.elasticsearch), ingest.session_timeout_ms),
        changelog_topic=kafka.speed_changelog_topic,
        hung_after_s=ingest.hung_after_s,
    )
    return IngestLoop(
        config,
        consumer=consumer,
        producer=producer,
        writer=HBaseWriter(settings.hbase),
        enricher=enricher,
        metrics=metrics,
        notifier=notifier,
        speed=build_speed(settings, notifier) if settings.speed.enabled else None,
    )


def build_speed(settings: Settings, notifier: Notifier) -> SpeedLayer:
    """The speed layer: documents in Elasticsearch, user state in the changelog topic (whose
    restore tells ``notifier`` of its progress, so a long one keeps the watchdog fed)."""
    timeout_ms = settings.ingest.session_timeout_ms
    retention_ms = settings.speed.allowed_lateness_s * 1000 + timeout_ms
    store = SpeedStore(
        es_connect(settings.elasticsearch),
        settings.elasticsearch.index_prefix,
        settings.batch.hll_lg_k,
    )

    def restore_partition(partition: int) -> Restored:
        return restore(
            settings.kafka,
            settings.kafka.speed_changelog_topic,
            partition,
            session_timeout_ms=timeout_ms,
            retention_ms=retention_ms,
            stall_s=settings.speed.restore_timeout_s,
            progress=notifier.progress,
            call_timeout_s=TXN_CALL_TIMEOUT_S,
        )

    return SpeedLayer(store, restore_partition, settings.speed.doc_cache_minutes * 60_000)


def check_changelog(settings: Settings) -> None:
    """Fail at start, naming the fix, if the speed layer's changelog topic is missing or has
    fewer partitions than the clicks topic."""
    kafka = settings.kafka
    clicks, changelog = describe_topics(kafka, [kafka.clicks_topic, kafka.speed_changelog_topic])
    if not changelog.exists:
        raise SchemaError(
            f"missing Kafka topic {changelog.name} (the speed layer's state): run "
            "`clickstream schema create`"
        )
    if clicks.exists and changelog.partitions < clicks.partitions:
        raise SchemaError(
            f"Kafka topic {changelog.name} has {changelog.partitions} partitions but "
            f"{clicks.name} has {clicks.partitions}: add partitions to {changelog.name} "
            f"(kafka-topics --alter --partitions {clicks.partitions})"
        )


def check_tables(settings: Settings) -> None:
    """Fail at start, naming the fix, if a table the daemon writes is missing or lacks one of
    its column families; if HBase cannot be reached yet, say so and let the loop wait for it."""
    wanted = {settings.hbase.table: set(FAMILIES), late_table(settings.hbase.table): {LATE_FAMILY}}
    try:
        connection = connect(settings.hbase)
        try:
            existing = {name.decode() for name in connection.tables()}
            families = {
                name: {family.decode() for family in connection.table(name).families()}
                for name in wanted
                if name in existing
            }
        finally:
            connection.close()
    except Exception as exc:  # noqa: BLE001 - unreachable now is an outage, not a config error
        log.warning("ingest.hbase_unreachable_at_start", error=str(exc)[:200])
        return
    missing = [name for name in wanted if name not in existing]
    if missing:
        raise SchemaError(
            f"missing HBase table(s) {', '.join(missing)}: run `clickstream schema create`"
        )
    for name, present in families.items():
        if wanted[name] - present:
            raise SchemaError(missing_families_message(name, wanted[name] - present, present))


def run_daemon(
    settings: Settings,
    instance: str | None,
    exit_when_idle_s: float | None,
    geo_paths: list[Path],
) -> int:
    """Run the ingest daemon until SIGTERM/SIGINT (or idle) with the geo database ``geo_paths``
    (.mmdb files); the process exit code."""
    instance = instance or socket.gethostname()
    check_tables(settings)
    if settings.speed.enabled:
        check_changelog(settings)
    metrics = IngestMetrics()
    notifier = Notifier()
    loop = build_loop(
        settings,
        instance,
        exit_when_idle_s=exit_when_idle_s,
        metrics=metrics,
        notifier=notifier,
        geo_paths=geo_paths,
    )
    server = None
    if settings.ingest.metrics_port:
        try:
            server = serve(metrics, settings.ingest.metrics_host, settings.ingest.metrics_port)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {settings.ingest.metrics_host}:"
                f"{settings.ingest.metrics_port} ({exc.strerror}): set ingest.metrics_port "
                f"({env_var('ingest', 'metrics_port')}) to a free port, or 0 to turn it off"
            ) from exc

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("ingest.signal", signal=signal.Signals(signum).name)
        loop.stop()

    # `kill -USR1 <pid>` prints every thread's stack: the first thing to look at when hung.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    structlog.contextvars.bind_contextvars(instance=instance)
    log.info(
        "ingest.start",
        topic=settings.kafka.clicks_topic,
        group=settings.ingest.group_id,
        table=settings.hbase.table,
        metrics_port=settings.ingest.metrics_port or None,
    )
    try:
        loop.run()
    finally:
        loop.close()
        if server is not None:
            server.shutdown()
    log.info("ingest.stop", **loop.totals)
    return 0
