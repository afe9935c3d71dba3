"""Further GitHub Apps in the module: each App's key parameter, readable by the functions that
call GitHub and by nothing else, and named in the environment the Lambdas read."""

from __future__ import annotations

import json

import pytest

from devstack import tfrender
from devstack.aws_world import ACCOUNT, REGION, TEMPLATES_FILE
from devstack.iam.evaluator import Request, evaluate
from jitrunners.config import Settings
from tests.deploy import rendered
from tests.deploy import tfmodel as tf

EXTRA = ["2002", "3003"]
KEY = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/{rendered.PREFIX}/secrets/github-app-key"


def _documents(extra_app_ids: list[str]) -> tfrender.Documents:
    templates = json.loads(TEMPLATES_FILE.read_text())
    tfvars = {
        "prefix": rendered.PREFIX,
        "vpc_id": "vpc-0123456789abcdef0",
        "subnet_ids": ["subnet-0123456789abcdef0"],
        "runner_templates": templates,
        "lambda_package_path": "dist/jitrunners-lambda.zip",
        "github_app_id": "1001",
        "github_extra_app_ids": extra_app_ids,
        "allowed_owners": ["octo-org"],
    }
    return tfrender.render(
        tfvars, account_id=ACCOUNT, region=REGION, deployed=rendered.deployed(templates)
    )


def _reads(docs: tfrender.Documents, function: str, parameter_arn: str) -> bool:
    request = Request(f"role/{function}", "ssm:GetParameter", parameter_arn)
    policies = [docs.function_policies[function]]
    if function in docs.lambda_base_policies:
        policies.append(docs.lambda_base_policies[function])
    return evaluate(policies, request).allowed


@pytest.mark.parametrize("function", ["scale-up", "scale-down", "housekeeper", "redrive"])
def test_functions_that_call_github_read_each_further_apps_key_only(function: str) -> None:
    docs = _documents(EXTRA)
    for app_id in EXTRA:
        assert _reads(docs, function, f"{KEY}-{app_id}"), (function, app_id)
    assert not _reads(docs, function, f"{KEY}-4004")  # an App not configured
    assert not _reads(_documents([]), function, f"{KEY}-{EXTRA[0]}")


def test_the_webhook_reads_no_github_app_key() -> None:
    docs = _documents(EXTRA)
    assert not _reads(docs, "webhook", f"{KEY}-{EXTRA[0]}")


def test_the_lambdas_environment_names_the_parameters_the_module_creates() -> None:
    environment = tf.locals_()["environment"]
    param = tf.blocks("resource", "aws_ssm_parameter")["github_extra_app_key"]
    # Both sides derive the names from one local: what the Lambdas read is what is created.
    assert param["for_each"] == "${local.github_extra_app_key_names}"
    assert "local.github_extra_app_key_names" in environment["GITHUB_EXTRA_APPS"]
    # The shape the code parses (jsonencode of app_id/key_param objects).
    sample = json.dumps([{"app_id": "2002", "key_param": f"/{rendered.PREFIX}/k-2002"}])
    env = {"GITHUB_APP_ID": "1001", "GITHUB_EXTRA_APPS": sample}
    assert Settings.from_env(env).github_extra_apps == (("2002", f"/{rendered.PREFIX}/k-2002"),)
