"""The daemon's edges that need no servers: sd_notify, metrics/health HTTP, systemd units."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from itertools import pairwise
from pathlib import Path

import pytest

from ingest.metrics import IngestMetrics, serve
from ingest.systemd import Notifier
from tests.paths import ROOT
from traffic.notify import PingClock

UNITS = ROOT / "deploy" / "systemd"


class TestNotifier:
    def test_sends_datagrams_to_notify_socket(self, tmp_path: Path) -> None:
        """READY, STATUS and STOPPING arrive as KEY=value lines on the socket."""
        path = str(tmp_path / "notify.sock")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
            listener.bind(path)
            listener.settimeout(2)
            notifier = Notifier(socket_path=path, watchdog_usec="")
            notifier.ready("assigned [0]")
            assert listener.recv(4096) == b"READY=1\nSTATUS=assigned [0]"
            notifier.stopping()
            assert listener.recv(4096) == b"STOPPING=1\nSTATUS=stopping"

    def test_watchdog_pings_at_half_interval(self, tmp_path: Path) -> None:
        """WATCHDOG=1 is sent on the first call and not again within half the interval."""
        path = str(tmp_path / "wd.sock")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
            listener.bind(path)
            listener.settimeout(0.2)
            notifier = Notifier(socket_path=path, watchdog_usec="60000000")
            assert notifier.watchdog_interval_s == 30
            notifier.watchdog()
            notifier.watchdog()
            assert listener.recv(4096) == b"WATCHDOG=1"
            with pytest.raises(TimeoutError):
                listener.recv(4096)

    def test_a_declared_wait_keeps_the_watchdog_fed_up_to_its_bound(self, tmp_path: Path) -> None:
        """While the main thread blocks inside waiting(), pings go on at the interval; once the
        wait outlives its bound (a hung call) they stop, so systemd restarts the daemon; a
        progress() report starts the bound again."""
        path = str(tmp_path / "wait.sock")
        clock = PingClock(path)
        try:
            notifier = Notifier(socket_path=path, watchdog_usec="200000")  # ping every 0.1 s
            started = time.monotonic()
            with notifier.waiting("a slow server", bound_s=0.6):
                time.sleep(1.5)  # a blocking call: no ping from this thread
            pings = [t for t in clock.take() if t < started + 1.5]
            # Pings every ~0.1 s until the bound, none in the 0.9 s after it.
            assert len(pings) >= 4
            assert max(b - a for a, b in pairwise([started, *pings])) < 0.25
            assert pings[-1] - started < 0.8

            started = time.monotonic()
            with notifier.waiting("a long restore", bound_s=0.6):
                for _ in range(3):
                    time.sleep(0.4)
                    notifier.progress()  # records keep arriving
                time.sleep(0.4)
            pings = clock.take()
            assert len(pings) >= 10
            assert max(b - a for a, b in pairwise([started, *pings])) < 0.25
        finally:
            clock.close()

    def test_disabled_without_socket(self) -> None:
        """Outside systemd nothing is sent and nothing fails."""
        notifier = Notifier(socket_path="", watchdog_usec="")
        assert not notifier.enabled
        notifier.ready("x")
        notifier.watchdog()


class TestMetricsServer:
    def test_metrics_and_health(self) -> None:
        """/metrics exposes the counters; /healthz is 200 when ok and 503 when degraded."""
        metrics = IngestMetrics()
        metrics.consumed.inc(3)
        metrics.rejected.labels(reason="not_json").inc()
        server = serve(metrics, "127.0.0.1", 0)
        base = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            text = urllib.request.urlopen(f"{base}/metrics").read().decode()  # noqa: S310
            assert "clickstream_ingest_messages_consumed_total 3.0" in text
            assert 'clickstream_ingest_messages_rejected_total{reason="not_json"} 1.0' in text
            metrics.set_health(status="ok")
            health = json.load(urllib.request.urlopen(f"{base}/healthz"))  # noqa: S310
            assert health["status"] == "ok"
            metrics.set_health(status="degraded", reason="hbase down")
            with pytest.raises(urllib.error.HTTPError) as caught:
                urllib.request.urlopen(f"{base}/healthz")  # noqa: S310
            assert caught.value.code == 503
        finally:
            server.shutdown()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
class TestUnits:
    @pytest.mark.parametrize(
        "unit",
        ["clickstream-ingest.service", "clickstream-ingest@.service", "clickstream-serve.service"],
    )
    def test_exposure_at_most_2(self, unit: str) -> None:
        """`systemd-analyze security --offline=yes` rates each unit at 2.0 or better."""
        result = subprocess.run(
            ["systemd-analyze", "security", "--offline=yes", "--threshold=20", str(UNITS / unit)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr
        assert "Overall exposure level" in result.stdout

    def test_units_are_type_notify_with_watchdog(self) -> None:
        """Both units wait for READY=1 and arm the watchdog."""
        for unit in UNITS.glob("clickstream-ingest*.service"):
            text = unit.read_text()
            assert "Type=notify" in text
            assert "WatchdogSec=" in text

    def test_template_instances_are_unique_across_hosts(self) -> None:
        """clickstream-ingest@1 on two hosts must not share a transactional id and a static
        group member id (they would fence each other): the instance name holds the host."""
        text = (UNITS / "clickstream-ingest@.service").read_text()
        (exec_start,) = [line for line in text.splitlines() if line.startswith("ExecStart=")]
        assert exec_start.split("--instance ", 1)[1].split()[0] == "%H-%i"
