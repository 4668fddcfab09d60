"""``clickstream demo``: sample clicks carried through Kafka, HBase and Elasticsearch and read back.

A smoke run of the real stack with the real row-key codec, until the ingest daemon, the batch job
and the speed layer take these steps over.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import Counter
from dataclasses import dataclass

import structlog
from confluent_kafka import Consumer, Producer, TopicPartition

from clickstream.errors import RetriableError
from clickstream.settings import Settings
from hbase_schema import columns, encode_row_key, scan_ranges
from indexing.client import connect as es_connect
from storage.connection import connect as hbase_connect

log = structlog.get_logger(__name__)

SAMPLE_URLS = ("https://shop.example/", "https://shop.example/cart", "https://blog.example/post/1")
SAMPLE_COUNTRIES = ("DE", "FR", "US", "ZZ")


@dataclass(frozen=True, slots=True)
class SampleClick:
    """A minimal page view, as the web application would publish it."""

    event_id: str
    user_id: str
    timestamp_ms: int
    url: str
    country: str

    def to_json(self) -> bytes:
        """The Kafka message value."""
        return json.dumps(
            {
                "event_id": self.event_id,
                "user_id": self.user_id,
                "timestamp": self.timestamp_ms,
                "url": self.url,
                "country": self.country,
            }
        ).encode()


def sample_clicks(run: str, count: int, now_ms: int) -> list[SampleClick]:
    """``count`` deterministic sample clicks of run ``run``, one second apart before ``now_ms``."""
    return [
        SampleClick(
            event_id=f"demo-{run}-{i}",
            user_id=f"user-{i % 5}",
            timestamp_ms=now_ms - (count - i) * 1000,
            url=SAMPLE_URLS[i % len(SAMPLE_URLS)],
            country=SAMPLE_COUNTRIES[i % len(SAMPLE_COUNTRIES)],
        )
        for i in range(count)
    ]


def run_demo(settings: Settings, count: int) -> None:
    """Publish, consume, store, index and read back ``count`` sample clicks; print each step."""
    run = secrets.token_hex(4)
    clicks = sample_clicks(run, count, int(time.time() * 1000))
    received = _through_kafka(settings, run, clicks)
    stored = _through_hbase(settings, run, clicks)
    indexed = _through_elasticsearch(settings, run, clicks)
    log.info(
        "demo.done",
        run=run,
        published=len(clicks),
        consumed=received,
        hbase_rows=stored,
        es_docs=indexed,
    )
    if not received == stored == len(clicks):
        raise RetriableError(
            f"demo lost clicks: published {len(clicks)}, consumed {received}, "
            f"read from HBase {stored}"
        )


def _through_kafka(settings: Settings, run: str, clicks: list[SampleClick]) -> int:
    """Publish the clicks and consume them back; the number received."""
    topic = settings.kafka.clicks_topic
    consumer = Consumer(
        {
            **settings.kafka.client_config(),
            "group.id": f"clickstream-demo-{run}",
            "enable.auto.commit": False,
        }
    )
    try:
        # Start at the current end of each partition so only this run's clicks are read.
        metadata = consumer.list_topics(topic, timeout=10)
        if topic not in metadata.topics or metadata.topics[topic].error is not None:
            raise RetriableError(f"topic {topic} does not exist: run `clickstream schema create`")
        assignment = []
        for partition in metadata.topics[topic].partitions:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            assignment.append(TopicPartition(topic, partition, high))
        consumer.assign(assignment)

        producer = Producer({**settings.kafka.client_config(), "enable.idempotence": True})
        for click in clicks:
            producer.produce(topic, key=click.user_id.encode(), value=click.to_json())
        if producer.flush(30) != 0:
            raise RetriableError("Kafka did not acknowledge every sample click within 30 s")
        print(f"kafka: published {len(clicks)} clicks to {topic} (run {run})")

        received = 0
        deadline = time.monotonic() + 30
        while received < len(clicks) and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error() is not None:
                continue
            event = json.loads(message.value() or b"{}")
            received += str(event.get("event_id", "")).startswith(f"demo-{run}-")
    finally:
        consumer.close()
    print(f"kafka: consumed {received} of them back")
    return received


def _through_hbase(settings: Settings, run: str, clicks: list[SampleClick]) -> int:
    """Put the clicks under their salted row keys; the number read back by range scans."""
    buckets = settings.hbase.salt_buckets
    connection = hbase_connect(settings.hbase)
    try:
        table = connection.table(settings.hbase.table)
        with table.batch(batch_size=settings.hbase.batch_size) as batch:
            for click in clicks:
                key = encode_row_key(click.user_id, click.timestamp_ms, click.event_id, buckets)
                batch.put(
                    key,
                    {
                        columns.EVENT_ID: click.event_id.encode(),
                        columns.USER_ID: click.user_id.encode(),
                        columns.TIMESTAMP_MS: str(click.timestamp_ms).encode(),
                        columns.URL: click.url.encode(),
                        columns.COUNTRY: click.country.encode(),
                    },
                )
        t0 = min(c.timestamp_ms for c in clicks)
        t1 = max(c.timestamp_ms for c in clicks) + 1
        stored: int = sum(
            data[columns.EVENT_ID].decode().startswith(f"demo-{run}-")
            for start, stop in scan_ranges(t0, t1, buckets)
            for _, data in table.scan(row_start=start, row_stop=stop)
        )
    finally:
        connection.close()
    print(
        f"hbase: wrote {len(clicks)} rows to {settings.hbase.table}; "
        f"{buckets} salted range scans read back {stored}"
    )
    return stored


def _through_elasticsearch(settings: Settings, run: str, clicks: list[SampleClick]) -> int:
    """Index clicks per URL and search them back; the number of documents found."""
    es = es_connect(settings.elasticsearch)
    index = f"{settings.elasticsearch.index_prefix}-demo"
    try:
        # Sized like the views (replicas from settings), so a one-node cluster stays green.
        es.options(ignore_status=400).indices.create(
            index=index, settings={"number_of_replicas": settings.elasticsearch.replicas}
        )
        for url, clicks_of_url in Counter(click.url for click in clicks).items():
            es.index(
                index=index,
                id=f"{run}:{url}",
                document={"run": run, "url": url, "clicks": clicks_of_url},
            )
        es.indices.refresh(index=index)
        hits = es.search(index=index, query={"term": {"run.keyword": run}}, size=100)
    finally:
        es.close()
    print(f"elasticsearch: indexed clicks per URL into {index}; read back:")
    found = hits["hits"]["hits"]
    for hit in sorted(found, key=lambda h: -h["_source"]["clicks"]):
        print(f"  {hit['_source']['clicks']:>4}  {hit['_source']['url']}")
    return len(found)
