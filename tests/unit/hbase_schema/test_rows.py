"""An enriched click as HBase cells and back; dead-letter records."""

from __future__ import annotations

from dataclasses import replace

from clickstream.model import Agent, ClickEvent, EnrichedClick, Geo, Reason, Rejection, Source
from hbase_schema import columns, decode_row_key, salt_of
from hbase_schema.rows import from_row, to_row
from ingest.dlq import REASON, SOURCE_OFFSET, dead_letter, header

CLICK = EnrichedClick(
    event=ClickEvent(
        "e1",
        "alice",
        1_700_000_000_000,
        "https://A.example/x?utm=1",
        ip="81.2.69.142",
        user_agent="Mozilla/5.0",
        referrer="https://r.example/",
    ),
    url_normalized="https://a.example/x",
    geo=Geo("GB", "London", "England", 51.5142, -0.0931),
    agent=Agent("Chrome", "120", "Windows", "Other", is_bot=False),
    ip_anonymized="81.2.69.0",
)
BOT_CLICK = EnrichedClick(
    event=ClickEvent("e2", "feeds", 1_700_000_000_000, "https://a.example/feed", user_agent="x"),
    url_normalized="https://a.example/feed",
    geo=Geo("US"),
    agent=Agent("Other", None, "Other", "Other", is_bot=True, bot_rule="crawler-user-agents"),
    ip_anonymized=None,
)


class TestToRow:
    def test_key_is_the_events_row_key(self) -> None:
        """The key carries the user's salt and the event time."""
        key, _ = to_row(CLICK, 16)
        decoded = decode_row_key(key)
        assert decoded.salt == salt_of("alice", 16)
        assert decoded.timestamp_ms == 1_700_000_000_000

    def test_cells_hold_text_values_in_their_families(self) -> None:
        """Values are UTF-8 text; the raw IP is never stored, only the anonymised one."""
        _, cells = to_row(CLICK, 16, Source("clicks", 3, 42))
        assert cells[columns.URL_NORMALIZED] == b"https://a.example/x"
        assert cells[columns.COUNTRY] == b"GB"
        assert cells[columns.LATITUDE] == b"51.5142"
        assert cells[columns.IP] == b"81.2.69.0"
        assert b"81.2.69.142" not in b"".join(cells.values())
        assert cells[columns.SOURCE] == b"clicks:3:42"
        assert cells[columns.IS_BOT] == b"0"
        assert all(
            col.split(b":")[0] in {b"click_data", b"geo_data", b"user_agent_data"} for col in cells
        )

    def test_absent_optionals_are_not_written(self) -> None:
        """No cell for a value that is None (HBase stores no nulls)."""
        bare = EnrichedClick(
            ClickEvent("e", "u", 1, "https://x/", country="DE"),
            "https://x/",
            Geo("DE"),
            Agent(),
            None,
        )
        _, cells = to_row(bare, 16)
        assert columns.IP not in cells
        assert columns.CITY not in cells
        assert columns.SOURCE not in cells

    def test_round_trip(self) -> None:
        """from_row(to_row(click)) gives the click back (with the anonymised IP)."""
        _, cells = to_row(CLICK, 16, Source("clicks", 0, 7))
        stored = from_row(cells)
        assert stored.click.geo == CLICK.geo
        assert stored.click.agent == CLICK.agent
        assert stored.click.event.timestamp_ms == CLICK.event.timestamp_ms
        assert stored.click.event.ip == "81.2.69.0"
        assert stored.source == "clicks:0:7"


class TestBotRule:
    def test_a_bots_rule_is_stored_and_read_back(self) -> None:
        """A bot's row holds the rule that flagged it, and decodes to the same agent."""
        _, cells = to_row(BOT_CLICK, 16)
        assert cells[columns.IS_BOT] == b"1"
        assert cells[columns.BOT_RULE] == b"crawler-user-agents"
        assert columns.BOT_RULE == b"user_agent_data:bot_rule"
        agent = from_row(cells).click.agent
        assert agent == BOT_CLICK.agent
        assert agent.bot_rule == "crawler-user-agents"

    def test_a_human_row_has_no_rule_cell(self) -> None:
        """Rows stay compact: no bot_rule cell for a person, who reads back with rule None."""
        _, cells = to_row(CLICK, 16)
        assert columns.BOT_RULE not in cells
        assert from_row(cells).click.agent.bot_rule is None

    def test_a_rule_is_never_written_without_the_flag(self) -> None:
        """An agent with a rule but no bot flag (not one the parser makes) writes no rule."""
        human = replace(CLICK, agent=replace(CLICK.agent, bot_rule="tools"))
        _, cells = to_row(human, 16)
        assert cells[columns.IS_BOT] == b"0"
        assert columns.BOT_RULE not in cells

    def test_an_old_bot_row_without_the_column_has_rule_none(self) -> None:
        """A bot row written before the rule was stored still decodes: a bot, rule unknown."""
        _, cells = to_row(BOT_CLICK, 16)
        del cells[columns.BOT_RULE]
        agent = from_row(cells).click.agent
        assert (agent.is_bot, agent.bot_rule) == (True, None)
        assert agent == replace(BOT_CLICK.agent, bot_rule=None)

    def test_a_stray_rule_on_a_human_row_is_ignored(self) -> None:
        """is_bot is the flag that counts: a rule cell beside is_bot=0 decodes to rule None."""
        _, cells = to_row(CLICK, 16)
        cells[columns.BOT_RULE] = b"tools"
        agent = from_row(cells).click.agent
        assert (agent.is_bot, agent.bot_rule) == (False, None)


class TestDeadLetter:
    def test_original_bytes_and_reason_headers(self) -> None:
        """The value is untouched; headers name reason, detail, field and source."""
        record = dead_letter(
            b"k",
            b"\xff\xfe",
            Rejection(Reason.NOT_UTF8, "not UTF-8"),
            Source("clicks", 2, 99),
            now_ms=5,
        )
        assert record.value == b"\xff\xfe"
        assert record.key == b"k"
        assert header(record.headers, REASON) == "not_utf8"
        assert header(record.headers, SOURCE_OFFSET) == "99"
        assert header(record.headers, "clickstream.field") is None
