"""The local stack's servers: how each is fetched, configured, launched and probed.

Each server runs as a plain JVM bound to 127.0.0.1 from jars Maven fetched (no Docker here), with
heaps sized for a 2-core machine. Config templates live beside each pom in ``deploy/local/``.
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import shutil
import subprocess
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

from clickstream.errors import StackError
from clickstream.settings import Settings, env_var
from commands.stack.certs import write_private
from commands.stack.fetch import Progress, maven_jars, maven_zip
from commands.stack.java import find_java
from commands.stack.secure import (
    BROKER_USER,
    STACK_ES_USER,
    es_overrides,
    kafka_overrides,
    override,
)
from commands.stack.secure_setup import (
    ensure_material,
    es_request,
    files_of,
    kafka_client_config,
    password,
    prepare_es_security,
    scram_format_args,
)
from storage.admin import HBASE_JDK17_FLAGS

DEPLOY_LOCAL = Path(__file__).resolve().parents[2] / "deploy" / "local"

# Jars that arrive transitively but would bind slf4j/log4j a second time.
HBASE_UNWANTED_JARS = (
    "reload4j-*.jar",
    "slf4j-reload4j-*.jar",
    "slf4j-log4j12-*.jar",
    "log4j-1.2.*.jar",
)


@dataclass(frozen=True, slots=True)
class Port:
    """A port a server listens on, and the setting that moves it."""

    host: str
    port: int
    setting: str

    def describe(self) -> str:
        """``host:port (setting, env VAR)`` for messages."""
        section, key = self.setting.split(".", 1)
        return f"{self.host}:{self.port} ({self.setting}, env {env_var(section, key)})"


@dataclass(frozen=True, slots=True)
class Launch:
    """Everything needed to start one server process."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    user: str | None = None


@dataclass(frozen=True, slots=True)
class Layout:
    """Where the stack keeps things under ``stack.home``."""

    home: Path

    @property
    def cache(self) -> Path:
        """Downloads, kept across ``down``/``up``."""
        return self.home / "cache"

    def conf(self, name: str) -> Path:
        """Rendered configuration of one server."""
        return self.home / "conf" / name

    def data(self, name: str) -> Path:
        """Data directory of one server."""
        return self.home / "data" / name

    def log(self, name: str) -> Path:
        """Console log (stdout + stderr) of one server."""
        return self.home / "logs" / f"{name}.log"

    def pid(self, name: str) -> Path:
        """Pid file of one server."""
        return self.home / "run" / f"{name}.pid"


@dataclass(frozen=True)
class Server:
    """One server of the stack."""

    name: str
    ports: Callable[[Settings], list[Port]]
    prepare: Callable[[Settings, Layout, Progress], Launch]
    probe: Callable[[Settings], str]
    depends_on: tuple[str, ...] = field(default=())


def _render(template: Path, target: Path, **values: object) -> None:
    text = Template(template.read_text()).substitute({k: str(v) for k, v in values.items()})
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def kafka_cluster_id(random16: bytes) -> str:
    """A KRaft cluster id from 16 random bytes: base64url like Kafka's own ``Uuid``, which (like
    Kafka) never starts with '-', or kafka-storage would read it as an option."""
    cluster_id = base64.urlsafe_b64encode(random16).decode().rstrip("=")
    # Kafka redraws such ids; flipping the first byte's top bit keeps this one deterministic.
    if cluster_id.startswith("-"):
        return kafka_cluster_id(bytes([random16[0] ^ 0x80]) + random16[1:])
    return cluster_id


def _base_env(java_home: Path) -> dict[str, str]:
    return {
        "PATH": f"{java_home / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "JAVA_HOME": str(java_home),
        "LANG": "C.UTF-8",
    }


# ---------------------------------------------------------------- Kafka


def _kafka_ports(s: Settings) -> list[Port]:
    host, port = s.kafka.first_broker
    return [
        Port(host, port, "kafka.bootstrap_servers"),
        Port(host, s.stack.kafka_controller_port, "stack.kafka_controller_port"),
    ]


def _kafka_prepare(s: Settings, layout: Layout, progress: Progress) -> Launch:
    lib = maven_jars(DEPLOY_LOCAL / "kafka" / "pom.xml", layout.cache, "kafka", progress)
    java_home = find_java(17, s.stack.java17_home, "stack.java17_home")
    host, port = s.kafka.first_broker
    conf, data = layout.conf("kafka"), layout.data("kafka")
    _render(
        DEPLOY_LOCAL / "kafka" / "server.properties",
        conf / "server.properties",
        host=host,
        port=port,
        controller_port=s.stack.kafka_controller_port,
        log_dirs=data,
        num_partitions=s.kafka.partitions,
    )
    scram_args: list[str] = []
    if s.stack.secure:
        files = ensure_material(s)
        properties = conf / "server.properties"
        secured = override(
            properties.read_text(),
            kafka_overrides(s, files, password(files, BROKER_USER)),
            "=",
        )
        # It holds the broker's password (its JAAS line).
        write_private(properties, secured.encode())
        scram_args = scram_format_args(s, files)
    shutil.copyfile(DEPLOY_LOCAL / "kafka" / "log4j2.properties", conf / "log4j2.properties")
    java = str(java_home / "bin" / "java")
    classpath = f"{lib}/*"
    if not (data / "meta.properties").exists():
        cluster_id = kafka_cluster_id(uuid.uuid4().bytes)
        progress("formatting Kafka storage (KRaft) ...")
        result = subprocess.run(
            [
                java,
                "-cp",
                classpath,
                "-Dlog4j2.configurationFile=" + str(conf / "log4j2.properties"),
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(conf / "server.properties"),
                "--standalone",
                "-g",
                *scram_args,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            # With SCRAM users the tool prints their salted keys: its output is never shown.
            output = (
                "(output withheld: it carries the SCRAM credentials)"
                if scram_args
                else result.stdout + result.stderr
            )
            raise StackError(
                f"formatting Kafka storage failed (exit {result.returncode}):\n{output}"
            )
    return Launch(
        argv=[
            java,
            f"-Xms{s.stack.kafka_heap}",
            f"-Xmx{s.stack.kafka_heap}",
            "-XX:+UseG1GC",
            # A server out of heap dies visibly (status: DOWN) instead of limping on.
            "-XX:+ExitOnOutOfMemoryError",
            "-Dlog4j2.configurationFile=" + str(conf / "log4j2.properties"),
            "-cp",
            classpath,
            "kafka.Kafka",
            str(conf / "server.properties"),
        ],
        env=_base_env(java_home),
        cwd=layout.home,
    )


def _kafka_probe(s: Settings) -> str:
    from confluent_kafka.admin import AdminClient  # noqa: PLC0415 - keeps CLI start fast

    # log_level 0: while the broker starts, librdkafka would print every refused connect.
    client = (
        kafka_client_config(s, files_of(s), BROKER_USER)
        if s.stack.secure
        else s.kafka.client_config()
    )
    admin = AdminClient({**client, "socket.timeout.ms": 3000, "log_level": 0})
    metadata = admin.list_topics(timeout=3)
    if not metadata.brokers:
        raise StackError("no broker in the metadata yet")
    return f"{len(metadata.brokers)} broker(s), {len(metadata.topics)} topic(s)"


# ---------------------------------------------------------------- HBase + Thrift


def _hbase_ports(s: Settings) -> list[Port]:
    zk_host, _, zk_port = s.hbase.zookeeper_quorum.split(",")[0].rpartition(":")
    return [
        Port(zk_host or "127.0.0.1", int(zk_port), "hbase.zookeeper_quorum"),
        Port("127.0.0.1", s.stack.hbase_master_port, "stack.hbase_master_port"),
        Port("127.0.0.1", s.stack.hbase_regionserver_port, "stack.hbase_regionserver_port"),
    ]


def hbase_classpath(s: Settings, layout: Layout, progress: Progress) -> str:
    """``conf:lib/*`` of the local HBase (fetched if needed), for the servers and the admin."""
    lib = maven_jars(DEPLOY_LOCAL / "hbase" / "pom.xml", layout.cache, "hbase", progress)
    for pattern in HBASE_UNWANTED_JARS:
        for jar in lib.glob(pattern):
            if not jar.name.startswith("log4j-1.2-api"):
                jar.unlink()
    conf, data = layout.conf("hbase"), layout.data("hbase")
    zk_port = int(s.hbase.zookeeper_quorum.split(",")[0].rpartition(":")[2])
    _render(
        DEPLOY_LOCAL / "hbase" / "hbase-site.xml",
        conf / "hbase-site.xml",
        host="127.0.0.1",
        root_dir=data / "root",
        zk_data_dir=data / "zookeeper",
        tmp_dir=data / "tmp",
        zk_port=zk_port,
        master_port=s.stack.hbase_master_port,
        regionserver_port=s.stack.hbase_regionserver_port,
    )
    shutil.copyfile(DEPLOY_LOCAL / "hbase" / "log4j2.properties", conf / "log4j2.properties")
    return f"{conf}:{lib}/*"


def hbase_java(s: Settings) -> Path:
    """The JDK that runs HBase (17..21: HBase 2.6 is not tested on newer ones)."""
    return find_java(17, s.stack.java17_home, "stack.java17_home", maximum=21)


def _hbase_launch(
    s: Settings, layout: Layout, progress: Progress, main: list[str], heap: str
) -> Launch:
    classpath = hbase_classpath(s, layout, progress)
    java_home = hbase_java(s)
    conf = layout.conf("hbase")
    return Launch(
        argv=[
            str(java_home / "bin" / "java"),
            f"-Xms{heap}",
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            # A server out of heap dies visibly (status: DOWN) instead of limping on.
            "-XX:+ExitOnOutOfMemoryError",
            *HBASE_JDK17_FLAGS,
            "-Dlog4j2.configurationFile=" + str(conf / "log4j2.properties"),
            "-cp",
            classpath,
            *main,
        ],
        env=_base_env(java_home),
        cwd=layout.home,
    )


def _hbase_prepare(s: Settings, layout: Layout, progress: Progress) -> Launch:
    return _hbase_launch(
        s, layout, progress, ["org.apache.hadoop.hbase.master.HMaster", "start"], s.stack.hbase_heap
    )


def _thrift_ports(s: Settings) -> list[Port]:
    return [Port(s.hbase.host, s.hbase.port, "hbase.port")]


def _thrift_prepare(s: Settings, layout: Layout, progress: Progress) -> Launch:
    main = [
        "org.apache.hadoop.hbase.thrift.ThriftServer",
        "-b",
        s.hbase.host,
        "-p",
        str(s.hbase.port),
        "--infoport",
        "-1",
        "-threadpool",
        "start",
    ]
    return _hbase_launch(s, layout, progress, main, s.stack.thrift_heap)


def _hbase_probe(s: Settings) -> str:
    import happybase  # noqa: PLC0415

    # getTableNames goes through the Thrift server to the master: both must be up.
    connection = happybase.Connection(s.hbase.host, s.hbase.port, timeout=5000, autoconnect=False)
    try:
        connection.open()
        tables = connection.tables()
    finally:
        connection.close()
    return f"{len(tables)} table(s)"


# ---------------------------------------------------------------- Elasticsearch


def _es_ports(s: Settings) -> list[Port]:
    host, port = s.elasticsearch.host_port
    return [
        Port(host, port, "elasticsearch.url"),
        Port(host, s.stack.elasticsearch_transport_port, "stack.elasticsearch_transport_port"),
    ]


def _ensure_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    if os.geteuid() != 0:
        raise StackError(
            f"user {name} does not exist and only root can create it; create it or set "
            f"stack.elasticsearch_user ({env_var('stack', 'elasticsearch_user')}) to yours"
        )
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(name)


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for entry in dirs + files:
            os.chown(Path(root) / entry, uid, gid, follow_symlinks=False)


def _es_prepare(s: Settings, layout: Layout, progress: Progress) -> Launch:
    es_home = maven_zip(
        DEPLOY_LOCAL / "elasticsearch" / "pom.xml", layout.cache, "elasticsearch", progress
    )
    java_home = find_java(21, s.stack.java21_home, "stack.java21_home")
    conf, data = layout.conf("elasticsearch"), layout.data("elasticsearch")
    # Elasticsearch refuses to run as root: as root, run it as an unprivileged system user.
    run_as = _ensure_user(s.stack.elasticsearch_user) if os.geteuid() == 0 else None
    if conf.exists():
        shutil.rmtree(conf)
    shutil.copytree(es_home / "config", conf)
    host, port = s.elasticsearch.host_port
    _render(
        DEPLOY_LOCAL / "elasticsearch" / "elasticsearch.yml",
        conf / "elasticsearch.yml",
        host=host,
        http_port=port,
        transport_port=s.stack.elasticsearch_transport_port,
        data_dir=data / "data",
        logs_dir=data / "logs",
    )
    env = {
        **_base_env(java_home),
        "ES_JAVA_HOME": str(java_home),
        "ES_PATH_CONF": str(conf),
        "ES_TMPDIR": str(data / "tmp"),
        "ES_JAVA_OPTS": f"-Xms{s.stack.elasticsearch_heap} -Xmx{s.stack.elasticsearch_heap}",
        "HOME": str(data),
    }
    if s.stack.secure:
        files = ensure_material(s)
        yml = conf / "elasticsearch.yml"
        yml.write_text(override(yml.read_text(), es_overrides(), ": "))
        # The user tool is a short JVM: a small heap, not the node's.
        prepare_es_security(s, files, es_home, conf, {**env, "ES_JAVA_OPTS": "-Xms64m -Xmx128m"})
    (data / "data").mkdir(parents=True, exist_ok=True)
    (data / "logs").mkdir(parents=True, exist_ok=True)
    (data / "tmp").mkdir(parents=True, exist_ok=True)
    if run_as is not None:
        for path in (conf, data):
            _chown_tree(path, run_as.pw_uid, run_as.pw_gid)
        _check_traversable(layout.home, run_as.pw_name)
    return Launch(
        argv=[str(es_home / "bin" / "elasticsearch")],
        env=env,
        cwd=data,
        user=run_as.pw_name if run_as else None,
    )


def _check_traversable(path: Path, user: str) -> None:
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.stat().st_mode & 0o001:
            raise StackError(
                f"{parent} is not traversable by user {user}, who runs Elasticsearch; choose a "
                f"stack home outside it ({env_var('stack', 'home')})"
            )


def _es_probe(s: Settings) -> str:
    if s.stack.secure:
        health = es_request(s, files_of(s), STACK_ES_USER, "/_cluster/health")
    else:
        url = f"{s.elasticsearch.url}/_cluster/health"
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - http(s) checked
            health = json.load(response)
    if health.get("status") not in ("green", "yellow"):
        raise StackError(f"cluster health is {health.get('status')}")
    return f"cluster {health['cluster_name']} {health['status']}"


SERVERS: tuple[Server, ...] = (
    Server("kafka", _kafka_ports, _kafka_prepare, _kafka_probe),
    Server("hbase", _hbase_ports, _hbase_prepare, _hbase_probe),
    Server("thrift", _thrift_ports, _thrift_prepare, _hbase_probe, depends_on=("hbase",)),
    Server("elasticsearch", _es_ports, _es_prepare, _es_probe),
)


def active_servers(settings: Settings) -> tuple[Server, ...]:
    """The servers this stack runs: all, or without HBase and Thrift when ``stack.hbase`` is
    false."""
    if settings.stack.hbase:
        return SERVERS
    return tuple(server for server in SERVERS if server.name not in ("hbase", "thrift"))
