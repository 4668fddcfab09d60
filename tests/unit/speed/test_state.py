"""The speed layer's pure core: exact time spent in any arrival order, replay-safe documents."""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clickstream.errors import SchemaError
from clickstream.times import MINUTE_MS
from indexing.views import GRAIN_HOUR, GRAIN_MINUTE, speed_doc_id
from speed.changelog import (
    PARTITION_KEY,
    decode_timeline,
    encode_timeline,
    rebuild,
    records_for,
    user_key,
)
from speed.docs import DocTable, parse, render, speed_index
from speed.state import PartitionState, RollupKey, SpeedClick, SpeedDoc, rollup_keys

Cell = tuple[str, str, int]
Measures = tuple[int, int, int, int]

TIMEOUT = 30 * MINUTE_MS
RETENTION = 4 * 3_600_000
T0 = 1_780_000_000_000 - 1_780_000_000_000 % 3_600_000


def click(offset: int, user: str, ts: int, url: str = "u1", *, bot: bool = False) -> SpeedClick:
    """A click whose event id is a pure function of (user, ts, url), like a fingerprint."""
    return SpeedClick(0, offset, user, ts, f"e-{user}-{ts}-{url}", url, "DE", bot)


def reference(clicks: list[SpeedClick]) -> dict[tuple[str, str, int], tuple[int, int, int, int]]:
    """(clicks, bot clicks, time-spent sum, count) per document, straight from the definition."""
    unique = {(c.user_id, c.ts, c.event_id): c for c in clicks}
    out: dict[tuple[str, str, int], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    by_user: dict[str, list[SpeedClick]] = defaultdict(list)
    for c in unique.values():
        if c.is_bot:
            out[c.doc_key][1] += 1
        else:
            by_user[c.user_id].append(c)
    for items in by_user.values():
        items.sort(key=lambda c: (c.ts, c.event_id))
        for here, following in zip(items, [*items[1:], None], strict=True):
            row = out[here.doc_key]
            row[0] += 1
            if following is not None and following.ts - here.ts <= TIMEOUT:
                row[2] += following.ts - here.ts
                row[3] += 1
    return {key: (a, b, c, d) for key, (a, b, c, d) in out.items()}


def docs_by_key(table: DocTable) -> list[tuple[RollupKey, SpeedDoc]]:
    """The table's documents by rollup key (one partition)."""
    return [(key, doc) for (_, key), doc in table.docs.items()]


def fold_all(batches: list[list[SpeedClick]]) -> DocTable:
    """Fold batches through one partition state into a fresh document table."""
    state = PartitionState(0, TIMEOUT, RETENTION)
    table = DocTable(12)
    for batch in batches:
        table.apply(state.fold(batch).contributions)
    return table


def observed(table: DocTable) -> dict[Cell, Measures]:
    """The table's (url, country, minute) documents in the reference's shape (empty ones left
    out)."""
    return {
        (url, country, start): measures
        for (level, grain, url, country, start), measures in observed_rollups(table).items()
        if level == "url_country" and grain == "minute" and url and country
    }


def observed_rollups(table: DocTable) -> dict[RollupKey, Measures]:
    """Every document of the table by its rollup key (empty ones left out)."""
    return {
        key: (d.clicks, d.bot_clicks, d.spent_sum, d.spent_count)
        for (_, key), d in table.docs.items()
        if d.clicks or d.bot_clicks
    }


def rolled_up(cells: dict[Cell, Measures]) -> dict[RollupKey, Measures]:
    """The reference's cells added up into every level and grain they belong to."""
    out: dict[RollupKey, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for cell, measures in cells.items():
        for key in rollup_keys(cell):
            row = out[key]
            for i, value in enumerate(measures):
                row[i] += value
    return {key: (a, b, c, d) for key, (a, b, c, d) in out.items()}


def minute_doc(table: DocTable) -> SpeedDoc:
    """The one (url, country, minute) document of a table that holds one."""
    (doc,) = (
        d for (_, key), d in table.docs.items() if key[0] == "url_country" and key[1] == "minute"
    )
    return doc


class TestTimeSpent:
    def test_in_order_clicks_take_the_gap_to_the_next(self) -> None:
        """Two clicks 5 min apart: the first has 5 min, the second none yet."""
        table = fold_all([[click(0, "a", T0), click(1, "a", T0 + 5 * MINUTE_MS, "u2")]])
        assert observed(table) == {
            ("u1", "DE", T0): (1, 0, 5 * MINUTE_MS, 1),
            ("u2", "DE", T0 + 5 * MINUTE_MS): (1, 0, 0, 0),
        }

    def test_a_late_click_splits_its_neighbours_gap(self) -> None:
        """A click arriving between two others: the first's time spent shrinks to the new gap."""
        first, last = click(0, "a", T0), click(1, "a", T0 + 20 * MINUTE_MS, "u3")
        late = click(2, "a", T0 + 8 * MINUTE_MS, "u2")
        table = fold_all([[first, last], [late]])
        assert observed(table) == reference([first, last, late])
        assert observed(table)[("u1", "DE", T0)] == (1, 0, 8 * MINUTE_MS, 1)

    def test_a_gap_over_the_timeout_is_unknown(self) -> None:
        """Past the session timeout the first click's time spent stays unknown (count 0)."""
        table = fold_all([[click(0, "a", T0), click(1, "a", T0 + TIMEOUT + 1)]])
        assert observed(table)[("u1", "DE", T0)] == (1, 0, 0, 0)

    def test_bots_neither_get_nor_end_a_time_spent(self) -> None:
        """A bot click between two human clicks changes nothing but bot_clicks."""
        clicks = [click(0, "a", T0), click(1, "a", T0 + MINUTE_MS, bot=True)]
        clicks.append(click(2, "a", T0 + 2 * MINUTE_MS))
        table = fold_all([clicks])
        assert observed(table)[("u1", "DE", T0)] == (1, 0, 2 * MINUTE_MS, 1)
        assert observed(table)[("u1", "DE", T0 + MINUTE_MS)] == (0, 1, 0, 0)

    def test_bot_clicks_are_counted_by_rule_in_every_rollup_once(self) -> None:
        """Each bot click counts under its rule in each document containing it, a duplicate
        not again; a bot without a rule counts in bot_clicks only."""
        rules = ["uap-core", "tools", "uap-core", None]
        clicks = [
            dataclasses.replace(click(i, f"b{i}", T0 + i * 1000, bot=True), bot_rule=rule)
            for i, rule in enumerate(rules)
        ]
        table = fold_all([clicks, clicks[:2]])  # the second batch: duplicates
        found = {key[:2]: (doc.bot_clicks, doc.bot_rules) for key, doc in docs_by_key(table)}
        assert found[("url_country", "minute")] == (4, {"uap-core": 2, "tools": 1})
        assert found[("all", "hour")] == (4, {"uap-core": 2, "tools": 1})
        assert len(found) == 8  # four levels x two grains

    @settings(max_examples=150, deadline=None)
    @given(st.integers(0, 2**32), st.integers(1, 60), st.integers(1, 6))
    def test_any_arrival_order_with_duplicates_matches_the_definition(
        self, seed: int, events: int, users: int
    ) -> None:
        """Shuffled, duplicated clicks in random batches equal the definition, exactly."""
        rng = random.Random(seed)
        clicks = [
            click(
                0,
                f"user{rng.randrange(users)}",
                T0 + rng.randrange(3 * 3_600_000),
                f"u{rng.randrange(3)}",
                bot=rng.random() < 0.1,
            )
            for _ in range(events)
        ]
        delivered = clicks + rng.sample(clicks, k=min(len(clicks), 5))
        rng.shuffle(delivered)
        delivered = [
            SpeedClick(0, i, c.user_id, c.ts, c.event_id, c.url, c.country, c.is_bot)
            for i, c in enumerate(delivered)
        ]
        cuts = sorted(rng.sample(range(len(delivered) + 1), k=min(3, len(delivered) + 1)))
        batches = [delivered[a:b] for a, b in zip([0, *cuts], [*cuts, len(delivered)], strict=True)]
        table = fold_all(batches)
        assert observed(table) == reference(clicks)
        # Every level and grain holds the sum of its cells: each offset reached each once.
        assert observed_rollups(table) == rolled_up(reference(clicks))


class TestReplay:
    def test_a_replayed_batch_changes_no_document(self) -> None:
        """The same offsets folded again (after a crash) are skipped by every document."""
        clicks = [click(0, "a", T0), click(1, "b", T0 + 1), click(2, "a", T0 + MINUTE_MS)]
        state = PartitionState(0, TIMEOUT, RETENTION)
        table = DocTable(12)
        table.apply(state.fold(clicks).contributions)
        before = observed(table)
        fresh = PartitionState(0, TIMEOUT, RETENTION)  # timelines lost, documents kept
        changed = table.apply(fresh.fold(clicks).contributions)
        assert changed == []
        assert observed(table) == before
        assert len(observed_rollups(table)) > len(before)  # the rollups were replayed too

    def test_restoring_from_the_changelog_continues_exactly(self) -> None:
        """State checkpointed mid-stream, decoded into a new state, gives the same result."""
        rng = random.Random(7)
        clicks = [
            click(i, f"user{rng.randrange(4)}", T0 + rng.randrange(7_200_000), f"u{i % 3}")
            for i in range(80)
        ]
        straight = fold_all([clicks[:40], clicks[40:]])

        state = PartitionState(0, TIMEOUT, RETENTION)
        table = DocTable(12)
        result = state.fold(clicks[:40])
        table.apply(result.contributions)
        records = records_for(state, result.changed_users, result.expired_users)
        assert records[-1].key == PARTITION_KEY
        restored = rebuild(
            0,
            [(r.key, r.value) for r in records],
            session_timeout_ms=TIMEOUT,
            retention_ms=RETENTION,
        ).state
        assert restored.max_ts == state.max_ts
        # The documents come back from Elasticsearch in their rendered form.
        reloaded = DocTable(12)
        reloaded.add(parse(0, render(d, "p").source, 12) for d in table.docs.values())
        reloaded.apply(restored.fold(clicks[40:]).contributions)
        assert observed_rollups(reloaded) == observed_rollups(straight)

    def test_a_timeline_round_trips(self) -> None:
        """encode/decode keep every entry, bot keys and the dedup set."""
        state = PartitionState(0, TIMEOUT, RETENTION)
        state.fold([click(0, "a", T0), click(1, "a", T0 + 5, bot=True)])
        timeline = decode_timeline(encode_timeline(state.users["a"]))
        assert timeline == state.users["a"]


class TestHorizon:
    def test_a_click_behind_the_window_is_left_to_the_batch(self) -> None:
        """Older than newest - retention: not folded, and reported."""
        state = PartitionState(0, TIMEOUT, RETENTION)
        state.fold([click(0, "a", T0 + RETENTION + MINUTE_MS)])
        result = state.fold([click(1, "b", T0)])
        assert result.beyond_horizon == 1
        assert result.contributions == []

    def test_users_expire_after_the_window(self) -> None:
        """A user whose newest click fell behind the window is forgotten (tombstoned)."""
        state = PartitionState(0, TIMEOUT, RETENTION)
        state.fold([click(0, "old", T0)])
        result = state.fold([click(1, "new", T0 + RETENTION + 2 * MINUTE_MS)])
        assert result.expired_users == {"old"}
        assert set(state.users) == {"new"}
        records = records_for(state, result.changed_users, result.expired_users)
        assert [(r.key, r.value is None) for r in records[:-1]] == [
            (user_key("new"), False),
            (user_key("old"), True),
        ]


class TestMemory:
    def test_a_url_is_kept_once_however_many_minutes_and_clicks_it_has(self) -> None:
        """Each click brings its own copy of its URL (8 KiB at most); the state keeps one per
        URL, not one per minute, so its memory does not grow with URL length (measured by
        `make bench-ingest`: 1.09x the bytes per click with 8 KiB paths, 7x before)."""
        state = PartitionState(0, TIMEOUT, RETENTION)
        long_url = "https://shop.example/" + "p" * 8000
        for minute in range(30):  # a fresh string object per click, as parsing gives
            url = "".join([long_url[:10], long_url[10:]])
            state.fold([click(minute, f"user{minute % 3}", T0 + minute * MINUTE_MS, url)])
        kept = [entry[2][0] for timeline in state.users.values() for entry in timeline.humans]
        assert len(kept) == 30
        assert len({id(url) for url in kept}) == 1


class TestRollups:
    def test_a_click_counts_in_eight_documents(self) -> None:
        """(url, country), (url, all), (all, country), (all, all), each per minute and hour."""
        table = fold_all([[click(0, "a", T0 + 5 * MINUTE_MS + 7)]])
        minute, hour = T0 + 5 * MINUTE_MS, T0
        assert set(observed_rollups(table)) == {
            ("url_country", "minute", "u1", "DE", minute),
            ("url", "minute", "u1", None, minute),
            ("country", "minute", None, "DE", minute),
            ("all", "minute", None, None, minute),
            ("url_country", "hour", "u1", "DE", hour),
            ("url", "hour", "u1", None, hour),
            ("country", "hour", None, "DE", hour),
            ("all", "hour", None, None, hour),
        }

    def test_a_message_that_changes_two_cells_reaches_a_shared_rollup_once(self) -> None:
        """A late click changes its predecessor's cell and its own: the hour documents that
        hold both get the sum of both deltas under the one offset, not just the first."""
        first, last = click(0, "a", T0, "u1"), click(1, "a", T0 + 20 * MINUTE_MS, "u3")
        late = click(2, "a", T0 + 8 * MINUTE_MS, "u2")
        table = fold_all([[first, last], [late]])
        hour = observed_rollups(table)[("all", "hour", None, None, T0)]
        assert hour == (3, 0, 20 * MINUTE_MS, 2)

    def test_rendered_rollups_leave_out_what_they_count_all_of(self) -> None:
        """Like the cube: url / country absent where the level counts all; a round trip keeps
        the key."""
        table = fold_all([[click(0, "a", T0)]])
        for doc in table.docs.values():
            source = render(doc, "cs").source
            assert (source["level"], source["grain"]) == doc.key[:2]
            assert ("url" in source, "country" in source) == (
                doc.key[2] is not None,
                doc.key[3] is not None,
            )
            assert parse(0, source, 12).key == doc.key

    def test_a_minute_view_keeps_the_id_of_older_releases(self) -> None:
        """Their stored (url, country, minute) documents are found again by id (and their
        offsets keep fencing replays); rollups get ids of their own."""
        key = ("url_country", "minute", "u1", "DE", T0)
        digest = hashlib.sha256(f"u1\0DE\0{T0}".encode()).hexdigest()[:32]
        assert speed_doc_id(3, key) == f"p3-{digest}"
        assert speed_doc_id(3, ("url_country", "hour", "u1", "DE", T0)) != f"p3-{digest}"

    def test_a_document_of_an_older_release_parses_as_a_minute_view(self) -> None:
        """Stored before the rollups (no level, no grain): a (url, country, minute) view."""
        source = render(minute_doc(fold_all([[click(0, "a", T0)]])), "cs").source
        del source["level"], source["grain"]
        assert parse(0, source, 12).key == ("url_country", "minute", "u1", "DE", T0)


class TestDocuments:
    def test_rendered_document_carries_version_and_sketch(self) -> None:
        """The version is the last offset; the sketch estimates the distinct users."""
        table = fold_all([[click(0, "a", T0), click(1, "b", T0 + 1), click(2, "a", T0 + 2)]])
        doc = minute_doc(table)
        rendered = render(doc, "cs")
        assert rendered.version == 2
        # Minutes go to hourly indices (dropped hours behind the boundary), hours to daily ones.
        assert rendered.index == speed_index("cs", T0, GRAIN_MINUTE) == "cs-speed-" + _hour(T0)
        assert speed_index("cs", T0, GRAIN_HOUR) == "cs-speed-" + _day(T0)
        assert rendered.source["clicks"] == 3
        assert rendered.source["unique_users"] == 2
        assert rendered.source["time_spent_sum_ms"] == 2
        assert rendered.source["time_spent_count"] == 1
        assert rendered.doc_id.startswith("p0-")

    @pytest.mark.parametrize("partition", [0, 3])
    def test_document_ids_differ_per_partition(self, partition: int) -> None:
        """Two partitions never share a document: each owns its own."""
        table = fold_all([[click(0, "a", T0)]])
        doc = minute_doc(table)
        doc.partition = partition
        assert doc.doc_id.startswith(f"p{partition}-")


def _day(ms: int) -> str:
    import time  # noqa: PLC0415

    return time.strftime("%Y.%m.%d", time.gmtime(ms / 1000))


def _hour(ms: int) -> str:
    import time  # noqa: PLC0415

    return time.strftime("%Y.%m.%d.%H", time.gmtime(ms / 1000))


class TestChangelogFormats:
    def test_format_1_records_still_restore(self) -> None:
        """A timeline written by the first release (row keys kept) reads back in order."""
        old = (
            b'{"v":1,"h":[[1000,"e1","00ff","https://a/","DE"],[2000,"e2","01ff","https://b/","FR"]]'
            b',"b":[["02ff",1500]]}'
        )
        timeline = decode_timeline(old)
        assert timeline.humans == [
            (1000, "e1", ("https://a/", "DE", 0)),
            (2000, "e2", ("https://b/", "FR", 0)),
        ]
        assert timeline.bots == {(1500, "rowkey:02ff")}

    def test_a_newer_format_is_refused_by_name(self) -> None:
        """State from a newer daemon is not guessed at: the error says what to run."""
        with pytest.raises(SchemaError, match="format 9 is newer"):
            decode_timeline(b'{"v":9,"h":[],"b":[]}')

    def test_garbage_is_a_schema_error(self) -> None:
        """A record that is not a timeline fails with a clear error, not a traceback."""
        with pytest.raises(SchemaError, match="unreadable speed changelog record"):
            decode_timeline(b"\xff not json")
