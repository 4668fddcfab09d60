"""The ``clickstream`` command. Settings and logging are configured here, once, and passed down."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from clickstream import __version__
from clickstream.errors import ClickstreamError, ConfigError
from clickstream.logs import configure_logging
from clickstream.model import Reason
from clickstream.settings import CONFIG_ENV, Settings, load_settings, redacted, settings_reference
from clickstream.times import HOUR_MS, MINUTE_MS, NotIsoTimeError, NoUtcOffsetError, iso, parse_ms
from commands.query import add_api_key, add_query, add_serve

if TYPE_CHECKING:
    from commands.stack.manager import ServerStatus

Handler = Callable[[argparse.Namespace, Settings], int]
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _stack_up(args: argparse.Namespace, settings: Settings) -> int:
    from commands.stack.manager import Stack  # noqa: PLC0415 - keep `--help` fast

    started = time.monotonic()
    rows = Stack(settings).up()
    _print_status(rows)
    print(f"stack up in {time.monotonic() - started:.1f}s; home {settings.stack.home}")
    return 0


def _stack_down(args: argparse.Namespace, settings: Settings) -> int:
    from commands.stack.manager import Stack  # noqa: PLC0415

    stopped = Stack(settings).down()
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def _stack_status(args: argparse.Namespace, settings: Settings) -> int:
    from commands.stack.manager import Stack  # noqa: PLC0415

    rows = Stack(settings).status()
    _print_status(rows)
    return 0 if all(row.healthy for row in rows) else 3


def _print_status(rows: Sequence[ServerStatus]) -> None:
    print(f"{'server':<14} {'pid':>8}  {'ports':<19} {'health':<8} detail")
    for row in rows:
        health = "ok" if row.healthy else "DOWN"
        print(f"{row.name:<14} {row.pid or '-':>8}  {row.ports:<19} {health:<8} {row.detail}")


def _stack_logs(args: argparse.Namespace, settings: Settings) -> int:
    from commands.stack.manager import Stack  # noqa: PLC0415

    stack = Stack(settings)
    for name, text in stack.logs(args.server, args.lines):
        print(f"==> {stack.log_path(name)} <==\n{text}\n")
    if args.follow:
        for name, line in stack.follow(args.server):
            print(f"{name:<13}| {line}", flush=True)
    return 0


def _schema_create(args: argparse.Namespace, settings: Settings) -> int:
    from commands.schema import create_all, render  # noqa: PLC0415

    print(render(create_all(settings), as_json=args.json))
    return 0


def _schema_describe(args: argparse.Namespace, settings: Settings) -> int:
    from commands.schema import describe_all, render  # noqa: PLC0415

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


def _batch(args: argparse.Namespace, settings: Settings) -> int:
    from processing.job import batch_range, run_batch, spark_session  # noqa: PLC0415

    t0, t1 = batch_range(settings, args.since, args.to, int(time.time() * 1000))
    if t0 == t1:
        print("nothing to do: the watermark is at the last complete hour")
        return 0
    spark = spark_session(settings)
    try:
        result = run_batch(spark, settings, t0, t1)
    finally:
        spark.stop()
    print(f"batch views of {result.views} (url, country, hour) groups in {result.seconds:.1f}s")
    return 0


def _batch_status(args: argparse.Namespace, settings: Settings) -> int:
    from commands.batch_status import (  # noqa: PLC0415
        as_dict,
        default_max_lag_ms,
        exit_code,
        read_status,
        render,
    )

    if args.max_lag_minutes is None:
        max_lag_ms = default_max_lag_ms(settings.ingest.session_timeout_ms)
    else:
        max_lag_ms = args.max_lag_minutes * MINUTE_MS
    status = read_status(settings, int(time.time() * 1000))
    print(json.dumps(as_dict(status, max_lag_ms)) if args.json else render(status, max_lag_ms))
    return exit_code(status, max_lag_ms)


def _seal(args: argparse.Namespace, settings: Settings) -> int:
    from indexing.client import connect  # noqa: PLC0415
    from speed.seal import seal_pass  # noqa: PLC0415

    with connect(settings.elasticsearch) as client:
        while True:
            done = seal_pass(client, settings)
            hours = ", ".join(iso(hour) for hour in done.sealed) or "none"
            busy = f"; still changing, next pass: {len(done.busy)}" if done.busy else ""
            print(f"sealed hours: {hours} ({done.documents} documents){busy}", flush=True)
            if args.every is None:
                return 0
            time.sleep(args.every)


def _inspect(args: argparse.Namespace, settings: Settings) -> int:
    from commands.inspect import inspect, render  # noqa: PLC0415

    t1 = _ms(args.to) if args.to else int(time.time() * 1000)
    t0 = _ms(args.since) if args.since else t1 - args.hours * HOUR_MS
    landed = inspect(settings, t0, t1 + 1)
    print(render(landed, settings.hbase.table, settings.kafka.dlq_topic))
    return 0


def _dlq_replay(args: argparse.Namespace, settings: Settings) -> int:
    from commands.dlq_replay import ReplayFilter, render, replay  # noqa: PLC0415

    filters = ReplayFilter(
        reasons=frozenset(args.reason or ()),
        since_ms=_ms(args.since) if args.since else None,
        until_ms=_ms(args.until) if args.until else None,
        partition=args.partition,
        from_offset=args.from_offset,
        to_offset=args.to_offset,
        limit=args.limit,
    )
    topic = args.topic or settings.kafka.clicks_topic
    print(render(replay(settings.kafka, filters, topic, dry_run=args.dry_run)))
    return 0


def _ingest(args: argparse.Namespace, settings: Settings) -> int:
    from commands.defaults import geo_paths  # noqa: PLC0415
    from ingest.daemon import run_daemon  # noqa: PLC0415

    return run_daemon(
        settings,
        instance=args.instance,
        exit_when_idle_s=args.exit_when_idle,
        geo_paths=geo_paths(settings),
    )


def _generate(args: argparse.Namespace, settings: Settings) -> int:
    from commands.defaults import geo_paths  # noqa: PLC0415
    from traffic.generate import TrafficSpec, generate, publish, write_truth  # noqa: PLC0415
    from traffic.population import GeoSample  # noqa: PLC0415

    if args.start is not None:
        start_ms = _ms(args.start)
    else:  # end now: every event is recent enough to be accepted, none lies in the future
        start_ms = int(time.time() * 1000) - int(args.hours * HOUR_MS)
    spec = TrafficSpec(
        start_ms=start_ms,
        events=args.events,
        hours=args.hours,
        users=args.users,
        bot_share=args.bot_share,
        duplicate_share=args.duplicate_share,
        malformed_share=args.malformed_share,
        late_share=args.late_share,
        session_timeout_ms=settings.ingest.session_timeout_ms,
    )
    geo = GeoSample.from_mmdb(args.geoip or geo_paths(settings), seed=args.seed)
    started = time.monotonic()
    traffic = generate(spec, seed=args.seed, geo=geo)
    summary = traffic.truth.summary
    print(
        f"generated {summary.messages} messages in {time.monotonic() - started:.1f}s: "
        f"{summary.valid_events} valid events ({summary.bot_clicks} by bots), "
        f"{summary.duplicates} duplicate deliveries, "
        f"{sum(summary.malformed.values())} malformed, {summary.late_events} late"
    )
    if args.truth is not None:
        print(f"ground truth written to {write_truth(traffic.truth, args.truth)}")
    if not args.dry_run:
        topic = args.topic or settings.kafka.clicks_topic
        publish(traffic, settings.kafka, topic, rate=args.rate or None, progress=print)
    return 0


def _ms(text: str) -> int:
    """Epoch ms of a command-line time (ISO-8601 with a UTC offset)."""
    try:
        return parse_ms(text)
    except NoUtcOffsetError:
        raise ConfigError(f"give a UTC offset with {text!r} (e.g. a trailing Z)") from None
    except NotIsoTimeError:
        raise ConfigError(f"not an ISO-8601 time: {text!r} (e.g. 2026-11-22T10:00:00Z)") from None


def _import_log(args: argparse.Namespace, settings: Settings) -> int:
    from traffic.accesslog import import_log  # noqa: PLC0415

    if not args.file.is_file():
        raise ConfigError(f"no such log file: {args.file}")
    topic = args.topic or settings.kafka.clicks_topic
    report = import_log(args.file, args.site, settings.kafka, topic, progress=print)
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(report.skipped.items())) or "none"
    print(
        f"read {report.lines} lines: published {report.kept} clicks to {topic}; "
        f"skipped {skipped}; malformed {report.malformed}"
    )
    for example in report.examples:
        print(f"  malformed line {example.line_no}: {example.reason}")
    return 0


def _add_stack(commands: Subcommands) -> None:
    """`clickstream stack up|down|status|logs`."""
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


def _add_schema(commands: Subcommands) -> None:
    """`clickstream schema create|describe`."""
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


def _add_config(commands: Subcommands) -> None:
    """`clickstream config show|reference`."""
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


def _add_ingest(commands: Subcommands) -> None:
    """`clickstream ingest`."""
    ingest = commands.add_parser(
        "ingest",
        help="the ingest daemon: Kafka -> validate -> enrich -> HBase + speed views, bad input "
        "to the DLQ",
        description="Consume the clicks topic in consumer group ingest.group_id, validate and "
        "enrich each click, write it to HBase under its salted row key, fold it into the speed "
        "layer's minute views in Elasticsearch (speed.enabled), send rejected messages to the "
        "dead-letter topic with a reason, and commit offsets (with the speed layer's changelog) "
        "only after every write is durable. "
        "Runs until SIGTERM/SIGINT (finishes the batch in hand, commits, exits 0). Under systemd "
        "(Type=notify) it reports READY, WATCHDOG and STOPPING. Metrics and /healthz on "
        "ingest.metrics_port.",
    )
    ingest.add_argument(
        "--exit-when-idle",
        type=float,
        metavar="SECONDS",
        help="exit once every assigned partition has been read to its end and nothing arrived "
        "for this long (backfills, tests); the clock starts at the assignment, never earlier",
    )
    ingest.add_argument(
        "--instance",
        metavar="NAME",
        help="this process's name among N in the group (default: hostname); "
        "must be unique per running process and stable across its restarts",
    )
    ingest.set_defaults(handler=_ingest)


def _add_generate(commands: Subcommands) -> None:
    """`clickstream generate`."""
    generate = commands.add_parser(
        "generate",
        help="publish realistic synthetic traffic and write its ground truth",
        description="Users with sessions, Zipf-popular URLs over a few sites, log-normal gaps, "
        "real user agents, IPs from the geo database's networks, bots, duplicate deliveries, "
        "malformed messages of every rejection kind, late and out-of-order events. "
        "Reproducible with --seed. The ground truth (per url x country x hour: clicks, unique "
        "users, time spent, bot clicks) follows the README's metric definitions.",
    )
    generate.add_argument(
        "--events",
        type=int,
        default=10_000,
        help="valid page views (duplicates and malformed messages come on top; default 10000)",
    )
    generate.add_argument("--hours", type=float, default=6.0, help="event-time span (default 6)")
    generate.add_argument(
        "--start",
        metavar="ISO",
        help="span start, e.g. 2026-11-22T00:00Z "
        "(default: --hours before now, so the span ends now)",
    )
    generate.add_argument("--users", type=int, help="distinct users (default events/20)")
    generate.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    generate.add_argument(
        "--rate", type=float, default=0, help="messages per second (default 0: as fast as possible)"
    )
    generate.add_argument("--topic", help="target topic (default kafka.clicks_topic)")
    generate.add_argument("--truth", type=Path, metavar="FILE", help="write the ground truth")
    generate.add_argument(
        "--geoip",
        type=Path,
        nargs="+",
        metavar="PATH",
        help=".mmdb files or folders whose networks supply the IPs (default: the ingest's)",
    )
    generate.add_argument("--bot-share", type=float, default=0.03, help="share of bot users")
    generate.add_argument(
        "--duplicate-share",
        type=float,
        default=0.02,
        help="extra exact re-deliveries, as a share of events",
    )
    generate.add_argument(
        "--malformed-share",
        type=float,
        default=0.01,
        help="extra malformed messages, as a share of events",
    )
    generate.add_argument(
        "--late-share",
        type=float,
        default=0.01,
        help="events delivered hours after their event time",
    )
    generate.add_argument(
        "--dry-run", action="store_true", help="generate (and write the truth) without publishing"
    )
    generate.set_defaults(handler=_generate)


def _add_import_log(commands: Subcommands) -> None:
    """`clickstream import-log`."""
    import_log = commands.add_parser(
        "import-log",
        help="publish an Apache/Nginx combined-format access log as click events",
        description="Keeps GET requests answered 2xx-3xx that are not static assets (see the "
        "README for the extension list); user id = a hash of IP and user agent; event time "
        "from the log. Malformed lines are counted and reported, never fatal. .gz is read "
        "as gzip.",
    )
    import_log.add_argument("file", type=Path, help="the access log (.gz allowed)")
    import_log.add_argument(
        "--site",
        required=True,
        metavar="URL",
        help="scheme and host the paths belong to, e.g. https://shop.example",
    )
    import_log.add_argument("--topic", help="target topic (default kafka.clicks_topic)")
    import_log.set_defaults(handler=_import_log)


def _add_batch(commands: Subcommands) -> None:
    """`clickstream batch` and `clickstream batch-status`."""
    batch = commands.add_parser(
        "batch",
        help="the batch layer: exact views per (url, country, hour) from HBase to Elasticsearch",
        description="Reads HBase for [from, to) plus one session timeout (one range scan per "
        "salt bucket and time slice, in Spark partitions), sessionises per user, aggregates per "
        "(url, country, hour) and indexes the views with deterministic ids, so a re-run "
        "replaces them. Then moves the watermark. Without a range: from the watermark to the "
        "last hour whose sessions are closed. Spark runs in local mode (spark.master); for a "
        "cluster use the spark-submit recipe in deploy/spark/.",
    )
    batch.add_argument("--from", dest="since", metavar="ISO", help="range start, a whole hour")
    batch.add_argument("--to", metavar="ISO", help="range end (exclusive), a whole hour")
    batch.set_defaults(handler=_batch)

    status = commands.add_parser(
        "batch-status",
        help="the batch layer's health: last run, boundary lag, lock, late events waiting "
        "(exit 3 when lagging)",
        description="Prints the last successful run's range and when it finished (the "
        "watermark), the time boundary in force and how far it lags behind now, whether a run "
        "holds the batch lock (its owner and expiry), and the distinct late events waiting for "
        "the next run. Exit 0 when healthy; exit 3 when the boundary lags more than "
        "--max-lag-minutes, or before the first batch run; exit 1 when Elasticsearch cannot "
        "be read.",
    )
    status.add_argument(
        "--max-lag-minutes",
        type=int,
        metavar="N",
        help="most lag of the boundary behind now that counts as healthy "
        "(default: 120 + the session timeout, i.e. an hour of slack over an hourly run)",
    )
    status.add_argument(
        "--json", action="store_true", help="one JSON object instead of the labelled lines"
    )
    status.set_defaults(handler=_batch_status)

    seal = commands.add_parser(
        "seal",
        help="merge each closed speed hour's per-partition rollups into one document per group",
        description="Seals the speed hours at or after the time boundary that ended at least "
        "10 minutes before the newest speed data: their partition-owned hour rollups merged "
        "into <prefix>-sealed-YYYY.MM.DD, one document per group, which queries then read "
        "instead of one per partition. A seal records the hour's fingerprint; an event that "
        "reaches a sealed hour later breaks it (queries go back to the partition documents, "
        "still exact) and the next pass seals it again. The batch run drops sealed days with "
        "the speed layer's (serving.speed_keep_days). Safe to run anywhere and repeatedly "
        "(systemd: clickstream-seal.timer).",
    )
    seal.add_argument(
        "--every",
        type=float,
        metavar="SECONDS",
        help="repeat the pass every SECONDS instead of exiting after one",
    )
    seal.set_defaults(handler=_seal)


def _add_inspect(commands: Subcommands) -> None:
    """`clickstream inspect`."""
    inspect = commands.add_parser(
        "inspect",
        help="what landed: HBase rows of a time range by country and URL, dead letters by reason",
        description="Counts master-dataset rows with event time in the range (one range scan "
        "per salt bucket) and every committed record of the dead-letter topic, by reason.",
    )
    inspect.add_argument("--since", metavar="ISO", help="range start (default: --hours ago)")
    inspect.add_argument("--to", metavar="ISO", help="range end, inclusive (default: now)")
    inspect.add_argument("--hours", type=int, default=24, help="range length (default 24)")
    inspect.set_defaults(handler=_inspect)


def _add_dlq(commands: Subcommands) -> None:
    """`clickstream dlq replay`."""
    dlq = commands.add_parser(
        "dlq",
        help="the dead-letter topic: replay chosen dead letters once their cause is fixed",
    )
    dlq_cmds = dlq.add_subparsers(dest="action", required=True, metavar="ACTION")
    replay = dlq_cmds.add_parser(
        "replay",
        help="produce chosen dead letters' original key and bytes to the clicks topic again",
        description="Once the producer bug behind some rejections is fixed: reads the committed "
        "records of the dead-letter topic (kafka.dlq_topic), chooses those that match every "
        "filter given (none: all), and produces each one's original key and bytes, unchanged, "
        "to the clicks topic with an idempotent producer; then prints what it replayed by "
        "reason and what it skipped and why. Try --dry-run first. Nothing is ever deleted from "
        "the dead-letter topic (it is a log); a replayed message that is still bad is "
        "dead-lettered again, with a later rejected-at time that --since can leave out next "
        "time. Replaying twice is safe: ingest stores an event under a row key that is a pure "
        "function of the event (the HBase put rewrites the same row) and the speed layer folds "
        "an event it already holds once, so nothing is counted twice. Stubs (originals too "
        "large to keep) and null values are never replayed; records with the same key and "
        "bytes are replayed once.",
    )
    replay.add_argument(
        "--reason",
        action="append",
        choices=sorted(Reason),
        metavar="REASON",
        help=f"only this rejection reason (repeatable): {', '.join(sorted(Reason))}",
    )
    replay.add_argument(
        "--since",
        metavar="ISO",
        help="only those rejected at or after this time, e.g. 2026-11-22T10:00Z (a UTC offset "
        "is required)",
    )
    replay.add_argument(
        "--until", metavar="ISO", help="only those rejected before this time (exclusive)"
    )
    replay.add_argument(
        "--partition", type=int, metavar="N", help="only this partition of the dead-letter topic"
    )
    replay.add_argument(
        "--from-offset",
        type=int,
        metavar="N",
        help="first offset in --partition to replay (inclusive; default its start)",
    )
    replay.add_argument(
        "--to-offset",
        type=int,
        metavar="N",
        help="last offset in --partition to replay (inclusive; default its end)",
    )
    replay.add_argument(
        "--limit", type=int, metavar="N", help="replay at most N (in partition, offset order)"
    )
    replay.add_argument("--topic", help="target topic (default kafka.clicks_topic)")
    replay.add_argument(
        "--dry-run",
        action="store_true",
        help="produce nothing: print what would be replayed by reason, and the first few "
        "records' source and detail",
    )
    replay.set_defaults(handler=_dlq_replay)


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
    for add in (
        _add_stack,
        _add_schema,
        _add_config,
        _add_ingest,
        _add_generate,
        _add_import_log,
        _add_batch,
        _add_inspect,
        _add_dlq,
        add_query,
        add_serve,
        add_api_key,
    ):
        add(commands)

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
