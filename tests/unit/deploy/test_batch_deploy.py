"""The batch job as deployed: the systemd unit's paths, and submit.sh in a read-only install."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest

from tests.paths import ROOT

UNIT = ROOT / "deploy" / "systemd" / "clickstream-batch.service"
SUBMIT = PurePosixPath("deploy/spark/submit.sh")
INSTALL = PurePosixPath("/opt/clickstream")
# What submit.sh reads from the install: itself and the packages it zips.
SHIPPED = ("deploy", "clickstream", "hbase_schema", "storage", "indexing", "processing")
SYSTEMD_DIRECTORIES = ("CACHE_DIRECTORY", "STATE_DIRECTORY")


def unit_entries(path: Path) -> dict[str, list[str]]:
    """Every ``Key=value`` of a unit file, sections merged, a repeated key's values in order."""
    entries: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            entries.setdefault(key.strip(), []).append(value.strip())
    return entries


def unit_environment(entries: dict[str, list[str]]) -> dict[str, str]:
    """The variables the unit's ``Environment=`` lines set."""
    words = [word for value in entries.get("Environment", []) for word in shlex.split(value)]
    return dict(word.split("=", 1) for word in words)


class TestBatchUnit:
    def test_exec_start_is_the_installed_submit_script(self) -> None:
        """ExecStart runs deploy/spark/submit.sh of the install, an executable of the checkout."""
        entries = unit_entries(UNIT)
        assert entries["ExecStart"] == [str(INSTALL / SUBMIT)]
        assert os.access(ROOT / SUBMIT, os.X_OK)
        assert (entries["DynamicUser"], entries["ProtectSystem"]) == (["yes"], ["strict"])

    def test_declares_state_and_cache_directories(self) -> None:
        """The only writable places under ProtectSystem=strict are declared: state and cache."""
        entries = unit_entries(UNIT)
        assert entries["StateDirectory"] == ["clickstream-batch"]
        assert entries["CacheDirectory"] == ["clickstream-batch"]

    def test_everything_the_job_writes_is_in_those_directories(self) -> None:
        """HOME (ivy), Spark's scratch and the working directory lie in the state or cache one."""
        entries = unit_entries(UNIT)
        writable = [PurePosixPath("/var/lib", d) for d in entries["StateDirectory"]] + [
            PurePosixPath("/var/cache", d) for d in entries["CacheDirectory"]
        ]
        env = unit_environment(entries)
        paths = [
            env["HOME"],
            *env["SPARK_LOCAL_DIRS"].split(","),
            *entries["WorkingDirectory"],
        ]
        for path in map(PurePosixPath, paths):
            assert any(path.is_relative_to(d) for d in writable), path
        assert PurePosixPath(env["SPARK_LOCAL_DIRS"]).is_relative_to(writable[1])


def _tree(root: Path) -> dict[str, tuple[int, int, int]]:
    """Each path under *root* with its mode, size and modification time."""
    return {
        str(p.relative_to(root)): (p.lstat().st_mode, p.lstat().st_size, p.lstat().st_mtime_ns)
        for p in root.rglob("*")
    }


def _build_only(install: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``submit.sh --build-only`` of *install* with this Python, the systemd directories given."""
    outside = {k: v for k, v in os.environ.items() if k not in SYSTEMD_DIRECTORIES}
    return subprocess.run(
        [str(install / SUBMIT), "--build-only"],
        env={**outside, "PYTHON": sys.executable, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _copy_install(target: Path) -> Path:
    """What the install holds of the checkout, copied to *target* without caches."""
    for part in SHIPPED:
        shutil.copytree(ROOT / part, target / part, ignore=shutil.ignore_patterns("__pycache__"))
    return target


@pytest.fixture
def read_only_install(tmp_path: Path) -> Iterator[Path]:
    """A copy of the install made read-only (``chmod -R a-w``), made writable again after.

    Root ignores the modes: the tests compare the tree before and after to prove no write."""
    install = _copy_install(tmp_path / "opt" / "clickstream")
    subprocess.run(["chmod", "-R", "a-w", str(install)], check=True)
    yield install
    subprocess.run(["chmod", "-R", "u+w", str(install)], check=True)


class TestSubmitBuild:
    def test_zip_lands_in_the_cache_directory_and_the_install_is_untouched(
        self, read_only_install: Path, tmp_path: Path
    ) -> None:
        """With systemd's CACHE_DIRECTORY the zip is built there; the install stays as it was."""
        cache, state = tmp_path / "cache", tmp_path / "state"
        cache.mkdir()
        state.mkdir()
        before = _tree(read_only_install)
        result = _build_only(
            read_only_install, CACHE_DIRECTORY=str(cache), STATE_DIRECTORY=str(state)
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == str(cache / "clickstream.zip")
        with zipfile.ZipFile(cache / "clickstream.zip") as zf:
            names = zf.namelist()
        assert {"processing/main.py", "clickstream/logs.py", "storage/scan.py"} <= set(names)
        assert not [n for n in names if "__pycache__" in n]
        assert _tree(read_only_install) == before
        assert list(state.iterdir()) == []

    def test_state_directory_when_there_is_no_cache_directory(
        self, read_only_install: Path, tmp_path: Path
    ) -> None:
        """A unit with only StateDirectory= gets the zip in its state directory."""
        state = tmp_path / "state"
        state.mkdir()
        before = _tree(read_only_install)
        result = _build_only(read_only_install, STATE_DIRECTORY=str(state))
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == str(state / "clickstream.zip")
        assert _tree(read_only_install) == before

    def test_build_folder_of_a_checkout_outside_systemd(self, tmp_path: Path) -> None:
        """Run by hand (no systemd directories), the zip goes to build/spark as before."""
        checkout = _copy_install(tmp_path / "checkout")
        result = _build_only(checkout)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == str(checkout / "build" / "spark" / "clickstream.zip")
        assert (checkout / "build" / "spark" / "clickstream.zip").is_file()
