"""The secure local stack (``stack.secure = true``): who may do what, and the files that say so.

Pure parts only: the principals and their Kafka ACLs and Elasticsearch roles, the server
configuration overrides, the client settings each principal gets. The side effects (certificates,
password files, formatting, creating ACLs) live in ``commands.stack.secure_setup``.

Every principal authenticates to Kafka with SCRAM-SHA-512 over TLS and to Elasticsearch with a
file-realm user over HTTPS, with one random password per principal. Two more principals are the
stack's own and never given to a client: ``broker`` (Kafka's inter-broker user, a super user, which
also creates the ACLs) and ``stack`` (an Elasticsearch ``superuser``, for the readiness probe).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from clickstream.settings import Settings

#: Kafka's inter-broker user (a super user); the stack creates the ACLs with it.
BROKER_USER = "broker"
#: Elasticsearch superuser of the stack itself (readiness probe); never a client's.
STACK_ES_USER = "stack"
SCRAM_MECHANISM = "SCRAM-SHA-512"
STANDARD_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"


@dataclass(frozen=True, slots=True)
class Acl:
    """One ALLOW rule: ``operation`` on the resource ``(resource, name, pattern)``."""

    resource: str  # TOPIC, GROUP, TRANSACTIONAL_ID, BROKER (the cluster)
    name: str
    pattern: str  # LITERAL or PREFIXED
    operation: str  # READ, WRITE, CREATE, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS, ...


@dataclass(frozen=True, slots=True)
class Principal:
    """A client identity: its Kafka ACLs and its Elasticsearch role (either may be empty)."""

    name: str
    purpose: str
    acls: tuple[Acl, ...] = ()
    es_role: dict[str, object] = field(default_factory=dict)

    @property
    def uses_kafka(self) -> bool:
        """True when the principal has Kafka rights."""
        return bool(self.acls)

    @property
    def uses_elasticsearch(self) -> bool:
        """True when the principal has an Elasticsearch role (named after it)."""
        return bool(self.es_role)


def _topic(name: str, *operations: str, pattern: str = "LITERAL") -> tuple[Acl, ...]:
    return tuple(Acl("TOPIC", name, pattern, op) for op in operations)


def _group(name: str, pattern: str = "LITERAL") -> tuple[Acl, ...]:
    # READ joins the group and commits offsets; DESCRIBE lets the client read them back.
    return (Acl("GROUP", name, pattern, "READ"), Acl("GROUP", name, pattern, "DESCRIBE"))


def _indices(names: list[str], *privileges: str) -> dict[str, object]:
    return {"names": names, "privileges": list(privileges)}


def principals(settings: Settings) -> tuple[Principal, ...]:
    """The client principals of the pipeline, each with the least it needs.

    Topic, group and index names come from the settings, so a renamed topic or index prefix
    moves the rights with it.
    """
    kafka, prefix = settings.kafka, settings.elasticsearch.index_prefix
    clicks, dlq, changelog = kafka.clicks_topic, kafka.dlq_topic, kafka.speed_changelog_topic
    group = settings.ingest.group_id
    speed = [f"{prefix}-speed-*", f"{prefix}-sealed-*"]
    batch_owned = [f"{prefix}-batch-*", f"{prefix}-cube-*", f"{prefix}-state"]
    return (
        Principal(
            "producer",
            "writes clicks",
            acls=_topic(clicks, "WRITE", "DESCRIBE"),
        ),
        Principal(
            "ingest",
            "the ingest daemon and `clickstream seal`: reads clicks, writes the changelog, dead "
            "letters, speed views",
            acls=(
                *_topic(clicks, "READ", "DESCRIBE", "DESCRIBE_CONFIGS"),
                *_topic(changelog, "READ", "WRITE", "DESCRIBE", "DESCRIBE_CONFIGS"),
                *_topic(dlq, "WRITE", "DESCRIBE"),
                *_group(group),
                # The changelog restore's consumer (assign(), never commits) names this group.
                *_group(f"{changelog}-restore"),
                # Each daemon's transactional id is "<group>-<instance>": a prefix covers all.
                Acl("TRANSACTIONAL_ID", f"{group}-", "PREFIXED", "WRITE"),
                Acl("TRANSACTIONAL_ID", f"{group}-", "PREFIXED", "DESCRIBE"),
            ),
            es_role={
                "cluster": ["monitor"],
                "indices": [
                    _indices(speed, "create_index", "write", "read", "view_index_metadata"),
                    _indices([f"{prefix}-state"], "read", "view_index_metadata"),
                    # The boundary is read from the batch index's alias filter.
                    _indices([f"{prefix}-batch-*", f"{prefix}-views"], "view_index_metadata"),
                ],
            },
        ),
        Principal(
            "batch",
            "the Spark batch job: writes the batch and cube views and its state, moves the "
            "boundary alias, drops old speed indices",
            es_role={
                "cluster": ["monitor", "manage_index_templates"],
                "indices": [
                    _indices(batch_owned, "create_index", "write", "read", "manage"),
                    # Moving the alias needs `manage` on every index it covers and on the alias.
                    _indices([*speed, f"{prefix}-views"], "read", "manage", "delete_index"),
                ],
            },
        ),
        Principal(
            "serving",
            "the query API and the dashboard: reads the views",
            es_role={
                "cluster": ["monitor"],
                "indices": [_indices([f"{prefix}-*"], "read", "view_index_metadata")],
            },
        ),
        Principal(
            "admin",
            "`clickstream schema create`: creates the topics, templates and indices",
            acls=(
                *_topic(
                    clicks,
                    "CREATE",
                    "DESCRIBE",
                    "DESCRIBE_CONFIGS",
                    "ALTER_CONFIGS",
                    pattern="PREFIXED",
                ),
            ),
            es_role={
                "cluster": ["monitor", "manage_index_templates"],
                "indices": [
                    _indices([f"{prefix}-*"], "create_index", "manage", "view_index_metadata")
                ],
            },
        ),
        Principal(
            "dlq-reader",
            "reads the dead-letter topic (`clickstream dlq show`)",
            acls=(*_topic(dlq, "READ", "DESCRIBE"), *_group("clickstream-dlq-reader")),
        ),
    )


def es_roles_yml(principals_: tuple[Principal, ...]) -> str:
    """``config/roles.yml``: one role per principal with Elasticsearch rights, named after it.

    Each role is one ``name: {...}`` line, its body in JSON (YAML's flow style): Elasticsearch
    reads the file role by role, each starting at a line's first column (a whole-file JSON
    object is skipped as an invalid role)."""
    lines = [
        f"{p.name}: {json.dumps(p.es_role, sort_keys=True)}"
        for p in principals_
        if p.uses_elasticsearch
    ]
    return "\n".join(lines) + "\n"


def override(text: str, values: dict[str, str], separator: str) -> str:
    """``text`` (``key<sep>value`` lines) with the keys of ``values`` replaced in place and the
    others appended; comments and the order of the rest kept."""
    pending = dict(values)
    lines = []
    for line in text.splitlines():
        key = line.split(separator.strip() or separator, 1)[0].strip()
        if not line.lstrip().startswith("#") and key in pending:
            lines.append(f"{key}{separator}{pending.pop(key)}")
        else:
            lines.append(line)
    lines.extend(f"{key}{separator}{value}" for key, value in pending.items())
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class SecureFiles:
    """Where the secure stack keeps its CA, certificates, passwords and client settings."""

    home: Path

    @property
    def root(self) -> Path:
        """Everything secret or security-related, mode 0700."""
        return self.home / "secure"

    @property
    def ca_cert(self) -> Path:
        """The throwaway CA's certificate (what clients trust)."""
        return self.root / "ca.pem"

    @property
    def ca_key(self) -> Path:
        """The CA's private key (kept so that a certificate can be reissued)."""
        return self.root / "ca-key.pem"

    @property
    def kafka_keystore(self) -> Path:
        """The broker's PKCS#8 key followed by its certificate (ssl.keystore.type=PEM)."""
        return self.root / "kafka-broker.pem"

    @property
    def es_key(self) -> Path:
        """Elasticsearch's node key (HTTP and transport)."""
        return self.root / "es-node.key"

    @property
    def es_cert(self) -> Path:
        """Elasticsearch's node certificate."""
        return self.root / "es-node.crt"

    def password(self, principal: str) -> Path:
        """The password file of one principal (mode 0600)."""
        return self.root / "passwords" / principal

    def client_config(self, principal: str) -> Path:
        """The client settings (TOML, for CLICKSTREAM_CONFIG) of one principal."""
        return self.root / "clients" / f"{principal}.toml"


def kafka_overrides(settings: Settings, files: SecureFiles, broker_password: str) -> dict[str, str]:
    """server.properties entries that make the one listener clients see SASL_SSL + SCRAM.

    The controller listener stays PLAINTEXT on loopback (it cannot use SCRAM: KAFKA-15513), so
    the broker reaches it as ``User:ANONYMOUS``, which must be a super user or the broker never
    registers: anyone on this machine who can reach the controller port is a super user."""
    host, port = settings.kafka.first_broker
    controller = f"CONTROLLER://{host}:{settings.stack.kafka_controller_port}"
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{BROKER_USER}" password="{broker_password}";'
    )
    return {
        "listeners": f"SASL_SSL://{host}:{port},{controller}",
        "advertised.listeners": f"SASL_SSL://{host}:{port},{controller}",
        "inter.broker.listener.name": "SASL_SSL",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL",
        "sasl.enabled.mechanisms": SCRAM_MECHANISM,
        "sasl.mechanism.inter.broker.protocol": SCRAM_MECHANISM,
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": jaas,
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(files.kafka_keystore),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(files.ca_cert),
        "ssl.endpoint.identification.algorithm": "https",
        "ssl.client.auth": "none",
        "authorizer.class.name": STANDARD_AUTHORIZER,
        "super.users": f"User:{BROKER_USER};User:ANONYMOUS",
        "allow.everyone.if.no.acl.found": "false",
    }


#: Where the node's PEM files go inside Elasticsearch's config folder (it reads no file outside).
ES_CERT_DIR = "certs"


def es_overrides() -> dict[str, str]:
    """elasticsearch.yml entries: security on, HTTP and transport TLS from PEM files."""
    key, cert, ca = (f"{ES_CERT_DIR}/{name}" for name in ("node.key", "node.crt", "ca.pem"))
    values = {"xpack.security.enabled": "true"}
    for layer in ("http", "transport"):
        values |= {
            f"xpack.security.{layer}.ssl.enabled": "true",
            f"xpack.security.{layer}.ssl.key": key,
            f"xpack.security.{layer}.ssl.certificate": cert,
            f"xpack.security.{layer}.ssl.certificate_authorities": f'["{ca}"]',
        }
    values["xpack.security.transport.ssl.verification_mode"] = "certificate"
    return values


def client_toml(settings: Settings, files: SecureFiles, principal: Principal) -> str:
    """The client settings of ``principal`` against the secure stack, in the keys of
    ``KafkaSettings`` and ``ElasticsearchSettings`` (password files, never passwords).

    Both sections always: a missing one would mean the defaults, the plain stack's ports. A
    principal without rights in one server still logs in there, and is refused everything."""
    host, port = settings.elasticsearch.host_port
    password_file, ca_file = str(files.password(principal.name)), str(files.ca_cert)
    lines = [
        f"# {principal.name}: {principal.purpose}",
        "# Written by `clickstream stack up`.",
        "",
        "[kafka]",
        f"bootstrap_servers = {_q(settings.kafka.bootstrap_servers)}",
        'security_protocol = "SASL_SSL"',
        f"sasl_mechanism = {_q(SCRAM_MECHANISM)}",
        f"sasl_username = {_q(principal.name)}",
        f"sasl_password_file = {_q(password_file)}",
        f"ssl_ca_file = {_q(ca_file)}",
        "",
        "[elasticsearch]",
        f"url = {_q(f'https://{host}:{port}')}",
        f"index_prefix = {_q(settings.elasticsearch.index_prefix)}",
        f"ca_file = {_q(ca_file)}",
        f"username = {_q(principal.name)}",
        f"password_file = {_q(password_file)}",
    ]
    return "\n".join(lines) + "\n"


def _q(value: str) -> str:
    # A TOML basic string: JSON's escaping is a subset of TOML's.
    return json.dumps(value)
