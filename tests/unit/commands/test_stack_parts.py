"""Pure parts of the local stack: config templates, JDK detection, pid tracking, port checks."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from string import Template

import pytest

from clickstream.errors import StackError
from commands.stack.java import find_java, java_major
from commands.stack.process import Tracked, port_in_use, tail
from commands.stack.servers import DEPLOY_LOCAL, kafka_cluster_id

# Placeholders each template may use: what servers.py passes when it renders them.
TEMPLATE_KEYS = {
    "kafka/server.properties": {"host", "port", "controller_port", "log_dirs", "num_partitions"},
    "hbase/hbase-site.xml": {
        "host",
        "root_dir",
        "zk_data_dir",
        "tmp_dir",
        "zk_port",
        "master_port",
        "regionserver_port",
    },
    "elasticsearch/elasticsearch.yml": {
        "host",
        "http_port",
        "transport_port",
        "data_dir",
        "logs_dir",
    },
}


class TestTemplates:
    @pytest.mark.parametrize("name", sorted(TEMPLATE_KEYS))
    def test_template_renders_with_the_keys_the_stack_passes(self, name: str) -> None:
        """Every placeholder is one the stack fills in; nothing is left unrendered."""
        template = Template((DEPLOY_LOCAL / name).read_text())
        assert template.is_valid()
        assert set(template.get_identifiers()) <= TEMPLATE_KEYS[name]
        rendered = template.substitute(dict.fromkeys(TEMPLATE_KEYS[name], "VALUE"))
        assert "VALUE" in rendered

    def test_hbase_binds_to_loopback(self) -> None:
        """The local HBase pins its hostnames to the rendered host (127.0.0.1)."""
        text = (DEPLOY_LOCAL / "hbase/hbase-site.xml").read_text()
        assert "hbase.unsafe.stream.capability.enforce" in text


class TestJava:
    def test_reads_major_from_release_file(self, tmp_path: Path) -> None:
        """The release file's JAVA_VERSION gives the major version."""
        (tmp_path / "bin").mkdir()
        (tmp_path / "bin" / "java").touch()
        (tmp_path / "release").write_text('JAVA_VERSION="21.0.2"\n')
        assert java_major(tmp_path) == 21

    def test_explicit_too_old_is_an_error(self, tmp_path: Path) -> None:
        """A configured JDK below the minimum is named in the error."""
        (tmp_path / "bin").mkdir()
        (tmp_path / "bin" / "java").touch()
        (tmp_path / "release").write_text('JAVA_VERSION="17.0.1"\n')
        with pytest.raises(StackError, match=r"stack\.java21_home"):
            find_java(21, tmp_path, "stack.java21_home")


class TestTracked:
    def test_start_stop_by_pid_file(self, tmp_path: Path) -> None:
        """A started process is found by its pid file and stopped with its whole group."""
        tracked = Tracked("sleeper", tmp_path / "run" / "s.pid", str(tmp_path))
        script = f"import time; time.sleep(60)  # {tmp_path}"
        pid = tracked.start([sys.executable, "-c", script], {}, tmp_path / "s.log", tmp_path)
        assert tracked.pid() == pid
        assert tracked.stop(grace_s=5) is True
        assert tracked.pid() is None
        assert not (tmp_path / "run" / "s.pid").exists()

    def test_foreign_pid_is_not_ours(self, tmp_path: Path) -> None:
        """A pid file pointing at a process without our marker is ignored (pid reuse)."""
        other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            pid_file = tmp_path / "x.pid"
            pid_file.write_text(f"{other.pid}\n")
            tracked = Tracked("x", pid_file, "/no/such/marker")
            assert tracked.pid() is None
            assert tracked.stop(grace_s=1) is False
            assert other.poll() is None  # still alive: we never signal what is not ours
        finally:
            other.kill()
            other.wait()


class TestPorts:
    def test_listening_port_is_in_use(self) -> None:
        """A bound, listening socket is detected; a closed one is not."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen()
            port = sock.getsockname()[1]
            assert port_in_use("127.0.0.1", port)
        assert not port_in_use("127.0.0.1", port)


class TestTail:
    def test_last_lines(self, tmp_path: Path) -> None:
        """tail returns the last n lines, and '' for a missing file."""
        log = tmp_path / "a.log"
        log.write_text("\n".join(str(i) for i in range(100)))
        assert tail(log, 3) == "97\n98\n99"
        assert tail(tmp_path / "missing.log") == ""


class TestKafkaClusterId:
    def test_never_starts_with_a_dash(self) -> None:
        """An id starting with '-' reads as an option to kafka-storage (1 fresh machine in 64)."""
        ids = [kafka_cluster_id(bytes([0xF8 + i % 8]) + bytes(15)) for i in range(16)]
        assert all(not cluster.startswith("-") for cluster in ids)
        assert all(len(cluster) == 22 for cluster in ids)

    def test_is_the_base64url_of_the_uuid_otherwise(self) -> None:
        """Kafka's own form: 22 base64url characters of 16 random bytes."""
        assert kafka_cluster_id(bytes(16)) == "A" * 22
