"""Per-job sizing end to end: the webhook's refusals, and scale-up's attribute-based launches."""

from __future__ import annotations

# The `world` fixture is imported from tests.support; pytest injects it by parameter name.
# ruff: noqa: F811
import json
from dataclasses import replace
from typing import Any

import boto3
import pytest

from jitrunners.handlers import scale_up, webhook
from jitrunners.models import JobMessage
from tests.conftest import TEMPLATES, _reset_process_caches, drain
from tests.support.ec2 import AMI, ec2_hook
from tests.support.scale_up import (
    World,
    failed_ids,
    jit_endpoint,
    job_status,
    launch_message,
    sqs_event,
    world,  # noqa: F401 - fixture
)
from tests.support.webhooks import proxy_event, workflow_job_payload

SIZED: dict[str, Any] = {
    "name": "sized",
    "labels": ["self-hosted", "linux", "sized"],
    "launch_template": "jitrunners-sized",
    "instance_types": ["m7i.large"],
    "market": "spot-then-on-demand",
    "max_runners": 3,
    "sizing": {"max_cpu": 8, "max_ram_gb": 32, "families": ["m7i", "c7i"], "max_disk_gb": 100},
}


@pytest.fixture
def sized_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("RUNNER_TEMPLATES", json.dumps([*TEMPLATES, SIZED]))
    _reset_process_caches()
    return env


def _deliver(labels: list[str], ctx: Any, job_id: int = 51) -> tuple[int, dict[str, Any]]:
    body = json.dumps(workflow_job_payload(job_id=job_id, labels=labels))
    response = webhook.handler(proxy_event(body, delivery=f"dlv-{job_id}"), ctx)
    return response["statusCode"], json.loads(response["body"])


def test_a_sized_job_is_accepted_with_its_labels(
    sized_env: dict[str, str], lambda_context: Any
) -> None:
    status, answer = _deliver(["self-hosted", "sized", "cpu=4", "ram=16"], lambda_context)
    assert (status, answer) == (202, {"accepted": True, "job_id": 51, "template": "sized"})
    [message] = drain(sized_env["JOB_QUEUE_URL"])
    assert json.loads(message["Body"])["labels"] == ["self-hosted", "sized", "cpu=4", "ram=16"]


@pytest.mark.parametrize(
    ("labels", "reason", "label"),
    [
        (["sized", "cpu=64"], "sizing_outside_policy", "cpu=64"),
        (["sized", "ram=lots"], "sizing_malformed", "ram=lots"),
        (["sized", "spot=false"], "sizing_outside_policy", "spot=false"),
        (["sized", "cpu=2", "cpu=4"], "sizing_repeated", "cpu=4"),
    ],
)
def test_a_refused_sizing_label_is_answered_logged_counted_and_launches_nothing(
    sized_env: dict[str, str],
    lambda_context: Any,
    log_lines: Any,
    capsys: pytest.CaptureFixture[str],
    labels: list[str],
    reason: str,
    label: str,
) -> None:
    status, answer = _deliver(labels, lambda_context)

    assert status == 202
    assert answer["ignored"] == reason
    assert answer["label"] == label
    assert answer["job_id"] == 51
    assert answer["detail"]
    assert drain(sized_env["JOB_QUEUE_URL"]) == []
    [warning] = [line for line in log_lines() if line["level"] == "WARNING"]
    assert warning["job_id"] == 51
    assert warning["label"] == label
    assert warning["reason"] == reason
    out = capsys.readouterr().out
    assert '"SizingRefused"' in out
    assert f'"reason":"{reason}"' in out


def test_sizing_labels_on_a_template_without_sizing_are_refused_as_such(
    sized_env: dict[str, str], lambda_context: Any
) -> None:
    status, answer = _deliver(["self-hosted", "linux-x64", "cpu=4"], lambda_context)
    assert (status, answer["ignored"]) == (202, "sizing_not_enabled")
    assert drain(sized_env["JOB_QUEUE_URL"]) == []


# --- scale-up: attribute-based launches -------------------------------------------------------


def _sized_launch(job_id: int, *sizing: str) -> JobMessage:
    message = launch_message(job_id, labels=["self-hosted", "sized", *sizing])
    return replace(message, template="sized")


def _tags(instance: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in instance.get("Tags", [])}


@pytest.fixture
def sized_world(sized_env: dict[str, str], world: World) -> World:
    boto3.client("ec2").create_launch_template(
        LaunchTemplateName="jitrunners-sized", LaunchTemplateData={"ImageId": AMI}
    )
    return world


def _fleet_requests() -> Any:
    return ec2_hook("CreateFleet", lambda _params: None)


def test_a_sized_job_launches_by_instance_requirements_and_registers_with_its_labels(
    sized_world: World, lambda_context: Any
) -> None:
    job_status(sized_world, 61)
    with _fleet_requests() as calls:
        response = scale_up.handler(
            sqs_event(_sized_launch(61, "cpu=4", "RAM=16", "disk=50")), lambda_context
        )

    assert failed_ids(response) == []
    [call] = calls
    body = call["body"]
    assert not any(k.endswith("InstanceType") for k in body)
    prefix = "LaunchTemplateConfigs.1.Overrides.1."
    assert body[prefix + "InstanceRequirements.VCpuCount.Min"] == 4
    assert body[prefix + "InstanceRequirements.VCpuCount.Max"] == 4
    assert body[prefix + "InstanceRequirements.MemoryMiB.Min"] == 16384
    assert body[prefix + "InstanceRequirements.BurstablePerformance"] == "excluded"
    assert body[prefix + "BlockDeviceMapping.1.Ebs.VolumeSize"] == 50
    assert body[prefix + "BlockDeviceMapping.1.Ebs.Encrypted"] == "true"
    subnets = {v for k, v in body.items() if k.endswith("SubnetId")}
    assert subnets == set(sized_world.subnets)  # one request over every subnet
    [instance] = sized_world.instances()
    assert instance["InstanceType"] in ("m7i.xlarge", "c7i.xlarge")  # within the families
    assert instance["InstanceType"] != "m7i.large"  # not the template's own type
    assert _tags(instance)["jitrunners:sizing"] == "cpu=4/RAM=16/disk=50"

    [start] = sized_world.starts()
    sized_world.sent.clear()
    jit_endpoint(sized_world)
    scale_up.handler(sqs_event(start), lambda_context)
    [registered] = sized_world.jit_calls
    assert registered["labels"] == ["self-hosted", "linux", "sized", "cpu=4", "RAM=16", "disk=50"]


def test_a_relaunch_from_the_instance_tags_keeps_the_sizing_labels(
    sized_world: World, lambda_context: Any
) -> None:
    from jitrunners.aws import fleet
    from jitrunners.lifecycle.provisioning import tags
    from jitrunners.routing import match_template

    job_status(sized_world, 65)
    scale_up.handler(sqs_event(_sized_launch(65, "cpu=2", "family=c7i")), lambda_context)
    [instance] = fleet.list_instances("jitrunners")
    assert instance.tags["jitrunners:sizing"] == "cpu=2/family=c7i"
    template = match_template(["sized"], _templates())
    relaunch = tags.owed_launch(instance, template)
    assert relaunch is not None
    assert relaunch.labels[-2:] == ("cpu=2", "family=c7i")


def _templates() -> Any:
    from jitrunners.config import parse_templates

    return parse_templates([*TEMPLATES, SIZED | {"launch_template": "jitrunners-sized"}])


def test_spot_false_launches_on_demand_only(
    sized_world: World, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = SIZED["sizing"] | {"on_demand": True}
    monkeypatch.setenv("RUNNER_TEMPLATES", json.dumps([*TEMPLATES, SIZED | {"sizing": policy}]))
    from jitrunners import config

    config.get_settings.cache_clear()
    job_status(sized_world, 62)
    with _fleet_requests() as calls:
        scale_up.handler(sqs_event(_sized_launch(62, "cpu=2", "spot=false")), lambda_context)

    [call] = calls
    assert call["body"]["TargetCapacitySpecification.DefaultTargetCapacityType"] == "on-demand"
    assert call["body"]["OnDemandOptions.AllocationStrategy"] == "lowest-price"
    [instance] = sized_world.instances()
    assert instance.get("InstanceLifecycle") != "spot"


def test_a_size_no_instance_type_meets_is_refused_and_launches_nothing(
    sized_world: World, lambda_context: Any, log_lines: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # m7i and c7i have 4 or 2 GiB per vCPU: none has 2 vCPUs and 32 GiB.
    job_status(sized_world, 63)
    with _fleet_requests() as calls:
        response = scale_up.handler(sqs_event(_sized_launch(63, "cpu=2", "ram=32")), lambda_context)

    assert failed_ids(response) == []  # refused for good: not retried into the DLQ
    assert calls == []
    assert sized_world.instances() == []
    [warning] = [line for line in log_lines() if line["level"] == "WARNING"]
    assert warning["reason"] == "sizing_unsatisfiable"
    assert warning["job_id"] == 63
    assert warning["label"] == "cpu=2/ram=32"
    assert '"reason":"sizing_unsatisfiable"' in capsys.readouterr().out


def test_a_policy_narrowed_after_the_webhook_refuses_at_launch(
    sized_world: World, lambda_context: Any
) -> None:
    job_status(sized_world, 64)
    with _fleet_requests() as calls:
        response = scale_up.handler(sqs_event(_sized_launch(64, "cpu=16")), lambda_context)
    assert failed_ids(response) == []
    assert calls == []
    assert sized_world.instances() == []


def test_jobs_of_different_sizes_in_one_batch_get_one_fleet_each_within_max_runners(
    sized_world: World, lambda_context: Any
) -> None:
    for job_id in (71, 72, 73, 74):
        job_status(sized_world, job_id)
    batch = sqs_event(
        _sized_launch(71, "cpu=2"),
        _sized_launch(72, "cpu=8"),
        _sized_launch(73, "cpu=2"),
        _sized_launch(74),  # unsized: the template's own types; over max_runners (3)
    )
    with _fleet_requests() as calls:
        scale_up.handler(batch, lambda_context)

    assert len(calls) == 2
    vcpus = sorted(
        c["body"]["LaunchTemplateConfigs.1.Overrides.1.InstanceRequirements.VCpuCount.Min"]
        for c in calls
    )
    assert vcpus == [2, 8]
    assert len(sized_world.instances()) == 3
