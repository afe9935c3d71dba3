"""boto3 clients shared by the adapters: one per service, standard retries, explicit timeouts."""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

# One retry policy for AWS (STYLE principle 5): botocore's adaptive mode adds client-side rate
# limiting on top of standard retries, which is what keeps EC2's token buckets from being drained.
_CONFIG = Config(
    retries={"mode": "adaptive", "max_attempts": 5},
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
