"""Entry point: common options, subcommand registry, and the one place errors become exit codes.

Each subcommand lives in a module of this package listed in COMMANDS; the module exposes
`register(subparsers, parents)`, which adds its parser(s) with `parents` (the common options) and
sets `func=handler` where `handler(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from jitrunners_cli.errors import CliError, translate

# Subcommand modules, in `--help` order.
COMMANDS: tuple[str, ...] = (
    "setup",
    "status",
    "trace",
    "webhook",
    "redrive",
    "drain",
    "kill_switch",
    "spot_only",
    "rollout",
)


def common_options() -> argparse.ArgumentParser:
    """--prefix, --region, --json: every subcommand takes them (defaults from the environment)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--prefix",
        default=os.environ.get("JITRUNNERS_PREFIX", "jitrunners"),
        help="the module's name prefix (env JITRUNNERS_PREFIX; default jitrunners)",
    )
    parent.add_argument(
        "--region",
        default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
        help="AWS Region (env AWS_REGION / AWS_DEFAULT_REGION, as the AWS CLI)",
    )
    parent.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jitrunners", description="Operate a jitrunners deployment (or the local stack)."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    parents = [common_options()]
    for name in COMMANDS:
        importlib.import_module(f"jitrunners_cli.{name}").register(subparsers, parents)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "func", None)
    if handler is None:
        parser.print_help()
        return 2
    if getattr(args, "region", None):
        # One region for every client, the CLI's and the Lambdas' adapters it reuses.
        os.environ["AWS_REGION"] = os.environ["AWS_DEFAULT_REGION"] = args.region
    try:
        return int(handler(args) or 0)
    except CliError as exc:
        return _fail(args, exc)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        expected = translate(exc)
        if expected is None:
            raise
        return _fail(args, expected)


def _fail(args: argparse.Namespace, exc: CliError) -> int:
    print(f"jitrunners {args.command}: {exc}", file=sys.stderr)
    return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
