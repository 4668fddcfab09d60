"""The side effects of the secure local stack: certificates, passwords, SCRAM users at format
time, Elasticsearch file-realm users and roles, Kafka ACLs, client settings files.

Nothing here prints or logs a password or a salted key: the passwords live in 0600 files under
``<stack.home>/secure`` and reach the servers only as their configuration requires.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import ssl
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from clickstream.errors import StackError
from clickstream.settings import Settings
from commands.stack.certs import Issued, issue_server, make_ca, write_private
from commands.stack.secure import (
    BROKER_USER,
    ES_CERT_DIR,
    SCRAM_MECHANISM,
    STACK_ES_USER,
    Acl,
    Principal,
    SecureFiles,
    client_toml,
    es_roles_yml,
    principals,
)

LOOPBACK_NAMES = ("localhost",)
LOOPBACK_IPS = ("127.0.0.1",)


def files_of(settings: Settings) -> SecureFiles:
    """The secure files of the stack at ``settings.stack.home``."""
    return SecureFiles(settings.stack.home)


def ensure_material(settings: Settings) -> SecureFiles:
    """CA, server certificates, one password per principal and the client settings files;
    existing ones are kept (the servers were set up with them)."""
    files = files_of(settings)
    files.root.mkdir(parents=True, exist_ok=True)
    files.root.chmod(0o700)
    if not files.ca_cert.exists():
        ca = make_ca()
        write_private(files.ca_key, ca.key_pem)
        write_private(files.ca_cert, ca.cert_pem)
        files.ca_cert.chmod(0o644)
        _issue(files, ca)
    for name in _all_users(settings):
        path = files.password(name)
        if not path.exists():
            # Hex: no character the format tool's [name=...,password=...] syntax would split on.
            write_private(path, secrets.token_hex(24).encode())
    for principal in principals(settings):
        write_private(
            files.client_config(principal.name), client_toml(settings, files, principal).encode()
        )
    return files


def _issue(files: SecureFiles, ca: Issued) -> None:
    broker = issue_server(ca, "kafka-broker", LOOPBACK_NAMES, LOOPBACK_IPS)
    write_private(files.kafka_keystore, broker.key_pem + broker.cert_pem)
    node = issue_server(ca, "elasticsearch-node", LOOPBACK_NAMES, LOOPBACK_IPS)
    write_private(files.es_key, node.key_pem)
    write_private(files.es_cert, node.cert_pem)


def _all_users(settings: Settings) -> list[str]:
    return [BROKER_USER, STACK_ES_USER, *(p.name for p in principals(settings))]


def password(files: SecureFiles, name: str) -> str:
    """The password of ``name`` (from its 0600 file)."""
    return files.password(name).read_text().strip()


# ---------------------------------------------------------------- Kafka


def scram_format_args(settings: Settings, files: SecureFiles) -> list[str]:
    """``--add-scram`` arguments of ``kafka-storage format``: the broker and every client
    principal get a SCRAM-SHA-512 credential (a principal without ACLs can log in, no more)."""
    users = [BROKER_USER, *(p.name for p in principals(settings))]
    args: list[str] = []
    for name in users:
        args += ["--add-scram", f"{SCRAM_MECHANISM}=[name={name},password={password(files, name)}]"]
    return args


def kafka_client_config(settings: Settings, files: SecureFiles, user: str) -> dict[str, str]:
    """librdkafka settings of ``user`` against the secure broker (holds a password)."""
    return {
        "bootstrap.servers": settings.kafka.bootstrap_servers,
        "security.protocol": "sasl_ssl",
        "sasl.mechanisms": SCRAM_MECHANISM,
        "sasl.username": user,
        "sasl.password": password(files, user),
        "ssl.ca.location": str(files.ca_cert),
    }


def create_acls(settings: Settings, files: SecureFiles) -> int:
    """Create every principal's ACLs (as the broker user); the number of bindings. Creating an
    existing binding is a no-op, so this runs on every ``stack up``."""
    # The ACL types are public in confluent_kafka.admin but not re-exported for type checkers.
    from confluent_kafka.admin import AdminClient  # noqa: PLC0415 - keeps CLI start fast
    from confluent_kafka.admin._acl import (  # noqa: PLC0415
        AclBinding,
        AclOperation,
        AclPermissionType,
    )
    from confluent_kafka.admin._resource import (  # noqa: PLC0415
        ResourcePatternType,
        ResourceType,
    )

    admin = AdminClient({**kafka_client_config(settings, files, BROKER_USER), "log_level": 0})
    bindings = [
        AclBinding(
            ResourceType[acl.resource],
            acl.name,
            ResourcePatternType[acl.pattern],
            f"User:{principal.name}",
            "*",
            AclOperation[acl.operation],
            AclPermissionType.ALLOW,
        )
        for principal in principals(settings)
        for acl in principal.acls
    ]
    for binding, future in admin.create_acls(bindings, request_timeout=30).items():
        try:
            future.result()
        except Exception as exc:
            raise StackError(f"creating the Kafka ACL {binding} failed: {exc}") from exc
    return len(bindings)


def acl_summary(principal: Principal) -> list[str]:
    """``OPERATION RESOURCE name (pattern)`` lines, for the README and ``--help`` texts."""
    return [_describe(acl) for acl in principal.acls]


def _describe(acl: Acl) -> str:
    pattern = "" if acl.pattern == "LITERAL" else f" ({acl.pattern.lower()})"
    return f"{acl.operation} {acl.resource} {acl.name}{pattern}"


# ---------------------------------------------------------------- Elasticsearch


def prepare_es_security(
    settings: Settings, files: SecureFiles, es_home: Path, conf: Path, env: dict[str, str]
) -> None:
    """Copy the node's PEM files into ``conf`` (Elasticsearch reads no file outside it), write
    ``roles.yml`` and create the file-realm users with ``bin/elasticsearch-users``."""
    certs = conf / ES_CERT_DIR
    certs.mkdir(mode=0o700, exist_ok=True)
    for source, name in (
        (files.es_key, "node.key"),
        (files.es_cert, "node.crt"),
        (files.ca_cert, "ca.pem"),
    ):
        shutil.copyfile(source, certs / name)
        (certs / name).chmod(0o600)
    (conf / "roles.yml").write_text(es_roles_yml(principals(settings)))
    # Every principal logs in (a client's settings always name both servers); one without a
    # role is refused every action.
    users = [(STACK_ES_USER, "superuser")] + [
        (p.name, p.name if p.uses_elasticsearch else None) for p in principals(settings)
    ]
    tool = es_home / "bin" / "elasticsearch-users"
    for name, role in users:
        # The password goes on stdin, not in argv where `ps` would show it.
        secret = password(files, name)
        result = subprocess.run(
            [str(tool), "useradd", name, *(["-r", role] if role else [])],
            input=f"{secret}\n{secret}\n",
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(
                f"elasticsearch-users useradd {name} failed:\n{result.stdout}{result.stderr}"
            )


def es_request(
    settings: Settings, files: SecureFiles, user: str, path: str, timeout: float = 5
) -> Any:
    """GET ``path`` on the secure node as ``user``; the JSON answer."""
    host, port = settings.elasticsearch.host_port
    context = ssl.create_default_context(cafile=str(files.ca_cert))
    token = base64.b64encode(f"{user}:{password(files, user)}".encode()).decode()
    request = urllib.request.Request(
        f"https://{host}:{port}{path}", headers={"Authorization": f"Basic {token}"}
    )
    with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310
        return json.load(response)
