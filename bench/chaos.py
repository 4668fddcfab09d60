"""The chaos run (`make chaos`): the pipeline under kills, outages and a batch run, checked exactly.

1,000,000 generated events (1 % malformed of 13 kinds, 2 % duplicate deliveries, bots, late and
out-of-order events) on 8 partitions go through three daemons in one group, supervised as
systemd runs them (a daemon that exits, or whose watchdog pings stop for 20 s, is restarted
under its own name; `ingest.hung_after_s` 40 s). While they work,
at random points of the run: ten SIGKILLs of a random daemon (restarted under its own name, as
systemd does), one outage of each server (Kafka, Thrift and Elasticsearch frozen with SIGSTOP,
the blackholed case; HBase stopped and started again), each `--outage-s` long (60 s: longer than
the transaction timeout and the group session timeout, so the open transactions are aborted and
the group rebalances when the broker returns), and a batch run over the first half of the hours
while data still flows. At the end, against the generator's ground truth:

* every (url, country, hour) group in HBase, in the speed views and in the batch views;
* the dead letters, one for one with the malformed messages (none twice);
* the merged answer's totals, before and after a final batch run moves the boundary.

Prints a table and saves bench/results/chaos-<UTC time>.json; exits 1 if anything is off.

    make chaos                       # or: .venv/bin/python bench/chaos.py --events 200000
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from acceptance import (
    LATENESS,
    check,
    check_batch,
    check_speed,
    merged_totals,
    prepare,
    six_hours,
    truth_totals,
)
from results_file import save

from clickstream.settings import Settings, load_settings
from clickstream.times import HOUR_MS
from commands.stack.manager import Stack
from indexing.templates import drop_views
from ingest.dlq import read_dead_letters
from ingest.topics import delete_topics, pipeline_topics
from processing.job import run_batch, spark_session
from storage.admin import drop_tables
from storage.late import snapshot
from traffic.generate import Traffic, publish
from traffic.harness import DaemonProcess, committed, isolated
from traffic.notify import PingClock

DAEMONS = ("c1", "c2", "c3")
#: How each server is taken away: frozen (connections stay open, nothing answers) or stopped
#: (HBase: a 60 s freeze would outlive its embedded ZooKeeper's sessions; a restart is the
#: realistic long outage).
OUTAGES = {"kafka": "freeze", "thrift": "freeze", "elasticsearch": "freeze", "hbase": "stop"}


#: The units' watchdog, scaled down: a daemon silent this long is killed and restarted.
WATCHDOG_S = 20.0
#: TimeoutStartSec: how long a daemon may take to its first ping (tables checked, group joined).
START_S = 120.0


class Crew:
    """The three daemons, supervised as systemd runs them (Restart=always, WatchdogSec): one
    that exits, or whose watchdog pings stop, is started again under its own name."""

    def __init__(self, settings: Settings, home: Path) -> None:
        self.settings = settings
        self.home = home
        self.starts = 0
        self.watchdog_kills: list[str] = []
        self.running: dict[str, tuple[DaemonProcess, PingClock, float]] = {}
        for name in DAEMONS:
            self._start(name)

    def _start(self, name: str) -> None:
        self.starts += 1
        path = str(self.home / f"{name}-{self.starts}.sock")
        clock = PingClock(path)
        daemon = DaemonProcess.start(
            self.settings,
            name,
            NOTIFY_SOCKET=path,
            WATCHDOG_USEC=str(int(WATCHDOG_S * 1_000_000)),
            # A wait without progress this long is a hung call: the pings stop.
            CLICKSTREAM_INGEST__HUNG_AFTER_S=str(int(2 * WATCHDOG_S)),
            **LATENESS,
        )
        self.running[name] = (daemon, clock, time.monotonic())

    def _replace(self, name: str) -> None:
        daemon, clock, _ = self.running[name]
        if daemon.process.poll() is None:
            daemon.kill()
        clock.close()
        self._start(name)

    def kill_one(self, rng: random.Random) -> str:
        name = rng.choice(DAEMONS)
        self._replace(name)
        return name

    def supervise(self) -> list[str]:
        """Restart the daemons that exited (none should; returned) or went silent."""
        exited = []
        now = time.monotonic()
        for name, (daemon, clock, started) in list(self.running.items()):
            if daemon.process.poll() is not None:
                print(f"  ! {name} exited {daemon.process.returncode}:")
                print("\n".join(line for line in daemon.log().splitlines()[-20:]))
                exited.append(name)
                self._replace(name)
            elif (
                # systemd arms the watchdog at READY (the first ping follows it); before that
                # only the start timeout applies.
                now - max([started, *clock.times]) > (WATCHDOG_S if clock.times else START_S)
            ):
                print(f"  ! {name}: no watchdog ping for {WATCHDOG_S:.0f}s: killed, restarted")
                self.watchdog_kills.append(name)
                self._replace(name)
        return exited

    def stop(self) -> None:
        """SIGTERM each (once it has its signal handlers: a daemon restarted a moment ago may
        still be importing), then wait for its clean exit."""
        for daemon, _, _ in self.running.values():
            deadline = time.monotonic() + 60
            while '"ingest.start"' not in daemon.log() and time.monotonic() < deadline:
                time.sleep(0.5)
            daemon.process.send_signal(signal.SIGTERM)
        for daemon, clock, _ in self.running.values():
            daemon.finish(timeout=120)
            clock.close()

    def kill_all(self) -> None:
        for daemon, clock, _ in self.running.values():
            if daemon.process.poll() is None:
                daemon.kill()
            clock.close()


def outage(stack: Stack, server: str, seconds: float) -> None:
    """Take ``server`` away for ``seconds`` the way OUTAGES says, then bring it back."""
    if OUTAGES[server] == "freeze":
        with stack.frozen(server):
            time.sleep(seconds)
        return
    # The Thrift server lives off its HBase (and its embedded ZooKeeper): it goes down with it.
    for name in ("thrift", server) if server == "hbase" else (server,):
        stack.stop_server(name)
    time.sleep(seconds)
    stack.up()  # starts what is missing


def plan(rng: random.Random, kills: int) -> list[tuple[float, str]]:
    """(share of the messages committed, action) in order: the kills, the outages and a batch
    run, at random points between 5 % and 90 % of the run."""
    actions = ["kill"] * kills + [f"outage:{s}" for s in OUTAGES] + ["batch"]
    return sorted((rng.uniform(0.05, 0.9), action) for action in actions)


def run(
    settings: Settings,
    *,
    base: Settings,
    stack: Stack,
    traffic: Traffic,
    args: argparse.Namespace,
    span: tuple[int, int],
) -> dict[str, object]:
    """The schedule, against three working daemons; what happened."""
    total = len(traffic.messages)
    rng = random.Random(args.seed)
    home = Path(tempfile.mkdtemp(prefix="chaos-notify-"))
    crew = Crew(settings, home)
    events: list[dict[str, object]] = []
    deaths: list[str] = []
    started = time.monotonic()
    try:
        for share, action in plan(rng, args.kills):
            wait_until(reached(settings, share * total), crew, deaths)
            time.sleep(rng.uniform(0.0, 0.5))  # anywhere inside a batch or between two
            at = committed(settings)
            print(f"{at:>9}/{total} committed: {action}", flush=True)
            if action == "kill":
                events.append({"at": at, "action": "SIGKILL " + crew.kill_one(rng)})
            elif action.startswith("outage:"):
                server = action.split(":", 1)[1]
                outage(stack, server, args.outage_s)
                events.append({"at": at, "action": f"{OUTAGES[server]} {server}"})
            else:
                spark = spark_session(base)
                try:
                    seam = span[0] + (span[1] - span[0]) // 2 // HOUR_MS * HOUR_MS
                    result = run_batch(spark, settings, span[0], seam)
                finally:
                    spark.stop()
                events.append({"at": at, "action": f"batch ({result.seconds:.0f} s)"})
        wait_until(reached(settings, total), crew, deaths, timeout=1800)
        crew.stop()
    finally:
        crew.kill_all()
        shutil.rmtree(home, ignore_errors=True)
    return {
        "messages": total,
        "schedule": events,
        "unexpected_exits": deaths,
        "watchdog_restarts": crew.watchdog_kills,
        "wall_s": round(time.monotonic() - started, 1),
    }


def reached(settings: Settings, messages: float) -> Callable[[], bool]:
    """True once the group has committed ``messages`` offsets."""
    return lambda: committed(settings) >= messages


def wait_until(
    condition: Callable[[], bool], crew: Crew, deaths: list[str], timeout: float = 900
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        deaths.extend(crew.supervise())
        if time.monotonic() > deadline:
            raise SystemExit(f"no progress within {timeout:.0f}s")
        time.sleep(1)


def duplicated_dead_letters(settings: Settings) -> int:
    """Dead letters written more than once for the same source message."""
    letters = read_dead_letters(settings.kafka)
    return len(letters) - len({letter.source for letter in letters})


def main() -> None:
    """Run the chaos once, print the table, save the JSON; exit 1 if any check fails."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--outage-s", type=float, default=60)
    parser.add_argument("--seed", type=int, default=9)
    args = parser.parse_args()

    base = load_settings()
    name = f"chaos_{secrets.token_hex(3)}"
    settings = isolated(base, name)
    settings = settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"partitions": 8})}
    )
    stack = Stack(base, progress=lambda line: print(f"  [stack] {line}", flush=True))
    client = prepare(settings)
    report: dict[str, object] = {"when": datetime.now(UTC).isoformat(timespec="seconds")}
    try:
        start = (int(time.time() * 1000) // HOUR_MS - 7) * HOUR_MS
        traffic = six_hours(base, args.events, args.seed, start)
        print(
            f"publishing {len(traffic.messages):,} messages "
            f"({traffic.truth.summary.duplicates:,} duplicates, "
            f"{sum(traffic.truth.summary.malformed.values()):,} malformed) to 8 partitions ...",
            flush=True,
        )
        publish(traffic, settings.kafka, settings.kafka.clicks_topic, progress=lambda _: None)
        span = (start, start + 7 * HOUR_MS)
        report.update(run(settings, base=base, stack=stack, traffic=traffic, args=args, span=span))
        print("checking ...", flush=True)
        report.update(check(settings, traffic))
        report["duplicated_dead_letters"] = duplicated_dead_letters(settings)
        # Hour views: the batch run in the middle let the minutes behind its boundary go.
        report.update(check_speed(settings, traffic, *span, grain="hour"))
        # Behind the boundary the batch views answer: events of those hours ingested after
        # the middle batch read them wait in the late ledger for the next run.
        report["merged_clicks_short_before_final_batch"] = (
            truth_totals(traffic)[0] - merged_totals(settings, *span)[0]
        )
        report["late_ledger_keys_before_final_batch"] = len(snapshot(settings.hbase))
        report.update(check_batch(base, settings, traffic, start, start + 6 * HOUR_MS))
    finally:
        stack.up()
        delete_topics(settings.kafka, pipeline_topics(settings.kafka))
        drop_tables(settings)
        drop_views(client, settings.elasticsearch)
        client.close()

    short = int(str(report["distinct_valid_events"])) - int(str(report["hbase_rows"]))
    exits = report["unexpected_exits"]
    table = [
        ("events lost (HBase rows short of the distinct valid events)", max(0, short)),
        ("events doubled (HBase rows beyond them)", max(0, -short)),
        ("dead letters duplicated", report["duplicated_dead_letters"]),
        ("dead letters == malformed messages, by reason", report["dead_letters_by_reason_equal"]),
        ("HBase (url, country, hour) groups == truth", report["groups_equal_truth"]),
        ("speed (url, country, hour) views mismatched", report["speed_mismatched_groups"]),
        ("batch (url, country, hour) views mismatched", report["batch_mismatched_views"]),
        (
            "merged clicks short of truth: late events waiting",
            report["merged_clicks_short_before_final_batch"],
        ),
        (
            "late-ledger keys waiting for the next batch run",
            report["late_ledger_keys_before_final_batch"],
        ),
        (
            "merged totals == truth after a final batch",
            report["merged_totals_unchanged_after_batch"],
        ),
        ("daemons that exited by themselves", len(exits) if isinstance(exits, list) else exits),
        ("daemons restarted by the watchdog", report["watchdog_restarts"]),
    ]
    print(json.dumps(report, indent=2))
    print(f"\n{'check':<58} result")
    for label, value in table:
        print(f"{label:<58} {value}")
    save("chaos", report)
    ok = (
        short == 0
        and report["rows_equal_events"]
        and report["duplicated_dead_letters"] == 0
        and report["dead_letters_by_reason_equal"]
        and report["groups_equal_truth"]
        and report["speed_groups_equal_truth"]
        and report["batch_views_equal_truth"]
        and report["merged_totals_unchanged_after_batch"]
        and not report["unexpected_exits"]
    )
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
