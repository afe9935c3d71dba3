"""HTTP exchanges with a server of this process, served in the calling thread.

The local stack's HTTP servers (the GitHub simulator, the API Gateway shim) each start a thread
per connection, and three of their clients opened a connection per request: the simulator's
webhook deliveries, the inline runners' calls (connect, a poll every 0.2 s, complete) and,
through `requests`, the Lambdas' GitHub calls. Under a burst the stack's one process is
CPU-bound, and each socket step of each request gave up the GIL and waited behind the busy
threads to take it back: the 10,000-job burst's webhooks went out at about 3 a second, and 2,500
of its jobs were never queued within the window.

A request to a registered server is handed here to the server's own request handler class over
an in-memory connection: the same request bytes are parsed by the same handler, which writes the
same response bytes, parsed back by `http.client` as a client would. Nothing else changes: the
servers still listen, and other processes (the runner scripts in a sandbox, `curl`) still reach
them over TCP. What is not modelled here: a client's timeout (the call waits for the handler).

`install_requests()` routes `requests` (the GitHub adapter's library) through here for
registered servers, once per process; `send()` is the plain call the other clients use.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from http.client import HTTPResponse
from socketserver import BaseServer
from typing import Any
from urllib.parse import urlsplit

_lock = threading.Lock()
_servers: dict[tuple[str, int], BaseServer] = {}
_original: dict[str, Any] = {}  # what install_requests() replaced


@dataclass(frozen=True)
class Answer:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes


class _Connection:
    """The server side of one request: reads the request's bytes, collects what is written."""

    def __init__(self, request: bytes) -> None:
        self._request = io.BytesIO(request)
        self.written = bytearray()

    def makefile(self, mode: str = "r", buffering: int | None = None) -> Any:
        if "r" in mode:
            return self._request
        return _Writer(self)

    def sendall(self, data: bytes) -> None:
        self.written += data

    def settimeout(self, timeout: float | None) -> None:
        return

    def setsockopt(self, *args: Any) -> None:
        return

    def getpeername(self) -> tuple[str, int]:
        return ("127.0.0.1", 0)

    def shutdown(self, how: int) -> None:
        return

    def close(self) -> None:
        return


class _Writer(io.RawIOBase):
    def __init__(self, connection: _Connection) -> None:
        self._connection = connection

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._connection.sendall(bytes(data))
        return len(data)


class _Reader:
    """What http.client reads a response from."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def makefile(self, mode: str = "rb", buffering: int | None = None) -> io.BytesIO:
        return io.BytesIO(self._data)


def register(server: BaseServer) -> None:
    """Serve requests to `server`'s address in the caller's thread from now on."""
    host, port = server.server_address[:2]  # type: ignore[index]
    with _lock:
        _servers[(str(host), int(port))] = server


def unregister(server: BaseServer) -> None:
    host, port = server.server_address[:2]  # type: ignore[index]
    with _lock:
        if _servers.get((str(host), int(port))) is server:
            del _servers[(str(host), int(port))]


def server_for(url: str) -> BaseServer | None:
    """The registered server `url` names (plain http only), or None."""
    if not url.startswith("http://"):
        return None
    split = urlsplit(url)
    if split.hostname is None:
        return None
    return _servers.get((split.hostname, split.port or 80))


def exchange(
    server: BaseServer, method: str, target: str, headers: Iterable[tuple[str, str]], body: bytes
) -> Answer:
    """One request to `server`, handled by its handler class in this thread; its answer."""
    host, port = server.server_address[:2]  # type: ignore[index]
    lines = [f"{method} {target or '/'} HTTP/1.1"]
    named = set()
    for name, value in headers:
        if name.lower() in ("content-length", "connection", "transfer-encoding"):
            continue
        named.add(name.lower())
        lines.append(f"{name}: {value}")
    if "host" not in named:
        lines.append(f"Host: {host}:{port}")
    lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    connection = _Connection("\r\n".join(lines).encode("latin-1") + body)
    try:
        server.RequestHandlerClass(connection, ("127.0.0.1", 0), server)  # type: ignore[arg-type]
    except Exception as exc:  # a handler that crashed: its server would drop the connection
        raise ConnectionResetError(f"{method} {target}: the server dropped the request") from exc
    if not connection.written:
        raise ConnectionResetError(f"{method} {target}: the server closed without an answer")
    response = HTTPResponse(_Reader(bytes(connection.written)), method=method)  # type: ignore[arg-type]
    response.begin()
    payload = response.read()
    return Answer(response.status, response.reason, list(response.getheaders()), payload)


def send(
    url: str, method: str, headers: Iterable[tuple[str, str]], body: bytes = b""
) -> Answer | None:
    """`url`'s answer when a server of this process serves it, else None (go over the network)."""
    server = server_for(url)
    if server is None:
        return None
    return exchange(server, method, _target(url), headers, body)


def _target(url: str) -> str:
    """The request target of `url`: its path and query."""
    split = urlsplit(url)
    return (split.path or "/") + (f"?{split.query}" if split.query else "")


def install_requests() -> None:
    """Route `requests` calls to registered servers through `exchange`. Again whenever someone
    replaced the route since (a test's `responses` mock, stopped, restores the send it found)."""
    from requests.adapters import HTTPAdapter

    with _lock:
        if HTTPAdapter.send is _adapter_send:
            return
        _original["requests"] = HTTPAdapter.send
        HTTPAdapter.send = _adapter_send  # type: ignore[method-assign]


def _adapter_send(adapter: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
    server = server_for(request.url)
    if server is None:
        return _original["requests"](adapter, request, *args, **kwargs)
    import requests
    from requests.structures import CaseInsensitiveDict
    from requests.utils import get_encoding_from_headers

    body = request.body or b""
    if isinstance(body, str):
        body = body.encode("utf-8")
    elif hasattr(body, "read"):
        body = body.read()
    try:
        answer = exchange(
            server, request.method, _target(request.url), request.headers.items(), bytes(body)
        )
    except ConnectionResetError as exc:
        raise requests.ConnectionError(str(exc), request=request) from exc
    response = requests.Response()
    response.status_code = answer.status
    response.reason = answer.reason
    response.headers = CaseInsensitiveDict()
    for name, value in answer.headers:
        given = response.headers.get(name)
        response.headers[name] = f"{given}, {value}" if given is not None else value
    response._content = answer.body
    response._content_consumed = True
    response.raw = io.BytesIO(answer.body)
    response.url = request.url
    response.request = request
    response.connection = adapter
    response.encoding = get_encoding_from_headers(response.headers)
    return response
