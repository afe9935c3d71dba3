"""The local stack under a burst's load: what a real endpoint or agent does, the stack does too."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from bench.common import free_port

from devstack.agent import AgentShim, Invocation, Result
from devstack.fake_runner.runner import Session
from devstack.wsgi_server import BurstServer


class _Answer(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"ok": True}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


def _session(port: int) -> Session:
    return Session({"url": f"http://127.0.0.1:{port}", "runner_id": 1, "secret": "s"})


def test_the_simulated_runner_retries_a_connection_github_refused() -> None:
    """Refused connections (nothing listening yet) are tried again, as the real runner does."""
    port = free_port()
    servers: list[BurstServer] = []

    def listen_later() -> None:
        time.sleep(0.3)
        server = BurstServer(("127.0.0.1", port), _Answer)
        servers.append(server)
        server.serve_forever(poll_interval=0.05)

    threading.Thread(target=listen_later, daemon=True).start()
    try:
        assert _session(port).call("poll") == (200, {"ok": True})
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def test_the_simulated_runner_gives_up_when_github_stays_unreachable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(time, "sleep", lambda _s: None)
    with pytest.raises(urllib.error.URLError):
        _session(free_port()).call("poll")


def test_a_command_whose_process_crashed_ends_failed_and_says_so(tmp_path: Path) -> None:
    """The runner's process died with an exception: SSM reports the command Failed (scale-down
    ends the instance), never an invocation left in progress for good."""
    events: list[dict[str, Any]] = []

    class Crashing(AgentShim):
        def _execute(self, invocation: Invocation, timeout_s: float) -> Result:
            raise ConnectionResetError(104, "Connection reset by peer")

    agent = Crashing(tmp_path, on_event=events.append, launch_time=lambda _i: None)
    invocation = Invocation("c-1", "i-0123456789abcdef0", None)
    agent._run(invocation, 5.0)
    assert invocation.status == "Failed"
    assert invocation.returncode == 1
    assert "Connection reset" in invocation.output
    assert [e["detail"]["status"] for e in events] == ["Failed"]
