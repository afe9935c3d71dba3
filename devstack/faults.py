"""The `--faults` kinds, and the AWS-side ones, injected with botocore hooks on the Lambdas' own
boto3 clients (seeded)."""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from botocore.awsrequest import AWSResponse

# Infrastructure: AWS, GitHub's API and its webhooks misbehave (tests/e2e/test_pipeline.py).
INFRA_FAULTS = (
    "ec2-capacity",
    "ec2-throttle",
    "github-5xx",
    "github-rate-limit",
    "ssm-offline",
    "drop-events",
    "duplicate-webhooks",
    "lost-webhooks",
    "spot-interrupt",
)
# Jobs and runners: users cancel, approve late and re-run; runners take other jobs; instances boot
# around their start timeout (tests/e2e/test_job_chaos.py).
JOB_FAULTS = ("cancel", "approval", "rerun", "steal", "slow-boot")
FAULTS = INFRA_FAULTS + JOB_FAULTS
_MUTATING_EC2 = ("CreateFleet", "RunInstances", "TerminateInstances", "CreateTags")


def parse_faults(text: str) -> dict[str, float]:
    """`k=v,...` with every k in FAULTS and v a fraction in [0, 1]; ValueError otherwise."""
    faults: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        key, sep, value = part.partition("=")
        key = key.strip()
        if key not in FAULTS:
            raise ValueError(f"unknown fault {key!r}; known: {', '.join(FAULTS)}")
        try:
            fraction = float(value) if sep else 1.0
        except ValueError:
            raise ValueError(f"fault {key}: {value!r} is not a number") from None
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fault {key}: {fraction} is not a fraction between 0 and 1")
        faults[key] = fraction
    return faults


_THROTTLED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
    b"<Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message>"
    b"</Error></Errors><RequestID>devstack-throttle</RequestID></Response>"
)


class _Raw:
    """The raw body botocore reads from an HTTP response."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Any:
        yield self._data


@dataclass
class _Http:
    status_code: int
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Ec2Faults:
    """`ec2-capacity` refuses spot launches (CreateFleet reports per-pool errors, RunInstances
    raises); `ec2-throttle` answers mutating calls with RequestLimitExceeded."""

    capacity: float = 0.0
    throttle: float = 0.0
    seed: int = 0
    counters: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()

    def _roll(self, fraction: float) -> bool:
        with self._lock:
            return fraction > 0 and self._rng.random() < fraction

    def attach(self, ec2_client: Any) -> None:
        for operation in _MUTATING_EC2:
            events = ec2_client.meta.events
            events.register(f"before-call.ec2.{operation}", self._before_call)
            # Throttling is answered per HTTP attempt, inside botocore's retry loop, as EC2 does:
            # the client's own retries see it (a before-call answer would skip them).
            events.register(f"before-send.ec2.{operation}", self._before_send)

    def _before_send(self, request: Any, event_name: str = "", **_: Any) -> Any:
        if not self._roll(self.throttle):
            return None
        operation = event_name.rsplit(".", 1)[-1]
        self.counters[f"throttled:{operation}"] += 1
        return AWSResponse(request.url, 503, {}, _Raw(_THROTTLED))

    def _before_call(self, model: Any, params: dict[str, Any], **_: Any) -> Any:
        operation = model.name
        body = params.get("body") or {}
        if operation == "CreateFleet" and _is_spot_fleet(body) and self._roll(self.capacity):
            self.counters["capacity:CreateFleet"] += 1
            return _Http(200), {
                "FleetId": f"fleet-{uuid.uuid4()}",
                "Errors": [
                    {
                        "ErrorCode": "InsufficientInstanceCapacity",
                        "ErrorMessage": "There is no Spot capacity available that matches "
                        "your request.",
                        "Lifecycle": "spot",
                    }
                ],
                "Instances": [],
                "ResponseMetadata": {"HTTPStatusCode": 200},
            }
        if (
            operation == "RunInstances"
            and body.get("InstanceMarketOptions.MarketType") == "spot"
            and self._roll(self.capacity)
        ):
            self.counters["capacity:RunInstances"] += 1
            error = {
                "Code": "InsufficientInstanceCapacity",
                "Message": "There is no Spot capacity available that matches your request.",
            }
            return _Http(500), {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 500}}
        return None


def _is_spot_fleet(body: dict[str, Any]) -> bool:
    if body.get("TargetCapacitySpecification.DefaultTargetCapacityType") == "spot":
        return True
    return any(k.startswith("SpotOptions") for k in body) and not any(
        k.startswith("OnDemandOptions") for k in body
    )
