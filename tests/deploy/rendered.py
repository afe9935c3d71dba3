"""The module's documents (terraform/documents.tf) rendered by the terraform binary, for tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from typing import Any

from devstack import deployment, tfrender
from devstack.aws_world import ACCOUNT, REGION, TEMPLATES_FILE

PREFIX = "jitrunners"
FUNCTION_KEYS = ("webhook", "scale-up", "scale-down", "redrive", "housekeeper", "budget-guard")


def deployed(templates: list[dict[str, Any]]) -> dict[str, Any]:
    """ARNs shaped as AWS returns them for what main.tf's `local.deployed` lists."""
    return deployment.deployed(templates, prefix=PREFIX, region=REGION)


@cache
def documents(github_app_id: str = "123456") -> tfrender.Documents:
    return render(json.loads(TEMPLATES_FILE.read_text()), github_app_id)


def render(templates: list[dict[str, Any]], github_app_id: str = "123456") -> tfrender.Documents:
    """The documents for these runner templates (tfrender caches per input; RenderError carries
    what Terraform's variable validation said)."""
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
