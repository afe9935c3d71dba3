"""The local stack's keep-alive server for moto (devstack/wsgi_server.py): the stack's clients
keep one connection for many calls, request bodies arrive whole (Content-Length or chunked),
answers carry their length, and stopping it ends the kept connections."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from devstack.wsgi_server import KeepAliveMotoServer, WsgiServer

pytestmark = pytest.mark.e2e


def _echo(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Answers what it was asked: method, path, query, the body and a header."""
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    if environ["PATH_INFO"] == "/empty":
        start_response("204 No Content", [])
        return []
    answer = {
        "method": environ["REQUEST_METHOD"],
        "path": environ["PATH_INFO"],
        "query": environ["QUERY_STRING"],
        "body": body.decode(),
        "x_test": environ.get("HTTP_X_TEST"),
        "underscored": environ.get("HTTP_X_UNDER_SCORE"),
    }
    # A Connection header of the app's own is not passed on: the server decides.
    start_response("200 OK", [("Content-Type", "application/json"), ("Connection", "close")])
    return [json.dumps(answer).encode()]


@pytest.fixture
def echo() -> Iterator[WsgiServer]:
    import threading

    server = WsgiServer(("127.0.0.1", 0), _echo)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    yield server
    server.shutdown()
    server.close_connections()
    server.server_close()
    thread.join()


def _connect(server: WsgiServer) -> http.client.HTTPConnection:
    host, port = server.server_address[:2]
    return http.client.HTTPConnection(str(host), int(port), timeout=10)


def test_one_connection_serves_many_requests_each_read_in_full(echo: WsgiServer) -> None:
    connection = _connect(echo)
    for i in range(3):
        connection.request("POST", f"/a%20b?i={i}", body=f"body {i}", headers={"X-Test": "t"})
        response = connection.getresponse()
        assert not response.will_close  # kept alive, whatever the app said
        assert json.loads(response.read()) == {
            "method": "POST", "path": "/a b", "query": f"i={i}", "body": f"body {i}",
            "x_test": "t", "underscored": None,
        }  # fmt: skip
    connection.close()


def test_a_chunked_body_is_read_whole_and_the_connection_goes_on(echo: WsgiServer) -> None:
    connection = _connect(echo)
    connection.request("PUT", "/chunks", body=iter([b"hello ", b"chunked ", b"world"]),
                       encode_chunked=True)  # fmt: skip
    first = connection.getresponse()
    assert json.loads(first.read())["body"] == "hello chunked world"
    connection.request("GET", "/after")
    second = connection.getresponse()
    assert json.loads(second.read())["path"] == "/after"


def test_an_underscored_header_does_not_pass_for_a_dashed_one(echo: WsgiServer) -> None:
    connection = _connect(echo)
    connection.request("GET", "/", headers={"X_Under_Score": "spoof"})
    assert json.loads(connection.getresponse().read())["underscored"] is None


def test_no_body_answers_say_so_and_keep_the_connection(echo: WsgiServer) -> None:
    connection = _connect(echo)
    connection.request("GET", "/empty")
    empty = connection.getresponse()
    assert (empty.status, empty.read()) == (204, b"")
    connection.request("HEAD", "/")
    head = connection.getresponse()
    length = len(json.dumps({"method": "HEAD", "path": "/", "query": "", "body": "",
                             "x_test": None, "underscored": None}))  # fmt: skip
    # A HEAD's length is its GET's; its body is not sent.
    assert (head.status, head.read(), head.getheader("Content-Length")) == (200, b"", str(length))
    connection.request("GET", "/again")
    assert connection.getresponse().status == 200


def test_stopping_ends_kept_connections(echo: WsgiServer) -> None:
    connection = _connect(echo)
    connection.request("GET", "/")
    connection.getresponse().read()
    echo.close_connections()
    assert connection.sock is not None
    assert connection.sock.recv(1) == b""  # the server's end is closed


def _client(service: str, host: str, port: int) -> Any:
    return boto3.client(
        service, endpoint_url=f"http://{host}:{port}", region_name="eu-west-1",
        aws_access_key_id="devstack", aws_secret_access_key="devstack",
    )  # fmt: skip


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The addresses sockets of this process connect to from here on."""
    found: list[object] = []
    real = socket.socket.connect

    def counted(sock: socket.socket, address: Any) -> None:
        found.append(address)
        real(sock, address)

    monkeypatch.setattr(socket.socket, "connect", counted)
    return found


@pytest.fixture
def moto_server() -> Iterator[tuple[str, int]]:
    server = KeepAliveMotoServer("127.0.0.1", 0)
    server.start()
    yield server.get_host_and_port()
    server.stop()


def test_other_clients_keep_one_connection_to_moto_for_their_calls(
    moto_server: tuple[str, int], connects: list[object]
) -> None:
    """What a client of another process (the runner scripts' aws CLI) gains: moto's own server
    (Werkzeug's) closes every connection, so each call opened one. Here six calls open one. (A
    URL naming the server by another host name is not served in process: it goes over HTTP.)"""
    sqs = _client("sqs", "localhost", moto_server[1])
    url = sqs.create_queue(QueueName="keep-alive")["QueueUrl"]
    for i in range(5):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert sorted(m["Body"] for m in got) == [f"m{i}" for i in range(5)]
    assert len(connects) == 1  # the connection create_queue opened served all six


def test_this_process_calls_moto_without_a_socket_and_its_hooks_still_see_them(
    moto_server: tuple[str, int], connects: list[object]
) -> None:
    """boto3 clients of the process that runs the server hand it their requests directly:
    answers, errors, streamed and HEAD bodies are as over HTTP, and every attempt still passes
    botocore's before-send hook (the stack's quotas, faults and call counts sit there)."""
    sqs = _client("sqs", *moto_server)
    sent: list[str] = []
    sqs.meta.events.register("before-send", lambda request, **_: sent.append(request.url))
    url = sqs.create_queue(QueueName="in-process")["QueueUrl"]
    sqs.send_message_batch(
        QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": f"m{i}"} for i in range(3)]
    )
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert sorted(m["Body"] for m in got) == ["m0", "m1", "m2"]
    with pytest.raises(ClientError) as refused:
        sqs.get_queue_url(QueueName="no-such-queue")
    assert "NonExistentQueue" in refused.value.response["Error"]["Code"]
    assert len(sent) == 4

    s3 = _client("s3", *moto_server)
    s3.create_bucket(Bucket="dist", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_object(Bucket="dist", Key="runner.tar.gz", Body=b"\x00\x01" * 50_000)
    assert s3.get_object(Bucket="dist", Key="runner.tar.gz")["Body"].read() == b"\x00\x01" * 50_000
    assert s3.head_object(Bucket="dist", Key="runner.tar.gz")["ContentLength"] == 100_000
    assert connects == []


def test_an_application_failure_is_answered_500_over_http_and_in_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """moto lets some failures escape its app: the caller gets the service's internal error
    (which botocore retries) on a connection that stays usable, not an exception of moto's."""
    from botocore.config import Config

    from devstack.wsgi_server import InProcessTransport

    def failing(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise StopIteration("out of addresses")

    server = WsgiServer(("127.0.0.1", 0), failing)
    host, port = (str(x) for x in server.server_address[:2])
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    InProcessTransport.register(host, int(port), failing)
    try:
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        for _ in range(2):
            connection.request("POST", "/", body=b"x")
            answer = connection.getresponse()
            assert (answer.status, answer.read()) == (500, b"internal error")
        sqs = boto3.client(
            "sqs", endpoint_url=f"http://{host}:{port}", region_name="eu-west-1",
            aws_access_key_id="devstack", aws_secret_access_key="devstack",
            config=Config(retries={"mode": "standard", "max_attempts": 2}),
        )  # fmt: skip
        with pytest.raises(ClientError) as failed:
            sqs.list_queues()
        assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
        assert failed.value.response["ResponseMetadata"]["RetryAttempts"] >= 1  # retried
    finally:
        InProcessTransport.unregister(host, int(port))
        server.shutdown()
        server.close_connections()
        server.server_close()
        thread.join()
