"""The pure middle of ingest: every message ends as exactly one row or one dead letter."""

from __future__ import annotations

import json

import pytest
from structlog.testing import capture_logs

from clickstream.model import ClickEvent, EnrichedClick, Reason, Source
from clickstream.settings import IngestSettings
from clickstream.times import HOUR_MS, MINUTE_MS
from hbase_schema.late import hour_of
from ingest.consumer import log_batch
from ingest.dlq import REASON, header
from ingest.enrich import Enricher
from ingest.pipeline import Incoming, ProcessedBatch, process, speed_clicks
from ingest.validate import Limits
from speed.layer import SpeedBatch
from tests.paths import GEO_DB

NOW = 1_795_341_600_000  # 2026-11-22T10:00:00Z
TIMEOUT = IngestSettings().session_timeout_ms
BUCKETS = 16


@pytest.fixture(scope="module")
def enricher() -> Enricher:
    """The real enricher on MaxMind's test database."""
    return Enricher.from_settings(IngestSettings(), [GEO_DB])


def message(offset: int, *, user: str = "u1", ts: int = NOW - MINUTE_MS, **extra: str) -> Incoming:
    """A valid click message at ``offset`` of partition 0."""
    body = {"user_id": user, "timestamp": ts, "url": "https://shop.example/a", "country": "DE"}
    body.update(extra)
    return Incoming(user.encode(), json.dumps(body).encode(), Source("clicks", 0, offset))


def run(
    messages: list[Incoming], enricher: object, late_before_ms: int | None = None
) -> ProcessedBatch:
    return process(
        messages,
        enricher,  # type: ignore[arg-type]
        Limits(),
        BUCKETS,
        NOW,
        late_before_ms=late_before_ms,
        session_timeout_ms=TIMEOUT,
    )


class FailsOn:
    """An enricher that raises for one URL (a bug in enrichment), else enriches for real."""

    def __init__(self, real: Enricher, url: str) -> None:
        self.real, self.url = real, url

    def enrich(self, event: ClickEvent) -> EnrichedClick:
        if event.url == self.url:
            raise KeyError("boom")
        return self.real.enrich(event)


class TestProcess:
    def test_a_duplicate_inside_a_batch_is_one_row_and_two_clicks_for_the_speed_layer(
        self, enricher: Enricher
    ) -> None:
        """The same event twice: one put (same row key), both handed on (the speed layer
        dedups by identity), no dead letter, offsets past both."""
        twice = [message(0, event_id="e1"), message(1, event_id="e1")]
        batch = run(twice, enricher)
        assert len(batch.rows) == 1
        assert len(batch.clicks) == 2
        assert batch.dead_letters == []
        assert batch.next_offsets == {("clicks", 0): 2}
        assert [c.offset for c in speed_clicks(batch)] == [0, 1]

    def test_an_enrichment_failure_is_a_dead_letter_and_the_rest_goes_on(
        self, enricher: Enricher
    ) -> None:
        """A bug for one event never stops the batch: it is dead-lettered with its reason."""
        batch = run(
            [message(0), message(1, url="https://shop.example/bad"), message(2, user="u2")],
            FailsOn(enricher, "https://shop.example/bad"),
        )
        assert len(batch.rows) == 2
        (letter,) = batch.dead_letters
        assert header(letter.headers, REASON) == Reason.ENRICHMENT_FAILED.value
        assert batch.rejected == {Reason.ENRICHMENT_FAILED.value: 1}
        assert batch.next_offsets == {("clicks", 0): 3}

    def test_malformed_messages_are_dead_letters_with_their_reason(
        self, enricher: Enricher
    ) -> None:
        """Every message ends as one row or one dead letter: counts add up to the messages."""
        bad = Incoming(b"k", b"not json", Source("clicks", 1, 7))
        batch = run([message(0), bad], enricher)
        assert len(batch.rows) + len(batch.dead_letters) == batch.messages == 2
        assert header(batch.dead_letters[0].headers, REASON) == Reason.NOT_JSON.value
        assert batch.next_offsets == {("clicks", 0): 1, ("clicks", 1): 8}

    def test_late_events_enter_the_ledger_for_the_hours_behind_the_cutoff(
        self, enricher: Enricher
    ) -> None:
        """An event in an hour the batch may have done marks that hour (and the hour of its
        predecessor's click when that is behind the cutoff too); a recent one marks nothing."""
        cutoff = NOW - 2 * HOUR_MS
        old = NOW - 3 * HOUR_MS + 10 * MINUTE_MS  # 07:10Z: its predecessor window reaches 06:40Z
        batch = run([message(0, ts=old), message(1, user="u2")], enricher, late_before_ms=cutoff)
        assert sorted(hour_of(key) for key in batch.late) == [
            NOW - 4 * HOUR_MS,
            NOW - 3 * HOUR_MS,
        ]
        assert len(batch.rows) == 2

    def test_no_cutoff_no_ledger(self, enricher: Enricher) -> None:
        """Before the first batch run nothing is late."""
        batch = run([message(0, ts=NOW - 5 * HOUR_MS)], enricher, late_before_ms=None)
        assert batch.late == {}


class TestBatchLogLine:
    def test_one_summary_line_per_batch_with_counts_and_offsets(self, enricher: Enricher) -> None:
        """What operators grep: messages, rows, rejections by reason, offsets, speed figures."""
        batch = run(
            [message(0), message(1), Incoming(b"k", b"{", Source("clicks", 0, 2))], enricher
        )
        speed = SpeedBatch(generation=1, beyond_horizon=2)
        with capture_logs() as logs:
            log_batch(batch, speed, 0.0123)
        assert logs == [
            {
                "event": "ingest.batch",
                "log_level": "info",
                "messages": 3,
                "rows": 1,
                "stored": 2,
                "rejected": {Reason.NOT_JSON.value: 1},
                "ms": 12.3,
                "offsets": {"clicks:0": 3},
                "speed_docs": 0,
                "speed_beyond_horizon": 2,
            }
        ]
