"""Logging configured once at the entry point, writing to whatever stderr is at the time."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest
import structlog
from structlog.testing import capture_logs

from clickstream.logs import configure_logging


class TestConfigureLogging:
    def test_lines_follow_a_swapped_stderr(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A stderr replaced after configuration (and the old one closed) still gets the line."""
        first = io.StringIO()
        monkeypatch.setattr(sys, "stderr", first)
        configure_logging("INFO", json=True)
        first.close()
        second = io.StringIO()
        monkeypatch.setattr(sys, "stderr", second)
        structlog.get_logger("t").info("after.swap", n=1)
        line = json.loads(second.getvalue().strip().splitlines()[-1])
        assert (line["event"], line["n"], line["level"]) == ("after.swap", 1, "info")


@pytest.fixture
def stdlib_root() -> Iterator[logging.Logger]:
    """The root logger (handlers, level) and the node pool's level restored after the test."""
    root, pool = logging.getLogger(), logging.getLogger("elastic_transport.node_pool")
    handlers, level, pool_level = root.handlers[:], root.level, pool.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)
    pool.setLevel(pool_level)


def _retry_warning() -> None:
    """What elastic_transport logs on a failed attempt: a warning carrying the exception."""
    try:
        raise ConnectionError("Connection error caused by: NewConnectionError(refused)")
    except ConnectionError:
        logging.getLogger("elastic_transport.transport").warning(
            "Retrying request after failure (attempt %d of %d)", 0, 3, exc_info=True
        )


class TestThirdPartyLoggers:
    @pytest.mark.parametrize("use_json", [True, False], ids=["json", "console"])
    def test_a_retry_is_one_warning_line_without_traceback(
        self, use_json: bool, stdlib_root: logging.Logger, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Below DEBUG a library's warning with exc_info is one line naming the error."""
        err = io.StringIO()
        monkeypatch.setattr(sys, "stderr", err)
        configure_logging("INFO", json=use_json)
        _retry_warning()
        lines = err.getvalue().splitlines()
        assert len(lines) == 1, err.getvalue()
        assert "Traceback" not in lines[0]
        assert "Retrying request after failure (attempt 0 of 3)" in lines[0]
        assert "ConnectionError: Connection error caused by" in lines[0]
        if use_json:
            line = json.loads(lines[0])
            assert (line["level"], line["logger"]) == ("warning", "elastic_transport.transport")
        else:
            assert "warning" in lines[0]

    def test_debug_keeps_the_traceback(
        self, stdlib_root: logging.Logger, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With --log-level DEBUG the library's traceback is printed in full."""
        err = io.StringIO()
        monkeypatch.setattr(sys, "stderr", err)
        configure_logging("DEBUG", json=True)
        _retry_warning()
        line = json.loads(err.getvalue())
        assert line["level"] == "warning"
        assert line["exception"].startswith("Traceback (most recent call last)")

    def test_info_of_a_library_is_dropped(
        self, stdlib_root: logging.Logger, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Libraries speak at WARNING and above, whatever the project's level."""
        err = io.StringIO()
        monkeypatch.setattr(sys, "stderr", err)
        configure_logging("INFO", json=True)
        logging.getLogger("py4j.clientserver").info("Closing down clientserver connection")
        logging.getLogger("urllib3.connectionpool").warning("Connection pool is full")
        lines = [json.loads(line) for line in err.getvalue().splitlines()]
        assert [line["event"] for line in lines] == ["Connection pool is full"]

    def test_node_pool_repeats_are_quiet_below_debug(
        self, stdlib_root: logging.Logger, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The node pool's "has failed N times" repeats the retry line: shown only at DEBUG."""
        err = io.StringIO()
        monkeypatch.setattr(sys, "stderr", err)
        pool = logging.getLogger("elastic_transport.node_pool")
        configure_logging("INFO", json=True)
        pool.warning("Node has failed for 1 times in a row, putting on 1 second timeout")
        assert err.getvalue() == ""
        configure_logging("DEBUG", json=True)
        pool.warning("Node has failed for 2 times in a row, putting on 2 second timeout")
        assert "has failed for 2 times" in json.loads(err.getvalue())["event"]


class TestReconfiguration:
    def test_a_logger_used_before_capture_logs_is_still_captured(self) -> None:
        """Loggers are not cached on first use: a module logger that logged before (as the
        daemon's do in the integration tests of the same session) still follows a later
        configuration, so capture_logs sees it."""
        configure_logging("INFO", json=True)
        logger = structlog.get_logger("tests.reconfigured")
        logger.info("before")
        configure_logging("INFO", json=True)  # a second entry point in the same process
        with capture_logs() as logs:
            logger.info("after", n=1)
        assert logs == [{"event": "after", "n": 1, "log_level": "info"}]
