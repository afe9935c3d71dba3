"""boto3 clients shared by the adapters: one per service, standard retries, explicit timeouts."""

from __future__ import annotations

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


@cache
def client(service: str) -> Any:
    """A cached boto3 client; boto3 itself honours AWS_ENDPOINT_URL (set by the local stack)."""
    return boto3.session.Session().client(service, config=_CONFIG)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError ('' for anything else)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""
