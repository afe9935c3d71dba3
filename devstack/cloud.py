"""What the `jitrunners` CLI reads and changes of a deployment: the Lambda functions (their
environment, reserved concurrency, published version and `live` alias, terraform/functions.tf),
the SQS event source mapping on scale-up's alias, Terraform's kill-switch setting, the log groups,
and the Lambdas' log lines in CloudWatch Logs.

The functions are records only: the stack's shims run the handlers. But the shims obey what the
kill switch changes in them (`intake`, `function_stopped`), as Lambda and API Gateway do. The
mapping is detached from moto's own SQS-to-Lambda delivery (which would try to run the function
in Docker): the event source shim polls instead. Log lines reach `/aws/lambda/<function>` from a
background thread.
"""

from __future__ import annotations

import io
import json
import threading
import zipfile
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from devstack.aws_world import ACCOUNT, REGION, AwsWorld
from devstack.deployment import FUNCTION_KEYS

# terraform/variables.tf defaults: webhook_reserved_concurrency, scale_up_maximum_concurrency
# (scale-up's reserved concurrency defaults to it), function_reserved_concurrency.
RESERVED = {
    "webhook": 50,
    "scale-up": 5,
    "scale-down": 10,
    "redrive": 1,
    "housekeeper": 1,
    "budget-guard": 1,
}
ALIAS = "live"
HANDLERS = {key: f"jitrunners.handlers.{key.replace('-', '_')}.handler" for key in FUNCTION_KEYS}


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README", "records only: the local stack's shims run the handlers\n")
    return buffer.getvalue()


def log_groups(prefix: str) -> list[str]:
    return [f"/aws/lambda/{prefix}-{key}" for key in FUNCTION_KEYS] + [
        f"/{prefix}/runner-commands",
        f"/{prefix}/api-access",
    ]


def register(world: AwsWorld, env: Mapping[str, str]) -> None:
    """Create the functions, the mapping and the log groups in moto, as terraform apply would."""
    iam, lam, logs = world.client("iam"), world.client("lambda"), world.client("logs")
    prefix = world.prefix
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    code = _zip()
    tags = {"jitrunners:prefix": prefix}
    for key in FUNCTION_KEYS:
        name = f"{prefix}-{key}"
        role = iam.create_role(
            RoleName=f"{name}-lambda", AssumeRolePolicyDocument=json.dumps(trust)
        )
        lam.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=role["Role"]["Arn"],
            Handler=HANDLERS[key],
            Code={"ZipFile": code},
            Environment={"Variables": dict(env)},
            Publish=True,  # version 1, what the `live` alias is created on
            Tags=tags,
        )
        lam.create_alias(FunctionName=name, Name=ALIAS, FunctionVersion="1")
        lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=RESERVED[key])
    # What `jitrunners kill-switch off` restores (terraform/functions.tf aws_ssm_parameter).
    world.client("ssm").put_parameter(
        Name=f"/{prefix}/config/kill-switch",
        Type="String",
        Value=json.dumps(
            {
                "kill_switch": False,
                "reserved_concurrency": {k: RESERVED[k] for k in ("webhook", "scale-up")},
            }
        ),
    )
    queue_arn = world.client("sqs").get_queue_attributes(
        QueueUrl=world.job_queue_url, AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    alias = lam.get_alias(FunctionName=f"{prefix}-scale-up", Name=ALIAS)["AliasArn"]
    lam.create_event_source_mapping(
        EventSourceArn=queue_arn, FunctionName=alias, Enabled=True, BatchSize=10, Tags=tags
    )
    # Moto (in this process) would deliver every message it receives to the function itself.
    from moto.sqs.models import sqs_backends

    for queue in sqs_backends[ACCOUNT][REGION].queues.values():
        queue.lambda_event_source_mappings.clear()
    for group in log_groups(prefix):
        logs.create_log_group(logGroupName=group)


def intake(world: Any) -> tuple[bool, bool]:
    """(the job queue's mapping polls, scale-up may run): what Lambda's poller obeys."""
    from jitrunners.aws.functions import POLLING_STATES

    lam = world.client("lambda")
    scale_up = f"{world.prefix}-scale-up"
    states = [
        str(m.get("State", ""))
        for page in lam.get_paginator("list_event_source_mappings").paginate()
        for m in page.get("EventSourceMappings", [])
        if str(m.get("FunctionArn", "")).split(":")[6:7] == [scale_up]
    ]
    concurrency = lam.get_function_concurrency(FunctionName=scale_up)
    polling = any(state in POLLING_STATES for state in states)
    return polling, concurrency.get("ReservedConcurrentExecutions") != 0


def function_stopped(world: Any, key: str) -> bool:
    """Reserved concurrency 0: Lambda throttles every invocation of the function."""
    found = world.client("lambda").get_function_concurrency(FunctionName=f"{world.prefix}-{key}")
    return found.get("ReservedConcurrentExecutions") == 0


class LogShipper:
    """A stream the Lambdas' log lines are written to (beside lambdas.log): each complete JSON
    line of a Powertools Logger goes to its function's log group, in batches, from a thread."""

    STREAM = "devstack"

    def __init__(self, logs: Any, prefix: str, interval_s: float = 0.5) -> None:
        self.logs = logs
        self.prefix = prefix
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._partial = ""
        self._pending: dict[str, list[dict[str, Any]]] = {}
        self._streams: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="log-shipper", daemon=True)
        self.shipped = 0
        self.failures = 0

    def start(self) -> LogShipper:
        self._thread.start()
        return self

    def write(self, text: str) -> int:
        with self._lock:
            self._partial += text
            *lines, self._partial = self._partial.split("\n")
            for line in lines:
                self._take(line)
        return len(text)

    def flush(self) -> None:
        return None

    def _take(self, line: str) -> None:
        try:
            record = json.loads(line)
        except ValueError:
            return
        if not isinstance(record, dict) or "function_name" not in record:
            return  # EMF metric documents and anything else
        try:
            at = datetime.strptime(str(record.get("timestamp")), "%Y-%m-%d %H:%M:%S,%f%z")
        except ValueError:
            return
        group = f"/aws/lambda/{record['function_name']}"
        event = {"timestamp": int(at.timestamp() * 1000), "message": line}
        self._pending.setdefault(group, []).append(event)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.ship()
            except Exception:  # noqa: BLE001 - a lost batch must not end the shipping
                self.failures += 1

    def ship(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for group, events in pending.items():
            if group not in self._streams:
                self.logs.create_log_stream(logGroupName=group, logStreamName=self.STREAM)
                self._streams.add(group)
            events.sort(key=lambda e: e["timestamp"])
            for first in range(0, len(events), 1000):
                self.logs.put_log_events(
                    logGroupName=group,
                    logStreamName=self.STREAM,
                    logEvents=events[first : first + 1000],
                )
            self.shipped += len(events)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.ship()
