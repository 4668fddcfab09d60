"""Creating and describing the master dataset table.

Thrift1 (what happybase speaks) cannot create a pre-split table, so table admin runs HBase's own
Java ``Admin`` API through a one-file program (``storage/java/CreateSaltedTable.java``) with an
HBase client classpath and a JDK, given as an :class:`AdminRuntime`: on a cluster from
``hbase.classpath``; the CLI fills in the local stack's when that is empty.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clickstream.errors import RetriableError, SchemaError
from clickstream.settings import Settings
from hbase_schema import FAMILIES
from hbase_schema.late import late_table
from storage.connection import connect
from storage.late import ensure_late_table

PROGRAM = Path(__file__).resolve().parent / "java" / "CreateSaltedTable.java"
FAMILY_MISMATCH = 3

# What HBase's own bin/hbase adds on JDK 17: its netty and unsafe access need these.
HBASE_JDK17_FLAGS = (
    "-Dorg.apache.hbase.thirdparty.io.netty.tryReflectionSetAccessible=true",
    "--add-modules",
    "jdk.unsupported",
    "--add-opens",
    "java.base/java.io=ALL-UNNAMED",
    "--add-opens",
    "java.base/java.nio=ALL-UNNAMED",
    "--add-opens",
    "java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens",
    "java.base/java.lang=ALL-UNNAMED",
    "--add-opens",
    "java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens",
    "java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens",
    "java.base/java.util=ALL-UNNAMED",
    "--add-opens",
    "java.base/java.util.concurrent=ALL-UNNAMED",
    "--add-exports",
    "java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-exports",
    "java.security.jgss/sun.security.krb5=ALL-UNNAMED",
    "--add-exports",
    "java.base/sun.net.dns=ALL-UNNAMED",
    "--add-exports",
    "java.base/sun.net.util=ALL-UNNAMED",
)


@dataclass(frozen=True, slots=True)
class AdminRuntime:
    """What the table admin program runs with: a JDK >= 17, the HBase client classpath (jars and
    the folder holding hbase-site.xml), and a folder to cache its compiled class in."""

    java_home: Path
    classpath: str
    cache: Path


def _program(java_home: Path, classpath: str, cache: Path) -> list[str]:
    """``-cp ... MAIN`` for the admin program: compiled once with javac when the JDK has it
    (saves ~2 s of compiling per call), else run from source by the JDK's source launcher."""
    javac = java_home / "bin" / "javac"
    if javac.exists():
        digest = hashlib.sha256(PROGRAM.read_bytes()).hexdigest()[:12]
        classes = cache / f"table-admin-{digest}"
        if not (classes / f"{PROGRAM.stem}.class").exists():
            compiled = subprocess.run(
                [str(javac), "-nowarn", "-cp", classpath, "-d", str(classes), str(PROGRAM)],
                capture_output=True,
                text=True,
                check=False,
            )
            if compiled.returncode != 0:
                raise SchemaError(f"cannot compile {PROGRAM.name}:\n{compiled.stderr[-2000:]}")
        return ["-cp", f"{classes}:{classpath}", PROGRAM.stem]
    return ["-cp", classpath, str(PROGRAM)]


def _run(settings: Settings, runtime: AdminRuntime, args: list[str]) -> dict[str, Any]:
    java_home, classpath = runtime.java_home, runtime.classpath
    table = settings.hbase.namespace_prefix + settings.hbase.table
    result = subprocess.run(
        [
            str(java_home / "bin" / "java"),
            # The client's netty and unsafe access need these on JDK 17, as the servers do.
            *HBASE_JDK17_FLAGS,
            *_program(java_home, classpath, runtime.cache),
            "--table",
            table,
            "--zookeeper",
            settings.hbase.zookeeper_quorum,
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )
    if result.returncode == FAMILY_MISMATCH:
        raise SchemaError(result.stderr.strip())
    if result.returncode != 0:
        raise RetriableError(
            f"HBase table admin failed (exit {result.returncode}):\n{result.stderr.strip()[-2000:]}"
        )
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RetriableError(f"HBase table admin printed no result:\n{result.stdout[-2000:]}")
    parsed: dict[str, Any] = json.loads(lines[-1])
    return parsed


def create_table(settings: Settings, runtime: AdminRuntime) -> dict[str, Any]:
    """Create the table pre-split at the salt buckets if absent, and its late-event ledger;
    SchemaError if the table exists with other families."""
    report = _run(
        settings,
        runtime,
        [
            "--families",
            ",".join(FAMILIES),
            "--salt-buckets",
            str(settings.hbase.salt_buckets),
            "--compression",
            settings.hbase.compression,
            "--ttl-seconds",
            str(settings.hbase.ttl_seconds),
        ],
    )
    report["late_table"] = {
        "name": late_table(settings.hbase.table),
        "created": ensure_late_table(settings.hbase),
    }
    return report


def drop_tables(settings: Settings) -> None:
    """Drop the table and its ledger if they exist (tests and benchmarks clean up with this)."""
    connection = connect(settings.hbase)
    try:
        existing = set(connection.tables())
        for name in (settings.hbase.table, late_table(settings.hbase.table)):
            if name.encode() in existing:
                connection.delete_table(name, disable=True)
    finally:
        connection.close()


def describe_table(settings: Settings, runtime: AdminRuntime) -> dict[str, Any]:
    """Families (with their settings) and regions of the table, or ``{"exists": false}``."""
    return _run(settings, runtime, ["--describe"])
