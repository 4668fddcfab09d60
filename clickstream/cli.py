"""The ``clickstream`` command. Settings and logging are configured here, once, and passed down."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from clickstream import __version__
from clickstream.errors import ClickstreamError, ConfigError
from clickstream.logs import configure_logging
from clickstream.settings import CONFIG_ENV, Settings, load_settings, redacted, settings_reference

if TYPE_CHECKING:
    from clickstream.stack.manager import ServerStatus

Handler = Callable[[argparse.Namespace, Settings], int]


def _stack_up(args: argparse.Namespace, settings: Settings) -> int:
    from clickstream.stack.manager import Stack  # noqa: PLC0415 - keep `--help` fast

    started = time.monotonic()
    rows = Stack(settings).up()
    _print_status(rows)
    print(f"stack up in {time.monotonic() - started:.1f}s; home {settings.stack.home}")
    return 0


def _stack_down(args: argparse.Namespace, settings: Settings) -> int:
    from clickstream.stack.manager import Stack  # noqa: PLC0415

    stopped = Stack(settings).down()
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def _stack_status(args: argparse.Namespace, settings: Settings) -> int:
    from clickstream.stack.manager import Stack  # noqa: PLC0415

    rows = Stack(settings).status()
    _print_status(rows)
    return 0 if all(row.healthy for row in rows) else 3


def _print_status(rows: Sequence[ServerStatus]) -> None:
    print(f"{'server':<14} {'pid':>8}  {'ports':<19} {'health':<8} detail")
    for row in rows:
        health = "ok" if row.healthy else "DOWN"
        print(f"{row.name:<14} {row.pid or '-':>8}  {row.ports:<19} {health:<8} {row.detail}")


def _stack_logs(args: argparse.Namespace, settings: Settings) -> int:
    from clickstream.stack.manager import Stack  # noqa: PLC0415

    stack = Stack(settings)
    for name, text in stack.logs(args.server, args.lines):
        print(f"==> {stack.log_path(name)} <==\n{text}\n")
    if args.follow:
        for name, line in stack.follow(args.server):
            print(f"{name:<13}| {line}", flush=True)
    return 0


def _schema_create(args: argparse.Namespace, settings: Settings) -> int:
    from clickstream.schema import create_all, render  # noqa: PLC0415

    print(render(create_all(settings), as_json=args.json))
    return 0


def _schema_describe(args: argparse.Namespace, settings: Settings) -> int:
    from clickstream.schema import describe_all, render  # noqa: PLC0415

    print(render(describe_all(settings), as_json=args.json))
    return 0


def _config_show(args: argparse.Namespace, settings: Settings) -> int:
    print(json.dumps(redacted(settings), indent=2))
    return 0


README_START, README_END = "<!-- settings-reference:start -->", "<!-- settings-reference:end -->"


def _config_reference(args: argparse.Namespace, settings: Settings) -> int:
    table = settings_reference()
    if args.update is None:
        print(table)
        return 0
    text = args.update.read_text()
    if README_START not in text or README_END not in text:
        raise ConfigError(f"{args.update} has no {README_START} ... {README_END} markers")
    head, rest = text.split(README_START, 1)
    tail = rest.split(README_END, 1)[1]
    args.update.write_text(f"{head}{README_START}\n{table}\n{README_END}{tail}")
    print(f"updated the settings table in {args.update}")
    return 0


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from clickstream.demo import run_demo  # noqa: PLC0415

    run_demo(settings, count=args.count)
    return 0


def _ingest(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.daemon import run_daemon  # noqa: PLC0415

    return run_daemon(settings, instance=args.instance, exit_when_idle_s=args.exit_when_idle)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand (also used to test ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="clickstream",
        description="Real-time clickstream analytics: Kafka -> HBase -> Spark/speed layer -> "
        "Elasticsearch. Settings: a TOML file (--config or $CLICKSTREAM_CONFIG) and "
        "CLICKSTREAM_<SECTION>__<KEY> environment variables; see `clickstream config reference`.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help=f"TOML settings file (default: ${CONFIG_ENV}, else built-in defaults)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="default: INFO",
    )
    parser.add_argument(
        "--log-json",
        action="store_true",
        help="JSON logs even on a terminal (they are JSON off a terminal anyway)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    stack = commands.add_parser(
        "stack",
        help="the local development stack (Kafka, HBase + Thrift, Elasticsearch)",
        description="Fetch (once, from Maven Central and npm), start, stop and inspect the local "
        "stack. Everything lives under stack.home; processes are tracked by pid files.",
    )
    stack_cmds = stack.add_subparsers(dest="action", required=True, metavar="ACTION")
    up = stack_cmds.add_parser(
        "up",
        help="fetch what is missing, start what is stopped, wait "
        "until every server answers (a no-op when all are up)",
    )
    up.set_defaults(handler=_stack_up)
    down = stack_cmds.add_parser(
        "down",
        help="stop the servers this stack started (pid files), SIGTERM then SIGKILL; data is kept",
    )
    down.set_defaults(handler=_stack_down)
    status = stack_cmds.add_parser(
        "status", help="each server's pid, ports and health (exit 3 if any is down)"
    )
    status.set_defaults(handler=_stack_status)
    logs = stack_cmds.add_parser("logs", help="the last lines of the servers' logs")
    logs.add_argument(
        "server",
        nargs="?",
        choices=["kafka", "hbase", "thrift", "elasticsearch"],
        help="one server (default: all)",
    )
    logs.add_argument("-n", "--lines", type=int, default=40, help="lines per server (default 40)")
    logs.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="keep printing new lines as they are written, until Ctrl-C",
    )
    logs.set_defaults(handler=_stack_logs)

    schema = commands.add_parser(
        "schema",
        help="create or describe the topics, HBase table and index templates",
        description="Kafka topics (clicks, dead letters), the HBase table pre-split at the salt "
        "buckets with families click_data, geo_data, user_agent_data, and the Elasticsearch "
        "index templates. `create` is idempotent and never alters what exists.",
    )
    schema_cmds = schema.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = schema_cmds.add_parser(
        "create",
        help="create what is missing (idempotent); a table with other column families is an error",
    )
    create.set_defaults(handler=_schema_create)
    describe = schema_cmds.add_parser("describe", help="show what exists")
    for sub in (create, describe):
        sub.add_argument("--json", action="store_true", help="print a JSON report")
    describe.set_defaults(handler=_schema_describe)

    config = commands.add_parser("config", help="show the effective settings or their reference")
    config_cmds = config.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = config_cmds.add_parser("show", help="effective settings as JSON (secrets masked)")
    show.set_defaults(handler=_config_show)
    reference = config_cmds.add_parser("reference", help="every setting as a Markdown table")
    reference.add_argument(
        "--update",
        type=Path,
        metavar="FILE",
        help="replace the table between the settings-reference markers in "
        "FILE (the README) instead of printing it",
    )
    reference.set_defaults(handler=_config_reference)

    ingest = commands.add_parser(
        "ingest",
        help="the ingest daemon: Kafka -> validate -> enrich -> HBase, bad input to the DLQ",
        description="Consume the clicks topic in consumer group ingest.group_id, validate and "
        "enrich each click, write it to HBase under its salted row key, send rejected messages "
        "to the dead-letter topic with a reason, and commit offsets only after both are durable. "
        "Runs until SIGTERM/SIGINT (finishes the batch in hand, commits, exits 0). Under systemd "
        "(Type=notify) it reports READY, WATCHDOG and STOPPING. Metrics and /healthz on "
        "ingest.metrics_port.",
    )
    ingest.add_argument(
        "--exit-when-idle",
        type=float,
        metavar="SECONDS",
        help="exit after this long without messages (backfills, tests)",
    )
    ingest.add_argument(
        "--instance",
        metavar="NAME",
        help="this process's name among N in the group (default: hostname); "
        "must be unique per running process and stable across its restarts",
    )
    ingest.set_defaults(handler=_ingest)

    demo = commands.add_parser(
        "demo",
        help="publish sample clicks and carry them through Kafka, HBase and "
        "Elasticsearch, reading each back (what `make run` does)",
    )
    demo.add_argument("--count", type=int, default=20, help="sample clicks (default 20)")
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``clickstream`` console script."""
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, json=True if args.log_json else None)
    handler: Handler = args.handler
    try:
        settings = load_settings(args.config)
        return handler(args, settings)
    except ClickstreamError as exc:
        print(f"clickstream: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
