"""The `aws` CLI subset runner_scripts/start-runner.sh calls, served by boto3 against moto.

`aws [--region R] ssm get-parameter --name N [--with-decryption] [--query Parameter.Value]
[--output text|json]` and `aws ssm delete-parameter --name N`. Exit codes follow AWS CLI v2 (what
Amazon Linux 2023 ships): 0 success, 252 usage error, 253 no credentials, 254 the service
returned an error (message on stderr in the CLI's words), 255 anything else.

Inside an instance sandbox the CLI finds its credentials where the real one does, in instance
metadata (`iam/security-credentials/<role>`, devstack/sandbox.py): it then calls as that role's
instance-profile session, and every call is authorized first against the role's policies as the
stack deployed them in IAM (devstack/iam): a runner's credentials read its own JIT parameter and
nothing else, exactly as the module's policy allows. An instance started without a profile has no
credentials. Outside a sandbox (no metadata) the process environment's credentials are used as is.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

EXIT_USAGE = 252
EXIT_CREDENTIALS = 253
EXIT_SERVICE = 254
EXIT_OTHER = 255
OPERATIONS = {"get-parameter": "GetParameter", "delete-parameter": "DeleteParameter"}
IMDS = Path(os.environ.get("DEVSTACK_IMDS_DIR", "/run/devstack/imds")) / "latest" / "meta-data"


class NoCredentials(Exception):
    """An instance without an instance profile: IMDS has no credentials to give."""


def _instance_enforcer(region: str | None, endpoint_url: str | None) -> Any:
    """The IAM authorizer of this instance's credentials, or None outside an instance."""
    if not (IMDS / "instance-id").is_file():
        return None
    roles = sorted((IMDS / "iam" / "security-credentials").glob("*"))
    info = IMDS / "iam" / "info"
    if not roles or not info.is_file():
        raise NoCredentials
    import boto3

    from devstack.iam.enforce import Enforcer, MotoLookup, Principal

    profile_arn = json.loads(info.read_text())["InstanceProfileArn"]
    partition, account = profile_arn.split(":")[1], profile_arn.split(":")[4]
    region = region or (IMDS / "placement" / "region").read_text().strip()
    instance_arn = (
        f"arn:{partition}:ec2:{region}:{account}:instance/{(IMDS / 'instance-id').read_text()}"
    )
    role = roles[0].name
    session = boto3.session.Session()

    def unenforced(service: str) -> Any:  # IAM's own view of the world, not the instance's
        return session.client(service, region_name=region, endpoint_url=endpoint_url)

    iam = unenforced("iam")
    policies = [
        json.loads(doc) if isinstance(doc, str) else doc
        for doc in (
            iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
            for name in iam.list_role_policies(RoleName=role)["PolicyNames"]
        )
    ]
    principal = Principal.instance(
        f"arn:{partition}:iam::{account}:role/{role}", lambda: policies, instance_arn
    )
    return Enforcer(principal, MotoLookup(unenforced, region, account), region=region)


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

    try:
        enforcer = _instance_enforcer(args.region, args.endpoint_url)
    except NoCredentials:
        sys.stderr.write(
            "\nUnable to locate credentials. You can configure credentials by running "
            '"aws configure".\n'
        )
        return EXIT_CREDENTIALS
    ssm = boto3.session.Session().client(
        "ssm", region_name=args.region or _imds_region(), endpoint_url=args.endpoint_url
    )
    if enforcer is not None:
        enforcer.attach(ssm)
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


def _imds_region() -> str | None:
    path = IMDS / "placement" / "region"
    return path.read_text().strip() if path.is_file() else None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
