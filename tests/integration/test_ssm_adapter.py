"""The SSM adapter against moto: JIT parameters and the runner's RunCommand."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from jitrunners.aws import ssm
from jitrunners.aws.clients import client
from tests.support.ec2 import AMI

ARN = "arn:aws:ec2:eu-west-1:123456789012:instance/i-1"


def test_jit_parameter_is_a_tagged_securestring(aws: None) -> None:
    name = "/jitrunners/jit/i-1"
    assert ssm.put_jit_config(name, "SECRET", ARN) is True
    assert ssm.put_jit_config(name, "OTHER", ARN) is False  # never overwritten
    raw = boto3.client("ssm")
    value = raw.get_parameter(Name=name, WithDecryption=True)["Parameter"]
    assert (value["Type"], value["Value"]) == ("SecureString", "SECRET")
    tags = raw.list_tags_for_resource(ResourceType="Parameter", ResourceId=name)["TagList"]
    assert {t["Key"]: t["Value"] for t in tags} == {
        "jitrunners:prefix": "jitrunners",
        "jitrunners:instance-arn": ARN,
    }
    assert ssm.parameter_exists(name)
    assert [p.name for p in ssm.list_jit_parameters("jitrunners")] == [name]
    assert ssm.delete_parameter(name) is True
    assert ssm.delete_parameter(name) is False
    assert not ssm.parameter_exists(name)


def test_list_jit_parameters_pages_and_ignores_other_paths(aws: None) -> None:
    for i in range(12):
        ssm.put_jit_config(f"/jitrunners/jit/i-{i}", "x", ARN)
    boto3.client("ssm").put_parameter(Name="/jitrunners/other", Value="x", Type="String")
    assert len(ssm.list_jit_parameters("jitrunners")) == 12


def _capture_send_command(respond: Any = None) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    def hook(params: dict[str, Any], **_: Any) -> Any:
        seen.append(params)
        return respond(params) if respond else None

    client("ssm").meta.events.register("provide-client-params.ssm.SendCommand", hook)
    return seen


def test_runner_command_names_the_parameter_and_sets_timeouts(aws: None) -> None:
    seen = _capture_send_command()
    command_id = ssm.send_runner_command(
        "i-1",
        param_name="/jitrunners/jit/i-1",
        script_path="/opt/jitrunners/start-runner.sh",
        idle_timeout_s=300,
        max_lifetime_s=86400,
        start_timeout_s=600,
        comment="jitrunners job 42 acme/widgets",
        output_log_group="/jitrunners/ssm",
    )
    assert command_id
    [params] = seen
    assert params["DocumentName"] == "AWS-RunShellScript"
    assert params["Parameters"] == {
        "commands": ["/opt/jitrunners/start-runner.sh /jitrunners/jit/i-1 300"],
        "executionTimeout": ["86400"],
    }
    assert params["TimeoutSeconds"] == 600
    assert params["Comment"] == "jitrunners job 42 acme/widgets"
    assert params["CloudWatchOutputConfig"]["CloudWatchLogGroupName"] == "/jitrunners/ssm"


def test_windows_runner_command(aws: None) -> None:
    seen = _capture_send_command()
    ssm.send_runner_command(
        "i-1",
        param_name="/jitrunners/jit/i-1",
        script_path="",
        idle_timeout_s=60,
        max_lifetime_s=3600,
        start_timeout_s=10,
        comment="x" * 300,
        os="windows",
    )
    [params] = seen
    assert params["DocumentName"] == "AWS-RunPowerShellScript"
    assert params["Parameters"]["commands"] == [
        "& 'C:\\jitrunners\\start-runner.ps1' -ParameterName /jitrunners/jit/i-1 "
        "-IdleTimeoutSeconds 60"
    ]
    assert params["TimeoutSeconds"] == 30
    assert len(params["Comment"]) == 100
    assert "CloudWatchOutputConfig" not in params


def test_invalid_instance_id_means_agent_not_ready(aws: None) -> None:
    from botocore.awsrequest import AWSResponse

    def fault(**_: Any) -> Any:
        return AWSResponse("https://ssm", 400, {}, None), {
            "Error": {"Code": "InvalidInstanceId", "Message": "not ready"}
        }

    client("ssm").meta.events.register("before-call.ssm.SendCommand", fault)
    with pytest.raises(ssm.AgentNotReady):
        ssm.send_runner_command(
            "i-1",
            param_name="/p",
            script_path="/s",
            idle_timeout_s=1,
            max_lifetime_s=2,
            start_timeout_s=1,
            comment="c",
        )


def test_command_status(aws: None) -> None:
    ec2 = boto3.client("ec2")
    image = AMI
    instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]
    command_id = ssm.send_runner_command(
        instance["InstanceId"],
        param_name="/p",
        script_path="/s",
        idle_timeout_s=1,
        max_lifetime_s=2,
        start_timeout_s=1,
        comment="c",
    )
    assert ssm.get_command_status(command_id, instance["InstanceId"]) is not None
    assert ssm.get_command_status("00000000-0000-0000-0000-000000000000", "i-nope") is None
    invocation = ssm.get_command_invocation(command_id, instance["InstanceId"])
    assert invocation is not None
    assert invocation.ended_at is not None
    assert invocation.ended_at.tzinfo is not None  # comparable with the Lambdas' clock


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-01T09:30:00.123Z", datetime(2026, 12, 1, 9, 30, 0, 123000, tzinfo=UTC)),
        ("2026-12-01T09:30:00", datetime(2026, 12, 1, 9, 30, tzinfo=UTC)),
        ("", None),  # the command still runs
        (None, None),
        ("yesterday", None),
    ],
)
def test_execution_end_time_is_read_as_utc(text: str | None, expected: datetime | None) -> None:
    assert ssm._iso_time(text) == expected
