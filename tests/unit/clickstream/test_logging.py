"""Logging configured once at the entry point, writing to whatever stderr is at the time."""

from __future__ import annotations

import io
import json
import sys

import pytest
import structlog

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
