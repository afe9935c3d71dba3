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

The boto3 clients of this process skip the socket altogether (`InProcessTransport`): a request
to a server of this process is handed to its application in the calling thread, after every
botocore hook (`before-send` included: the quotas, faults and call counts see each attempt as
before), and answered as an HTTP response would be. Under a burst, connecting, sending, serving
threads and reading back took about a third of the stack's CPU. Other processes (the runner
scripts' `aws` CLI, `make run`'s instances) still reach the server over HTTP.
"""

from __future__ import annotations

import contextlib
import io
import logging
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

    try:
        result = app(environ, start_response)
        try:
            payload = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
    except Exception:  # an emulator's own failure is the service's 500
        # moto lets some of its failures escape the app (a subnet out of addresses raises
        # StopIteration): a service answers those with an internal error, which clients retry,
        # instead of closing the connection or raising inside the caller.
        logging.getLogger(__name__).exception("the application failed: answered 500")
        return 500, "Internal Server Error", [("Content-Type", "text/plain")], b"internal error"
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
        length, no_body = _length(self.command, code, headers, payload)
        self.send_header("Content-Length", length)
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


def _length(
    method: str, code: int, headers: list[tuple[str, str]], payload: bytes
) -> tuple[str, bool]:
    """An answer's Content-Length and whether it goes without a body: a HEAD's is the length
    its GET would have (the app's header, else what it produced), a 1xx's, 204's or 304's 0."""
    if method == "HEAD":
        given = [value for name, value in headers if name.lower() == "content-length"]
        return (given[-1] if given else str(len(payload))), True
    if code in (204, 304) or 100 <= code < 200:
        return "0", True
    return str(len(payload)), False


class _Body(io.BytesIO):
    """A response body as urllib3's: read() (streaming operations) and stream() (the rest)."""

    def stream(self, amt: int = 2**16, decode_content: bool = True) -> Iterable[bytes]:
        while chunk := self.read(amt):
            yield chunk


class InProcessTransport:
    """botocore's HTTP send, for URLs of a server of this process: its WSGI app, called here.

    One patch of `botocore.endpoint.Endpoint._send` per process while any server is registered;
    a request to any other URL goes out as before."""

    _lock = threading.Lock()
    _apps: dict[str, tuple[WsgiApp, tuple[str, int]]] = {}
    _original: Any = None

    @classmethod
    def register(cls, host: str, port: int, app: WsgiApp) -> None:
        from botocore.endpoint import Endpoint

        with cls._lock:
            cls._apps[f"http://{host}:{port}/"] = (app, (host, port))
            if cls._original is None:
                cls._original = Endpoint._send
                Endpoint._send = cls._send  # type: ignore[method-assign]

    @classmethod
    def unregister(cls, host: str, port: int) -> None:
        from botocore.endpoint import Endpoint

        with cls._lock:
            cls._apps.pop(f"http://{host}:{port}/", None)
            if not cls._apps and cls._original is not None:
                Endpoint._send = cls._original  # type: ignore[method-assign]
                cls._original = None

    @staticmethod
    def _send(endpoint: Any, request: Any) -> Any:
        url = request.url
        root = url[: url.find("/", 7) + 1] if url.startswith("http://") else ""
        served = InProcessTransport._apps.get(root)
        if served is None:
            return InProcessTransport._original(endpoint, request)
        return InProcessTransport.answer(served[0], served[1], request)

    @staticmethod
    def answer(app: WsgiApp, server: tuple[str, int], request: Any) -> Any:
        """The AWSResponse of `app` to botocore's prepared `request`."""
        from botocore.awsrequest import AWSResponse

        body = request.body
        if body is None:
            body = b""
        elif hasattr(body, "read"):
            body = body.read()
        if isinstance(body, str):
            body = body.encode("utf-8")
        target = request.url[request.url.find("/", 7) :] or "/"
        headers = [
            (name, value.decode("latin-1") if isinstance(value, bytes) else str(value))
            for name, value in request.headers.items()
        ]
        if not any(name.lower() == "host" for name, _ in headers):
            headers.append(("Host", f"{server[0]}:{server[1]}"))
        environ = environ_for(request.method, target, headers, bytes(body), server=server)
        code, _, answer_headers, payload = call_app(app, environ)
        merged: dict[str, str] = {}
        for name, value in answer_headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                merged[name] = f"{merged[name]}, {value}" if name in merged else value
        merged["Content-Length"], no_body = _length(request.method, code, answer_headers, payload)
        if no_body:
            payload = b""
        return AWSResponse(request.url, code, merged, _Body(payload))


class KeepAliveMotoServer:
    """`moto.server.ThreadedMotoServer`'s interface (start, stop, get_host_and_port) over a
    server that keeps connections alive."""

    def __init__(self, ip_address: str = "127.0.0.1", port: int = 0) -> None:
        self._address = (ip_address, port)
        self._server: WsgiServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        app = DomainDispatcherApplication(create_backend_app)
        self._server = WsgiServer(self._address, app)
        InProcessTransport.register(*self.get_host_and_port(), app)
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
        InProcessTransport.unregister(*self.get_host_and_port())
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = None
