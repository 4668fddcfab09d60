"""A thin Kafka producer edge for the traffic tools: send, count acknowledgements, flush, raise.

Used by ``clickstream generate`` and ``clickstream import-log``. The producer is idempotent (no
duplicates from its own retries), batches for 20 ms and compresses with lz4; it connects on the
first message, never in ``__init__``.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Self

from confluent_kafka import KafkaError, Producer

from clickstream.errors import ClickstreamError
from clickstream.settings import KafkaSettings


class DeliveryError(ClickstreamError):
    """Kafka did not acknowledge every message (failed deliveries or a flush that timed out)."""


class Sender:
    """A Kafka producer (idempotent, lz4, linger 20 ms) that counts what the broker acknowledged.

    Connects on the first :meth:`send`; :meth:`close` flushes and raises DeliveryError unless
    every message was delivered. Use as a context manager.
    """

    def __init__(self, settings: KafkaSettings, topic: str, flush_timeout_s: float = 60.0) -> None:
        self.settings, self.topic, self.flush_timeout_s = settings, topic, flush_timeout_s
        self._producer: Producer | None = None
        self.sent = self.delivered = self.failed = 0
        self.last_error: str | None = None

    def _on_delivery(self, error: KafkaError | None, _message: object) -> None:
        if error is None:
            self.delivered += 1
        else:
            self.failed += 1
            self.last_error = str(error)

    def send(self, key: bytes | None, value: bytes) -> None:
        """Queue one message; when librdkafka's queue is full, wait for deliveries and retry."""
        if self._producer is None:
            config: dict[str, str | int | bool] = {
                **self.settings.client_config(),
                "enable.idempotence": True,
                "linger.ms": 20,
                "compression.type": "lz4",
            }
            self._producer = Producer(config)
        while True:
            try:
                self._producer.produce(self.topic, value, key, on_delivery=self._on_delivery)
                break
            except BufferError:
                self._producer.poll(0.1)
        self.sent += 1
        self._producer.poll(0)

    def poll(self, timeout_s: float) -> None:
        """Serve delivery callbacks for up to ``timeout_s`` (also a polite way to wait)."""
        if self._producer is None:
            time.sleep(timeout_s)
        else:
            self._producer.poll(timeout_s)

    def close(self) -> None:
        """Flush; raise DeliveryError when a message failed or is still pending."""
        pending = self._producer.flush(self.flush_timeout_s) if self._producer else 0
        if self.failed or pending:
            raise DeliveryError(
                f"{self.failed} of {self.sent} messages to {self.topic!r} failed and {pending} are "
                f"unacknowledged after {self.flush_timeout_s:g} s; last error: {self.last_error}"
            )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        elif self._producer is not None:
            self._producer.flush(min(self.flush_timeout_s, 5.0))  # best effort; the error wins
