"""What moto does not run: API Gateway, the SQS event source, EventBridge and the schedules.

Each shim calls a real handler in this process with an event of the shape AWS sends. Invocations
are serialised, one at a time across all functions: in AWS each runs in its own process, here they
share one Powertools logger, whose per-invocation keys would otherwise mix. They take turns in the
order they arrive, so under a backlog (a burst of webhooks) no trigger waits behind the others for
long: a plain lock lets whichever thread the scheduler wakes first win, again and again.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib
import json
import os
import random
import tempfile
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from devstack import loopback
from devstack.wsgi_server import BurstServer

ACCOUNT = "123456789012"


class _TurnLock:
    """A re-entrant lock granted in the order it was asked for."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._waiting: deque[int] = deque()
        self._owner: int | None = None
        self._depth = 0
        self.out = 0  # turns given up by invocations waiting out a back-off (stepped_out)

    def __enter__(self) -> _TurnLock:
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                return self
            self._waiting.append(me)
            while self._owner is not None or self._waiting[0] != me:
                self._cond.wait()
            self._waiting.popleft()
            self._owner, self._depth = me, 1
        return self

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._cond.notify_all()

    @contextlib.contextmanager
    def stepped_out(self) -> Any:
        """While the thread holding the turn waits (botocore's back-off before a retry), the
        next invocation runs, as another Lambda would meanwhile in AWS; the waiting one then
        takes its turn back in order, with the shared logger's keys and the metrics it had added
        as it left them. A thread not holding the turn just waits."""
        me = threading.get_ident()
        with self._cond:
            held = self._depth if self._owner == me else 0
        if not held:
            yield
            return
        state = _invocation_state_out()
        with self._cond:
            self._owner, self._depth = None, 0
            self.out += 1
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._waiting.append(me)
                while self._owner is not None or self._waiting[0] != me:
                    self._cond.wait()
                self._waiting.popleft()
                self._owner, self._depth = me, held
                self.out -= 1
            _invocation_state_in(state)


_RUNTIME = _TurnLock()


def _invocation_state_out() -> tuple[Any, ...]:
    """What an invocation keeps in the process's shared Powertools logger and metrics (one
    process holds every function here; a Lambda container holds one): taken out, so that the
    invocation running meanwhile neither logs with nor flushes it."""
    from jitrunners.observability import logger, metrics

    formatter, emf = logger.registered_formatter, metrics.provider
    state = (
        dict(formatter.log_format),  # type: ignore[attr-defined]
        dict(emf.metric_set),  # type: ignore[attr-defined]
        dict(emf.dimension_set),  # type: ignore[attr-defined]
        list(emf.dimension_sets),  # type: ignore[attr-defined]
        dict(emf.metadata_set),  # type: ignore[attr-defined]
    )
    formatter.clear_state()  # type: ignore[attr-defined]
    emf.clear_metrics()  # type: ignore[attr-defined]
    return state


def _invocation_state_in(state: tuple[Any, ...]) -> None:
    from jitrunners.observability import logger, metrics

    log_format, metric_set, dimension_set, dimension_sets, metadata_set = state
    logger.registered_formatter.log_format = log_format  # type: ignore[attr-defined]
    emf = metrics.provider
    for shared, kept in (
        (emf.metric_set, metric_set),  # type: ignore[attr-defined]
        (emf.dimension_set, dimension_set),  # type: ignore[attr-defined]
        (emf.metadata_set, metadata_set),  # type: ignore[attr-defined]
    ):
        shared.clear()
        shared.update(kept)
    emf.dimension_sets[:] = dimension_sets  # type: ignore[attr-defined]


class _SteppingTime:
    """`botocore.endpoint`'s `time`: its `sleep` (the back-off before a retry, the only sleep
    there) steps out of the turn (_TurnLock.stepped_out); everything else is the time module."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        with _RUNTIME.stepped_out():
            time.sleep(seconds)


def step_out_while_retrying(on: bool = True) -> None:
    """Let an invocation's retry back-off step out of the turn (`on`), or no longer (the
    process's botocore as it was). Off by default (Options.overlap_retries): with it on, the
    10,000-job burst's webhooks accept jobs faster than scale-up can start their runners, as
    they would in AWS, and thousands of launched instances wait for their starts (README
    "Scaling")."""
    import botocore.endpoint

    if on and not isinstance(botocore.endpoint.time, _SteppingTime):
        botocore.endpoint.time = _SteppingTime()  # type: ignore[assignment]
    elif not on and isinstance(botocore.endpoint.time, _SteppingTime):
        botocore.endpoint.time = time  # type: ignore[assignment]


@contextlib.contextmanager
def between_invocations() -> Any:
    """Held, no Lambda invocation runs: the running one ends first, the next waits its turn, and
    none is half done (one that stepped out of its turn takes it back and ends first). For
    reading counters that invocations move (the benchmark's) at one instant between two."""
    while True:
        _RUNTIME.__enter__()
        if not _RUNTIME.out:
            break
        _RUNTIME.__exit__()  # let the stepped-out invocations finish; then ask again
        time.sleep(0.005)
    try:
        yield _RUNTIME
    finally:
        _RUNTIME.__exit__()


HANDLERS = {
    "webhook": "jitrunners.handlers.webhook",
    "scale-up": "jitrunners.handlers.scale_up",
    "scale-down": "jitrunners.handlers.scale_down",
    "redrive": "jitrunners.handlers.redrive",
    "housekeeper": "jitrunners.handlers.housekeeper",
    "budget-guard": "jitrunners.handlers.budget_guard",
}


@dataclass
class LambdaContext:
    function_name: str
    timeout_s: float = 60.0
    memory_limit_in_mb: int = 256
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_s - (time.monotonic() - self.started)) * 1000))


def _log_invocation_error(function_name: str, exc: Exception) -> None:
    """What Lambda's runtime writes to the function's log when a handler raises: the error's type,
    message and stack, on one line of the Lambdas' log (the scheduler and event sources go on)."""
    from jitrunners.observability import logger

    logger.error(
        "invocation failed",
        exc_info=exc,
        extra={"function_name": function_name, "error_type": type(exc).__name__},
    )


# DEVSTACK_PROFILE=housekeeper,scale-up: each invocation of these functions is profiled (its
# thread only: the handler and the in-process AWS and GitHub answers), and the totals are written
# to $TMPDIR/devstack-<function>.pstats after each (`python -m pstats` reads them).
_PROFILED = frozenset(filter(None, os.environ.get("DEVSTACK_PROFILE", "").split(",")))
_PROFILES: dict[str, Any] = {}


def _profiled(key: str, handler: Callable[[Any, Any], Any], event: Any, context: Any) -> Any:
    import cProfile

    profile = _PROFILES.setdefault(key, cProfile.Profile())
    try:
        return profile.runcall(handler, event, context)
    finally:
        profile.dump_stats(Path(tempfile.gettempdir()) / f"devstack-{key}.pstats")


class Function:
    """One Lambda function: its handler (None when it is not in this build) and its invocations."""

    def __init__(
        self, key: str, prefix: str, timeout_s: float = 60.0, principals: Any = None
    ) -> None:
        self.key = key
        # devstack.iam.principals.Principals: when set, each invocation's AWS calls are
        # authorized as this function's role (an Enforcer on the shared clients reads it).
        self.principals = principals
        self.name = f"{prefix}-{key}"
        self.timeout_s = timeout_s
        self.missing_reason = ""
        self.handler: Callable[[Any, Any], Any] | None = None
        try:
            module = importlib.import_module(HANDLERS[key])
            self.handler = module.handler
        except ImportError as exc:
            self.missing_reason = f"{HANDLERS[key]}.handler is not in this build ({exc})"
        self.invocations = 0
        self.errors = 0
        self.seconds = 0.0
        # CPU time of the invoking thread (the in-process AWS and GitHub answers included).
        self.cpu_seconds = 0.0
        # (start, end) wall-clock times (time.time()) of every invocation, in order.
        self.runs: list[tuple[float, float]] = []

    @property
    def available(self) -> bool:
        return self.handler is not None

    def invoke(self, event: Any) -> Any:
        if self.handler is None:
            raise RuntimeError(self.missing_reason)
        acting = self.principals.bind(self.key) if self.principals else contextlib.nullcontext()
        with _RUNTIME, acting:
            context = LambdaContext(self.name, self.timeout_s)
            started, began, cpu = time.perf_counter(), time.time(), time.thread_time()
            try:
                if self.key in _PROFILED:
                    return _profiled(self.key, self.handler, event, context)
                return self.handler(event, context)
            except Exception as exc:
                self.errors += 1
                _log_invocation_error(self.name, exc)
                raise
            finally:
                self.invocations += 1
                self.seconds += time.perf_counter() - started
                self.cpu_seconds += time.thread_time() - cpu
                self.runs.append((began, time.time()))


# ---------------------------------------------------------------------------------- SNS
def sns_event(topic_arn: str, subject: str, message: str) -> dict[str, Any]:
    """The event Lambda receives from an SNS subscription: one record per message."""
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": f"{topic_arn}:{uuid.uuid4()}",
                "Sns": {
                    "Type": "Notification",
                    "MessageId": str(uuid.uuid4()),
                    "TopicArn": topic_arn,
                    "Subject": subject,
                    "Message": message,
                    "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                    "SignatureVersion": "1",
                    "Signature": "",
                    "SigningCertUrl": "",
                    "UnsubscribeUrl": "",
                    "MessageAttributes": {},
                },
            }
        ]
    }


# ---------------------------------------------------------------------------------- API Gateway
def http_api_event(path: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """An HTTP API (payload format 2.0) proxy event: lower-case headers, base64 for binary."""
    try:
        text, encoded = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode(), True
    now = time.time()
    return {
        "version": "2.0",
        "routeKey": "POST /webhook",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {k.lower(): v for k, v in headers.items()},
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "devstack",
            "domainName": "127.0.0.1",
            "http": {
                "method": "POST",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": headers.get("User-Agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "POST /webhook",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "body": text,
        "isBase64Encoded": encoded,
    }


class ApiGatewayShim:
    """`POST /webhook` on 127.0.0.1 -> HTTP API proxy event -> the webhook handler.

    `stopped()`, when given, says whether the function has reserved concurrency 0 (the kill
    switch): Lambda then throttles the invocation and API Gateway answers 500 for it."""

    def __init__(self, function: Function, stopped: Callable[[], bool] | None = None) -> None:
        self.function = function
        self.stopped = stopped
        self.statuses: Counter[int | str] = Counter()
        shim = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out as two writes: with Nagle's algorithm the second waits for
            # the client's delayed ACK, 40 ms per request on loopback.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.split("?", 1)[0] != "/webhook":
                    self._answer(404, {"message": "Not Found"})
                    return
                if shim.stopped is not None and shim.stopped():
                    shim.statuses["throttled"] += 1
                    self._answer(500, {"message": "Internal Server Error"})
                    return
                event = http_api_event("/webhook", dict(self.headers.items()), body)
                try:
                    response = shim.function.invoke(event)
                except Exception:  # noqa: BLE001 - API Gateway answers 500 for a crashed Lambda
                    self._answer(500, {"message": "Internal Server Error"})
                    return
                self._answer(
                    int(response.get("statusCode", 200)),
                    response.get("body", ""),
                    response.get("headers") or {},
                )

            def _answer(self, status: int, body: Any, headers: dict[str, str] | None = None):
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                shim.statuses[status] += 1
                self.send_response(status)
                for key, value in (headers or {"content-type": "application/json"}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                try:
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    # The sender gave up first (GitHub waits 10 s for an answer, then records
                    # the delivery as failed): as API Gateway, nothing more to do.
                    shim.statuses["sender_gone"] += 1

        self._server = BurstServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/webhook"

    def start(self) -> ApiGatewayShim:
        # The simulator of this process delivers in its own thread (devstack/loopback.py).
        loopback.register(self._server)
        self._thread.start()
        return self

    def stop(self) -> None:
        loopback.unregister(self._server)
        self._server.shutdown()
        self._server.server_close()


# ---------------------------------------------------------------------------------- SQS
def sqs_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    attributes = message.get("Attributes", {})
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {
            "ApproximateReceiveCount": attributes.get("ApproximateReceiveCount", "1"),
            "SentTimestamp": attributes.get("SentTimestamp", str(int(time.time() * 1000))),
            "SenderId": attributes.get("SenderId", ACCOUNT),
            "ApproximateFirstReceiveTimestamp": attributes.get(
                "ApproximateFirstReceiveTimestamp", str(int(time.time() * 1000))
            ),
        },
        "messageAttributes": {
            name: {
                "stringValue": value.get("StringValue"),
                "binaryValue": None,
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": value.get("DataType", "String"),
            }
            for name, value in (message.get("MessageAttributes") or {}).items()
        },
        "md5OfBody": hashlib.md5(message["Body"].encode(), usedforsecurity=False).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


class BackendSqs:
    """The SQS calls of an event source mapping's pollers (GetQueueAttributes, ReceiveMessage,
    DeleteMessageBatch), made on moto's backend in this process as the Lambda service makes them
    within AWS: no botocore client, no HTTP request for the emulator to parse. Under a burst the
    pollers' receives through a client took a tenth of the stack's CPU, most of it in the
    request's journey rather than the queue's work.

    What the service does stays: moto's own receive (visibility timeout, receive counts, the
    redrive policy's move to the DLQ, long polling) and delete, and the IAM layer's decision on
    each call as the function's execution role (`enforcer`: the same rules and records as on a
    client, a refusal raised as the ClientError the client would raise).
    """

    def __init__(self, region: str, enforcer: Any = None) -> None:
        self.region = region
        self.enforcer = enforcer

    def _queue(self, url: str) -> tuple[Any, str]:
        from devstack.aws_world import moto_queue

        return moto_queue(url, self.region)

    def _authorize(self, operation: str, params: dict[str, Any]) -> None:
        if self.enforcer is None:
            return
        refused = self.enforcer.refusal("sqs", operation, params)
        if refused is not None:
            from botocore.exceptions import ClientError

            from devstack.iam.enforce import denial_message

            error = {"Code": "AccessDenied", "Message": denial_message(*refused)}
            raise ClientError({"Error": error}, operation)

    def get_queue_attributes(self, QueueUrl: str, AttributeNames: list[str]) -> dict[str, Any]:
        self._authorize("GetQueueAttributes", {"QueueUrl": QueueUrl})
        backend, name = self._queue(QueueUrl)
        attributes = backend.get_queue(name).attributes
        wanted = set(AttributeNames)
        return {
            "Attributes": {
                k: str(v) for k, v in attributes.items() if "All" in wanted or k in wanted
            }
        }

    def receive_message(
        self,
        QueueUrl: str,
        MaxNumberOfMessages: int = 1,
        WaitTimeSeconds: int = 0,
        AttributeNames: list[str] | None = None,
        MessageAttributeNames: list[str] | None = None,
    ) -> dict[str, Any]:
        self._authorize("ReceiveMessage", {"QueueUrl": QueueUrl})
        backend, name = self._queue(QueueUrl)
        queue = backend.get_queue(name)
        found = backend.receive_message(
            name,
            MaxNumberOfMessages,
            WaitTimeSeconds,
            queue.visibility_timeout,
            list(MessageAttributeNames or []),
        )
        messages = []
        for message in found:
            entry: dict[str, Any] = {
                "MessageId": message.id,
                "ReceiptHandle": message.receipt_handle,
                "MD5OfBody": message.body_md5,
                "Body": message.body,
                "Attributes": {
                    "SenderId": message.sender_id,
                    "SentTimestamp": str(message.sent_timestamp),
                    "ApproximateReceiveCount": str(message.approximate_receive_count),
                    "ApproximateFirstReceiveTimestamp": str(
                        message.approximate_first_receive_timestamp
                    ),
                },
            }
            if message.message_attributes:  # as SendMessage took them, filtered by name
                entry["MessageAttributes"] = dict(message.message_attributes)
            messages.append(entry)
        return {"Messages": messages} if messages else {}

    def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:
        self._authorize("DeleteMessageBatch", {"QueueUrl": QueueUrl, "Entries": Entries})
        backend, name = self._queue(QueueUrl)
        done, failed = backend.delete_message_batch(name, Entries)
        return {"Successful": [{"Id": i} for i in done], "Failed": failed}


class SqsEventSource:
    """The event-source mapping: poll the queue, batches to a handler, partial failures.

    A batch is up to `batch_size` records: above 10 (one ReceiveMessage's most) the poller keeps
    receiving for up to `window_s` seconds (the mapping's maximum batching window) to fill it.
    `workers` pollers run at once (the mapping's maximum concurrency).

    Records the handler reports in `batchItemFailures` (and every record of a batch whose handler
    raised) stay in the queue and come back after the visibility timeout; SQS counts each receive
    toward the redrive policy's maxReceiveCount and moves the message to the DLQ after it.

    `intake()`, when given, answers (the mapping is enabled, the function may run) as Lambda's
    poller obeys them: a disabled mapping receives nothing; a function with reserved concurrency
    0 gets no batch, and what the poller received returns to the queue after its visibility
    timeout, a receive counted all the same (why the kill switch disables the mapping too).
    """

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        function: Function,
        region: str,
        batch_size: int = 10,
        poisoned: int = 0,
        intake: Callable[[], tuple[bool, bool]] | None = None,
        *,
        window_s: float = 0.0,
        workers: int = 1,
        name: str = "sqs-event-source",
    ) -> None:
        self.sqs = sqs
        self.intake = intake
        self.queue_url = queue_url
        self.function = function
        self.region = region
        self.batch_size = batch_size
        self.window_s = window_s
        self._lock = threading.Lock()
        self.queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self.counters: Counter[str] = Counter()
        # The first `poisoned` messages received crash every invocation that gets them (as a
        # handler timing out on them would) until SQS moves them to the DLQ; a message the
        # redrive sends back is a new message and goes through.
        self._poisoned_left = poisoned
        self._poisoned: set[str] = set()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._loop, name=f"{name}-{index}", daemon=True)
            for index in range(max(1, workers))
        ]

    def start(self) -> SqsEventSource:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def _receive(self, wait_s: int) -> list[dict[str, Any]]:
        def receive(count: int, wait: int) -> list[dict[str, Any]]:
            return list(
                self.sqs.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=count,
                    WaitTimeSeconds=wait,
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                ).get("Messages", [])
            )

        messages = receive(min(10, self.batch_size), wait_s)
        deadline = time.monotonic() + self.window_s
        while messages and len(messages) < self.batch_size and time.monotonic() < deadline:
            # A long poll answers at the first message: no busy loop while the window fills
            # (a quiet second ends it, so a window may run up to a second over).
            more = receive(min(10, self.batch_size - len(messages)), 1)
            if not more:
                break
            messages += more
        return messages

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once(wait_s=1)
            except Exception:  # noqa: BLE001 - a poller survives a failed receive, as AWS's does
                self.counters["poll_errors"] += 1
                time.sleep(0.5)

    def poll_once(self, wait_s: int = 0) -> int:
        polling, runnable = self.intake() if self.intake is not None else (True, True)
        if not polling:
            self.counters["paused_polls"] += 1
            self._stop.wait(wait_s)
            return 0
        messages = self._receive(wait_s)
        if not messages:
            return 0
        if not runnable:
            self.counters["throttled"] += len(messages)
            return 0
        records = [sqs_record(m, self.queue_arn, self.region) for m in messages]
        with self._lock:
            self.counters["batches"] += 1
            self.counters["records"] += len(records)
            for record in records:
                if self._poisoned_left > 0 and record["messageId"] not in self._poisoned:
                    self._poisoned.add(record["messageId"])
                    self._poisoned_left -= 1
            poisoned = any(r["messageId"] in self._poisoned for r in records)
        try:
            if poisoned:
                self.counters["poisoned_invocations"] += 1
                raise RuntimeError("handler crashed on a poisoned message")
            response = self.function.invoke({"Records": records}) or {}
            failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
        except Exception:  # noqa: BLE001 - the whole batch returns to the queue
            self.counters["handler_errors"] += 1
            failed = {r["messageId"] for r in records}
        self.counters["item_failures"] += len(failed)
        done = [r for r in records if r["messageId"] not in failed]
        for start in range(0, len(done), 10):
            chunk = done[start : start + 10]
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": r["receiptHandle"]} for i, r in enumerate(chunk)
                ],
            )
        return len(records)


# ---------------------------------------------------------------------------------- EventBridge
class EventBus:
    """EventBridge rules -> the teardown queue (terraform/events.tf): each event as the body of
    one message, which scale-down reads in batches through its event source mapping (an
    SqsEventSource). drop-events loses some before the queue, as a lost event would be.
    """

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        *,
        drop: float = 0.0,
        seed: int = 0,
        on_drop: Callable[[dict[str, Any]], None] = lambda event: None,
        send: Callable[[str], None] | None = None,
    ) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        # How an event's body reaches the queue (the stack's: moto's backend directly, as the
        # events service delivers); by default a SendMessage.
        self._send = send or (lambda body: sqs.send_message(QueueUrl=queue_url, MessageBody=body))
        self.on_drop = on_drop
        self.drop = drop
        self._rng = random.Random(seed)
        self.counters: Counter[str] = Counter()
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def start(self) -> EventBus:
        return self

    def stop(self) -> None:
        pass

    def put(self, event: dict[str, Any]) -> None:
        with self._lock:
            self.events.append(event)
            self.counters[f"put:{event['detail-type']}"] += 1
            if self.drop and self._rng.random() < self.drop:
                self.counters["dropped"] += 1
                self.on_drop(event)
                return
        try:
            self._send(json.dumps(event))
        except Exception:  # noqa: BLE001 - EventBridge retries, then parks it in the events DLQ
            with self._lock:
                self.counters["undeliverable"] += 1
            return
        with self._lock:
            self.counters["sent"] += 1

    def idle(self) -> bool:
        """Every event sent has been handled: nothing waits in the teardown queue or is in
        flight (a record handed back counts until it succeeds or goes to the DLQ)."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(v) for v in attributes.values()) == 0


def ec2_event(detail_type: str, instance_id: str, detail: dict[str, Any], region: str):
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": "aws.ec2",
        "account": ACCOUNT,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": region,
        "resources": [f"arn:aws:ec2:{region}:{ACCOUNT}:instance/{instance_id}"],
        "detail": {"instance-id": instance_id, **detail},
    }


# ---------------------------------------------------------------------------------- schedules
class Scheduler:
    """EventBridge schedules: each function every `interval_s` seconds with a Scheduled Event."""

    def __init__(self) -> None:
        self._jobs: list[tuple[Function, float]] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.counters: Counter[str] = Counter()

    def every(self, function: Function, interval_s: float) -> None:
        if function.available:
            self._jobs.append((function, interval_s))

    @staticmethod
    def scheduled_event(function: Function) -> dict[str, Any]:
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": ACCOUNT,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "region": "eu-west-1",
            "resources": [f"arn:aws:events:eu-west-1:{ACCOUNT}:rule/{function.name}"],
            "detail": {},
        }

    def fire(self, function: Function) -> Any:
        self.counters[function.key] += 1
        try:
            result = function.invoke(self.scheduled_event(function))
        except Exception:  # noqa: BLE001 - a failed scheduled run is retried at the next tick
            self.counters[f"{function.key}:errors"] += 1
            return None
        if isinstance(result, dict) and isinstance(result.get("moved"), int):
            self.counters[f"{function.key}:moved"] += result["moved"]
        return result

    def start(self) -> Scheduler:
        for function, interval in self._jobs:
            thread = threading.Thread(
                target=self._loop, args=(function, interval), name=function.key, daemon=True
            )
            self._threads.append(thread)
            thread.start()
        return self

    def _loop(self, function: Function, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            self.fire(function)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
