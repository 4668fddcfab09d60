"""``clickstream stack up|down|status|logs``: the local development stack as one unit."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from clickstream.errors import StackError
from clickstream.settings import Settings
from commands.stack.fetch import Progress, geo_database
from commands.stack.process import Tracked, port_in_use, tail
from commands.stack.secure_setup import create_acls, files_of
from commands.stack.servers import Layout, Server, active_servers


@dataclass(frozen=True, slots=True)
class ServerStatus:
    """One line of ``stack status``."""

    name: str
    pid: int | None
    ports: str
    healthy: bool
    detail: str


class Stack:
    """The local stack described by ``settings.stack``; every process it starts has a pid file."""

    def __init__(self, settings: Settings, progress: Progress = print) -> None:
        self.settings = settings
        self.layout = Layout(settings.stack.home)
        self.progress = progress
        self.servers = active_servers(settings)

    def _tracked(self, server: Server) -> Tracked:
        # The stack home appears in every server's command line (classpath or config path),
        # so a reused pid of someone else's process is never mistaken for ours.
        return Tracked(server.name, self.layout.pid(server.name), str(self.layout.home))

    def up(self) -> list[ServerStatus]:
        """Fetch, start and wait for every server not already running; a no-op when all are."""
        self._make_home()
        geo_database(self.layout.cache, self.progress)
        to_start = [server for server in self.servers if self._tracked(server).pid() is None]
        # Check every port before starting anything, so a conflict leaves nothing half-started.
        for server in to_start:
            self._check_ports(server)
        for server in to_start:
            launch = server.prepare(self.settings, self.layout, self.progress)
            pid = self._tracked(server).start(
                launch.argv, launch.env, self.layout.log(server.name), launch.cwd, launch.user
            )
            self.progress(f"started {server.name} (pid {pid})")
        for server in self.servers:
            self._wait_ready(server)
        if self.settings.stack.secure:
            count = create_acls(self.settings, files_of(self.settings))
            self.progress(
                f"Kafka ACLs in force ({count}); client settings in "
                f"{files_of(self.settings).client_config('*')}"
            )
        return self.status()

    def down(self) -> list[str]:
        """Stop the servers this stack started (by pid file), in reverse order; names stopped."""
        stopped = []
        for server in reversed(self.servers):
            if self._tracked(server).stop(self.settings.stack.stop_timeout_s):
                self.progress(f"stopped {server.name}")
                stopped.append(server.name)
        still = [
            p.describe()
            for s in self.servers
            for p in s.ports(self.settings)
            if port_in_use(p.host, p.port)
        ]
        if still:
            raise StackError("after down, ports are still in use: " + ", ".join(still))
        return stopped

    def stop_server(self, name: str) -> bool:
        """Stop one server (by its pid file), e.g. to test an outage; True if it was running."""
        return self._tracked(self._server(name)).stop(self.settings.stack.stop_timeout_s)

    @contextlib.contextmanager
    def frozen(self, name: str) -> Iterator[None]:
        """One server frozen (SIGSTOP to its process group, by its pid file) for the block, then
        thawed: the blackholed case, which is what a network partition looks like to a client
        (connections stay open, nothing answers)."""
        tracked = self._tracked(self._server(name))
        if not tracked.signal(signal.SIGSTOP):
            raise StackError(f"{name} is not running: cannot freeze it")
        try:
            yield
        finally:
            tracked.signal(signal.SIGCONT)

    def _server(self, name: str) -> Server:
        for server in self.servers:
            if server.name == name:
                return server
        raise StackError(f"unknown server {name!r}; choose from {[s.name for s in self.servers]}")

    def status(self) -> list[ServerStatus]:
        """Each server's pid, ports and the answer of its readiness probe."""
        rows = []
        for server in self.servers:
            pid = self._tracked(server).pid()
            ports = ", ".join(str(p.port) for p in server.ports(self.settings))
            if pid is None:
                rows.append(ServerStatus(server.name, None, ports, False, "not running"))
                continue
            try:
                rows.append(
                    ServerStatus(server.name, pid, ports, True, server.probe(self.settings))
                )
            except Exception as exc:  # noqa: BLE001 - any probe failure means "not healthy"
                rows.append(ServerStatus(server.name, pid, ports, False, _short(exc)))
        return rows

    def is_up(self) -> bool:
        """True when every server runs and answers."""
        return all(row.healthy for row in self.status())

    def logs(self, name: str | None, lines: int) -> Iterator[tuple[str, str]]:
        """(server, last lines of its log) for one server or all."""
        names = [s.name for s in self.servers]
        if name is not None and name not in names:
            raise StackError(f"unknown server {name!r}; choose from {', '.join(names)}")
        for server in names:
            if name in (None, server):
                yield server, tail(self.layout.log(server), lines)

    def follow(self, name: str | None, poll_s: float = 0.5) -> Iterator[tuple[str, str]]:
        """(server, new log line) as the logs grow, like ``tail -f``; runs until interrupted."""
        names = [s.name for s in self.servers if name in (None, s.name)]
        # Sizes now, not at the first next(): lines written from this call on are all shown.
        offsets = {n: _size(self.layout.log(n)) for n in names}
        return self._follow(names, offsets, poll_s)

    def _follow(
        self, names: list[str], offsets: dict[str, int], poll_s: float
    ) -> Iterator[tuple[str, str]]:
        while True:
            for server in names:
                path = self.layout.log(server)
                size = _size(path)
                if size < offsets[server]:  # truncated or replaced: start over
                    offsets[server] = 0
                if size > offsets[server]:
                    with path.open("rb") as handle:
                        handle.seek(offsets[server])
                        chunk = handle.read(size - offsets[server])
                    # Only whole lines: a partial last line waits for the next round.
                    complete = chunk[: chunk.rfind(b"\n") + 1]
                    offsets[server] += len(complete)
                    for line in complete.decode(errors="replace").splitlines():
                        yield server, line
            time.sleep(poll_s)

    def log_path(self, name: str) -> Path:
        """The console log file of one server."""
        return self.layout.log(name)

    def geo_dir(self) -> Path:
        """The folder holding the DB-IP City Lite databases (fetched if needed)."""
        return geo_database(self.layout.cache, self.progress)

    def _make_home(self) -> None:
        home = self.layout.home
        home.mkdir(parents=True, exist_ok=True)
        # Elasticsearch runs as another user and must traverse the home to reach its folders.
        home.chmod(0o755)

    def _check_ports(self, server: Server) -> None:
        for port in server.ports(self.settings):
            if port_in_use(port.host, port.port):
                raise StackError(
                    f"cannot start {server.name}: port {port.describe()} is already in use by "
                    "a process this stack did not start; stop it or move the port with that setting"
                )

    def _wait_ready(self, server: Server) -> None:
        tracked = self._tracked(server)
        deadline = time.monotonic() + self.settings.stack.start_timeout_s
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            if tracked.pid() is None:
                raise self._failure(server, "exited during start-up")
            try:
                detail = server.probe(self.settings)
            except Exception as exc:  # noqa: BLE001 - keep probing until the deadline
                last_error = _short(exc)
                time.sleep(1)
                continue
            self.progress(f"{server.name} is ready: {detail}")
            return
        raise self._failure(
            server, f"did not answer within {self.settings.stack.start_timeout_s}s ({last_error})"
        )

    def _failure(self, server: Server, what: str) -> StackError:
        log = self.layout.log(server.name)
        return StackError(f"{server.name} {what}. Last lines of {log}:\n{tail(log, 30)}")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:200]
