"""Reading the stack's logs: the last lines, and following new ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from clickstream.errors import StackError
from clickstream.settings import load_settings
from commands.stack.manager import Stack


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    """A stack whose home is a temporary folder (nothing is started)."""
    return Stack(load_settings(stack={"home": tmp_path}), progress=lambda _: None)


class TestLogs:
    def test_last_lines_of_one_server(self, stack: Stack) -> None:
        """`logs kafka -n 2` gives the two newest lines of the Kafka log only."""
        log = stack.log_path("kafka")
        log.parent.mkdir(parents=True)
        log.write_text("a\nb\nc\n")
        assert list(stack.logs("kafka", 2)) == [("kafka", "b\nc")]

    def test_unknown_server_is_named(self, stack: Stack) -> None:
        """A typo lists the real server names."""
        with pytest.raises(StackError, match="choose from kafka, hbase"):
            list(stack.logs("kafak", 5))

    def test_follow_yields_whole_new_lines(self, stack: Stack) -> None:
        """Lines appended after follow() starts come out in order; a partial line waits."""
        log = stack.log_path("hbase")
        log.parent.mkdir(parents=True)
        log.write_text("before\n")
        lines = stack.follow("hbase", poll_s=0.01)
        with log.open("a") as handle:
            handle.write("new 1\nnew 2\npart")
        assert [next(lines), next(lines)] == [("hbase", "new 1"), ("hbase", "new 2")]
        with log.open("a") as handle:
            handle.write("ial\n")
        assert next(lines) == ("hbase", "partial")
