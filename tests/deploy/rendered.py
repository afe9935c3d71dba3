"""The module's documents (terraform/documents.tf) rendered by the terraform binary, for tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from typing import Any

from devstack import tfrender
from devstack.aws_world import ACCOUNT, REGION, TEMPLATES_FILE

PREFIX = "jitrunners"
FUNCTION_KEYS = ("webhook", "scale-up", "scale-down", "redrive", "housekeeper")


def deployed(templates: list[dict[str, Any]]) -> dict[str, Any]:
    """ARNs shaped as AWS returns them for what main.tf's `local.deployed` lists."""
    arn = f"arn:aws:{{}}:{REGION}:{ACCOUNT}:{{}}"
    return {
        "kms_key_arn": arn.format("kms", "key/0f2c8a4e-1111-2222-3333-444455556666"),
        "jobs_queue_arn": arn.format("sqs", f"{PREFIX}-jobs"),
        "dlq_arn": arn.format("sqs", f"{PREFIX}-jobs-dlq"),
        "events_dlq_arn": arn.format("sqs", f"{PREFIX}-events-dlq"),
        "function_log_group_arns": {
            k: arn.format("logs", f"log-group:/aws/lambda/{PREFIX}-{k}") for k in FUNCTION_KEYS
        },
        "launch_template_arns": {
            t["name"]: arn.format("ec2", f"launch-template/lt-0{i:016x}")
            for i, t in enumerate(templates)
        },
        "runner_role_arn": f"arn:aws:iam::{ACCOUNT}:role/{PREFIX}-runner",
        "runner_security_group_id": "sg-0123456789abcdef0",
        "runner_command_log_group_arn": arn.format("logs", f"log-group:/{PREFIX}/runner-commands"),
        "deliveries_table_arn": arn.format("dynamodb", f"table/{PREFIX}-deliveries"),
        "event_rule_arns": {
            k: arn.format("events", f"rule/{PREFIX}-{k}")
            for k in ("command-finished", "spot-interruption", "instance-stopped")
        },
    }


@cache
def documents(github_app_id: str = "123456") -> tfrender.Documents:
    templates = json.loads(TEMPLATES_FILE.read_text())
    tfvars = {
        "prefix": PREFIX,
        "vpc_id": "vpc-0123456789abcdef0",
        "subnet_ids": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
        "runner_templates": templates,
        "lambda_package_path": "dist/jitrunners-lambda.zip",
        "github_app_id": github_app_id,
        "allowed_owners": ["octo-org"],
    }
    return tfrender.render(tfvars, account_id=ACCOUNT, region=REGION, deployed=deployed(templates))


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Statements with Action/Resource always lists."""
    for st in _list(document["Statement"]):
        out = dict(st)
        for key in ("Action", "NotAction", "Resource", "NotResource"):
            if key in out:
                out[key] = _list(out[key])
        yield out


def actions(document: dict[str, Any], effect: str = "Allow") -> set[str]:
    return {a for st in statements(document) if st["Effect"] == effect for a in st["Action"]}


def conditions(statement: dict[str, Any]) -> dict[str, list[str]]:
    """Condition key -> values, across operators (`Operator: {key: values}`)."""
    out: dict[str, list[str]] = {}
    for block in statement.get("Condition", {}).values():
        for key, values in block.items():
            out[key] = _list(values)
    return out
