"""The EC2 adapter against moto: instant fleets, fallbacks, error classes, ownership checks."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from jitrunners.aws import fleet
from tests.support.ec2 import AMI, ec2_hook, error_response, fleet_error, make_world

TAGS = {"jitrunners:prefix": "jitrunners", "jitrunners:template": "linux-x64", "Name": "x"}
TYPES = ("m7i.large", "m6i.large")


@pytest.fixture
def subnets(aws: None) -> list[str]:
    return make_world()


def _launch(subnets: list[str], count: int = 1, market: str = "spot-then-on-demand"):
    return fleet.launch(
        launch_template="jitrunners-linux-x64",
        instance_types=TYPES,
        subnet_ids=subnets,
        count=count,
        market=market,
        tags=TAGS,
    )


def _spot_fails(code: str):
    def respond(params: dict[str, Any]) -> Any:
        if "SpotOptions" in str(params.get("body", "")) or "Spot" in str(params):
            from botocore.awsrequest import AWSResponse

            return AWSResponse("https://ec2", 200, {}, None), {
                "FleetId": "fleet-x",
                "Errors": [fleet_error(code, "spot", t) for t in TYPES],
                "Instances": [],
            }
        return None

    return respond


def test_spot_launch_is_one_instant_fleet_over_types_and_subnets(subnets: list[str]) -> None:
    with ec2_hook("CreateFleet", lambda _p: None) as calls:
        result = _launch(subnets, count=3)
    assert len(calls) == 1
    body = calls[0]["body"]
    assert body["Type"] == "instant"
    assert body["SpotOptions.AllocationStrategy"] == "price-capacity-optimized"
    overrides = {k for k in body if "Overrides" in k and k.endswith("InstanceType")}
    assert len(overrides) == 4  # 2 types x 2 subnets
    assert len(result.instances) == 3
    assert {i.market for i in result.instances} == {"spot"}
    ours = fleet.list_instances("jitrunners")
    assert {i.id for i in ours} == {i.id for i in result.instances}
    assert all(i.tags["jitrunners:template"] == "linux-x64" for i in ours)


def test_spot_without_capacity_falls_back_to_on_demand(subnets: list[str]) -> None:
    with ec2_hook("CreateFleet", _spot_fails("InsufficientInstanceCapacity")) as calls:
        result = _launch(subnets, count=2)
    assert len(calls) == 2
    assert [i.market for i in result.instances] == ["on-demand", "on-demand"]
    assert {e.code for e in result.errors} == {"InsufficientInstanceCapacity"}


def test_spot_only_template_reports_capacity_error(subnets: list[str]) -> None:
    with (
        ec2_hook("CreateFleet", _spot_fails("InsufficientInstanceCapacity")) as calls,
        pytest.raises(fleet.CapacityError) as info,
    ):
        _launch(subnets, market="spot")
    assert len(calls) == 1
    assert info.value.code == "InsufficientInstanceCapacity"


def test_quota_error_in_pool_is_a_config_error_without_fallback(subnets: list[str]) -> None:
    with (
        ec2_hook("CreateFleet", _spot_fails("VcpuLimitExceeded")) as calls,
        pytest.raises(fleet.LaunchConfigError) as info,
    ):
        _launch(subnets)
    assert len(calls) == 1
    assert info.value.code == "VcpuLimitExceeded"


def test_missing_launch_template_is_a_config_error(subnets: list[str]) -> None:
    fault = error_response("InvalidLaunchTemplateName.NotFoundException")
    with ec2_hook("CreateFleet", lambda _p: fault), pytest.raises(fleet.LaunchConfigError) as info:
        _launch(subnets)
    assert info.value.code == "InvalidLaunchTemplateName.NotFoundException"


def test_a_throttle_is_raised_at_once_never_slept_through(
    subnets: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Work waits in SQS, not in a sleeping Lambda: one throttled CreateFleet (the hook answers
    before botocore's own retry loop) ends the launch with ThrottledError, no second call."""
    import time

    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    faults = [error_response("RequestLimitExceeded", 503)]
    with (
        ec2_hook("CreateFleet", lambda _p: faults.pop() if faults else None) as calls,
        pytest.raises(fleet.ThrottledError),
    ):
        _launch(subnets)
    assert len(calls) == 1
    assert slept == []
    assert len(_launch(subnets).instances) == 1  # the record's next receive launches


def test_persistent_throttling_raises_throttled(subnets: list[str]) -> None:
    fault = error_response("RequestLimitExceeded", 503)
    with ec2_hook("CreateFleet", lambda _p: fault), pytest.raises(fleet.ThrottledError):
        _launch(subnets)


def test_terminate_only_touches_instances_with_our_prefix(subnets: list[str]) -> None:
    ours = _launch(subnets).instances[0].id
    ec2 = boto3.client("ec2")
    image = AMI
    foreign = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    other = ec2.run_instances(
        ImageId=image,
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "jitrunners:prefix", "Value": "other"}]}
        ],
    )["Instances"][0]["InstanceId"]

    assert fleet.terminate([ours, foreign, other, "i-0123456789abcdef0"], "jitrunners") == [ours]
    states = {
        i["InstanceId"]: i["State"]["Name"]
        for r in ec2.describe_instances()["Reservations"]
        for i in r["Instances"]
    }
    assert states[ours] in ("shutting-down", "terminated")
    assert states[foreign] == "running"
    assert states[other] == "running"


def test_tag_instance_and_get_instance(subnets: list[str]) -> None:
    instance_id = _launch(subnets).instances[0].id
    fleet.tag_instance(instance_id, {"jitrunners:command-id": "cmd-1", "jitrunners:job-id": "42"})
    found = fleet.get_instance(instance_id, "jitrunners")
    assert found is not None
    assert found.command_id == "cmd-1"
    assert found.job_id == 42
    assert found.launch_time is not None
    assert fleet.get_instance(instance_id, "other") is None


def test_capacity_error_for_the_whole_spot_call_still_falls_back(subnets: list[str]) -> None:
    def respond(params: dict[str, Any]) -> Any:
        spot = params["body"].get("TargetCapacitySpecification.DefaultTargetCapacityType")
        return error_response("InsufficientInstanceCapacity") if spot == "spot" else None

    with ec2_hook("CreateFleet", respond) as calls:
        result = _launch(subnets)
    assert len(calls) == 2
    assert [i.market for i in result.instances] == ["on-demand"]
    assert [e.code for e in result.errors] == ["InsufficientInstanceCapacity"]
