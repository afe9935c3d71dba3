"""devstack/loopback.py: requests to a server of this process are served in the caller's thread,
by the server's own handler, with the answer a socket would have carried."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
import requests

from devstack import loopback
from devstack.fake_runner.runner import Session
from devstack.inline_agent import _in_process
from devstack.wsgi_server import BurstServer


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    seen: list[dict[str, Any]] = []

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/crash":
            raise RuntimeError("handler bug")
        self.seen.append(
            {"thread": threading.get_ident(), "path": self.path, "headers": dict(self.headers)}
        )
        data = json.dumps({"got": body.decode(), "path": self.path}).encode()
        status = 404 if self.path.startswith("/missing") else 201
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Link", '<http://x/?page=2>; rel="next"')
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST

    def handle_error(self) -> None:  # pragma: no cover - socketserver's, unused in-process
        return


@pytest.fixture
def server() -> Iterator[BurstServer]:
    _Echo.seen = []
    served = BurstServer(("127.0.0.1", 0), _Echo)
    served.handle_error = lambda request, address: None  # type: ignore[method-assign]
    thread = threading.Thread(target=served.serve_forever, daemon=True)
    thread.start()
    yield served
    loopback.unregister(served)
    served.shutdown()
    served.server_close()


def _url(server: BurstServer, path: str) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}{path}"


def test_a_registered_server_answers_requests_in_the_callers_thread(server: BurstServer) -> None:
    loopback.register(server)
    loopback.install_requests()
    answer = requests.post(_url(server, "/hooks?x=1"), json={"a": 1}, timeout=5)
    assert answer.status_code == 201
    assert answer.json() == {"got": '{"a": 1}', "path": "/hooks?x=1"}
    assert answer.headers["content-type"] == "application/json"
    assert answer.links["next"]["url"] == "http://x/?page=2"
    (seen,) = _Echo.seen
    assert seen["thread"] == threading.get_ident()
    assert seen["headers"]["Content-Type"] == "application/json"
    assert seen["headers"]["Host"] == _url(server, "").removeprefix("http://")


def test_an_unregistered_server_is_reached_over_tcp(server: BurstServer) -> None:
    loopback.install_requests()
    answer = requests.get(_url(server, "/plain"), timeout=5)
    assert answer.status_code == 201
    (seen,) = _Echo.seen
    assert seen["thread"] != threading.get_ident()
    assert loopback.send(_url(server, "/plain"), "POST", []) is None


def test_a_crashing_handler_is_a_dropped_connection_to_its_client(server: BurstServer) -> None:
    loopback.register(server)
    loopback.install_requests()
    with pytest.raises(requests.ConnectionError):
        requests.post(_url(server, "/crash"), data=b"x", timeout=5)
    with pytest.raises(ConnectionResetError):
        loopback.send(_url(server, "/crash"), "POST", [], b"x")


def test_the_runners_session_takes_an_in_process_answer_as_urlopen_would(
    server: BurstServer,
) -> None:
    loopback.register(server)
    config = {"url": _url(server, ""), "runner_id": 7, "secret": "s"}
    session = Session(config, send=_in_process)
    status, answer = session.call("poll")
    assert status == 201
    assert json.loads(answer["got"]) == {"runner_id": 7, "secret": "s"}
    assert _Echo.seen[0]["thread"] == threading.get_ident()
    # An error status's body is not read, as urlopen's HTTPError.
    missing = Session({**config, "url": _url(server, "/missing")}, send=_in_process)
    assert missing.call("poll") == (404, None)
    # Not served in this process: over the network, same answers.
    loopback.unregister(server)
    assert Session(config, send=_in_process).call("poll")[0] == 201
    assert _Echo.seen[-1]["thread"] != threading.get_ident()


def test_requests_are_routed_again_after_a_mock_restored_the_send_it_found(
    server: BurstServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Installed while a `responses` mock was active, the route went when the mock stopped."""
    import responses
    from requests.adapters import HTTPAdapter

    # A process where nothing routed `requests` yet.
    monkeypatch.setattr(HTTPAdapter, "send", loopback._original.get("requests", HTTPAdapter.send))
    monkeypatch.setattr(loopback, "_original", {})
    loopback.register(server)
    with responses.RequestsMock():
        loopback.install_requests()
    loopback.install_requests()
    assert requests.post(_url(server, "/again"), data=b"x", timeout=5).status_code == 201
    assert _Echo.seen[-1]["thread"] == threading.get_ident()
