"""Build the Lambda deployment zip: `jitrunners` plus its runtime dependencies, reproducibly.

Same inputs -> same bytes: dependencies are pinned (requirements/runtime.txt constrained by
requirements/lambda-lock.txt), entries are sorted, every timestamp is 1980-01-01 and every mode
is fixed. Wheels are downloaded once per (platform, Python, lock) into the gitignored `.cache/` and
installed from there offline, so a rebuild takes seconds.

boto3/botocore are NOT packaged: the Lambda Python runtime provides them, and botocore alone is a
16 MB wheel, over the 15 MB budget of the whole zip (README "Deploy to AWS" says more).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_REQS = ROOT / "requirements" / "runtime.txt"
LOCK = ROOT / "requirements" / "lambda-lock.txt"
CACHE = ROOT / ".cache" / "wheels"

# Newest Lambda Python runtime; keep in step with terraform/variables.tf `lambda_runtime`.
DEFAULT_PYTHON = "3.14"
# The runtime provides these (and pinning botocore would blow the size budget).
FROM_RUNTIME = frozenset({"boto3", "botocore", "s3transfer"})
# Lambda's Python runtimes from 3.12 on run Amazon Linux 2023 (glibc 2.34).
PLATFORMS = {
    "arm64": ("manylinux_2_34_aarch64", "manylinux_2_28_aarch64", "manylinux2014_aarch64"),
    "x86_64": ("manylinux_2_34_x86_64", "manylinux_2_28_x86_64", "manylinux2014_x86_64"),
}
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
# Not needed at run time: console scripts, byte code (Lambda compiles on import), type stubs.
SKIP_DIRS = frozenset({"__pycache__", "bin"})
SKIP_SUFFIXES = (".pyc", ".pyo")


def _name(requirement: str) -> str:
    for sep in ("[", "=", "<", ">", "~", "!", ";", " "):
        requirement = requirement.split(sep, 1)[0]
    return requirement.strip().lower().replace("_", "-")


def _requirements() -> list[str]:
    """runtime.txt minus what the Lambda runtime provides."""
    lines = []
    for raw in RUNTIME_REQS.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and _name(line) not in FROM_RUNTIME:
            lines.append(line)
    return lines


def _locked() -> dict[str, str]:
    pins = {}
    for raw in LOCK.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[_name(name)] = version.strip()
    return pins


def _pip_platform_args(arch: str, python: str) -> list[str]:
    args = ["--only-binary=:all:", "--implementation", "cp", "--python-version", python]
    for platform in PLATFORMS[arch]:
        args += ["--platform", platform]
    return args


def _pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args]
    subprocess.run(cmd, check=True)  # noqa: S603 - our own interpreter, fixed arguments


def wheels(arch: str, python: str) -> Path:
    """The wheel directory for this target, downloaded on first use (keyed by the inputs)."""
    reqs = _requirements()
    inputs = "\n".join([arch, python, *reqs, LOCK.read_text()])
    key = hashlib.sha256(inputs.encode()).hexdigest()[:16]
    dest = CACHE / f"py{python}-{arch}-{key}"
    if (dest / ".complete").exists():
        return dest
    # Download into a private directory and rename it into place, so concurrent builds (pytest -n)
    # never read a half-written cache.
    CACHE.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=CACHE))
    try:
        _pip("download", "--dest", str(staging), "-c", str(LOCK),
             *_pip_platform_args(arch, python), *reqs)  # fmt: skip
        (staging / ".complete").touch()
        if dest.exists() and not (dest / ".complete").exists():
            shutil.rmtree(dest, ignore_errors=True)
        try:
            staging.rename(dest)
        except OSError:
            if not (dest / ".complete").exists():  # not another build's complete copy
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def install(arch: str, python: str, target: Path) -> None:
    """Install the pinned dependencies for the target platform into `target`, offline."""
    source = wheels(arch, python)
    _pip("install", "--no-index", "--find-links", str(source), "--target", str(target),
         "--no-compile", "-c", str(LOCK), *_pip_platform_args(arch, python),
         *_requirements())  # fmt: skip
    locked = _locked()
    for info in target.glob("*.dist-info"):
        dist, _, version = info.name[: -len(".dist-info")].partition("-")
        name = _name(dist)
        if locked.get(name) != version:
            raise SystemExit(
                f"package: {name} {version} is not pinned in {LOCK.relative_to(ROOT)}; "
                "pin every transitive dependency so the zip is reproducible"
            )


def _entries(tree: Path) -> list[tuple[str, Path]]:
    out = []
    for path in tree.rglob("*"):
        rel = path.relative_to(tree)
        if any(part in SKIP_DIRS for part in rel.parts) or path.is_dir():
            continue
        if path.name.endswith(SKIP_SUFFIXES):
            continue
        out.append((rel.as_posix(), path))
    return sorted(out)


def write_zip(tree: Path, out: Path) -> None:
    """A deterministic zip of `tree`: sorted names, fixed times and modes, no directory entries."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".zip.part")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, path in _entries(tree):
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.create_system = 3  # unix, so the modes below are honoured
            mode = 0o755 if os.access(path, os.X_OK) and path.suffix == ".so" else 0o644
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes(), compresslevel=9)
    partial.replace(out)


def build(arch: str, python: str, out: Path) -> Path:
    with tempfile.TemporaryDirectory(prefix="jitrunners-pkg-") as tmp:
        tree = Path(tmp) / "tree"
        install(arch, python, tree)
        shutil.copytree(
            ROOT / "lambdas" / "jitrunners",
            tree / "jitrunners",
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        write_zip(tree, out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=sorted(PLATFORMS), default="arm64")
    parser.add_argument("--python-version", default=DEFAULT_PYTHON)
    parser.add_argument("--out", type=Path, help="default: dist/jitrunners-lambda-<arch>.zip")
    args = parser.parse_args(argv)
    out = args.out or ROOT / "dist" / f"jitrunners-lambda-{args.arch}.zip"
    build(args.arch, args.python_version, out)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    shown = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
    mb = out.stat().st_size / 1e6
    print(f"{shown}: {mb:.2f} MB, python{args.python_version} {args.arch}, sha256 {digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
