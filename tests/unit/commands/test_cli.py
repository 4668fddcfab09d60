"""The `clickstream` command: every subcommand answers --help; errors are one clear line."""

from __future__ import annotations

import pytest

from commands.cli import build_parser, main

SUBCOMMANDS = [
    [],
    ["stack"],
    ["stack", "up"],
    ["stack", "down"],
    ["stack", "status"],
    ["stack", "logs"],
    ["schema"],
    ["schema", "create"],
    ["schema", "describe"],
    ["config"],
    ["config", "show"],
    ["config", "reference"],
    ["ingest"],
    ["generate"],
    ["import-log"],
    ["batch"],
    ["batch-status"],
    ["inspect"],
    ["dlq"],
    ["dlq", "replay"],
]


class TestHelp:
    @pytest.mark.parametrize("words", SUBCOMMANDS, ids=lambda w: " ".join(w) or "top")
    def test_help_exits_zero_and_describes(
        self, words: list[str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`--help` prints usage naming the command and exits 0."""
        with pytest.raises(SystemExit) as caught:
            build_parser().parse_args([*words, "--help"])
        assert caught.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith("usage: clickstream")
        assert " ".join(words) in out


class TestErrors:
    def test_config_error_is_one_line_exit_1(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A bad setting prints `clickstream: error:` naming it, without a traceback."""
        monkeypatch.setenv("CLICKSTREAM_HBASE__PORT", "not-a-port")
        assert main(["config", "show"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("clickstream: error: invalid settings")
        assert "CLICKSTREAM_HBASE__PORT" in err
        assert "Traceback" not in err

    def test_config_show_prints_effective_settings(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`config show` reflects the environment."""
        monkeypatch.setenv("CLICKSTREAM_HBASE__TABLE", "clicks_x")
        assert main(["config", "show"]) == 0
        assert '"table": "clicks_x"' in capsys.readouterr().out
