"""Secrets and transport security shared by the settings and the clients that use them.

Secrets read from files (systemd credentials, Kubernetes secrets) and URLs that may carry a
``user:password@`` are handled here so that no message built from settings ever quotes a secret.
Warnings about a weakened transport (certificate checks off) are logged once per process.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

#: Largest secret file read (a password, an API key); a larger one is a wrong path.
MAX_SECRET_BYTES = 64 * 1024

#: Warnings already logged by this process (each weakened setting is reported once, however many
#: times the settings are built).
_warned: set[str] = set()


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (a loopback address or ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def redact_url(url: str) -> str:
    """``url`` with its userinfo (``user:password@``) replaced by ``***@``: safe in a message.

    Everything up to the last ``@`` after the scheme goes, so a password holding a raw ``@`` or
    ``/`` is masked too (at worst a URL with ``@`` in its path is over-masked).
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    if "@" not in rest:
        return url
    return f"{scheme}{sep}***@{rest.rpartition('@')[2]}"


def read_secret_file(path: Path, setting: str) -> str:
    """The secret held in ``path`` (given as ``setting``), its trailing newline stripped.

    Errors name the setting and the path, never any of the file's content.
    """
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_SECRET_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ValueError(f"cannot read {setting} {path}: {reason}") from None
    if len(raw) > MAX_SECRET_BYTES:
        raise ValueError(f"{setting} {path} is larger than {MAX_SECRET_BYTES} bytes: not a secret")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{setting} {path} is not UTF-8 text") from None
    secret = text.rstrip("\r\n")
    if not secret:
        raise ValueError(f"{setting} {path} is empty")
    return secret


def check_readable_file(path: Path, setting: str, what: str) -> Path:
    """``path`` if it is a readable file; else an error naming ``setting``, the path and ``what``
    the file should be."""
    if not path.is_file():
        raise ValueError(f"{setting} {path} does not exist or is not a file (give {what})")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ValueError(f"cannot read {setting} {path}: {reason}") from None
    return path


def warn_once(event: str, **fields: str) -> None:
    """Log ``event`` at WARNING, the first time this process sees it."""
    if event in _warned:
        return
    _warned.add(event)
    log.warning(event, **fields)
