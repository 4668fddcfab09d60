"""Creating and describing the master dataset table.

Thrift1 (what happybase speaks) cannot create a pre-split table, so table admin runs HBase's own
Java ``Admin`` API through a one-file program (``storage/java/CreateSaltedTable.java``) with the
HBase client classpath: the local stack's by default, ``hbase.classpath`` on a cluster.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from clickstream.errors import RetriableError, SchemaError
from clickstream.settings import Settings
from clickstream.stack.fetch import Progress
from clickstream.stack.servers import Layout, hbase_classpath, hbase_java
from hbase_schema import FAMILIES

PROGRAM = Path(__file__).resolve().parent / "java" / "CreateSaltedTable.java"
FAMILY_MISMATCH = 3


def _run(settings: Settings, args: list[str], progress: Progress) -> dict[str, Any]:
    classpath = settings.hbase.classpath or hbase_classpath(
        settings, Layout(settings.stack.home), progress
    )
    java = hbase_java(settings) / "bin" / "java"
    table = settings.hbase.namespace_prefix + settings.hbase.table
    result = subprocess.run(
        [
            str(java),
            "-cp",
            classpath,
            str(PROGRAM),
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
    """Create the table pre-split at the salt buckets if absent; SchemaError if it differs."""
    return _run(
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


def describe_table(settings: Settings, progress: Progress = print) -> dict[str, Any]:
    """Families (with their settings) and regions of the table, or ``{"exists": false}``."""
    return _run(settings, ["--describe"], progress)
