"""The simulated Actions runner published as GitHub publishes the real one, served on 127.0.0.1.

Instances of the local stack install their runner the way the module's bootstrap does on EC2: it
downloads `<runner_download_url>/v<version>/actions-runner-linux-<arch>-<version>.tar.gz` and
refuses it unless its SHA-256 is the one `runner_sha256` names. Here the tarball holds
devstack/fake_runner (run.sh, runner.py and its settings), is built byte-for-byte reproducibly (same
settings, same SHA-256), and a small HTTP server on a loopback port plays the release mirror.
`tfvars()` are the module variables that point the user data at it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any

from devstack.wsgi_server import BurstServer

FAKE_RUNNER = Path(__file__).with_name("fake_runner")
RUNNER_VERSION = "2.329.0"  # terraform/variables.tf runner_version's default
ARCHES = ("x64", "arm64")


def tarball_bytes(settings: dict[str, Any]) -> bytes:
    """The runner package: fake_runner's files at the top level, as run.sh is in the real one."""
    files: dict[str, tuple[bytes, int]] = {
        "run.sh": ((FAKE_RUNNER / "run.sh").read_bytes(), 0o755),
        "runner.py": ((FAKE_RUNNER / "runner.py").read_bytes(), 0o644),
        ".runner-sim.json": (json.dumps(settings, sort_keys=True).encode(), 0o644),
    }
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, (data, mode) in sorted(files.items()):
            info = tarfile.TarInfo(f"./{name}")
            info.size, info.mode, info.mtime = len(data), mode, 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class RunnerDist:
    """The release files under `root` and the server that serves them (`url` once started)."""

    def __init__(
        self, root: Path, *, job_seconds: float = 1.0, poll_s: float = 0.2, version: str = ""
    ) -> None:
        self.root = root
        self.version = version or RUNNER_VERSION
        self.settings = {"job_seconds": job_seconds, "poll_s": poll_s}
        self.sha256: dict[str, str] = {}
        self.url = ""
        self.downloads: list[str] = []
        self._server: BurstServer | None = None

    def build(self) -> RunnerDist:
        data = tarball_bytes(self.settings)
        folder = self.root / f"v{self.version}"
        folder.mkdir(parents=True, exist_ok=True)
        for arch in ARCHES:
            (folder / f"actions-runner-linux-{arch}-{self.version}.tar.gz").write_bytes(data)
            self.sha256[arch] = hashlib.sha256(data).hexdigest()
        return self

    def start(self) -> RunnerDist:
        if not self.sha256:
            self.build()
        downloads = self.downloads

        class Handler(_Quiet):
            def do_GET(self) -> None:
                downloads.append(self.path)
                super().do_GET()

        self._server = BurstServer(("127.0.0.1", 0), partial(Handler, directory=str(self.root)))
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, name="runner-dist", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def tfvars(self) -> dict[str, Any]:
        """The module variables that make the user data install this runner."""
        return {
            "runner_version": self.version,
            "runner_sha256": dict(self.sha256),
            "runner_download_url": self.url,
        }
