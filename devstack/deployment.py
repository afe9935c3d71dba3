"""The module's variables for the local stack, and what documents.tf renders from them.

The stack deploys the runner templates of devstack/runner_templates.json (a valid value of the
module's `runner_templates`) with the runner served by devstack/runner_dist.py (`runner_version`,
`runner_sha256`, `runner_download_url`); `documents()` renders terraform/documents.tf for them
with the terraform binary (devstack/tfrender.py), so the user data in the stack's launch templates
is byte for byte what `terraform apply` would put in the real ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from devstack import tfrender

# moto's default account: every ARN the local stack's deployment names is in it.
ACCOUNT = "123456789012"

FUNCTION_KEYS = ("webhook", "scale-up", "scale-down", "redrive", "housekeeper", "budget-guard")


def tfvars(
    tf_templates: Sequence[Mapping[str, Any]],
    *,
    prefix: str,
    runner: Mapping[str, Any],
    vpc_id: str = "vpc-0123456789abcdef0",
    subnet_ids: Sequence[str] = ("subnet-0123456789abcdef0",),
) -> dict[str, Any]:
    """Module variables: the templates, the runner package (RunnerDist.tfvars()), the network
    (the world's once it exists: the launch policy names its subnets)."""
    return {
        "prefix": prefix,
        "vpc_id": vpc_id,
        "subnet_ids": list(subnet_ids),
        "lambda_package_path": "dist/jitrunners-lambda.zip",
        "runner_templates": [dict(t) for t in tf_templates],
        # The stack's Lambdas authenticate as the simulator's GitHub App (App mode: the policies
        # grant the App key, and an App deployment names the owners it serves).
        "github_app_id": "1",
        "allowed_owners": ["acme"],
        **runner,
    }


def deployed(
    tf_templates: Sequence[Mapping[str, Any]], *, prefix: str, region: str
) -> dict[str, Any]:
    """`local.deployed` of terraform/main.tf: ARNs shaped as AWS returns them."""
    arn = f"arn:aws:{{}}:{region}:{ACCOUNT}:{{}}"
    return {
        "kms_key_arn": arn.format("kms", "key/0f2c8a4e-1111-2222-3333-444455556666"),
        "jobs_queue_arn": arn.format("sqs", f"{prefix}-jobs"),
        "dlq_arn": arn.format("sqs", f"{prefix}-jobs-dlq"),
        "events_dlq_arn": arn.format("sqs", f"{prefix}-events-dlq"),
        "teardown_queue_arn": arn.format("sqs", f"{prefix}-teardown"),
        "teardown_dlq_arn": arn.format("sqs", f"{prefix}-teardown-dlq"),
        "function_log_group_arns": {
            k: arn.format("logs", f"log-group:/aws/lambda/{prefix}-{k}") for k in FUNCTION_KEYS
        },
        "launch_template_arns": {
            t["name"]: arn.format("ec2", f"launch-template/lt-0{i:016x}")
            for i, t in enumerate(tf_templates)
        },
        "runner_role_arn": f"arn:aws:iam::{ACCOUNT}:role/{prefix}-runner",
        "runner_security_group_id": "sg-0123456789abcdef0",
        "runner_command_log_group_arn": arn.format("logs", f"log-group:/{prefix}/runner-commands"),
        "deliveries_table_arn": arn.format("dynamodb", f"table/{prefix}-deliveries"),
        "root_device_names": {t["name"]: "/dev/xvda" for t in tf_templates},
        "event_rule_arns": {
            k: arn.format("events", f"rule/{prefix}-{k}")
            for k in ("command-finished", "spot-interruption", "instance-stopped")
        },
    }


def documents(
    tf_templates: Sequence[Mapping[str, Any]],
    *,
    prefix: str,
    region: str,
    runner: Mapping[str, Any],
    module_dir: Path = tfrender.TERRAFORM_DIR,
) -> tfrender.Documents:
    """terraform/documents.tf rendered for the stack (cached per inputs by tfrender)."""
    return tfrender.render(
        tfvars(tf_templates, prefix=prefix, runner=runner),
        account_id=ACCOUNT,
        region=region,
        deployed=deployed(tf_templates, prefix=prefix, region=region),
        module_dir=module_dir,
    )
