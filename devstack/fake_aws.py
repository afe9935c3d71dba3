"""The `aws` CLI subset runner_scripts/start-runner.sh calls, served by boto3 against moto.

`aws [--region R] ssm get-parameter --name N [--with-decryption] [--query Parameter.Value]
[--output text|json]` and `aws ssm delete-parameter --name N`. Exit codes follow AWS CLI v2 (what
Amazon Linux 2023 ships): 0 success, 252 usage error, 254 the service returned an error (message on
stderr in the CLI's words), 255 anything else.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

EXIT_USAGE = 252
EXIT_SERVICE = 254
EXIT_OTHER = 255
OPERATIONS = {"get-parameter": "GetParameter", "delete-parameter": "DeleteParameter"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        sys.stderr.write(
            f"usage: aws [options] <command> <subcommand> [parameters]\naws: error: {message}\n"
        )
        sys.exit(EXIT_USAGE)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = _Parser(prog="aws", add_help=False)
    parser.add_argument("service", choices=["ssm"])
    parser.add_argument("operation", choices=sorted(OPERATIONS))
    parser.add_argument("--name", required=True)
    parser.add_argument("--with-decryption", action="store_true")
    parser.add_argument("--no-with-decryption", dest="with_decryption", action="store_false")
    parser.add_argument("--query")
    parser.add_argument("--output", choices=["text", "json"], default="json")
    parser.add_argument("--region")
    parser.add_argument("--endpoint-url")
    return parser.parse_args(argv)


def _query(value: Any, path: str | None) -> Any:
    if not path:
        return value
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _render(value: Any, output: str) -> str:
    if output == "text":
        return "None" if value is None else str(value)
    return json.dumps(value, indent=4, default=str)


def main(argv: list[str]) -> int:
    args = _parse(argv)
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    ssm = boto3.session.Session().client(
        "ssm", region_name=args.region, endpoint_url=args.endpoint_url
    )
    try:
        if args.operation == "get-parameter":
            response = ssm.get_parameter(Name=args.name, WithDecryption=args.with_decryption)
        else:
            response = ssm.delete_parameter(Name=args.name)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        sys.stderr.write(
            f"\nAn error occurred ({error.get('Code', 'Unknown')}) when calling the "
            f"{OPERATIONS[args.operation]} operation: {error.get('Message', '')}\n"
        )
        return EXIT_SERVICE
    except BotoCoreError as exc:
        sys.stderr.write(f"\n{exc}\n")
        return EXIT_OTHER
    response.pop("ResponseMetadata", None)
    if args.operation == "get-parameter":
        sys.stdout.write(_render(_query(response, args.query), args.output) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
