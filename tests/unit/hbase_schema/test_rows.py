"""An enriched click as HBase cells and back; dead-letter records."""

from __future__ import annotations

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
