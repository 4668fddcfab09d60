"""`clickstream query` and `clickstream serve`: help with examples, one-line errors naming flags."""

from __future__ import annotations

import pytest

from commands.cli import build_parser, main


class TestHelp:
    @pytest.mark.parametrize("command", ["query", "serve"])
    def test_help_exits_zero_with_examples(
        self, command: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`--help` names the command and shows an example."""
        with pytest.raises(SystemExit) as caught:
            build_parser().parse_args([command, "--help"])
        assert caught.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: clickstream {command}")
        assert "example" in out

    def test_query_help_explains_exactness(self, capsys: pytest.CaptureFixture[str]) -> None:
        """The epilog says when unique users are exact."""
        with pytest.raises(SystemExit):
            build_parser().parse_args(["query", "--help"])
        assert "one whole hour behind the time boundary" in capsys.readouterr().out


class TestErrors:
    @pytest.mark.parametrize(
        ("args", "flag", "words"),
        [
            (["--from", "noon", "--to", "2026-11-22T11:00Z"], "--from", "not an ISO-8601 time"),
            (["--from", "2026-11-22T10:00", "--to", "2026-11-22T11:00Z"], "--from", "offset"),
            (["--from", "2026-11-22T10:00Z", "--to", "2026-11-22T10:00Z"], "--to", "not after"),
            (
                ["--from", "2020-01-01T00:00Z", "--to", "2026-01-01T00:00Z"],
                "--to",
                "max_range_days",
            ),
            (
                ["--from", "2026-11-22T10:00Z", "--to", "2026-11-22T11:00Z", "--top", "-3"],
                "--top",
                "1 to",
            ),
            (
                ["--from", "2026-11-22T10:00Z", "--to", "2026-11-22T11:00Z", "--country", "DEU"],
                "--country",
                "two letters",
            ),
        ],
    )
    def test_bad_arguments_are_one_line_naming_the_flag(
        self, args: list[str], flag: str, words: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Refused before any service is contacted, exit 1, no traceback."""
        assert main(["query", *args]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"clickstream: error: {flag}: ")
        assert words in err
        assert "Traceback" not in err

    def test_group_by_choices_are_checked_by_the_parser(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An unknown grouping is a usage error listing the choices."""
        with pytest.raises(SystemExit) as caught:
            main(["query", "--from", "a", "--to", "b", "--group-by", "browser"])
        assert caught.value.code == 2
        assert "url,country" in capsys.readouterr().err
