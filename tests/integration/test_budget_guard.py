"""The budget guard end to end in moto: the notification AWS Budgets publishes, through SNS, into
the real handler acting as its own IAM role (the module's rendered policy, evaluated by
devstack/iam); the kill switch it engages stops the job queue's poller and the functions, queued
jobs stay queued, and once an operator lifts it (`jitrunners kill-switch off`) they run."""

# The `world` fixture is imported from tests.support; pytest injects it by parameter name.
# ruff: noqa: F811

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from devstack.iam.enforce import Enforcer, MotoLookup, Principal
from devstack.iam.principals import function_role_arn, without_statements
from jitrunners import config, guardrail
from jitrunners.aws.clients import client
from jitrunners.handlers import budget_guard, scale_up
from jitrunners_cli import main as cli
from tests.deploy import rendered
from tests.integration.test_scale_up_handler import _spot_no_capacity
from tests.support.ec2 import ec2_hook
from tests.support.lambdas import (
    ACCOUNT,
    REGION,
    Deployment,
    EventSourcePoller,
    budget_message,
    lambda_logging_restored,  # noqa: F401 - fixture
    queue_depth,
    sns_event,
)
from tests.support.scale_up import (
    World,
    failed_ids,
    job_status,
    launch_message,
    sqs_event,
    world,  # noqa: F401 - fixture
)

GUARD_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:jitrunners-budget-guard:live"

pytestmark = pytest.mark.usefixtures("lambda_logging_restored")


@dataclass
class GuardContext:
    function_name: str = "jitrunners-budget-guard"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = GUARD_ARN
    aws_request_id: str = "req-guard-1"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@contextmanager
def acting_as_guard(without: Sequence[str] = ()) -> Iterator[Enforcer]:
    """Every call of the guard's AWS clients authorized against the policies the module
    attaches to its role (terraform/documents.tf, rendered by the terraform binary)."""
    docs = rendered.documents()
    policies = without_statements(docs.function_identity_policies("budget-guard"), without)
    principal = Principal.role(
        function_role_arn(ACCOUNT, "jitrunners", "budget-guard"), lambda: policies
    )
    lookup = MotoLookup(lambda service: boto3.client(service, region_name=REGION), REGION, ACCOUNT)
    enforcer = Enforcer(principal, lookup, region=REGION)
    hooked = [enforcer.attach(client(service)) for service in ("lambda", "ssm")]
    try:
        yield enforcer
    finally:
        for hooked_client in hooked:
            enforcer.detach(hooked_client)


def publish_budget_alert(**kw: Any) -> dict[str, Any]:
    subject, message = budget_message(**kw)
    return budget_guard.handler(sns_event(message, subject=subject), GuardContext())


def enqueue_launches(world: World, *job_ids: int) -> None:
    for job_id in job_ids:
        job_status(world, job_id)
        client("sqs").send_message(
            QueueUrl=world.queue_url, MessageBody=launch_message(job_id).to_json()
        )


def budget_action(monkeypatch: pytest.MonkeyPatch, action: str) -> None:
    monkeypatch.setenv("BUDGET_ACTION", action)
    config.get_settings.cache_clear()


def history(name: str = "/jitrunners/state/guard/history") -> list[dict[str, Any]]:
    found = boto3.client("ssm").get_parameter_history(Name=name)["Parameters"]
    return [json.loads(p["Value"]) for p in found]


def test_the_guard_engages_the_kill_switch_queued_jobs_wait_and_run_once_lifted(
    world: World,
    lambda_context: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    log_lines: Any,
) -> None:
    budget_action(monkeypatch, "kill-switch")
    deployment = Deployment().create(queue_url=world.queue_url)
    poller = EventSourcePoller(deployment, world.queue_url, scale_up.handler, lambda_context)
    enqueue_launches(world, 101, 102)

    with acting_as_guard() as enforcer:
        response = publish_budget_alert(amount="$1,234.56", threshold="> $1,000.00")

    assert response["outcomes"][0]["action"] == "kill-switch"
    assert deployment.concurrency("webhook") == 0
    assert deployment.concurrency("scale-up") == 0
    assert deployment.mapping_state() == "Disabled"
    assert all(result.allowed for _, _, result in enforcer.decisions)
    assert {action for action, _, _ in enforcer.decisions} >= {
        "lambda.UpdateEventSourceMapping",
        "lambda.PutFunctionConcurrency",
        "ssm.PutParameter",
    }
    assert '"KillSwitchEngaged"' in capsys.readouterr().out  # the EMF metric
    [line] = [x for x in log_lines() if x["message"].startswith("budget guard engaged")]
    assert line["level"] == "ERROR"
    assert line["budget"] == "jitrunners-monthly"
    assert "jitrunners-scale-up: reserved concurrency 0" in line["actions"]

    # Launches stop; queued jobs stay queued, never received (so never pushed toward the DLQ).
    for _ in range(3):
        assert poller.poll_once() == 0
    assert poller.receives == 0
    assert queue_depth(world.queue_url) == {"visible": 2, "in_flight": 0}
    assert world.instances() == []

    # An apply would keep it: the record the plan reads is there.
    assert guardrail.read_record("jitrunners", guardrail.KILL_SWITCH) is not None

    assert cli.main(["kill-switch", "off", "--reason", "budget raised", "--region", REGION]) == 0
    assert deployment.concurrency("webhook") == 50
    assert deployment.concurrency("scale-up") == 5
    assert deployment.mapping_state() == "Enabled"
    assert guardrail.read_record("jitrunners", guardrail.KILL_SWITCH) is None

    assert poller.poll_once() == 2
    assert len(world.instances()) == 2
    assert {m.job_id for m in world.starts()} == {101, 102}

    engaged, lifted = history()
    assert (engaged["engaged"], engaged["source"], engaged["by"]) == (True, "budget", GUARD_ARN)
    assert "budget jitrunners-monthly $1,234.56" in engaged["reason"]
    assert (lifted["engaged"], lifted["source"], lifted["reason"]) == (
        False,
        "cli",
        "budget raised",
    )
    metrics = boto3.client("cloudwatch").list_metrics(Namespace="jitrunners")["Metrics"]
    assert "KillSwitchLifted" in {m["MetricName"] for m in metrics}


def test_a_second_notification_keeps_the_first_engagement(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    budget_action(monkeypatch, "kill-switch")
    Deployment().create(queue_url=world.queue_url)
    with acting_as_guard():
        first = publish_budget_alert()
        since = guardrail.read_record("jitrunners", guardrail.KILL_SWITCH).since  # type: ignore[union-attr]
        second = publish_budget_alert(budget="jitrunners-daily", daily=True)
    assert (first["outcomes"][0]["already"], second["outcomes"][0]["already"]) == (False, True)
    assert guardrail.read_record("jitrunners", guardrail.KILL_SWITCH).since == since  # type: ignore[union-attr]


def test_spot_only_stops_on_demand_launches_until_lifted(
    world: World, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    budget_action(monkeypatch, "spot-only")
    Deployment().create(queue_url=world.queue_url)
    with acting_as_guard():
        response = publish_budget_alert()
    assert response["outcomes"][0]["action"] == "spot-only"

    # linux-x64 is spot-then-on-demand: with spot-only on, no on-demand fallback.
    job_status(world, 10)
    with ec2_hook("CreateFleet", _spot_no_capacity) as fleets:
        result = scale_up.handler(sqs_event(launch_message(10)), lambda_context)
    assert failed_ids(result) == ["msg-0"]
    assert [f["body"]["TargetCapacitySpecification.DefaultTargetCapacityType"] for f in fleets] == [
        "spot"
    ]
    assert world.instances() == []

    assert cli.main(["spot-only", "off", "--region", REGION]) == 0
    guardrail.spot_only_cache.clear()  # a minute later (or another container)
    with ec2_hook("CreateFleet", _spot_no_capacity) as fleets:
        result = scale_up.handler(sqs_event(launch_message(10)), lambda_context)
    assert failed_ids(result) == []
    assert len(fleets) == 2  # spot refused, then on-demand
    assert len(world.instances()) == 1


@pytest.mark.parametrize(
    ("action", "alert", "budget", "outcome"),
    [
        ("notify", "ACTUAL", "jitrunners-monthly", "notified"),
        ("kill-switch", "FORECASTED", "jitrunners-monthly", "notified"),
        ("kill-switch", "ACTUAL", "someone-elses-budget", "ignored"),
    ],
    ids=["notify-only", "forecast-never-acts", "another-budget"],
)
def test_what_does_not_stop_anything(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    action: str,
    alert: str,
    budget: str,
    outcome: str,
) -> None:
    budget_action(monkeypatch, action)
    deployment = Deployment().create(queue_url=world.queue_url)
    with acting_as_guard() as enforcer:
        response = publish_budget_alert(alert_type=alert, budget=budget)
    assert response["outcomes"][0]["action"] == outcome
    assert enforcer.decisions == []  # not one AWS call
    assert deployment.concurrency("scale-up") == 5
    assert deployment.mapping_state() == "Enabled"


def test_a_message_that_is_not_a_budget_notification_is_ignored(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    budget_action(monkeypatch, "kill-switch")
    deployment = Deployment().create(queue_url=world.queue_url)
    event = sns_event("Successfully validated SNS topic for Amazon SES.", subject="test")
    assert budget_guard.handler(event, GuardContext())["outcomes"] == [
        {"action": "ignored", "reason": "unrecognised", "budget": "", "already": False}
    ]
    assert deployment.mapping_state() == "Enabled"


def test_the_guard_may_pause_only_mappings_tagged_with_the_prefix(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Teeth of the IAM evaluation: an untagged mapping (or a policy without the statement) is
    denied as AWS would deny it, and the invocation fails (SNS's retries, then the events DLQ)."""
    budget_action(monkeypatch, "kill-switch")
    deployment = Deployment().create(queue_url=world.queue_url)
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:event-source-mapping:{deployment.mapping_uuid}"
    deployment.lam.untag_resource(Resource=arn, TagKeys=["jitrunners:prefix"])
    with acting_as_guard(), pytest.raises(ClientError) as denied:
        publish_budget_alert()
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "lambda:UpdateEventSourceMapping" in str(denied.value)
    assert deployment.mapping_state() == "Enabled"
