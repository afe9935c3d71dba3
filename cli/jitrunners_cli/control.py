"""Shared by the control subcommands (kill-switch, spot-only, rollout): the deployment acted on,
who is acting (recorded with every change), metering, output.

They reuse the Lambdas' domain code (jitrunners.guardrail, jitrunners.aws.functions); AWS errors
the entry point does not know become one line here (a function missing: no such deployment).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jitrunners.aws.clients import client
from jitrunners.aws.functions import FunctionNotFound
from jitrunners_cli.deployment import find, quiet_lambda_logs
from jitrunners_cli.errors import EXIT_NOT_FOUND, CliError, translate


@dataclass(frozen=True)
class Target:
    """The deployment a command acts on, and the identity acting (an IAM ARN, for the records)."""

    prefix: str
    caller: str


def register_mode(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
    name: str,
    help_text: str,
    description: str | None,
    handler: Callable[[argparse.Namespace], int],
) -> None:
    """`jitrunners <name> [status|on|off] [--reason R]`: a guardrail mode's command."""
    parser = subparsers.add_parser(
        name,
        parents=parents,
        help=help_text,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("state", nargs="?", choices=("status", "on", "off"), default="status")
    parser.add_argument("--reason", default="", help="why (recorded with the change)")
    parser.set_defaults(func=handler)


def target(args: Any) -> Target:
    """The deployment of --prefix (CliError, exit 3, when there is none), and who we are."""
    quiet_lambda_logs()
    deployment = find(args.prefix)
    caller = str(client("sts").get_caller_identity()["Arn"])
    return Target(prefix=deployment.prefix, caller=caller)


@contextmanager
def functions_of(prefix: str) -> Iterator[None]:
    """A function of the deployment missing is a deployment missing (or incomplete)."""
    try:
        yield
    except FunctionNotFound as exc:
        raise CliError(
            f"the deployment {prefix!r} is incomplete or not at this version: {exc}",
            EXIT_NOT_FOUND,
        ) from None


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
        put({"service": target.prefix})  # the total, what alarms watch
        if dimensions:
            put({"service": target.prefix, **dimensions})
    except Exception as exc:  # noqa: BLE001 - the change is made; the metric is a record of it
        known = translate(exc)
        return f"warning: metric {name} not sent: {known or exc}"
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
