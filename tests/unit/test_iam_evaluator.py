"""The local stack's IAM evaluator against AWS's own documented examples, then properties.

Each example test names the page its policy and expected outcome come from.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devstack.iam.evaluator import Decision, PolicyError, Request, evaluate

ROLE = "arn:aws:sts::111122223333:assumed-role/app/session"
OPERATORS = "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html"


def policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def decide(
    statements: list[dict[str, Any]] | dict[str, Any],
    action: str,
    resource: str = "*",
    **context: Any,
) -> Decision:
    policies = [statements] if isinstance(statements, dict) else [policy(*statements)]
    return evaluate(policies, Request(ROLE, action, resource, context)).decision


ALLOW, DENY, IMPLICIT = Decision.ALLOW, Decision.EXPLICIT_DENY, Decision.IMPLICIT_DENY


# ----------------------------------------------------------------------------- condition operators
def test_string_equals_on_a_missing_key_does_not_match() -> None:
    # OPERATORS, "String condition operators": aws:PrincipalTag/job-category = iamuser-admin
    statement = {
        "Effect": "Allow",
        "Action": "iam:*AccessKey*",
        "Resource": "arn:aws:iam::111122223333:user/*",
        "Condition": {"StringEquals": {"aws:PrincipalTag/job-category": "iamuser-admin"}},
    }
    user = "arn:aws:iam::111122223333:user/bob"
    assert (
        decide(
            [statement],
            "iam:CreateAccessKey",
            user,
            **{"aws:PrincipalTag/job-category": "iamuser-admin"},
        )
        == ALLOW
    )
    assert (
        decide([statement], "iam:CreateAccessKey", user, **{"aws:PrincipalTag/job-category": "dev"})
        == IMPLICIT
    )
    assert decide([statement], "iam:CreateAccessKey", user) == IMPLICIT
    # "Key names are case-insensitive"
    assert (
        decide(
            [statement],
            "iam:createaccesskey",
            user,
            **{"AWS:PRINCIPALTAG/JOB-CATEGORY": "iamuser-admin"},
        )
        == ALLOW
    )


def test_negated_operator_on_a_missing_key_is_true() -> None:
    # OPERATORS, Important: "If the policy condition requires that the key is not matched, such as
    # StringNotLike or ArnNotLike, and the right key is not present, the condition is true."
    statement = {
        "Effect": "Deny",
        "Action": "s3:*",
        "Resource": "*",
        "Condition": {"StringNotLike": {"aws:PrincipalTag/team": "data-*"}},
    }
    allow = {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}
    assert decide([allow, statement], "s3:GetObject") == DENY
    assert (
        decide([allow, statement], "s3:GetObject", **{"aws:PrincipalTag/team": "data-eng"}) == ALLOW
    )
    assert decide([allow, statement], "s3:GetObject", **{"aws:PrincipalTag/team": "web"}) == DENY


def test_string_like_with_policy_variable_and_resource_variable() -> None:
    # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_variables.html
    # (Introduction)
    document = policy(
        {
            "Action": ["s3:ListBucket"],
            "Effect": "Allow",
            "Resource": ["arn:aws:s3:::mybucket"],
            "Condition": {"StringLike": {"s3:prefix": ["${aws:username}/*"]}},
        },
        {
            "Action": ["s3:GetObject", "s3:PutObject"],
            "Effect": "Allow",
            "Resource": ["arn:aws:s3:::mybucket/${aws:username}/*"],
        },
    )
    david = {"aws:username": "David"}
    assert (
        decide(
            document,
            "s3:ListBucket",
            "arn:aws:s3:::mybucket",
            **david,
            **{"s3:prefix": "David/photos"},
        )
        == ALLOW
    )
    assert (
        decide(
            document, "s3:ListBucket", "arn:aws:s3:::mybucket", **david, **{"s3:prefix": "Adele/"}
        )
        == IMPLICIT
    )
    assert decide(document, "s3:GetObject", "arn:aws:s3:::mybucket/David/a/b.txt", **david) == ALLOW
    assert (
        decide(document, "s3:GetObject", "arn:aws:s3:::mybucket/Adele/b.txt", **david) == IMPLICIT
    )
    # "not present ... any attempt to match it fails and causes the statement to be invalid"
    assert decide(document, "s3:GetObject", "arn:aws:s3:::mybucket/David/b.txt") == IMPLICIT


def test_policy_variables_are_literal_before_version_2012_10_17() -> None:
    # reference_policies_variables.html: "If you don't include the Version element ... variables
    # like ${aws:username} are treated as literal strings in the policy."
    document = {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": "arn:aws:s3:::mybucket/${aws:username}/*",
            }
        ]
    }
    assert (
        decide(
            document, "s3:GetObject", "arn:aws:s3:::mybucket/David/x", **{"aws:username": "David"}
        )
        == IMPLICIT
    )
    assert decide(document, "s3:GetObject", "arn:aws:s3:::mybucket/${aws:username}/x") == ALLOW


def test_special_character_variables_match_literally() -> None:
    # reference_policies_variables.html, "Special characters": ${*}, ${?}, ${$}
    statement = {
        "Effect": "Allow",
        "Action": "s3:GetObject",
        "Resource": "*",
        "Condition": {"StringLike": {"s3:prefix": "a${*}b${?}c${$}"}},
    }
    assert decide([statement], "s3:GetObject", **{"s3:prefix": "a*b?c$"}) == ALLOW
    assert decide([statement], "s3:GetObject", **{"s3:prefix": "axbyc$"}) == IMPLICIT


def test_policy_variable_default_value() -> None:
    # reference_policies_variables.html, "Specifying default values": ${aws:userid, 'anonymous'}
    statement = {
        "Effect": "Allow",
        "Action": "s3:GetObject",
        "Resource": "arn:aws:s3:::bucket/${aws:userid, 'anonymous'}/*",
    }
    assert decide([statement], "s3:GetObject", "arn:aws:s3:::bucket/anonymous/x") == ALLOW
    assert (
        decide(
            [statement], "s3:GetObject", "arn:aws:s3:::bucket/AIDA1/x", **{"aws:userid": "AIDA1"}
        )
        == ALLOW
    )
    assert (
        decide(
            [statement],
            "s3:GetObject",
            "arn:aws:s3:::bucket/anonymous/x",
            **{"aws:userid": "AIDA1"},
        )
        == IMPLICIT
    )


def test_if_exists_is_true_when_the_key_is_absent() -> None:
    # OPERATORS, "...IfExists condition operators": StringLikeIfExists ec2:InstanceType
    statement = {
        "Effect": "Allow",
        "Action": "ec2:*",
        "Resource": "*",
        "Condition": {"StringLikeIfExists": {"ec2:InstanceType": ["t1.*", "t2.*", "m3.*"]}},
    }
    assert decide([statement], "ec2:RunInstances", **{"ec2:InstanceType": "t2.micro"}) == ALLOW
    assert decide([statement], "ec2:RunInstances", **{"ec2:InstanceType": "m5.large"}) == IMPLICIT
    assert decide([statement], "ec2:DescribeInstances") == ALLOW


def test_null_checks_presence() -> None:
    # OPERATORS, "Condition operator to check existence of condition keys": aws:TokenIssueTime
    statement = {
        "Effect": "Allow",
        "Action": "ec2:*",
        "Resource": "*",
        "Condition": {"Null": {"aws:TokenIssueTime": "false"}},
    }
    assert (
        decide(
            [statement], "ec2:DescribeInstances", **{"aws:TokenIssueTime": "2024-01-01T00:00:00Z"}
        )
        == ALLOW
    )
    assert decide([statement], "ec2:DescribeInstances") == IMPLICIT


def test_bool_secure_transport_deny() -> None:
    # OPERATORS, "Boolean condition operators": deny when aws:SecureTransport is false
    statements = [
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
        {
            "Effect": "Deny",
            "Action": "s3:*",
            "Resource": "*",
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        },
    ]
    assert decide(statements, "s3:GetObject", **{"aws:SecureTransport": "false"}) == DENY
    assert decide(statements, "s3:GetObject", **{"aws:SecureTransport": "true"}) == ALLOW


def test_numeric_less_than_equals() -> None:
    # OPERATORS, "Numeric condition operators": s3:max-keys <= 10
    statement = {
        "Effect": "Allow",
        "Action": "s3:ListBucket",
        "Resource": "arn:aws:s3:::amzn-s3-demo-bucket",
        "Condition": {"NumericLessThanEquals": {"s3:max-keys": "10"}},
    }
    bucket = "arn:aws:s3:::amzn-s3-demo-bucket"
    assert decide([statement], "s3:ListBucket", bucket, **{"s3:max-keys": "10"}) == ALLOW
    assert decide([statement], "s3:ListBucket", bucket, **{"s3:max-keys": "11"}) == IMPLICIT
    assert decide([statement], "s3:ListBucket", bucket) == IMPLICIT


def test_date_less_than() -> None:
    # OPERATORS, "Date condition operators": aws:TokenIssueTime before a date
    statement = {
        "Effect": "Allow",
        "Action": "iam:*AccessKey*",
        "Resource": "*",
        "Condition": {"DateLessThan": {"aws:TokenIssueTime": "2020-01-01T00:00:01Z"}},
    }
    assert (
        decide([statement], "iam:ListAccessKeys", **{"aws:TokenIssueTime": "2019-12-31T23:00:00Z"})
        == ALLOW
    )
    assert (
        decide([statement], "iam:ListAccessKeys", **{"aws:TokenIssueTime": "2020-06-01T00:00:00Z"})
        == IMPLICIT
    )


def test_ip_address_and_not_ip_address() -> None:
    # OPERATORS, "IP address condition operators": aws:SourceIp 203.0.113.0/24
    statements = [
        {
            "Effect": "Allow",
            "Action": "ec2:*",
            "Resource": "*",
            "Condition": {"IpAddress": {"aws:SourceIp": "203.0.113.0/24"}},
        },
        {
            "Effect": "Deny",
            "Action": "ec2:*",
            "Resource": "*",
            "Condition": {"NotIpAddress": {"aws:SourceIp": ["203.0.113.0/25"]}},
        },
    ]
    assert decide(statements, "ec2:DescribeInstances", **{"aws:SourceIp": "203.0.113.7"}) == ALLOW
    assert decide(statements, "ec2:DescribeInstances", **{"aws:SourceIp": "203.0.113.200"}) == DENY


def test_arn_equals_in_a_queue_policy() -> None:
    # OPERATORS, "Amazon Resource Name (ARN) condition operators": SQS queue policy, aws:SourceArn
    queue_policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "123456789012"},
                "Action": "SQS:SendMessage",
                "Resource": "arn:aws:sqs:REGION:123456789012:QUEUE-ID",
                "Condition": {"ArnEquals": {"aws:SourceArn": "arn:aws:sns:REGION:*:TOPIC-ID"}},
            }
        ],
    }
    caller = "arn:aws:sts::123456789012:assumed-role/sender/s"
    queue = "arn:aws:sqs:REGION:123456789012:QUEUE-ID"
    allow_iam = [policy({"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": queue})]
    request = Request(
        caller,
        "sqs:SendMessage",
        queue,
        {"aws:SourceArn": "arn:aws:sns:REGION:123456789012:TOPIC-ID"},
    )
    # Same account: the identity policy allows; the queue policy naming the account only delegates.
    assert evaluate(allow_iam, request, resource_policy=queue_policy).decision == ALLOW
    assert evaluate([], request, resource_policy=queue_policy).decision == IMPLICIT


def test_multiple_keys_and_values_and_or() -> None:
    # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-logic-multiple-context-keys-or-values.html
    statement = {
        "Effect": "Allow",
        "Action": "s3:GetObject",
        "Resource": "*",
        "Condition": {
            "StringEquals": {
                "aws:PrincipalTag/department": ["finance", "hr", "legal"],
                "aws:PrincipalTag/role": ["audit", "security"],
            },
            "ArnLike": {
                "aws:PrincipalArn": [
                    "arn:aws:iam::222222222222:user/Ana",
                    "arn:aws:iam::222222222222:user/Mary",
                ]
            },
        },
    }
    good = {
        "aws:PrincipalTag/department": "hr",
        "aws:PrincipalTag/role": "audit",
        "aws:PrincipalArn": "arn:aws:iam::222222222222:user/Mary",
    }
    assert decide([statement], "s3:GetObject", **good) == ALLOW
    assert (
        decide([statement], "s3:GetObject", **{**good, "aws:PrincipalTag/role": "dev"}) == IMPLICIT
    )
    assert (
        decide(
            [statement],
            "s3:GetObject",
            **{**good, "aws:PrincipalArn": "arn:aws:iam::222222222222:user/Bob"},
        )
        == IMPLICIT
    )


def test_negated_operator_with_several_values_is_their_nor() -> None:
    # reference_policies_condition-logic-multiple-context-keys-or-values.html, "Evaluation logic
    # for negated matching condition operators"
    statements = [
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
        {
            "Effect": "Deny",
            "Action": "s3:*",
            "Resource": "*",
            "Condition": {"StringNotEquals": {"aws:PrincipalTag/role": ["audit", "security"]}},
        },
    ]
    assert decide(statements, "s3:GetObject", **{"aws:PrincipalTag/role": "audit"}) == ALLOW
    assert decide(statements, "s3:GetObject", **{"aws:PrincipalTag/role": "security"}) == ALLOW
    assert decide(statements, "s3:GetObject", **{"aws:PrincipalTag/role": "dev"}) == DENY
    assert decide(statements, "s3:GetObject") == DENY


# ----------------------------------------------------------------------------- multivalued keys
MULTI = "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition_examples-multi-valued-context-keys.html"


@pytest.mark.parametrize(
    ("tag_keys", "denied"),
    [
        (["key1:legal"], False),
        (["key1:hr", "key1:personnel"], False),
        (["key2:audit"], True),
        (None, True),
    ],
)
def test_for_all_values_string_not_like_deny_table(
    tag_keys: list[str] | None, denied: bool
) -> None:
    # MULTI, "Deny a single policy condition value for a multivalued context key" (the table)
    statements = [
        {"Effect": "Allow", "Action": "iam:*", "Resource": "*"},
        {
            "Sid": "DenyRestrictedTags",
            "Effect": "Deny",
            "Action": ["iam:Tag*", "iam:UnTag*"],
            "Resource": ["*"],
            "Condition": {"ForAllValues:StringNotLike": {"aws:TagKeys": "key1*"}},
        },
    ]
    context = {"aws:TagKeys": tag_keys} if tag_keys is not None else {}
    assert decide(statements, "iam:TagUser", **context) == (DENY if denied else ALLOW)


def test_for_all_values_allows_only_listed_attributes() -> None:
    # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_multi-value-conditions.html
    statement = {
        "Effect": "Allow",
        "Action": "dynamodb:GetItem",
        "Resource": "arn:aws:dynamodb:REGION:123456789012:table/Thread",
        "Condition": {
            "ForAllValues:StringLike": {
                "dynamodb:requestedAttributes": ["PostDateTime", "Message", "Tags"]
            }
        },
    }
    table = "arn:aws:dynamodb:REGION:123456789012:table/Thread"
    assert (
        decide(
            [statement],
            "dynamodb:GetItem",
            table,
            **{"dynamodb:requestedAttributes": ["PostDateTime", "Message"]},
        )
        == ALLOW
    )
    assert (
        decide(
            [statement],
            "dynamodb:GetItem",
            table,
            **{"dynamodb:requestedAttributes": ["PostDateTime", "UserName"]},
        )
        == IMPLICIT
    )
    # "If the key values in the request resolve to an empty data set ... ForAllValues returns true"
    assert (
        decide([statement], "dynamodb:GetItem", table, **{"dynamodb:requestedAttributes": []})
        == ALLOW
    )


def test_for_any_value_denies_forbidden_attributes() -> None:
    # reference_policies_multi-value-conditions.html: Deny PutItem on ID or PostDateTime
    statements = [
        {"Effect": "Allow", "Action": "dynamodb:*", "Resource": "*"},
        {
            "Effect": "Deny",
            "Action": "dynamodb:PutItem",
            "Resource": "*",
            "Condition": {
                "ForAnyValue:StringLike": {"dynamodb:requestedAttributes": ["ID", "PostDateTime"]}
            },
        },
    ]
    attributes = "dynamodb:requestedAttributes"
    assert (
        decide(
            statements, "dynamodb:PutItem", **{attributes: ["UserName", "Message", "PostDateTime"]}
        )
        == DENY
    )
    assert decide(statements, "dynamodb:PutItem", **{attributes: ["UserName"]}) == ALLOW
    # "... a condition operator modified by ForAnyValue returns false" on an empty set
    assert decide(statements, "dynamodb:PutItem") == ALLOW


def test_for_any_value_negated_on_a_missing_key_is_false() -> None:
    # MULTI, "Deny policy with condition set operator ForAnyValue": no aws:TagKeys in the request
    # context -> no match
    statements = [
        {"Effect": "Allow", "Action": "ec2:*", "Resource": "*"},
        {
            "Effect": "Deny",
            "Action": "ec2:CreateTags",
            "Resource": "*",
            "Condition": {
                "ForAnyValue:StringNotEqualsIgnoreCase": {
                    "aws:TagKeys": ["environment", "webserver"]
                }
            },
        },
    ]
    assert decide(statements, "ec2:CreateTags") == ALLOW
    assert decide(statements, "ec2:CreateTags", **{"aws:TagKeys": ["Environment"]}) == ALLOW
    assert decide(statements, "ec2:CreateTags", **{"aws:TagKeys": ["Environment", "cost"]}) == DENY


# ----------------------------------------------------------------------------- Action, Resource
def test_not_action_allows_everything_but_iam() -> None:
    # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_notaction.html
    statement = {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}
    assert decide([statement], "s3:ListAllMyBuckets") == ALLOW
    assert decide([statement], "iam:CreateUser") == IMPLICIT


def test_not_action_deny_without_mfa() -> None:
    # reference_policies_elements_notaction.html: deny all but IAM when MFA is absent (BoolIfExists)
    statements = [
        {"Effect": "Allow", "Action": "*", "Resource": "*"},
        {
            "Sid": "DenyAllUsersNotUsingMFA",
            "Effect": "Deny",
            "NotAction": "iam:*",
            "Resource": "*",
            "Condition": {"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}},
        },
    ]
    assert decide(statements, "s3:GetObject") == DENY
    assert decide(statements, "s3:GetObject", **{"aws:MultiFactorAuthPresent": "true"}) == ALLOW
    assert decide(statements, "iam:ListUsers") == ALLOW


def test_not_resource_excludes_the_payroll_folder() -> None:
    # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_notresource.html
    statement = {
        "Effect": "Allow",
        "Action": "s3:*",
        "NotResource": ["arn:aws:s3:::HRBucket/Payroll", "arn:aws:s3:::HRBucket/Payroll/*"],
    }
    assert decide([statement], "s3:GetObject", "arn:aws:s3:::HRBucket/Reports/x") == ALLOW
    assert decide([statement], "s3:GetObject", "arn:aws:s3:::HRBucket/Payroll/2024/x") == IMPLICIT


def test_resource_wildcards() -> None:
    # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_resource.html
    # "Using wildcards in resource ARNs"
    def allowed(pattern: str, resource: str) -> bool:
        return (
            decide(
                [{"Effect": "Allow", "Action": "*", "Resource": pattern}], "s3:GetObject", resource
            )
            == ALLOW
        )

    assert allowed(
        "arn:aws:iam::123456789012:user/accounting/*",
        "arn:aws:iam::123456789012:user/accounting/team/bob",
    )
    assert allowed(
        "arn:aws:s3:::amzn-s3-demo-bucket/*", "arn:aws:s3:::amzn-s3-demo-bucket/a/b/c.txt"
    )
    assert allowed(
        "arn:aws:s3:::amzn-s3-demo-bucket/*/test/*",
        "arn:aws:s3:::amzn-s3-demo-bucket/1/2/test/3/x.jpg",
    )
    assert not allowed(
        "arn:aws:s3:::amzn-s3-demo-bucket/*/test/*", "arn:aws:s3:::amzn-s3-demo-bucket/1/x.jpg"
    )
    # A `*` that ends a segment expands beyond colons; one inside a segment does not.
    assert allowed(
        "arn:aws:logs:*:*:log-group:app:*", "arn:aws:logs:eu-west-1:1:log-group:app:log-stream:s"
    )
    assert allowed("arn:aws:ec2:*", "arn:aws:ec2:eu-west-1:123456789012:instance/i-1")
    assert not allowed("arn:aws:ec2:eu-*1:*:instance/*", "arn:aws:ec2:eu-west:x1:123:instance/i-1")
    assert allowed(
        "arn:aws:ec2:eu-west-?:*:instance/*", "arn:aws:ec2:eu-west-1:123456789012:instance/i-1"
    )
    # Resource matching is case-sensitive ("the IAM user name is case sensitive"); actions are not.
    assert not allowed("arn:aws:iam::123456789012:user/Bob", "arn:aws:iam::123456789012:user/bob")


def test_ec2_source_instance_arn_variable() -> None:
    # reference_policies_variables.html: ec2:SourceInstanceARN "is present only when the request
    # comes from an Amazon EC2 instance using an IAM role associated with an EC2 instance profile"
    statement = {
        "Effect": "Allow",
        "Action": "ssm:GetParameter",
        "Resource": "arn:aws:ssm:eu-west-1:1:parameter/jit/*",
        "Condition": {"StringEquals": {"aws:ResourceTag/instance-arn": "${ec2:SourceInstanceARN}"}},
    }
    mine = "arn:aws:ec2:eu-west-1:1:instance/i-1"
    parameter = "arn:aws:ssm:eu-west-1:1:parameter/jit/i-1"
    tag = "aws:ResourceTag/instance-arn"
    assert (
        decide(
            [statement], "ssm:GetParameter", parameter, **{tag: mine, "ec2:SourceInstanceARN": mine}
        )
        == ALLOW
    )
    other = "arn:aws:ec2:eu-west-1:1:instance/i-2"
    assert (
        decide(
            [statement],
            "ssm:GetParameter",
            parameter,
            **{tag: other, "ec2:SourceInstanceARN": mine},
        )
        == IMPLICIT
    )
    assert decide([statement], "ssm:GetParameter", parameter, **{tag: mine}) == IMPLICIT


# ----------------------------------------------------------------------------- KMS key policies
KEY = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
# https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html
DEFAULT_KEY_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "Enable IAM User Permissions",
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
            "Action": "kms:*",
            "Resource": "*",
        }
    ],
}


def kms(identity: list[dict[str, Any]], key_policy: dict[str, Any], **context: Any) -> Decision:
    request = Request(ROLE, "kms:Decrypt", KEY, context)
    return evaluate(
        identity, request, resource_policy=key_policy, resource_policy_mode="kms"
    ).decision


def test_kms_default_key_policy_delegates_to_iam() -> None:
    # key-policy-default.html, "Allows access to the AWS account and enables IAM policies"
    allow = policy({"Effect": "Allow", "Action": "kms:Decrypt", "Resource": KEY})
    assert kms([allow], DEFAULT_KEY_POLICY) == ALLOW
    assert kms([], DEFAULT_KEY_POLICY) == IMPLICIT


def test_kms_identity_policy_alone_is_not_enough() -> None:
    # https://docs.aws.amazon.com/kms/latest/developerguide/key-policies.html: "Unless the key
    # policy explicitly allows it, you cannot use IAM policies to allow access to a KMS key."
    allow = policy({"Effect": "Allow", "Action": "kms:*", "Resource": "*"})
    only_admin = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::111122223333:role/admin"},
                "Action": "kms:*",
                "Resource": "*",
            }
        ],
    }
    result = evaluate(
        [allow],
        Request(ROLE, "kms:Decrypt", KEY),
        resource_policy=only_admin,
        resource_policy_mode="kms",
    )
    assert result.decision == IMPLICIT
    assert result.policy_type == "resource"


def test_kms_key_policy_naming_the_role_allows_without_iam() -> None:
    # https://docs.aws.amazon.com/kms/latest/developerguide/determining-access.html
    key_policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::111122223333:role/app"},
                "Action": "kms:Decrypt",
                "Resource": "*",
                "Condition": {"StringEquals": {"kms:ViaService": "ssm.eu-west-1.amazonaws.com"}},
            }
        ],
    }
    assert kms([], key_policy, **{"kms:ViaService": "ssm.eu-west-1.amazonaws.com"}) == ALLOW
    assert kms([], key_policy) == IMPLICIT


def test_kms_key_policy_deny_wins_over_identity_allow() -> None:
    # determining-access.html: an explicit deny in the key policy denies
    deny = {
        "Sid": "NoDecryptOutsideSsm",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "kms:Decrypt",
        "Resource": "*",
        "Condition": {"StringNotEquals": {"kms:ViaService": "ssm.eu-west-1.amazonaws.com"}},
    }
    key_policy = {"Version": "2012-10-17", "Statement": [*DEFAULT_KEY_POLICY["Statement"], deny]}
    allow = policy({"Effect": "Allow", "Action": "kms:Decrypt", "Resource": KEY})
    result = evaluate(
        [allow],
        Request(ROLE, "kms:Decrypt", KEY),
        resource_policy=key_policy,
        resource_policy_mode="kms",
    )
    assert result.decision == DENY
    assert result.statements == ("NoDecryptOutsideSsm",)
    assert result.policy_type == "resource"


def test_standard_resource_policy_naming_the_role_allows_alone() -> None:
    # reference_policies_evaluation-logic.html: within one account, an allow in the identity
    # policy OR the resource-based policy allows
    queue = "arn:aws:sqs:eu-west-1:111122223333:jobs"
    queue_policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::111122223333:role/app"},
                "Action": "sqs:SendMessage",
                "Resource": queue,
            }
        ],
    }
    assert (
        evaluate([], Request(ROLE, "sqs:SendMessage", queue), resource_policy=queue_policy).decision
        == ALLOW
    )
    assert (
        evaluate(
            [], Request(ROLE, "sqs:ReceiveMessage", queue), resource_policy=queue_policy
        ).decision
        == IMPLICIT
    )


# ----------------------------------------------------------------------------- failing loudly
@pytest.mark.parametrize(
    "statement",
    [
        {
            "Effect": "Allow",
            "Action": "s3:*",
            "Resource": "*",
            "Condition": {"StringSortOf": {"k": "v"}},
        },
        {
            "Effect": "Allow",
            "Action": "s3:*",
            "Resource": "*",
            "Condition": {"ForSomeValues:StringLike": {"k": "v"}},
        },
        {"Effect": "Maybe", "Action": "s3:*", "Resource": "*"},
        {"Effect": "Allow", "Resource": "*"},
        {"Effect": "Allow", "Action": "s3:*", "NotAction": "s3:Get*", "Resource": "*"},
        {"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "*"},
    ],
)
def test_what_it_cannot_judge_raises(statement: dict[str, Any]) -> None:
    with pytest.raises(PolicyError):
        decide([statement], "s3:GetObject", k="v")


# ----------------------------------------------------------------------------- properties
ACTIONS = st.sampled_from(
    ["s3:GetObject", "ec2:RunInstances", "ssm:GetParameter", "kms:Decrypt", "iam:PassRole"]
)
PATTERNS = st.sampled_from(
    ["*", "s3:*", "ec2:Run*", "ssm:GetParameter", "kms:?ecrypt", "iam:*", "sqs:*"]
)
RESOURCES = st.sampled_from(
    ["*", "arn:aws:s3:::b/*", "arn:aws:ec2:*:*:instance/*", "arn:aws:ssm:*:*:parameter/x"]
)
CONDITIONS = st.sampled_from(
    [
        None,
        {"StringEquals": {"aws:PrincipalTag/team": "a"}},
        {"StringNotEquals": {"aws:PrincipalTag/team": "a"}},
        {"ForAllValues:StringLike": {"aws:TagKeys": "a*"}},
        {"ForAnyValue:StringEquals": {"aws:TagKeys": ["a", "b"]}},
        {"Null": {"aws:PrincipalTag/team": "true"}},
        {"BoolIfExists": {"aws:SecureTransport": "true"}},
    ]
)


@st.composite
def statements(draw: st.DrawFn, effect: str | None = None) -> dict[str, Any]:
    statement: dict[str, Any] = {
        "Effect": effect or draw(st.sampled_from(["Allow", "Deny"])),
        "Action" if draw(st.booleans()) else "NotAction": draw(
            st.lists(PATTERNS, min_size=1, max_size=3)
        ),
        "Resource": draw(st.lists(RESOURCES, min_size=1, max_size=2)),
    }
    condition = draw(CONDITIONS)
    if condition:
        statement["Condition"] = condition
    return statement


CONTEXTS = st.fixed_dictionaries(
    {},
    optional={
        "aws:PrincipalTag/team": st.sampled_from(["a", "b"]),
        "aws:TagKeys": st.lists(st.sampled_from(["a", "ab", "b"]), max_size=3),
        "aws:SecureTransport": st.sampled_from(["true", "false"]),
    },
)
REQUESTS = st.builds(
    Request,
    principal=st.just(ROLE),
    action=ACTIONS,
    resource=st.sampled_from(
        [
            "arn:aws:s3:::b/k",
            "arn:aws:ec2:eu-west-1:1:instance/i-1",
            "arn:aws:ssm:eu-west-1:1:parameter/x",
        ]
    ),
    context=CONTEXTS,
)


@given(st.lists(statements(), max_size=5), REQUESTS)
def test_an_applicable_deny_always_wins(others: list[dict[str, Any]], request: Request) -> None:
    deny = {"Effect": "Deny", "Action": "*", "Resource": "*"}
    assert evaluate([policy(*others, deny)], request).decision == DENY


@given(st.lists(statements(), max_size=5), REQUESTS)
def test_adding_an_allow_never_turns_an_allow_into_a_denial(
    base: list[dict[str, Any]], request: Request
) -> None:
    before = evaluate([policy(*base)], request).decision
    after = evaluate(
        [policy(*base, {"Effect": "Allow", "Action": "*", "Resource": "*"})], request
    ).decision
    assert after == (DENY if before == DENY else ALLOW)


@given(st.lists(statements(effect="Allow"), max_size=5), REQUESTS)
def test_allow_only_policies_never_deny_explicitly(
    base: list[dict[str, Any]], request: Request
) -> None:
    assert evaluate([policy(*base)], request).decision != DENY


@given(st.lists(statements(), max_size=5), REQUESTS)
def test_splitting_statements_across_policies_changes_nothing(
    base: list[dict[str, Any]], request: Request
) -> None:
    together = evaluate([policy(*base)], request).decision
    apart = evaluate([policy(s) for s in base], request).decision
    assert together == apart


@given(st.lists(statements(), max_size=4), REQUESTS)
def test_kms_without_delegation_ignores_identity_policies(
    base: list[dict[str, Any]], request: Request
) -> None:
    no_delegation = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::111122223333:role/other"},
                "Action": "kms:*",
                "Resource": "*",
            }
        ],
    }
    decision = evaluate(
        [policy(*base)], request, resource_policy=no_delegation, resource_policy_mode="kms"
    ).decision
    assert decision != ALLOW
