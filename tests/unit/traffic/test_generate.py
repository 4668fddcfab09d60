"""Synthetic traffic and its ground truth: reproducibility, shares, the metric rules, the file."""

from __future__ import annotations

import json
import random
from collections import Counter
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest

from clickstream.model import ClickEvent, Rejection
from clickstream.settings import IngestSettings, KafkaSettings
from clickstream.times import HOUR_MS
from ingest.agent import AgentParser
from ingest.enrich import Enricher
from ingest.geo import GeoLocator
from ingest.urls import normalize_url
from ingest.validate import parse_click
from tests.paths import GEO_DB
from traffic import sender as sender_module
from traffic.generate import (
    MALFORMED_KINDS,
    Traffic,
    TrafficSpec,
    TrafficSpecError,
    generate,
    publish,
    write_truth,
)
from traffic.population import BOT_AGENTS, BROWSER_AGENTS, GeoSample
from traffic.sender import DeliveryError
from traffic.truth import GroundTruth, TruthEvent, compute_truth

TEST_DB = GEO_DB
TIMEOUT_MS = IngestSettings().session_timeout_ms
START = 1_779_998_400_000  # an hour boundary (2026-05-28T20:00:00Z)
NOW = START + 7 * HOUR_MS  # "time of ingest" for the validator: the whole span is recent
EVENTS = 5000


def spec() -> TrafficSpec:
    """The spec of the module's traffic."""
    return TrafficSpec(start_ms=START, session_timeout_ms=TIMEOUT_MS, events=EVENTS)


@pytest.fixture(scope="module")
def geo() -> GeoSample:
    return GeoSample.from_mmdb([TEST_DB], seed=1)


@pytest.fixture(scope="module")
def traffic(geo: GeoSample) -> Traffic:
    return generate(spec(), 42, geo)


def _body(value: bytes) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(value)
    return loaded


class TestTrafficSpec:
    def test_default_users_one_per_twenty_events(self) -> None:
        """Without ``users``, there is one user per 20 events."""
        assert (
            TrafficSpec(start_ms=START, session_timeout_ms=TIMEOUT_MS, events=1000).user_count == 50
        )

    @pytest.mark.parametrize(
        ("field", "value"), [("bot_share", 1.5), ("events", 0), ("hours", 0.0), ("users", 0)]
    )
    def test_out_of_range_value_named(self, field: str, value: object) -> None:
        """A bad value is rejected with the field's name and the value."""
        with pytest.raises(TrafficSpecError, match=f"{field} out of range: {value}"):
            TrafficSpec(start_ms=START, session_timeout_ms=TIMEOUT_MS, **{field: value})  # type: ignore[arg-type]

    def test_non_http_site_rejected(self) -> None:
        """Sites must be absolute http(s) URLs."""
        with pytest.raises(TrafficSpecError, match="ftp://x"):
            TrafficSpec(start_ms=START, session_timeout_ms=TIMEOUT_MS, sites=("ftp://x",))


class TestGeoSample:
    def test_reads_every_network_of_a_small_database(self, geo: GeoSample) -> None:
        """The MaxMind test DB is read whole: both families, and networks without a country."""
        versions = Counter(net.network.version for net in geo.networks)
        assert versions[4] >= 10
        assert versions[6] >= 100
        assert "ZZ" in {net.country for net in geo.networks}

    def test_countries_agree_with_the_locator(self, geo: GeoSample) -> None:
        """Every picked address gets, from enrichment's locator, the country the sample says."""
        rng = random.Random(3)
        with GeoLocator([TEST_DB]) as locator:
            for _ in range(300):
                ip, country = geo.pick(rng)
                assert locator.lookup(ip).country == country

    def test_pick_avoids_network_and_broadcast_addresses(self, geo: GeoSample) -> None:
        """An address from a /24 is inside it and neither .0 nor .255."""
        rng = random.Random(5)
        network = next(n for n in geo.networks if n.network.version == 4)
        for _ in range(200):
            address = ip_address(network.pick(rng))
            assert address in network.network
            assert address not in (network.network.network_address, network.network[-1])

    def test_same_seed_same_sample(self) -> None:
        """Sampling is reproducible."""
        first = GeoSample.from_mmdb([TEST_DB], limit=20, seed=9)
        assert first == GeoSample.from_mmdb([TEST_DB], limit=20, seed=9)
        assert len(first.networks) <= 20


class TestGenerate:
    def test_same_seed_same_traffic(self, geo: GeoSample, traffic: Traffic) -> None:
        """One seed gives identical messages and truth."""
        again = generate(spec(), 42, geo)
        assert again.messages == traffic.messages
        assert again.truth == traffic.truth

    def test_other_seed_other_traffic(self, geo: GeoSample, traffic: Traffic) -> None:
        """Another seed gives other messages."""
        other = generate(spec(), 43, geo)
        assert other.messages[:50] != traffic.messages[:50]

    def test_message_counts(self, traffic: Traffic) -> None:
        """EVENTS valid messages, plus 2 % duplicates and 1 % malformed."""
        kinds = Counter(message.kind for message in traffic.messages)
        assert kinds == {"valid": EVENTS, "duplicate": 100, "malformed": 50}
        assert traffic.truth.summary.messages == len(traffic.messages)

    def test_duplicates_are_exact_redeliveries(self, traffic: Traffic) -> None:
        """Each duplicate repeats key and value of a valid message."""
        valid = {(m.key, m.value) for m in traffic.messages if m.kind == "valid"}
        duplicates = [m for m in traffic.messages if m.kind == "duplicate"]
        assert all((m.key, m.value) in valid for m in duplicates)

    def test_malformed_rejected_with_expected_reason(self, traffic: Traffic) -> None:
        """The validator rejects every malformed message with its reason: all 13 kinds."""
        seen = set()
        for message in traffic.messages:
            if message.kind == "malformed":
                result = parse_click(message.value, NOW)
                assert isinstance(result, Rejection)
                assert result.reason == message.reason
                seen.add(result.reason)
        assert seen == set(MALFORMED_KINDS)

    def test_valid_messages_pass_validation(self, traffic: Traffic) -> None:
        """Valid and duplicate messages all parse as clicks."""
        for message in traffic.messages:
            if message.kind != "malformed":
                assert isinstance(parse_click(message.value, NOW), ClickEvent)

    def test_bot_share_of_users(self, traffic: Traffic) -> None:
        """3 % of 250 users are bots, each always with a bot user agent."""
        agents: dict[str, set[str]] = {}
        for message in traffic.messages:
            if message.kind == "valid":
                body = _body(message.value)
                agents.setdefault(body["user_id"], set()).add(body["user_agent"])
        bots = {user for user, seen in agents.items() if seen <= set(BOT_AGENTS)}
        assert len(bots) == traffic.truth.summary.bot_users == round(0.03 * 250)
        assert all(len(seen) == 1 for seen in agents.values())

    def test_agent_lists_agree_with_the_pipeline(self) -> None:
        """The pipeline's parser flags every bot UA as a bot and no browser UA."""
        parser = AgentParser(cache_size=0)
        assert all(parser.parse(ua).is_bot for ua in BOT_AGENTS)
        assert not any(parser.parse(ua).is_bot for ua in BROWSER_AGENTS)
        assert len(BROWSER_AGENTS) >= 20

    def test_url_variants_normalise_to_truth_urls(self, traffic: Traffic) -> None:
        """About 10 % of URLs are variant spellings; all normalise to a truth URL."""
        truth_urls = {group.url for group in traffic.truth.groups}
        urls = [_body(m.value)["url"] for m in traffic.messages if m.kind == "valid"]
        variants = [url for url in urls if url not in truth_urls]
        assert 0.07 < len(variants) / len(urls) < 0.13
        assert {normalize_url(url) for url in urls} == truth_urls
        assert any("#" in url for url in variants)
        assert any(":443/" in url for url in variants)
        assert any("utm_source" in url for url in variants)

    def test_event_mix(self, traffic: Traffic) -> None:
        """~10 % lack event_id, ~2 % carry country not ip, timestamps are ints and ISO strings."""
        bodies = [_body(m.value) for m in traffic.messages if m.kind == "valid"]
        missing = sum("event_id" not in body for body in bodies) / len(bodies)
        with_country = sum("country" in body for body in bodies) / len(bodies)
        assert 0.08 < missing < 0.12
        assert 0.01 < with_country < 0.03
        kinds = Counter(type(body["timestamp"]).__name__ for body in bodies)
        assert kinds["int"] > 1000
        assert kinds["str"] > 1000

    def test_event_times_inside_the_span(self, traffic: Traffic) -> None:
        """Every valid event lies in [start, start + 6 h)."""
        for message in traffic.messages:
            if message.kind == "valid":
                result = parse_click(message.value, NOW)
                assert isinstance(result, ClickEvent)
                assert START <= result.timestamp_ms < START + 6 * HOUR_MS

    def test_delivery_mostly_in_event_time_order(self, traffic: Traffic) -> None:
        """Apart from late events, nothing arrives more than 5 s behind the newest event seen."""
        newest = 0
        behind = []
        for message in traffic.messages:
            if message.kind == "valid":
                result = parse_click(message.value, NOW)
                assert isinstance(result, ClickEvent)
                if not message.late:
                    behind.append(newest - result.timestamp_ms)
                newest = max(newest, result.timestamp_ms)
        assert max(behind) <= 5_000
        assert sum(gap > 0 for gap in behind) > 100  # but shuffled locally

    def test_late_events_arrive_hours_late(self, traffic: Traffic) -> None:
        """1 % of events are late; most arrive after events at least an hour newer."""
        newest = 0
        late_by = []
        for message in traffic.messages:
            if message.kind == "valid":
                result = parse_click(message.value, NOW)
                assert isinstance(result, ClickEvent)
                if message.late:
                    late_by.append(newest - result.timestamp_ms)
                newest = max(newest, result.timestamp_ms)
        assert len(late_by) == traffic.truth.summary.late_events == 50
        assert sum(gap >= HOUR_MS for gap in late_by) > 25

    def test_pipeline_reproduces_the_truth(self, traffic: Traffic) -> None:
        """Validating and enriching the messages as ingest does yields exactly the truth."""
        enricher = Enricher(GeoLocator([TEST_DB]), AgentParser())
        events = []
        for message in traffic.messages:
            parsed = parse_click(message.value, NOW)
            if isinstance(parsed, ClickEvent):
                click = enricher.enrich(parsed)
                events.append(
                    TruthEvent(
                        parsed.user_id,
                        parsed.timestamp_ms,
                        click.url_normalized,
                        click.agent.is_bot,
                        country=click.geo.country,
                        event_id=parsed.event_id,
                    )
                )
        again = compute_truth(events, lambda ip: "ZZ", 1_800_000)
        assert again.groups == traffic.truth.groups
        assert again.unique_users == traffic.truth.unique_users

    def test_truth_invariants(self, traffic: Traffic) -> None:
        """Per group: uniques <= clicks, known <= clicks, time spent within the timeout."""
        timeout = traffic.truth.session_timeout_ms
        for group in traffic.truth.groups:
            assert group.unique_users <= group.clicks
            assert group.time_spent_count <= group.clicks
            assert 0 <= group.time_spent_sum_ms <= group.time_spent_count * timeout
        summary = traffic.truth.summary
        assert summary.clicks + summary.bot_clicks == summary.valid_events == EVENTS
        assert summary.time_spent_known + summary.time_spent_unknown == summary.clicks

    def test_average_time_spent_near_the_model(self, traffic: Traffic) -> None:
        """Log-normal gaps with a 40 s median average about a minute."""
        average = traffic.truth.totals().average_time_spent_ms
        assert average is not None
        assert 45_000 < average < 90_000


T0 = START
TIMEOUT = 1_800_000
A, B = "https://shop.example/a", "https://shop.example/b"
COUNTRIES = {"1.1.1.1": "DE"}


def _scenario() -> list[TruthEvent]:
    return [
        # alice, DE: gaps 60 s, exactly the timeout, timeout + 1 s (unknown), then her last click
        TruthEvent("alice", T0, A, ip="1.1.1.1", event_id="a1"),
        TruthEvent("alice", T0 + 60_000, B, ip="1.1.1.1", event_id="a2"),
        TruthEvent("alice", T0 + 1_860_000, A, ip="1.1.1.1", event_id="a3"),
        TruthEvent("alice", T0 + 3_661_000, B, ip="1.1.1.1", event_id="a4"),
        # bob sends his country: two clicks in one ms (a known 0), one without id, redeliveries
        TruthEvent("bob", T0 + 100_000, A, country="fr", event_id="b1"),
        TruthEvent("bob", T0 + 100_000, A, country="fr", event_id="b2"),
        TruthEvent("bob", T0 + 100_000, A, country="fr", event_id="b1"),
        TruthEvent("bob", T0 + 400_000, A, country="fr"),
        TruthEvent("bob", T0 + 400_000, A, country="fr"),
        # carol is a crawler; dave's IP is unknown to the database
        TruthEvent("carol", T0 + 10_000, A, is_bot=True, ip="1.1.1.1", event_id="c1"),
        TruthEvent("carol", T0 + 20_000, A, is_bot=True, ip="1.1.1.1", event_id="c2"),
        TruthEvent("dave", T0 + 5_000, A, ip="9.9.9.9", event_id="d1"),
    ]


def _hand_truth() -> GroundTruth:
    return compute_truth(_scenario(), lambda ip: COUNTRIES.get(ip, "ZZ"), TIMEOUT)


class TestComputeTruth:
    def test_hand_computed_groups(self) -> None:
        """Clicks, uniques, time spent and bot clicks per group match the hand computation."""
        rows = [group.to_row() for group in _hand_truth().groups]
        hour0, hour1 = "2026-05-28T20:00:00Z", "2026-05-28T21:00:00Z"
        assert rows == [
            _row(A, "DE", hour0, clicks=2, users=1, spent=60_000, known=1, bots=2),
            _row(A, "FR", hour0, clicks=3, users=1, spent=300_000, known=2),
            _row(A, "ZZ", hour0, clicks=1, users=1, spent=0, known=0),
            _row(B, "DE", hour0, clicks=1, users=1, spent=TIMEOUT, known=1),
            _row(B, "DE", hour1, clicks=1, users=1, spent=0, known=0),
        ]

    def test_summary(self) -> None:
        """10 distinct valid events: 8 human clicks (4 known, 4 unknown), 2 bot clicks."""
        summary = _hand_truth().summary
        assert (summary.valid_events, summary.clicks, summary.bot_clicks) == (10, 8, 2)
        assert (summary.time_spent_known, summary.time_spent_unknown) == (4, 4)
        assert (summary.users, summary.bot_users) == (3, 1)

    def test_unique_users_over_a_range_are_not_summed(self) -> None:
        """Alice is in three DE groups but one unique user of DE."""
        truth = _hand_truth()
        assert sum(group.unique_users for group in truth.select(country="DE")) == 3
        assert truth.totals(country="DE").unique_users == 1
        assert truth.users_in(hours=(T0, T0 + HOUR_MS)) == {"alice", "bob", "dave"}
        assert truth.users_in(hours=(T0 + HOUR_MS, T0 + 2 * HOUR_MS)) == {"alice"}

    def test_totals_average_time_spent(self) -> None:
        """Average = known sum / known count, unknown clicks excluded."""
        totals = _hand_truth().totals(url=A)
        assert (totals.clicks, totals.time_spent_sum_ms, totals.time_spent_count) == (
            6,
            360_000,
            3,
        )
        assert totals.average_time_spent_ms == 120_000
        assert totals.bot_clicks == 2

    def test_bot_clicks_do_not_break_a_users_chain(self) -> None:
        """A bot-flagged click between two human clicks neither gets nor ends a time spent."""
        events = [
            TruthEvent("u", T0, A, ip="1.1.1.1", event_id="1"),
            TruthEvent("u", T0 + 1_000, A, is_bot=True, ip="1.1.1.1", event_id="2"),
            TruthEvent("u", T0 + 9_000, B, ip="1.1.1.1", event_id="3"),
        ]
        truth = compute_truth(events, COUNTRIES.__getitem__, TIMEOUT)
        totals = truth.totals(url=A)
        assert (totals.clicks, totals.bot_clicks, totals.time_spent_sum_ms) == (1, 1, 9_000)


def _row(
    url: str,
    country: str,
    hour: str,
    *,
    clicks: int,
    users: int,
    spent: int,
    known: int,
    bots: int = 0,
) -> dict[str, object]:
    return {
        "url": url,
        "country": country,
        "hour": hour,
        "clicks": clicks,
        "unique_users": users,
        "time_spent_sum_ms": spent,
        "time_spent_count": known,
        "bot_clicks": bots,
    }


class TestTruthFile:
    def test_round_trip_keeps_counts(self, tmp_path: Path, traffic: Traffic) -> None:
        """write_truth then from_json gives back every count, the summary and the meta."""
        path = write_truth(traffic.truth, tmp_path / "truth.json")
        loaded = GroundTruth.from_json(path.read_text())
        assert [g.to_row() for g in loaded.groups] == [g.to_row() for g in traffic.truth.groups]
        assert loaded.summary == traffic.truth.summary
        assert loaded.meta["seed"] == 42
        assert loaded.totals().unique_users == traffic.truth.unique_users

    def test_loaded_truth_has_no_user_sets(self) -> None:
        """Unique users of a sub-range need the sets, which the file does not hold."""
        loaded = GroundTruth.from_json(_hand_truth().to_json())
        assert loaded.totals(country="DE").unique_users is None
        with pytest.raises(ValueError, match="no per-group user sets"):
            loaded.users_in(country="DE")

    def test_file_layout(self) -> None:
        """Top-level keys and one row per group."""
        document = json.loads(_hand_truth().to_json())
        assert set(document) == {
            "format",
            "session_timeout_ms",
            "meta",
            "summary",
            "unique_users",
            "groups",
        }
        assert document["unique_users"] == 3
        assert len(document["groups"]) == 5


class _FakeProducer:
    """Stands in for confluent_kafka.Producer: acknowledges on poll/flush, can fail some."""

    fail_every = 0

    def __init__(self, config: dict[str, object]) -> None:
        self.config = config
        self.queued: list[tuple[bytes | None, bytes, Any]] = []
        self.sent: list[tuple[bytes | None, bytes]] = []

    def produce(self, topic: str, value: bytes, key: bytes | None, on_delivery: Any) -> None:
        self.queued.append((key, value, on_delivery))

    def poll(self, timeout: float) -> int:
        for key, value, callback in self.queued:
            self.sent.append((key, value))
            failed = self.fail_every and len(self.sent) % self.fail_every == 0
            callback("broker said no" if failed else None, None)
        self.queued.clear()
        return 0

    def flush(self, timeout: float) -> int:
        self.poll(0)
        return 0


class TestPublish:
    def test_sends_every_message_in_order(
        self, monkeypatch: pytest.MonkeyPatch, traffic: Traffic
    ) -> None:
        """All messages reach the producer in delivery order; progress about every 10 %."""
        producers: list[_FakeProducer] = []

        def make(config: dict[str, object]) -> _FakeProducer:
            producers.append(_FakeProducer(config))
            return producers[-1]

        monkeypatch.setattr(sender_module, "Producer", make)
        lines: list[str] = []

        delivered = publish(traffic, KafkaSettings(), "gen-test", None, lines.append)
        assert delivered == len(traffic.messages)
        assert producers[0].sent == [(m.key, m.value) for m in traffic.messages]
        assert producers[0].config["enable.idempotence"] is True
        assert producers[0].config["compression.type"] == "lz4"
        assert len(lines) == 10
        assert lines[-1].startswith(f"sent {len(traffic.messages)}/{len(traffic.messages)}")

    def test_failed_delivery_raises(
        self, monkeypatch: pytest.MonkeyPatch, traffic: Traffic
    ) -> None:
        """A message the broker did not take makes publish raise, with the count."""

        class Failing(_FakeProducer):
            fail_every = 1000

        monkeypatch.setattr(sender_module, "Producer", Failing)

        with pytest.raises(DeliveryError, match=r"5 of 5150 messages .* broker said no"):
            publish(traffic, KafkaSettings(), "gen-test", None, lambda _: None)
