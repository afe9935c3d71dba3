"""The shims behave like the AWS services they stand in for."""

from __future__ import annotations

import base64
import json
import re
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from devstack.aws_world import ACCOUNT, REGION, AwsWorld
from devstack.faults import FAULTS, Ec2Faults, parse_faults
from devstack.github_sim import GitHubSim
from devstack.shims import BackendSqs, EventBus, Function, SqsEventSource
from devstack.stack import Options, Stack
from tests.e2e.conftest import Fleet
from tests.support.waits import PATIENCE_S

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
SUMMARY_KEYS = {
    "jobs",
    "completed",
    "cancelled",
    "swaps",
    "reconciled_launches",
    "extra_instances",
    "instances_launched",
    "instances_left",
    "jit_params_left",
    "runners_left",
    "queue_left",
    "dlq_left",
    "pool_left",
    "queue_to_runner_s",
    "max_concurrent",
    "startup_s",
    "seconds",
}


def _until(predicate: Any, timeout_s: float = PATIENCE_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _function(handler: Any, key: str = "scale-up") -> Function:
    function = Function(key, "test")
    function.handler, function.missing_reason = handler, ""
    return function


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    built = Stack(
        Options(jobs=4, seed=5, faults={"duplicate-webhooks": 1.0}, workdir=tmp_path),
        out=open(tmp_path / "progress.txt", "w"),  # noqa: SIM115 - closed with the stack's files
    )
    yield built.start()
    built.stop()


def test_signed_webhooks_travel_through_api_gateway_into_the_job_queue(stack: Stack) -> None:
    if stack.event_source is not None:
        stack.event_source.stop()
    jobs = stack.queue_jobs()
    assert stack.sim.wait_webhooks_sent(timeout_s=PATIENCE_S)
    duplicated = stack.sim.counters["webhooks_duplicated"]
    assert duplicated > 0
    assert stack.apigw is not None
    assert stack.apigw.statuses[202] == len(jobs) + duplicated
    assert stack.sim.failed_deliveries() == []
    sqs = stack.world.client("sqs")
    bodies = []
    while True:
        got = sqs.receive_message(QueueUrl=stack.world.job_queue_url, MaxNumberOfMessages=10)
        if not got.get("Messages"):
            break
        bodies += [json.loads(m["Body"]) for m in got["Messages"]]
    assert sorted({b["job_id"] for b in bodies}) == sorted(j.id for j in jobs)
    # The demo's jobs go round the templates without a sizing policy (sized ones: --sizing).
    plain = {t["name"] for t in stack.world.tf_templates if not t.get("sizing")}
    assert {b["template"] for b in bodies} == plain
    text = stack.logged_text()
    assert text
    for secret in stack.sim.issued_secrets:
        assert secret not in text


def test_lost_webhooks_are_recorded_as_failed_and_reach_nobody(tmp_path: Path) -> None:
    stack = Stack(
        Options(jobs=3, seed=2, faults={"lost-webhooks": 1.0}, workdir=tmp_path),
        out=open(tmp_path / "progress.txt", "w"),  # noqa: SIM115
    )
    stack.start()
    try:
        if stack.event_source is not None:
            stack.event_source.stop()
        stack.queue_jobs()
        assert stack.sim.wait_webhooks_sent(timeout_s=PATIENCE_S)
        assert len(stack.sim.failed_deliveries()) == 3
        assert all(d.status_code == 0 for d in stack.sim.failed_deliveries())
        assert stack.apigw is not None
        assert sum(stack.apigw.statuses.values()) == 0
    finally:
        stack.stop()


def _pollers_sqs(world: AwsWorld, kind: str) -> Any:
    """What an event source polls with: a boto3 client, or the stack's calls on moto's backend."""
    return world.client("sqs") if kind == "client" else BackendSqs(REGION)


@pytest.mark.parametrize("kind", ["client", "backend"])
def test_event_source_honours_batch_item_failures_and_the_redrive_policy(
    world: AwsWorld, kind: str
) -> None:
    sqs = world.client("sqs")
    dlq = sqs.create_queue(QueueName="t-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue = sqs.create_queue(
        QueueName="t-jobs",
        Attributes={
            "VisibilityTimeout": "1",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2}),
        },
    )["QueueUrl"]
    for body in ("ok-1", "fail", "ok-2"):
        sqs.send_message(QueueUrl=queue, MessageBody=body)
    seen: list[dict[str, Any]] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.extend(event["Records"])
        assert context.get_remaining_time_in_millis() > 0
        failed = [r["messageId"] for r in event["Records"] if r["body"] == "fail"]
        return {"batchItemFailures": [{"itemIdentifier": i} for i in failed]}

    source = SqsEventSource(_pollers_sqs(world, kind), queue, _function(handler), "eu-west-1")
    source.poll_once()
    assert sorted(r["body"] for r in seen) == ["fail", "ok-1", "ok-2"]
    record = seen[0]
    assert record["eventSource"] == "aws:sqs"
    assert record["receiptHandle"]
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert _until(lambda: source.poll_once() == 1)  # only the failure comes back
    assert seen[-1]["attributes"]["ApproximateReceiveCount"] == "2"
    assert int(record["attributes"]["SentTimestamp"]) <= int(
        record["attributes"]["ApproximateFirstReceiveTimestamp"]
    )
    time.sleep(1.2)
    source.poll_once()  # a third receive is over maxReceiveCount: moto moves it to the DLQ
    assert _until(lambda: world.queue_depth(dlq) == 1)
    assert world.queue_depth(queue) == 0


def test_event_bus_drops_a_seeded_fraction_and_sends_the_rest_to_the_teardown_queue(
    world: AwsWorld,
) -> None:
    sqs = world.client("sqs")
    queue = sqs.create_queue(QueueName="t-teardown")["QueueUrl"]
    bus = EventBus(sqs, queue, drop=0.5, seed=3).start()
    for index in range(20):
        bus.put({"id": str(index), "detail-type": "x"})
    assert not bus.idle()
    bodies: list[dict[str, Any]] = []
    while len(bodies) < 20 - bus.counters["dropped"]:
        got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        assert got
        bodies += [json.loads(m["Body"]) for m in got]
        for m in got:
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
    bus.stop()
    assert 0 < bus.counters["dropped"] < 20
    assert bus.counters["sent"] == len(bodies) == 20 - bus.counters["dropped"]
    assert all(body["detail-type"] == "x" for body in bodies)  # the whole event is the body
    assert bus.idle()


@pytest.mark.parametrize("kind", ["client", "backend"])
def test_event_source_fills_a_batch_above_ten_within_its_window(world: AwsWorld, kind: str) -> None:
    sqs = world.client("sqs")
    queue = sqs.create_queue(QueueName="t-batch")["QueueUrl"]
    for start in range(0, 30, 10):
        sqs.send_message_batch(
            QueueUrl=queue,
            Entries=[{"Id": str(i), "MessageBody": f"m-{i}"} for i in range(start, start + 10)],
        )
    batches: list[int] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        batches.append(len(event["Records"]))
        return {"batchItemFailures": []}

    polled = _pollers_sqs(world, kind)
    source = SqsEventSource(
        polled, queue, _function(handler), "eu-west-1", batch_size=25, window_s=2
    )
    assert source.poll_once() == 25
    assert source.poll_once() == 5  # what is left, once the window closed
    assert batches == [25, 5]


def test_agent_boots_from_user_data_and_runs_start_runner_only_on_the_commands_targets(
    sim: GitHubSim, fleet: Fleet
) -> None:
    fleet.agent.boot_s = 1.0
    ids = fleet.launch(2)
    ssm = fleet.world.client("ssm")
    job = sim.queue_job("acme/widgets", ["self-hosted", "linux"])
    encoded = sim.generate_jitconfig(
        "orgs/acme", {"name": ids[0], "labels": ["self-hosted", "linux"], "runner_group_id": 1}
    )["encoded_jit_config"]
    name = f"/jitrunners/jit/{ids[0]}"
    # As scale-up writes it: only the instance named in its tag may read it (the runner role).
    ssm.put_parameter(
        Name=name,
        Type="SecureString",
        Value=encoded,
        KeyId=fleet.world.kms_key_arn,
        Tags=[
            {
                "Key": "jitrunners:instance-arn",
                "Value": f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{ids[0]}",
            }
        ],
    )
    send = {
        "InstanceIds": [ids[0]],
        "DocumentName": "AWS-RunShellScript",
        "Parameters": {
            "commands": [f"/opt/jitrunners/start-runner.sh {name} 20"],
            "executionTimeout": ["120"],
        },
    }
    with pytest.raises(ClientError) as refused:
        ssm.send_command(**send)
    assert refused.value.response["Error"]["Code"] == "InvalidInstanceId"
    assert _until(lambda: fleet.agent.online(ids[0]), PATIENCE_S), fleet.agent.boots
    # Online = the user data's bootstrap started the SSM agent unit, and boot_s passed.
    instance = fleet.agent.instances[ids[0]]
    assert "enable --now amazon-ssm-agent.service" in instance.state("systemctl.log")
    assert time.time() - fleet.launched[ids[0]] >= 1.0
    command_id = ssm.send_command(**send)["Command"]["CommandId"]
    assert _until(lambda: len(fleet.events) == 1, PATIENCE_S)
    [event] = fleet.events
    assert event["detail-type"] == "EC2 Command Invocation Status-change Notification"
    assert event["detail"] == {**event["detail"], "command-id": command_id, "status": "Success"}
    assert event["detail"]["instance-id"] == ids[0]
    assert list(fleet.agent.invocations) == [(command_id, ids[0])]  # not every instance
    assert sim.jobs[job.id].conclusion == "success"
    assert encoded not in json.dumps(fleet.agent.commands)
    assert encoded not in "".join(fleet.agent.outputs())


def test_a_failing_bootstrap_powers_the_instance_off(fleet: Fleet, tmp_path: Path) -> None:
    """`bootstrap.sh || shutdown -h now`: here the runner's checksum cannot match."""
    ec2 = fleet.world.client("ec2")
    [version] = ec2.describe_launch_template_versions(
        LaunchTemplateName="jitrunners-linux-x64", Versions=["$Default"]
    )["LaunchTemplateVersions"]
    user_data = base64.b64decode(version["LaunchTemplateData"]["UserData"]).decode()
    broken = re.sub(
        r"RUNNER_SHA256_X64='[0-9a-f]{64}'", "RUNNER_SHA256_X64='" + "0" * 64 + "'", user_data
    )
    assert broken != user_data
    ec2.create_launch_template_version(
        LaunchTemplateName="jitrunners-linux-x64",
        SourceVersion="$Default",
        LaunchTemplateData={"UserData": base64.b64encode(broken.encode()).decode()},
    )
    ec2.modify_launch_template(LaunchTemplateName="jitrunners-linux-x64", DefaultVersion="2")
    powered_off: list[str] = []
    fleet.agent.on_poweroff = powered_off.append
    [iid] = fleet.launch()
    assert _until(lambda: powered_off == [iid], PATIENCE_S), fleet.agent.boots
    instance = fleet.agent.instances[iid]
    assert instance.state("power.log").startswith("shutdown -h now")
    assert "SHA-256 mismatch" in instance.read("/var/log/jitrunners/bootstrap.log")
    assert not instance.running()
    assert not fleet.agent.online(iid)


def test_ec2_faults_refuse_spot_capacity_and_throttle(world: AwsWorld) -> None:
    ec2 = boto3.session.Session().client(
        "ec2", endpoint_url=world.endpoint_url, region_name="eu-west-1"
    )
    faults = Ec2Faults(capacity=1.0)
    faults.attach(ec2)
    fleet = ec2.create_fleet(
        Type="instant",
        LaunchTemplateConfigs=[
            {"LaunchTemplateSpecification": {"LaunchTemplateName": "jitrunners-linux-x64"}}
        ],
        TargetCapacitySpecification={"TotalTargetCapacity": 1, "DefaultTargetCapacityType": "spot"},
    )
    assert fleet["Errors"][0]["ErrorCode"] == "InsufficientInstanceCapacity"
    assert fleet["Instances"] == []
    # Throttling answers each HTTP attempt, so the client's own retries see it.
    throttled = boto3.session.Session().client(
        "ec2",
        endpoint_url=world.endpoint_url,
        region_name="eu-west-1",
        config=Config(retries={"mode": "standard", "total_max_attempts": 2}),
    )
    throttle = Ec2Faults(throttle=1.0)
    throttle.attach(throttled)
    with pytest.raises(ClientError) as error:
        throttled.terminate_instances(InstanceIds=["i-0123456789abcdef0"])
    assert error.value.response["Error"]["Code"] == "RequestLimitExceeded"
    assert throttle.counters["throttled:TerminateInstances"] == 2  # both attempts


def test_fault_flags_are_validated() -> None:
    assert parse_faults("ec2-capacity=0.3,github-5xx=0.1") == {
        "ec2-capacity": 0.3,
        "github-5xx": 0.1,
    }
    assert set(parse_faults(",".join(FAULTS))) == set(FAULTS)
    for bad in ("nope=1", "ec2-capacity=2", "ec2-capacity=x"):
        with pytest.raises(ValueError, match="fault"):
            parse_faults(bad)


def test_demo_cli_last_line_is_the_summary_and_the_exit_status_follows_it() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "devstack", "--jobs", "2", "--job-seconds", "0.2", "--seed", "3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=PATIENCE_S,
        check=False,
    )
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(summary) == SUMMARY_KEYS
    # Start-up said what it was doing before the jobs ran.
    assert "EC2 backend ready" in done.stdout
    assert f"stack up in {summary['startup_s']:.1f} s" in done.stdout
    assert summary["jobs"] == 2
    clean = summary["completed"] == 2 and not any(
        summary[k]
        for k in ("instances_left", "jit_params_left", "runners_left", "queue_left", "dlq_left")
    )
    assert done.returncode == (0 if clean else 1), done.stdout + done.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "devstack", "--faults", "meteor=1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=PATIENCE_S,
        check=False,
    )
    assert bad.returncode == 2
    assert "meteor" in bad.stderr


def test_serve_prints_its_json_line_on_stdout_and_start_up_on_stderr() -> None:
    serve = subprocess.Popen(
        [sys.executable, "-m", "devstack", "--serve"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    guard = threading.Timer(PATIENCE_S, serve.kill)  # readline returns "" if it never comes
    guard.start()
    exports: dict[str, str] = {}
    try:
        # First one `export NAME=VALUE` per variable the jitrunners CLI reads, then the JSON.
        line = serve.stdout.readline()  # type: ignore[union-attr]
        while line.startswith("export "):
            name, _, value = line.removeprefix("export ").rstrip("\n").partition("=")
            exports[name] = shlex.split(value)[0]
            line = serve.stdout.readline()  # type: ignore[union-attr]
        info = json.loads(line)
    finally:
        guard.cancel()
        serve.terminate()
        _, stderr = serve.communicate(timeout=PATIENCE_S)
    assert exports["JITRUNNERS_WEBHOOK_URL"] == info["webhook_url"]
    assert exports["AWS_ENDPOINT_URL"] == info["aws_endpoint_url"]
    assert info["webhook_url"].startswith("http://127.0.0.1:")
    assert {"webhook_secret", "aws_endpoint_url", "github_api_url"} <= info.keys()
    assert "stack up in" in stderr
    assert serve.returncode == 0  # SIGTERM ends it cleanly, however soon it comes


def test_command_invocation_status_comes_from_the_agent_not_moto(fleet: Fleet) -> None:
    ssm = fleet.world.client("ssm")
    [iid] = fleet.launch()
    assert _until(lambda: fleet.agent.online(iid), PATIENCE_S), fleet.agent.boots
    command_id = ssm.send_command(
        InstanceIds=[iid],
        DocumentName="AWS-RunShellScript",
        Parameters={"commands": ["/opt/jitrunners/start-runner.sh /jitrunners/jit/none 5"]},
    )["Command"]["CommandId"]
    status = ssm.get_command_invocation(CommandId=command_id, InstanceId=iid)["Status"]
    assert status in ("InProgress", "Failed")  # start-runner.sh exits 3: no parameter
    assert _until(
        lambda: (
            ssm.get_command_invocation(CommandId=command_id, InstanceId=iid)["Status"] == "Failed"
        ),
    )
    with pytest.raises(ClientError) as error:
        ssm.get_command_invocation(CommandId="0" * 36, InstanceId=iid)
    assert error.value.response["Error"]["Code"] == "InvocationDoesNotExist"


def test_a_handler_that_raises_is_logged_as_lambdas_runtime_logs_it(log_lines: Any) -> None:
    """A failed invocation leaves its error type and stack in the Lambdas' log (scheduled runs
    swallow the error and try at the next tick: without this line a housekeeper failing every
    pass of a 1,000-job burst left no trace)."""
    function = Function("housekeeper", "jitrunners")

    def handler(event: Any, context: Any) -> Any:
        raise RuntimeError("SSM throttled the listing")

    function.handler = handler
    with pytest.raises(RuntimeError):
        function.invoke({})

    [line] = [x for x in log_lines() if x.get("message") == "invocation failed"]
    assert line["function_name"] == "jitrunners-housekeeper"
    assert line["error_type"] == "RuntimeError"
    assert "SSM throttled the listing" in line["exception"]
    assert function.errors == 1


def test_reconciled_launches_are_counted_from_whole_lines_as_the_log_grows(tmp_path: Path) -> None:
    """The summary's count of reconciliation launches reads only what was logged since it last
    read (the bench asks every second while a run settles): a line half written is counted once
    it is whole, a line mentioning the message without being it never."""
    from devstack.stack import RECONCILIATION_LAUNCH

    stack = Stack(Options(workdir=tmp_path), out=open(tmp_path / "progress.txt", "w"))  # noqa: SIM115
    launch = json.dumps({"message": RECONCILIATION_LAUNCH, "job_id": 1}) + "\n"
    other = json.dumps({"message": "job accepted", "note": RECONCILIATION_LAUNCH}) + "\n"
    assert stack.reconciled_launches() == 0  # no log yet
    with stack.log_path.open("w", encoding="utf-8") as log:
        log.write(launch + other + launch[:20])
        log.flush()
        assert stack.reconciled_launches() == 1
        log.write(launch[20:] + "not json " + RECONCILIATION_LAUNCH + "\n")
        log.flush()
        assert stack.reconciled_launches() == 2
        assert stack.reconciled_launches() == 2  # nothing new: nothing counted twice
        log.write(launch * 3)
    assert stack.reconciled_launches() == 5


def test_the_pollers_calls_on_the_backend_are_authorized_as_the_functions_role(
    world: AwsWorld,
) -> None:
    """The stack's pollers receive and delete on moto's backend with the IAM layer's decision
    per call: refused, nothing is received (no receive counted) and the refusal is AWS's error;
    allowed by the role's policy, the message comes and goes."""
    from botocore.exceptions import ClientError

    from devstack.iam.enforce import Enforcer, MotoLookup, Principal

    raw = world.client("sqs")
    queue = raw.create_queue(QueueName="t-authorized")["QueueUrl"]
    arn = raw.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    raw.send_message(QueueUrl=queue, MessageBody="job")
    policies: list[dict[str, Any]] = []
    role = f"arn:aws:iam::{ACCOUNT}:role/t-poller"
    enforcer = Enforcer(
        Principal.role(role, lambda: policies), MotoLookup(world.client, REGION, ACCOUNT),
        region=REGION,
    )  # fmt: skip
    sqs = BackendSqs(REGION, enforcer)
    with pytest.raises(ClientError) as refused:
        sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert "sqs:ReceiveMessage" in refused.value.response["Error"]["Message"]
    assert world.queue_contents(queue) == {"? visible received 0": 1}
    policies.append(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": ["sqs:ReceiveMessage"], "Resource": arn},
            ],
        }
    )
    got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in got] == ["job"]
    entries = [{"Id": "0", "ReceiptHandle": got[0]["ReceiptHandle"]}]
    with pytest.raises(ClientError):  # DeleteMessage is not in the policy yet
        sqs.delete_message_batch(QueueUrl=queue, Entries=entries)
    policies[0]["Statement"][0]["Action"].append("sqs:DeleteMessage")
    assert sqs.delete_message_batch(QueueUrl=queue, Entries=entries)["Successful"] == [{"Id": "0"}]
    assert world.queue_depth(queue) == 0
    decided = [(operation, result.allowed) for operation, _, result in enforcer.decisions]
    assert decided == [
        ("sqs.ReceiveMessage", False),
        ("sqs.ReceiveMessage", True),
        ("sqs.DeleteMessageBatch", False),
        ("sqs.DeleteMessageBatch", True),
    ]


def test_an_invocation_waiting_out_a_retry_lets_the_next_run_and_keeps_its_own_state() -> None:
    """Invocations take turns (one process plays every Lambda), but one waiting out botocore's
    back-off before a retry steps out of its turn: the next invocation runs meanwhile, without
    the waiting one's logger keys or metrics, and the waiting one resumes with them. A reading
    between invocations waits for it to end."""
    import botocore.endpoint
    from aws_lambda_powertools.metrics import MetricUnit

    from devstack.shims import between_invocations, step_out_while_retrying
    from jitrunners.observability import logger, metrics

    step_out_while_retrying()  # the stack's `overlap_retries`
    metrics.provider.clear_metrics()  # what earlier stacks of this process left (metrics off)
    order: list[str] = []
    seen: dict[str, Any] = {}
    waiting = threading.Event()

    def state() -> tuple[Any, set[str]]:
        return logger.registered_formatter.log_format.get("who"), set(metrics.provider.metric_set)

    def first(event: Any, context: Any) -> None:
        logger.append_keys(who="first")
        metrics.add_metric(name="FirstMetric", unit=MetricUnit.Count, value=1)
        order.append("first waits")
        waiting.set()
        botocore.endpoint.time.sleep(1.0)  # the back-off botocore sleeps before a retry
        order.append("first resumes")
        seen["first"] = state()

    def second(event: Any, context: Any) -> None:
        order.append("second runs")
        seen["second"] = state()
        logger.append_keys(who="second")
        metrics.add_metric(name="SecondMetric", unit=MetricUnit.Count, value=1)
        metrics.provider.clear_metrics()  # flushed at its end, as log_metrics does

    try:
        thread = threading.Thread(target=_function(first, "scale-up").invoke, args=({},))
        thread.start()
        assert waiting.wait(PATIENCE_S)
        _function(second, "webhook").invoke({})
        with between_invocations():  # a reading waits for the one stepped out to end
            order.append("read")
        thread.join(PATIENCE_S)
    finally:
        step_out_while_retrying(False)
        logger.remove_keys(["who"])
        metrics.provider.clear_metrics()
    assert order == ["first waits", "second runs", "first resumes", "read"]
    assert botocore.endpoint.time is time  # off again: the process's botocore as it was
    assert seen["second"] == (None, set())
    assert seen["first"] == ("first", {"FirstMetric"})
