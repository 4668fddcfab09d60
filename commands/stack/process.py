"""Detached server processes tracked by pid files; stopped by their own process group only."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Tracked:
    """A server process recorded in ``pid_file``; ``marker`` must appear in its command line."""

    name: str
    pid_file: Path
    marker: str

    def pid(self) -> int | None:
        """The recorded pid if that process is alive and still ours (not a reused pid)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _is_ours(pid, self.marker) else None

    def start(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        log_file: Path,
        cwd: Path,
        user: str | None = None,
    ) -> int:
        """Start ``argv`` in a new session (so its whole tree can be signalled) and record it."""
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("ab") as log:
            log.write(f"\n==== {time.strftime('%Y-%m-%dT%H:%M:%S')} start {self.name}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=dict(env),
                start_new_session=True,
                user=user,
                group=user,
            )
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.write_text(f"{proc.pid}\n")
        # Until the child has exec'd, its command line is still ours: wait for the switch so
        # that pid() recognises it straight away.
        deadline = time.monotonic() + 5
        while not _is_ours(proc.pid, self.marker) and time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            time.sleep(0.01)
        return proc.pid

    def signal(self, sig: signal.Signals) -> bool:
        """Send ``sig`` to the server's process group (SIGSTOP freezes it as a network partition
        would, SIGCONT thaws it); True if it was running."""
        pid = self.pid()
        if pid is None:
            return False
        _signal_group(pid, sig)
        return True

    def stop(self, grace_s: float) -> bool:
        """SIGTERM the process group, SIGKILL what is left after ``grace_s``; True if it ran."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        _signal_group(pid, signal.SIGTERM)
        _signal_group(pid, signal.SIGCONT)  # a frozen server (an outage test) must see the TERM
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and _group_members(pid):
            time.sleep(0.2)
        if _group_members(pid):
            _signal_group(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and _group_members(pid):
                time.sleep(0.1)
        _reap(pid)
        self.pid_file.unlink(missing_ok=True)
        return True


def _is_ours(pid: int, marker: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z" and marker.encode() in cmdline


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        # fields[0] is the state, fields[2] the process group id.
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _reap(pid: int) -> None:
    # When this process started the server it is our child: collect it so it leaves no zombie.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def port_in_use(host: str, port: int) -> bool:
    """True if something listens on host:port (a bind test, ignoring TIME_WAIT leftovers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file ('' if it does not exist)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            data = handle.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(data.splitlines()[-lines:])
