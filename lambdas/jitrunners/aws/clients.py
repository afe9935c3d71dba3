"""boto3 clients shared by the adapters: one per service, standard retries, explicit timeouts."""

from __future__ import annotations

import random
import threading
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

# One retry policy for AWS (STYLE principle 5): botocore's standard mode, one retry. Its first
# retry waits a random fraction of a second, and its retry quota (per client) stops retrying once
# a service keeps failing, so a throttled API is not hammered (no retry storm). Whatever still
# fails goes back to its queue with a delay (scale-up: `throttle_delay_s`), so work waits in SQS,
# never in a sleeping Lambda: adaptive mode's client-side rate limiter, which sleeps inside the
# invocation to pace calls, is off on purpose (README "Scaling").
MAX_ATTEMPTS = 2
_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
    connect_timeout=3,
    read_timeout=10,
    tcp_keepalive=True,
)


# One boto3 session for every client: its loaders and endpoint data are read once, not once
# per service. Session.client is not thread-safe (the local stack calls from threads): a lock.
_LOCK = threading.Lock()
_SESSION: list[boto3.session.Session] = []


# The AWS Price List API answers in a few regions only; us-east-1 serves every region's prices.
PRICING_REGION = "us-east-1"


@cache
def client(service: str, region: str | None = None) -> Any:
    """A cached boto3 client (in `region`, default the session's); boto3 itself honours
    AWS_ENDPOINT_URL (set by the local stack)."""
    with _LOCK:
        if not _SESSION:
            _SESSION.append(boto3.session.Session())
        return _SESSION[0].client(service, region_name=region, config=_CONFIG)


def reset() -> None:
    """Forget the clients and the session (tests and the local stack change the environment)."""
    with _LOCK:
        client.cache_clear()
        _SESSION.clear()


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError ('' for anything else)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


# The codes with which AWS APIs refuse a call for its rate (EC2, SSM, DynamoDB, SQS, KMS, STS).
THROTTLE_CODES = frozenset(
    {
        "RequestLimitExceeded",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestThrottled",
        "RequestThrottledException",
        "ProvisionedThroughputExceededException",
        "SlowDown",
    }
)
# A throttled record comes back after a random delay in this range: spread over several seconds,
# the records one throttle sent back do not return together and drain the bucket again.
THROTTLE_DELAY_S = (2, 10)


def throttled(exc: BaseException) -> bool:
    """Whether an AWS error refused the call for its rate."""
    return error_code(exc) in THROTTLE_CODES


def throttle_delay_s(rng: random.Random | None = None) -> int:
    """Seconds a throttled record waits in its queue before it is tried again."""
    low, high = THROTTLE_DELAY_S
    return (rng or random).randint(low, high)
