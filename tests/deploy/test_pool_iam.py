"""Warm pools' IAM: the calls README "Warm pools" needs, judged by the local stack's IAM evaluator
(devstack/iam) against the policies the module deploys (terraform/documents.tf, rendered).

Scale-up starts and stops our instances only (our prefix tag AND our instance profile, as for
TerminateInstances); scale-up and the housekeeper read launch template versions; the pool tag
is never written after launch, so a busy member cannot be made to look free.
"""

from __future__ import annotations

from typing import Any

import pytest

from devstack.iam.evaluator import ContextValue, Request, evaluate
from tests.deploy import rendered

ACCOUNT, REGION = rendered.ACCOUNT, rendered.REGION
INSTANCE = f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-0123456789abcdef0"
OUR_PROFILE = f"arn:aws:iam::{ACCOUNT}:instance-profile/jitrunners-runner"
OTHER_PROFILE = f"arn:aws:iam::{ACCOUNT}:instance-profile/build-farm"


def _instance(tags: dict[str, str], profile: str | None) -> dict[str, ContextValue]:
    """The request context EC2 gives an action on an existing instance (Service Authorization
    Reference, Amazon EC2, resource type `instance`): its tags, region and instance profile."""
    context: dict[str, ContextValue] = {"ec2:Region": REGION, "ec2:InstanceType": "m7i.large"}
    for key, value in tags.items():
        context[f"aws:ResourceTag/{key}"] = value
        context[f"ec2:ResourceTag/{key}"] = value
    if profile is not None:
        context["ec2:InstanceProfile"] = profile
    return context


def _allowed(function: str, action: str, resource: str, context: dict[str, Any]) -> bool:
    policies = rendered.documents().function_identity_policies(function)
    request = Request(f"role/{function}", action, resource, context)
    return evaluate(policies, request).allowed


MEMBER = {"jitrunners:prefix": "jitrunners", "jitrunners:template": "linux-x64",
          "jitrunners:pool": "stopped"}  # fmt: skip


@pytest.mark.parametrize("action", ["ec2:StartInstances", "ec2:StopInstances"])
def test_scale_up_starts_and_stops_our_pool_members(action: str) -> None:
    assert _allowed("scale-up", action, INSTANCE, _instance(MEMBER, OUR_PROFILE))


@pytest.mark.parametrize("action", ["ec2:StartInstances", "ec2:StopInstances"])
@pytest.mark.parametrize(
    ("tags", "profile"),
    [
        ({**MEMBER, "jitrunners:prefix": "other-deployment"}, OUR_PROFILE),
        (MEMBER, OTHER_PROFILE),  # our tags copied onto someone else's instance
        (MEMBER, None),  # no instance profile at all
        ({"Name": "database"}, OUR_PROFILE),
    ],
    ids=["other-prefix", "other-profile", "no-profile", "untagged"],
)
def test_scale_up_may_not_start_or_stop_instances_not_ours(
    action: str, tags: dict[str, str], profile: str | None
) -> None:
    assert not _allowed("scale-up", action, INSTANCE, _instance(tags, profile))


@pytest.mark.parametrize("function", ["webhook", "scale-down", "redrive", "housekeeper"])
@pytest.mark.parametrize("action", ["ec2:StartInstances", "ec2:StopInstances"])
def test_no_other_function_starts_or_stops_instances(function: str, action: str) -> None:
    assert not _allowed(function, action, INSTANCE, _instance(MEMBER, OUR_PROFILE))


@pytest.mark.parametrize(
    ("function", "allowed"),
    [("scale-up", True), ("housekeeper", True), ("webhook", False), ("scale-down", False)],
)
def test_scale_up_and_housekeeper_read_launch_template_versions(
    function: str, allowed: bool
) -> None:
    # DescribeLaunchTemplates has no resource-level permissions: authorized on "*".
    assert _allowed(function, "ec2:DescribeLaunchTemplates", "*", {}) is allowed


def _tagging(keys: list[str]) -> dict[str, ContextValue]:
    context = _instance(MEMBER, OUR_PROFILE)
    context["aws:TagKeys"] = keys
    for key in keys:
        context[f"aws:RequestTag/{key}"] = "x"
    return context


def test_a_claim_writes_the_jobs_tags_and_claimed_at_on_our_member() -> None:
    keys = ["jitrunners:job-id", "jitrunners:run-id", "jitrunners:claimed-at"]
    assert _allowed("scale-up", "ec2:CreateTags", INSTANCE, _tagging(keys))
    assert _allowed("scale-up", "ec2:CreateTags", INSTANCE, _tagging(["jitrunners:lt-version"]))


@pytest.mark.parametrize("key", ["jitrunners:pool", "jitrunners:prefix", "jitrunners:template"])
def test_the_pool_and_ownership_tags_are_never_written_after_launch(key: str) -> None:
    assert not _allowed(
        "scale-up", "ec2:CreateTags", INSTANCE, _tagging(["jitrunners:job-id", key])
    )
