"""`jitrunners status` against a deployment in moto and the GitHub simulator."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from tests.cli.conftest import PREFIX, Deployed, Run
from tests.e2e.test_github_sim import poll, runner
from tests.support.world import launch

pytestmark = pytest.mark.usefixtures("deployed")


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def test_an_empty_deployment_reports_zeros_and_the_kill_switch_off(cli: Callable[..., Run]) -> None:
    run = cli("status", "--json")
    assert run.code == 0, run.err
    report = run.json()
    assert report["kill_switch"] == {
        "state": "off",
        "reserved_concurrency": {"webhook": 50, "scale-up": 5},
        "event_source_mapping": "Enabled",
    }
    assert report["queues"]["jobs"]["visible"] == 0
    assert report["queues"]["dlq"]["visible"] == 0
    assert [t["template"] for t in report["templates"]] == ["linux-x64", "linux-arm64"]
    assert all(t["total"] == 0 for t in report["templates"])
    assert report["runners"]["online"] == 0
    assert report["runners"]["scopes"] == ["orgs/acme"]
    assert report["housekeeper"] == {"last_run": None}
    assert report["alarms"] == {"in_alarm": []}


def _throw_kill_switch(*, mapping: bool = True, webhook: bool = True) -> None:
    lam = boto3.client("lambda")
    lam.put_function_concurrency(FunctionName=f"{PREFIX}-scale-up", ReservedConcurrentExecutions=0)
    if webhook:
        lam.put_function_concurrency(
            FunctionName=f"{PREFIX}-webhook", ReservedConcurrentExecutions=0
        )
    if mapping:
        [found] = lam.list_event_source_mappings()["EventSourceMappings"]
        lam.update_event_source_mapping(UUID=found["UUID"], Enabled=False)


def test_the_kill_switch_is_on_only_when_both_functions_and_the_mapping_are_stopped(
    cli: Callable[..., Run],
) -> None:
    _throw_kill_switch(mapping=False)
    assert cli("status", "--json").json()["kill_switch"]["state"] == "partial"
    _throw_kill_switch()
    run = cli("status")
    assert run.code == 0
    assert "kill switch  ON (webhook 0, scale-up 0; queue polling disabled)" in run.out


def test_queues_instances_runners_housekeeper_and_alarms_on_one_screen(
    cli: Callable[..., Run], deployed: Deployed
) -> None:
    sim = deployed.sim
    sqs = boto3.client("sqs")
    for index in range(2):
        sqs.send_message(QueueUrl=deployed.dlq_url, MessageBody=json.dumps({"n": index}))
    sqs.send_message(QueueUrl=deployed.job_queue_url, MessageBody="{}")
    now = _now()
    booting = launch(launched_at=now)
    busy = launch(launched_at=now, command_id="cmd-1", installation_id=99, job_id=1)
    idle = launch(launched_at=now, command_id="cmd-2", installation_id=99, job_id=2)
    repo_runner = launch(
        launched_at=now, template="linux-arm64", command_id="cmd-3", installation_id=99,
        repo="acme/widgets", job_id=3,
    )  # fmt: skip
    busy_identity = runner(sim, busy)
    runner(sim, idle)
    runner(sim, repo_runner, labels=("self-hosted", "linux", "arm64"), scope="repos/acme/widgets")
    sim.queue_job("acme/widgets", ["self-hosted", "linux"])
    deadline = time.monotonic() + 10
    while poll(sim, busy_identity) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    logs = boto3.client("logs")
    group = f"/aws/lambda/{PREFIX}-housekeeper"
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    stamp = int(time.time() * 1000)
    done = {"message": "housekeeping done", "actions": 2, "zombies": 1, "dry_run": False,
            "function_request_id": "r1"}  # fmt: skip
    reconciled = {"message": "reconciliation", "launches": 3, "queued": 4,
                  "function_request_id": "r1"}  # fmt: skip
    logs.put_log_events(
        logGroupName=group,
        logStreamName="s",
        logEvents=[
            {"timestamp": stamp - 10, "message": json.dumps(reconciled)},
            {"timestamp": stamp, "message": json.dumps(done)},
        ],
    )
    cloudwatch = boto3.client("cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName=f"{PREFIX}-jobs-dlq-not-empty", Namespace="AWS/SQS",
        MetricName="ApproximateNumberOfMessagesVisible", Statistic="Maximum", Period=300,
        EvaluationPeriods=1, Threshold=0, ComparisonOperator="GreaterThanThreshold",
    )  # fmt: skip
    cloudwatch.set_alarm_state(
        AlarmName=f"{PREFIX}-jobs-dlq-not-empty", StateValue="ALARM", StateReason="2 messages"
    )

    report = cli("status", "--json").json()
    assert report["queues"]["dlq"]["visible"] == 2
    assert report["queues"]["jobs"]["visible"] == 1
    by_template = {t["template"]: t for t in report["templates"]}
    x64 = by_template["linux-x64"]
    assert (x64["booting"], x64["running_job"], x64["idle"], x64["total"]) == (1, 1, 1, 3)
    assert by_template["linux-arm64"]["idle"] == 1
    assert report["runners"]["online"] == 3
    assert report["runners"]["busy"] == 1
    assert "repos/acme/widgets" in report["runners"]["scopes"]
    assert report["housekeeper"]["actions"] == 2
    assert report["housekeeper"]["zombies"] == 1
    assert report["housekeeper"]["reconciliation_launches"] == 3
    assert [a["name"] for a in report["alarms"]["in_alarm"]] == [f"{PREFIX}-jobs-dlq-not-empty"]
    assert booting

    screen = cli("status").out.splitlines()
    assert all(len(line) <= 80 for line in screen), screen
    text = "\n".join(screen)
    assert "DLQ          2 messages (2 waiting, 0 in flight, 0 delayed)" in text
    assert "3 online (1 busy), 0 offline" in text
    assert "2 actions, 1 zombies, 3 reconciliation launches" in text
    assert f"1 in ALARM: {PREFIX}-jobs-dlq-not-empty" in text


def test_no_deployment_with_that_prefix_is_one_line_and_exit_3(cli: Callable[..., Run]) -> None:
    run = cli("status", "--prefix", "nothing-here")
    assert run.code == 3
    assert run.out == ""
    assert run.err == (
        "jitrunners status: no jitrunners deployment with prefix 'nothing-here' in eu-west-1 "
        "(no queue nothing-here-jobs); pass --prefix or set JITRUNNERS_PREFIX\n"
    )


def test_no_credentials_is_one_line_and_exit_4(
    cli: Callable[..., Run], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    run = cli("status")
    assert run.code == 4
    assert run.err.startswith("jitrunners status: no AWS credentials found")
    assert run.err.count("\n") == 1
    assert "Traceback" not in run.err


def _deny(service: str, operation: str) -> None:
    """AWS's answer to a principal without the permission, for one operation of the shared
    client (what an operator's read-only role without it gets)."""
    from jitrunners.aws.clients import client

    body = json.dumps({"__type": "AccessDeniedException", "message": (
        f"User: arn:aws:iam::123456789012:user/operator is not authorized to perform: "
        f"{service}:{operation}")}).encode()  # fmt: skip

    class Raw:
        def stream(self, **_: Any) -> Any:
            yield body

    def refuse(**_: Any) -> Any:
        return AWSResponse("https://aws", 403, {"x-amzn-ErrorType": "AccessDeniedException"}, Raw())

    events = client(service).meta.events
    events.register(f"before-send.{service}.{operation}", refuse)


def test_access_denied_on_one_section_shows_the_rest_and_exits_1(
    cli: Callable[..., Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    from jitrunners.aws import clients

    monkeypatch.setattr(clients, "reset", lambda: None)  # keep the hooked client for the run
    clients.client.cache_clear()
    _deny("lambda", "GetFunctionConfiguration")
    run = cli("status")
    assert run.code == 1
    assert "kill switch  unavailable: access denied: GetFunctionConfiguration" in run.out
    assert "job queue    0 messages" in run.out
    assert run.err.startswith("jitrunners status: unavailable: kill_switch")


def test_github_refusing_the_app_key_leaves_runners_unavailable(
    cli: Callable[..., Run], deployed: Deployed
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()  # fmt: skip
    boto3.client("ssm").put_parameter(
        Name=f"/{PREFIX}/secrets/github-app-key", Value=other, Type="SecureString", Overwrite=True
    )
    run = cli("status", "--json")
    assert run.code == 1
    report = run.json()
    assert report["runners"]["error"].startswith("GitHub refused the credentials")
    assert report["kill_switch"]["state"] == "off"
    assert other not in run.out + run.err
