"""Render the Terraform module's documents (terraform/documents.tf) with the terraform binary.

The provider cannot be downloaded here, but documents.tf holds no resource or data source: it is
pure expressions of the variables and of four inputs (account id, partition, region and
`local.deployed`, the ARNs of created resources). `terraform console` evaluates it offline in a
directory that holds the module's own variables.tf, documents.tf and templates (linked, not
copied) plus one generated file with those inputs, so the IAM policies and user data the local
stack and the tests use are the ones `terraform apply` would deploy, rendered the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TERRAFORM_DIR = ROOT / "terraform"
# The module files documents.tf may read; anything else it referenced would fail to render.
MODULE_FILES = ("variables.tf", "documents.tf", "templates")
RUNNER_SCRIPTS = ROOT / "runner_scripts"

# One expression for everything: a single console run per set of inputs (the console reads an
# expression per line).
_RENDERED = (
    "lambda_base_policies", "function_policies", "runner_policies", "kms_key_policy",
    "queue_policies", "assume_role_policies", "user_data", "launch_template_tags",
    "templates_document", "runner_role_name", "budget_topic_policy",
)  # fmt: skip
_EXPRESSION = "jsonencode({" + ", ".join(f"{n} = local.{n}" for n in _RENDERED) + "})\n"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class RenderError(RuntimeError):
    """terraform is missing or refused the module (its message included)."""


@dataclass(frozen=True)
class Documents:
    """What documents.tf renders to, with every policy parsed from its JSON text."""

    lambda_base_policies: dict[str, dict[str, Any]]
    function_policies: dict[str, dict[str, Any]]
    runner_policies: dict[str, dict[str, Any]]
    kms_key_policy: dict[str, Any]
    queue_policies: dict[str, dict[str, Any]]
    assume_role_policies: dict[str, dict[str, Any]]
    user_data: dict[str, str]
    launch_template_tags: dict[str, dict[str, str]]
    templates_document: list[dict[str, Any]]
    runner_role_name: str
    budget_topic_policy: dict[str, Any]

    def function_identity_policies(self, function: str) -> list[dict[str, Any]]:
        """Every identity policy the module attaches to one Lambda function's role."""
        return [self.lambda_base_policies[function], self.function_policies[function]]

    def all_policies(self) -> dict[str, dict[str, Any]]:
        """Every policy document by a readable name (for catalogue checks)."""
        out: dict[str, dict[str, Any]] = {}
        for group in ("lambda_base_policies", "function_policies", "runner_policies",
                      "queue_policies", "assume_role_policies"):  # fmt: skip
            for name, doc in getattr(self, group).items():
                out[f"{group}.{name}"] = doc
        out["kms_key_policy"] = self.kms_key_policy
        out["budget_topic_policy"] = self.budget_topic_policy
        return out


def terraform_binary() -> str:
    found = shutil.which("terraform")
    if not found:
        raise RenderError(
            "terraform is not on PATH: the local stack renders the module's policies and user "
            "data with it (offline; any terraform >= 1.6 binary will do)"
        )
    return found


def _workdir(tfvars: Mapping[str, Any], inputs: Mapping[str, Any], module_dir: Path) -> Path:
    base = Path(tempfile.mkdtemp(prefix="jitrunners-tfrender-"))
    module = base / "terraform"
    module.mkdir()
    for name in MODULE_FILES:
        (module / name).symlink_to(module_dir / name)
    # documents.tf reads the scripts at ${path.module}/../runner_scripts.
    (base / "runner_scripts").symlink_to(RUNNER_SCRIPTS)
    (module / "inputs.tf.json").write_text(json.dumps({"locals": dict(inputs)}, indent=1))
    (module / "terraform.tfvars.json").write_text(json.dumps(dict(tfvars), indent=1))
    return module


def _parse_console_string(text: str) -> str:
    """terraform console prints a string as an HCL quoted literal: JSON-compatible escapes, plus
    `$${` and `%%{` for literal template sequences."""
    text = text.strip()
    if not (text.startswith('"') and text.endswith('"')):
        raise RenderError(f"unexpected terraform console output: {text[:200]}")
    value = json.loads(text)
    return value.replace("$${", "${").replace("%%{", "%{")


_cache: dict[str, Documents] = {}
_lock = threading.Lock()


def render(
    tfvars: Mapping[str, Any],
    *,
    account_id: str,
    region: str,
    deployed: Mapping[str, Any],
    partition: str = "aws",
    module_dir: Path = TERRAFORM_DIR,
) -> Documents:
    """Render documents.tf for these variables and deployed resources (cached per inputs).

    `module_dir`: another copy of the module's MODULE_FILES (a test renders an old template).
    """
    inputs = {
        "account_id": account_id,
        "partition": partition,
        "region": region,
        "deployed": dict(deployed),
    }
    key = hashlib.sha256(
        json.dumps(
            [tfvars, inputs, _module_digest(module_dir)], sort_keys=True, default=str
        ).encode()
    ).hexdigest()
    with _lock:
        if key in _cache:
            return _cache[key]
    module = _workdir(tfvars, inputs, module_dir)
    try:
        env = {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}
        # No CLI configuration is needed to render; one named but missing makes terraform warn
        # on stdout, which is not an expression's value.
        if not Path(env.get("TF_CLI_CONFIG_FILE") or os.devnull).is_file():
            env["TF_CLI_CONFIG_FILE"] = os.devnull
        result = subprocess.run(
            [terraform_binary(), "console"],
            input=_EXPRESSION,
            cwd=module,
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=300,
        )
    finally:
        shutil.rmtree(module.parent, ignore_errors=True)
    if result.returncode != 0:
        raise RenderError(f"terraform console failed:\n{_ANSI.sub('', result.stderr).strip()}")
    raw = json.loads(_parse_console_string(result.stdout))
    documents = Documents(
        lambda_base_policies=_policies(raw["lambda_base_policies"]),
        function_policies=_policies(raw["function_policies"]),
        runner_policies=_policies(raw["runner_policies"]),
        kms_key_policy=json.loads(raw["kms_key_policy"]),
        queue_policies=_policies(raw["queue_policies"]),
        assume_role_policies=_policies(raw["assume_role_policies"]),
        user_data=dict(raw["user_data"]),
        launch_template_tags=dict(raw["launch_template_tags"]),
        templates_document=json.loads(raw["templates_document"]),
        runner_role_name=str(raw["runner_role_name"]),
        budget_topic_policy=json.loads(raw["budget_topic_policy"]),
    )
    with _lock:
        _cache[key] = documents
    return documents


def _policies(texts: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    return {name: json.loads(text) for name, text in texts.items()}


def _module_digest(module_dir: Path) -> str:
    """The rendered inputs on disk: a changed template or script is a new cache key."""
    digest = hashlib.sha256(str(module_dir).encode())
    paths = [module_dir / "variables.tf", module_dir / "documents.tf"]
    paths += sorted((module_dir / "templates").iterdir()) + sorted(RUNNER_SCRIPTS.glob("*.*"))
    for path in paths:
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()
