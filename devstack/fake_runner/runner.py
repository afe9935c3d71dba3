"""Simulated GitHub Actions runner: connects with its JIT config, takes one job, runs it, exits.

Like the real runner it reads `ACTIONS_RUNNER_INPUT_JITCONFIG`, writes `_diag/Worker_<ts>.log` when
a job is assigned (start-runner.sh's idle detection looks for it) and exits after its one job. A
job cancelled while it runs ends early as cancelled, and the runner still exits 0 (as the real one).
Settings come from `.runner-sim.json` beside this file (job_seconds, poll_s, conclusion) or the
command line.
Stdlib only: it runs under any python3.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

Send = Callable[[str, bytes], tuple[int, bytes] | None]
HERE = Path(__file__).resolve().parent
EXIT_CONFIG = 1
EXIT_REFUSED = 2
EXIT_TERMINATED = 143
CONNECT_ATTEMPTS = 5


def say(message: str) -> None:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    print(f"{stamp}: {message}", flush=True)


class Session:
    """The runner's calls to the service. `send(url, body)`, when given, answers a POST as
    (status, body) without the network, or None to go over it (the local stack's in-process
    runners: devstack/loopback.py)."""

    def __init__(self, config: dict[str, Any], send: Send | None = None) -> None:
        self.url = str(config["url"]).rstrip("/")
        self.identity = {"runner_id": config["runner_id"], "secret": config["secret"]}
        self.name = str(config.get("name", ""))
        self.send = send

    def call(self, action: str, **extra: Any) -> tuple[int, Any]:
        url = f"{self.url}/_sim/runner/{action}"
        body = json.dumps({**self.identity, **extra}).encode()
        # The real runner retries its connection to GitHub through network errors: so does this
        # one, a few times, before it gives up (a failed command, which scale-down ends).
        for attempt in range(CONNECT_ATTEMPTS):
            try:
                return self._post(url, body)
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if attempt == CONNECT_ATTEMPTS - 1:
                    raise
                time.sleep(0.2 * 2**attempt)
        raise AssertionError("unreachable")

    def _post(self, url: str, body: bytes) -> tuple[int, Any]:
        answered = self.send(url, body) if self.send is not None else None
        if answered is not None:
            status, data = answered
            # As urlopen: an error status's body is not read.
            return status, (json.loads(data) if data and status < 300 else None)
        request = urllib.request.Request(  # noqa: S310 - the simulator's URL from the JIT config
            url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                data = response.read()
                return response.status, json.loads(data) if data else None
        except urllib.error.HTTPError as exc:
            return exc.code, None


def load_config() -> dict[str, Any] | None:
    return parse_config(os.environ.pop("ACTIONS_RUNNER_INPUT_JITCONFIG", ""))


def parse_config(encoded: str) -> dict[str, Any] | None:
    """The simulator's JIT config (base64 JSON: url, runner_id, secret, name), None if invalid."""
    try:
        config = json.loads(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(config, dict) or not {"url", "runner_id", "secret"} <= set(config):
        return None
    return config


def settings(argv: list[str]) -> argparse.Namespace:
    defaults: dict[str, Any] = {"job_seconds": 1.0, "poll_s": 0.2, "conclusion": "success"}
    file = HERE / ".runner-sim.json"
    if file.exists():
        defaults.update(json.loads(file.read_text()))
    parser = argparse.ArgumentParser(prog="run.sh")
    parser.add_argument("--job-seconds", type=float, default=defaults["job_seconds"])
    parser.add_argument("--poll-s", type=float, default=defaults["poll_s"])
    parser.add_argument("--conclusion", default=defaults["conclusion"])
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    options = settings(argv)
    config = load_config()
    if config is None:
        say("error: ACTIONS_RUNNER_INPUT_JITCONFIG is missing or not a valid JIT config")
        return EXIT_CONFIG
    session = Session(config)
    # The local stack's boot model: how long Runner.Listener takes to start (0: at once).
    time.sleep(max(0.0, float(os.environ.get("DEVSTACK_RUNNER_CONNECT_S") or 0)))
    status, _ = session.call("connect")
    if status != 200:
        say(f"error: the registration was refused (HTTP {status}): used or deleted")
        return EXIT_REFUSED

    def on_term(signum: int, frame: Any) -> None:
        session.call("disconnect")
        say("runner stopped by signal")
        sys.exit(EXIT_TERMINATED)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    say(f"Connected to GitHub as {session.name}")
    say("Listening for Jobs")
    while True:
        status, answer = session.call("poll")
        if status == 200 and answer:
            break
        if status not in (200, 204):
            say(f"error: the service refused this runner (HTTP {status})")
            return EXIT_REFUSED
        time.sleep(options.poll_s)
    job = answer["job"]
    diag = HERE / "_diag"
    diag.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    (diag / f"Worker_{stamp}-utc.log").write_text(f"job {job['id']} {job['name']}\n")
    say(f"Running job: {job['name']} ({job['id']})")
    conclusion = "cancelled" if run_job(session, options) else options.conclusion
    status, _ = session.call("complete", job_id=job["id"], conclusion=conclusion)
    result = "Succeeded" if conclusion == "success" else conclusion.capitalize()
    say(f"Job {job['name']} completed with result: {result}")
    return 0 if status == 200 else EXIT_REFUSED


def run_job(session: Session, options: argparse.Namespace) -> bool:
    """Run the job for `job_seconds`, asking between steps whether it was cancelled (True)."""
    deadline = time.monotonic() + options.job_seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(options.poll_s, left))
        status, answer = session.call("poll")
        if status == 200 and answer and answer.get("cancelled"):
            say("The job was cancelled")
            return True
    return False


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
