"""Sealed speed hours on the real stack: a query reads one document per group for a sealed
hour and answers exactly what the partitions' documents answer; a late event breaks the seal
(the answer stays exact) and the next pass seals the hour again."""

from __future__ import annotations

import json

import pytest

from clickstream.settings import Settings
from clickstream.times import HOUR_MS, MINUTE_MS
from indexing.client import connect
from serving.answer import Answer
from serving.params import MetricsQuery
from serving.service import MetricsService
from speed.seal import seal_pass
from tests.integration.helpers import Spawn, make_traffic
from traffic.generate import publish
from traffic.sender import Sender

pytestmark = pytest.mark.integration

LATE_URL = "https://seal.example/late"


def figures(answer: Answer) -> dict[str | None, tuple[int, int, int, int, int]]:
    """Per group (and None: the total): clicks, bot clicks, time-spent sum and count, users."""
    rows = {g.url: g.metrics for g in answer.groups} | {None: answer.total}
    return {
        key: (m.clicks, m.bot_clicks, m.time_spent_sum_ms, m.time_spent_count, m.unique_users.value)
        for key, m in rows.items()
    }


def test_a_sealed_hour_answers_as_its_partitions_and_a_late_event_breaks_it(
    pipeline: Settings, spawn: Spawn
) -> None:
    traffic = make_traffic(events=3000, seed=51)
    publish(traffic, pipeline.kafka, pipeline.kafka.clicks_topic, progress=lambda _: None)
    spawn("s", "--exit-when-idle", "3").finish()
    start = min(group.hour_ms for group in traffic.truth.groups)
    query = MetricsQuery(start, start + 6 * HOUR_MS, group_by=("url",))
    service = MetricsService(pipeline)
    client = connect(pipeline.elasticsearch)
    try:
        unsealed = service.query(query)
        truth = {}
        for group in traffic.truth.groups:
            truth[group.url] = truth.get(group.url, 0) + group.clicks
        assert {g.url: g.metrics.clicks for g in unsealed.groups if g.metrics.clicks} == truth

        first = seal_pass(client, pipeline)
        # No batch yet: every closed hour ten minutes behind the newest data is sealed.
        assert start in first.sealed
        assert start + 5 * HOUR_MS not in first.sealed
        sealed = service.query(query)
        assert figures(sealed) == figures(unsealed)
        assert sealed.total.documents < unsealed.total.documents
        assert seal_pass(client, pipeline).sealed == ()  # nothing changed: nothing to do

        # A late click into the last sealed hour (within the speed layer's horizon, about 70
        # minutes behind the newest events), by a new user on a new url.
        late_hour = start + 4 * HOUR_MS
        assert late_hour in first.sealed
        click = {"user_id": "late-to-the-seal", "timestamp": late_hour + 50 * MINUTE_MS}
        click |= {"url": LATE_URL, "country": "DE"}
        with Sender(pipeline.kafka, pipeline.kafka.clicks_topic) as sender:
            sender.send(b"late-to-the-seal", json.dumps(click).encode())
        spawn("s", "--exit-when-idle", "3").finish()
        broken = service.query(query)
        expected = figures(sealed)
        assert figures(broken)[None][0] == expected[None][0] + 1
        assert figures(broken)[LATE_URL][:2] == (1, 0)
        assert broken.total.documents > sealed.total.documents  # the hour is read per partition

        again = seal_pass(client, pipeline)
        assert again.sealed == (late_hour,)
        resealed = service.query(query)
        assert figures(resealed) == figures(broken)
        assert resealed.total.documents == sealed.total.documents
    finally:
        service.close()
        client.close()
