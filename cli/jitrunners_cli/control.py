"""AWS access for the control subcommands (kill-switch, spot-only, rollout): the target deployment,
who is acting, metering, and AWS failures turned into one clear line (CliError).

The commands reuse the Lambdas' domain code (jitrunners.guardrail), which calls AWS through
jitrunners.aws.clients: those clients read the region from the environment, so --region is put
there before the first call.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)

from jitrunners.aws import clients
from jitrunners.aws.clients import client, error_code
from jitrunners.aws.functions import FunctionNotFound
from jitrunners_cli.errors import CliError

# Error codes that mean "these credentials may not do that" (or are no credentials at all).
DENIED = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
    }
)


@dataclass(frozen=True)
class Target:
    """The deployment a command acts on, and the identity acting (an IAM ARN, for the records)."""

    prefix: str
    region: str
    caller: str


def _use_region(region: str | None) -> str:
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        raise CliError("no AWS Region: pass --region or set AWS_REGION")
    if os.environ.get("AWS_DEFAULT_REGION") != region or os.environ.get("AWS_REGION") != region:
        os.environ["AWS_DEFAULT_REGION"] = region
        os.environ["AWS_REGION"] = region
        clients.reset()
    return region


@contextmanager
def aws_errors(prefix: str, region: str | None = None) -> Iterator[None]:
    """Expected AWS failures as CliError: no credentials, no access, no such deployment."""
    where = f"prefix {prefix!r}" + (f" in {region}" if region else "")
    try:
        yield
    except (NoCredentialsError, PartialCredentialsError):
        raise CliError(
            "no AWS credentials: configure a profile (AWS_PROFILE) or AWS_ACCESS_KEY_ID and"
            " AWS_SECRET_ACCESS_KEY"
        ) from None
    except NoRegionError:
        raise CliError("no AWS Region: pass --region or set AWS_REGION") from None
    except EndpointConnectionError as exc:
        raise CliError(f"cannot reach AWS: {exc}") from None
    except FunctionNotFound as exc:
        raise CliError(f"no jitrunners deployment with {where}: {exc}") from None
    except ClientError as exc:
        code = error_code(exc)
        message = exc.response.get("Error", {}).get("Message", "") or str(exc)
        if code in DENIED:
            raise CliError(f"access denied ({code}): {message}") from None
        if code in ("ResourceNotFoundException", "ParameterNotFound"):
            raise CliError(f"no jitrunners deployment with {where}: {message}") from None
        raise CliError(f"AWS refused ({code or 'error'}): {message}") from None


def target(args: Any) -> Target:
    """Region into the environment, then who we are (which also checks the credentials)."""
    region = _use_region(args.region)
    with aws_errors(args.prefix, region):
        caller = str(client("sts").get_caller_identity()["Arn"])
    return Target(prefix=args.prefix, region=region, caller=caller)


def meter(target: Target, name: str, **dimensions: str) -> str | None:
    """Count one operator action in CloudWatch, in the namespace and service the Lambdas use
    (`<prefix>`), with the same dimensions. Best effort: the change is made whatever happens
    here; returns a warning to print when the metric could not be sent."""

    def put(dims: Mapping[str, str]) -> None:
        client("cloudwatch").put_metric_data(
            Namespace=target.prefix,
            MetricData=[
                {
                    "MetricName": name,
                    "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
                    "Value": 1.0,
                    "Unit": "Count",
                }
            ],
        )

    try:
        with aws_errors(target.prefix, target.region):
            put({"service": target.prefix})  # the total, what alarms watch
            if dimensions:
                put({"service": target.prefix, **dimensions})
    except CliError as exc:
        return f"warning: metric {name} not sent: {exc}"
    return None


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def output(args: Any, data: Mapping[str, Any], lines: list[str]) -> None:
    """JSON on --json, otherwise the human lines."""
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        for line in lines:
            print(line)


def note(text: str) -> None:
    """A remark beside the output (warnings): stderr, so --json output stays parseable."""
    print(text, file=sys.stderr)
