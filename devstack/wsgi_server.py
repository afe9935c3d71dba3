"""A threaded HTTP/1.1 server with keep-alive for a WSGI application: moto's, in this process.

Werkzeug's development server (moto's `ThreadedMotoServer`) answers every request with
`Connection: close`, so each AWS call of the stack's clients opened a TCP connection and the
server started a thread for it: under a burst, a large share of the stack's CPU (system time
mostly) went to connecting, spawning and closing. Here a connection lives as long as its client
keeps it (botocore pools them), one thread per connection serves all of its requests, and
requests are read in full (Content-Length or chunked) before the next request line, which is
what Werkzeug's server cannot do.

Only what the stack's clients send is supported: whole bodies (no `Expect: 100-continue`
without a body), no upgrades. Responses are buffered and sent with their Content-Length.
"""

from __future__ import annotations

import contextlib
import io
import socket
import sys
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# An idle kept-alive connection is closed after this long (botocore opens a new one then).
IDLE_TIMEOUT_S = 60.0


def environ_for(
    method: str,
    target: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    *,
    server: tuple[str, int],
    client: tuple[str, int] = ("127.0.0.1", 0),
    protocol: str = "HTTP/1.1",
) -> dict[str, Any]:
    """The WSGI environ of one request whose body was read in full."""
    path, _, query = target.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote(path, "latin-1"),
        "QUERY_STRING": query,
        "RAW_URI": target,
        "REQUEST_URI": target,
        "SERVER_NAME": server[0],
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": protocol,
        "REMOTE_ADDR": client[0],
        "REMOTE_PORT": str(client[1]),
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in headers:
        key = name.upper().replace("-", "_")
        if key == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value
        elif key in ("CONTENT_LENGTH", "TRANSFER_ENCODING"):
            continue  # the body is read in full: its length is what CONTENT_LENGTH says
        elif "_" not in name:  # as Werkzeug: X_Foo must not pass for X-Foo
            key = f"HTTP_{key}"
            environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


def call_app(
    app: WsgiApp, environ: dict[str, Any]
) -> tuple[int, str, list[tuple[str, str]], bytes]:
    """Status code, reason, headers and the whole body of the application's answer."""
    answer: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None):
        answer[:] = [status, headers]
        return lambda data: None  # the legacy write(): moto does not use it

    result = app(environ, start_response)
    try:
        payload = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    status, headers = answer
    code, _, reason = str(status).partition(" ")
    return int(code), reason, list(headers), payload


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT_S
    server: WsgiServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        self.server.track(self.connection, False)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the stack's own logs say what happened

    def _body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()  # the chunk's CRLF
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        body = self._body()
        host, port = self.server.server_address[:2]
        environ = environ_for(
            self.command, self.path, self.headers.items(), body,
            server=(str(host), int(port)), client=self.client_address[:2],
            protocol=self.request_version,
        )  # fmt: skip
        code, reason, headers, payload = call_app(self.server.app, environ)
        self.send_response_only(code, reason)
        for name, value in headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        no_body = self.command == "HEAD" or code in (204, 304) or 100 <= code < 200
        self.send_header("Content-Length", "0" if no_body else str(len(payload)))
        # Head and body in one write: two small ones meet Nagle's algorithm and the client's
        # delayed ACK (40 ms a response).
        self._headers_buffer.append(b"\r\n")
        if not no_body:
            self._headers_buffer.append(payload)
        self.flush_headers()

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _serve


class BurstServer(ThreadingHTTPServer):
    """A threading HTTP server whose listen backlog takes a burst's connections: socketserver's
    default of 5 pending connections reset the rest when a thousand runners (or Lambdas) opened
    theirs at once, which no real endpoint does."""

    daemon_threads = True
    request_queue_size = 1024


class WsgiServer(BurstServer):
    def __init__(self, address: tuple[str, int], app: WsgiApp) -> None:
        self.app = app
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, connection: socket.socket, is_open: bool) -> None:
        with self._open_lock:
            (self._open.add if is_open else self._open.discard)(connection)

    def close_connections(self) -> None:
        """End every kept-alive connection (their threads see EOF and finish)."""
        with self._open_lock:
            connections = list(self._open)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class KeepAliveMotoServer:
    """`moto.server.ThreadedMotoServer`'s interface (start, stop, get_host_and_port) over a
    server that keeps connections alive."""

    def __init__(self, ip_address: str = "127.0.0.1", port: int = 0) -> None:
        self._address = (ip_address, port)
        self._server: WsgiServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        self._server = WsgiServer(self._address, DomainDispatcherApplication(create_backend_app))
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True,
            name="moto-server",
        )  # fmt: skip
        self._thread.start()

    def get_host_and_port(self) -> tuple[str, int]:
        assert self._server is not None, "start() first"
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = None
