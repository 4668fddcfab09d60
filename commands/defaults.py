"""What the commands fill in when a setting is left empty: the local stack's geo database and
HBase client. The pipeline's modules take these as inputs and never look at the stack."""

from __future__ import annotations

from pathlib import Path

from clickstream.errors import ConfigError
from clickstream.settings import Settings, env_var
from commands.stack.fetch import GEO_VERSION, Progress
from commands.stack.servers import Layout, hbase_classpath, hbase_java
from storage.admin import AdminRuntime


def geo_paths(settings: Settings) -> list[Path]:
    """The geo database files: ``ingest.geoip_database``, else the DB-IP the stack fetched."""
    configured = settings.ingest.geoip_database
    path = configured or Layout(settings.stack.home).cache / f"dbip-city-lite-{GEO_VERSION}"
    files = sorted(path.glob("*.mmdb")) if path.is_dir() else [path] if path.is_file() else []
    if not files:
        raise ConfigError(
            f"no geo database at {path}: set ingest.geoip_database "
            f"({env_var('ingest', 'geoip_database')}) to a .mmdb file or folder, or run "
            "`clickstream stack up`, which fetches DB-IP City Lite"
        )
    return files


def admin_runtime(settings: Settings, progress: Progress = print) -> AdminRuntime:
    """The table admin's JDK and classpath: ``hbase.classpath`` when set (a cluster's
    `hbase classpath`), else the local stack's client jars and hbase-site.xml (fetched once)."""
    layout = Layout(settings.stack.home)
    classpath = settings.hbase.classpath or hbase_classpath(settings, layout, progress)
    return AdminRuntime(hbase_java(settings), classpath, layout.cache)
