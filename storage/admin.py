"""Creating and describing the master dataset table.

Thrift1 (what happybase speaks) cannot create a pre-split table, so table admin runs HBase's own
Java ``Admin`` API through a one-file program (``storage/java/CreateSaltedTable.java``) with the
HBase client classpath: the local stack's by default, ``hbase.classpath`` on a cluster.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

from clickstream.errors import RetriableError, SchemaError
from clickstream.settings import Settings
from commands.stack.fetch import Progress
from commands.stack.servers import HBASE_JDK17_FLAGS, Layout, hbase_classpath, hbase_java
from hbase_schema import FAMILIES
from hbase_schema.late import late_table
from storage.connection import connect
from storage.late import ensure_late_table

PROGRAM = Path(__file__).resolve().parent / "java" / "CreateSaltedTable.java"
FAMILY_MISMATCH = 3


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


def _run(settings: Settings, args: list[str], progress: Progress) -> dict[str, Any]:
    layout = Layout(settings.stack.home)
    classpath = settings.hbase.classpath or hbase_classpath(settings, layout, progress)
    java_home = hbase_java(settings)
    table = settings.hbase.namespace_prefix + settings.hbase.table
    result = subprocess.run(
        [
            str(java_home / "bin" / "java"),
            # The client's netty and unsafe access need these on JDK 17, as the servers do.
            *HBASE_JDK17_FLAGS,
            *_program(java_home, classpath, layout.cache),
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


def create_table(settings: Settings, progress: Progress = print) -> dict[str, Any]:
    """Create the table pre-split at the salt buckets if absent, and its late-event ledger;
    SchemaError if the table exists with other families."""
    report = _run(
        settings,
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
        progress,
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


def describe_table(settings: Settings, progress: Progress = print) -> dict[str, Any]:
    """Families (with their settings) and regions of the table, or ``{"exists": false}``."""
    return _run(settings, ["--describe"], progress)
