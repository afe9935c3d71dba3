"""The Lambda zip from `make package`: reproducible, within budget, and every handler imports."""

from __future__ import annotations

import hashlib
import platform
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest
from scripts import package

MAX_ZIP_BYTES = 15 * 1024 * 1024
HOST_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(
    platform.machine().lower()
)


@pytest.fixture(scope="module")
def arm64_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return package.build("arm64", package.DEFAULT_PYTHON, tmp_path_factory.mktemp("a") / "l.zip")


def handler_modules(names: list[str]) -> list[str]:
    """`jitrunners.handlers.<x>` for every handler module in the zip (discovered, not listed)."""
    prefix = "jitrunners/handlers/"
    return sorted(
        "jitrunners.handlers." + n[len(prefix) : -3]
        for n in names
        if n.startswith(prefix) and n.endswith(".py") and "/" not in n[len(prefix) :]
        if not n.endswith("__init__.py")
    )


def test_default_zip_is_within_budget_and_targets_arm64_without_boto3(arm64_zip: Path) -> None:
    assert arm64_zip.stat().st_size <= MAX_ZIP_BYTES
    names = zipfile.ZipFile(arm64_zip).namelist()
    assert "jitrunners.handlers.webhook" in handler_modules(names)
    assert any(n.endswith(".cpython-314-aarch64-linux-gnu.so") or "abi3" in n for n in names)
    native = [n for n in names if n.endswith(".so")]
    assert native
    assert not [n for n in native if "x86_64" in n]
    # boto3/botocore come from the Lambda runtime (README "Deploy to AWS").
    assert not [n for n in names if n.split("/")[0] in ("boto3", "botocore")]
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_same_inputs_give_the_same_bytes(arm64_zip: Path, tmp_path: Path) -> None:
    again = package.build("arm64", package.DEFAULT_PYTHON, tmp_path / "again.zip")
    assert (
        hashlib.sha256(again.read_bytes()).digest()
        == hashlib.sha256(arm64_zip.read_bytes()).digest()
    )
    infos = zipfile.ZipFile(again).infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert {i.date_time for i in infos} == {package.FIXED_TIME}


@pytest.mark.skipif(HOST_ARCH is None, reason="unknown host architecture")
def test_every_handler_imports_from_the_unpacked_zip_in_a_clean_virtualenv(
    tmp_path: Path,
) -> None:
    # Same build, for this host's CPU and Python, so native wheels load here.
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    built = package.build(str(HOST_ARCH), python, tmp_path / "host.zip")
    task = tmp_path / "task"
    with zipfile.ZipFile(built) as archive:
        archive.extractall(task)
        modules = handler_modules(archive.namelist())
    assert "jitrunners.handlers.webhook" in modules
    # What the Lambda runtime provides beside /var/task: boto3 and its dependencies.
    runtime = tmp_path / "runtime"
    site = Path(sysconfig.get_paths()["purelib"])
    for name in ("boto3", "botocore", "s3transfer", "dateutil", "six.py"):
        source = site / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, runtime / name)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False, clear=True)
    probe = (
        "import importlib, sys\n"
        f"sys.path[:0] = [{str(task)!r}, {str(runtime)!r}]\n"
        f"for name in {modules!r}:\n"
        "    module = importlib.import_module(name)\n"
        "    assert callable(module.handler), name\n"
        "    assert module.__file__.startswith(sys.path[0]), module.__file__\n"
        "print('imported', len(" + repr(modules) + "))\n"
    )
    result = subprocess.run(
        [str(env_dir / "bin" / "python"), "-I", "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
        env={"AWS_DEFAULT_REGION": "eu-west-1", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"imported {len(modules)}" in result.stdout
