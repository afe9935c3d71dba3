"""`jitrunners kill-switch` and `jitrunners spot-only` against moto: what they change, what they
say about Terraform, the record Terraform's plan reads, the audit trail and the metrics."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from jitrunners import guardrail
from jitrunners_cli import main as cli
from tests.support.lambdas import (
    REGION,
    Deployment,
    lambda_logging_restored,  # noqa: F401 - fixture
)

pytestmark = pytest.mark.usefixtures("lambda_logging_restored")


@pytest.fixture
def deployment(job_queue: str) -> Deployment:
    return Deployment().create(queue_url=job_queue)


def run(*args: str) -> int:
    return cli.main([*args, "--region", REGION])


def history() -> list[dict[str, Any]]:
    found = boto3.client("ssm").get_parameter_history(Name="/jitrunners/state/guard/history")
    return [json.loads(p["Value"]) for p in found["Parameters"]]


def metric_names() -> set[str]:
    found = boto3.client("cloudwatch").list_metrics(Namespace="jitrunners")["Metrics"]
    return {m["MetricName"] for m in found}


def test_on_stops_intake_and_says_what_terraform_will_do(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("kill-switch", "on", "--reason", "runaway spend") == 0

    assert deployment.concurrency("webhook") == 0
    assert deployment.concurrency("scale-up") == 0
    assert deployment.mapping_state() == "Disabled"
    record = guardrail.read_record("jitrunners", guardrail.KILL_SWITCH)
    assert record is not None
    assert (record.source, record.reason) == ("cli", "runaway spend")
    assert record.by.startswith("arn:aws:")  # the caller, from STS
    out = capsys.readouterr().out
    assert out.startswith("kill switch ON, by arn:aws:")
    assert "terraform apply keeps it on (its plan reads /jitrunners/state/guard/kill-switch)" in out
    assert "jitrunners kill-switch off" in out
    assert "KillSwitchEngaged" in metric_names()


def test_status_reports_who_holds_it(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("kill-switch", "--json") == 0
    off = json.loads(capsys.readouterr().out)
    assert (off["stopped"], off["held_by"], off["record"]) == (False, "", None)
    assert off["reserved_concurrency"] == {"jitrunners-webhook": 50, "jitrunners-scale-up": 5}

    assert run("kill-switch", "on") == 0
    capsys.readouterr()
    assert run("kill-switch", "status", "--json") == 0
    on = json.loads(capsys.readouterr().out)
    assert (on["stopped"], on["partial"], on["held_by"]) == (True, False, "runtime")
    assert on["event_source_mappings"][0]["state"] == "Disabled"
    assert on["terraform"] == {
        "kill_switch": False,
        "reserved_concurrency": {"webhook": 50, "scale-up": 5},
    }


def test_a_half_applied_switch_shows_as_partial(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment.lam.put_function_concurrency(
        FunctionName="jitrunners-webhook", ReservedConcurrentExecutions=0
    )
    assert run("kill-switch") == 0
    assert capsys.readouterr().out.startswith("kill switch: PARTIAL")


def test_off_restores_terraforms_setting_and_the_trail_keeps_both_changes(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("kill-switch", "on", "--reason", "incident 42") == 0
    assert run("kill-switch", "off", "--reason", "incident 42 closed") == 0

    assert deployment.concurrency("webhook") == 50
    assert deployment.concurrency("scale-up") == 5
    assert deployment.mapping_state() == "Enabled"
    assert guardrail.read_record("jitrunners", guardrail.KILL_SWITCH) is None
    assert [(h["engaged"], h["reason"]) for h in history()] == [
        (True, "incident 42"),
        (False, "incident 42 closed"),
    ]
    assert {"KillSwitchEngaged", "KillSwitchLifted"} <= metric_names()
    assert "terraform apply keeps it off." in capsys.readouterr().out


def test_off_is_refused_while_terraform_holds_the_switch(
    job_queue: str, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment = Deployment().create(queue_url=job_queue, kill_switch=True)
    for key in ("webhook", "scale-up"):  # what kill_switch = true applied
        deployment.lam.put_function_concurrency(
            FunctionName=f"jitrunners-{key}", ReservedConcurrentExecutions=0
        )
    deployment.lam.update_event_source_mapping(UUID=deployment.mapping_uuid, Enabled=False)

    assert run("kill-switch", "off") == 1
    err = capsys.readouterr().err
    assert err.startswith("jitrunners kill-switch: Terraform holds the kill switch")
    assert "set kill_switch = false and apply instead\n" in err
    assert run("kill-switch", "on", "--reason", "budget") == 0  # a runtime engagement on top
    assert run("kill-switch", "off") == 1
    assert "then run this again" in capsys.readouterr().err
    assert deployment.concurrency("scale-up") == 0
    assert deployment.mapping_state() == "Disabled"


def test_on_without_a_mapping_still_stops_the_functions_and_fails_loudly(
    job_queue: str, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment = Deployment().create()  # no job queue mapping
    assert run("kill-switch", "on") == 1
    assert "no event source mapping invokes jitrunners-scale-up" in capsys.readouterr().err
    assert deployment.concurrency("scale-up") == 0


def test_an_unknown_prefix_is_one_clear_line(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("kill-switch", "on", "--prefix", "other") == 3
    err = capsys.readouterr().err
    assert err.startswith("jitrunners kill-switch: no jitrunners deployment with prefix 'other'")
    assert deployment.concurrency("scale-up") == 5


def test_spot_only_on_status_off(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("spot-only", "on", "--reason", "month nearly spent") == 0
    assert guardrail.read_record("jitrunners", guardrail.SPOT_ONLY) is not None
    capsys.readouterr()
    assert run("spot-only", "--json") == 0
    status = json.loads(capsys.readouterr().out)
    assert status["spot_only"] is True
    assert status["record"]["reason"] == "month nearly spent"
    assert run("spot-only", "off") == 0
    assert guardrail.read_record("jitrunners", guardrail.SPOT_ONLY) is None
    assert {"SpotOnlyEngaged", "SpotOnlyLifted"} <= metric_names()
    assert run("spot-only", "off") == 0
    assert "already off" in capsys.readouterr().out
