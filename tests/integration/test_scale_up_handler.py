"""The scale-up Lambda end to end: moto EC2/SSM/SQS, GitHub mocked with `responses`."""

# The `world` fixture is imported from tests.support; pytest injects it by parameter name.
# ruff: noqa: F811

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

import boto3
import jwt
import pytest
from botocore.awsrequest import AWSResponse

from jitrunners.aws import ssm
from jitrunners.aws.clients import client
from jitrunners.handlers import scale_up
from jitrunners.lifecycle.provisioning.bookkeeping import PASS_ON_DELAY_S
from jitrunners.lifecycle.provisioning.start import FAST_POLLS, POLL_S
from jitrunners.models import MESSAGE_VERSION, JobMessage, WorkflowJob
from tests.support.ec2 import ec2_hook, error_response, fleet_error
from tests.support.github import API, private_key_pem
from tests.support.scale_up import (
    INSTALLATION_TOKEN,
    JIT,
    TOKEN,
    World,
    failed_ids,
    jit_endpoint,
    job_status,
    launch_message,
    runner_group,
    sqs_event,
    use_app_auth,
    world,  # noqa: F401 - fixture
)
from tests.support.webhooks import workflow_job_payload
from tests.support.world import spot_reclaim as reclaim_spot


def tags_of(instance: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in instance.get("Tags", [])}


def run(event: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return scale_up.handler(event, ctx)


# --- launch -----------------------------------------------------------------------------------
def test_launch_starts_one_tagged_spot_instance_and_enqueues_its_start(
    world: World, lambda_context: Any
) -> None:
    job_status(world, 4242)
    response = run(sqs_event(launch_message(4242)), lambda_context)

    assert failed_ids(response) == []
    [instance] = world.instances()
    tags = tags_of(instance)
    assert tags == {
        "jitrunners:prefix": "jitrunners",
        "jitrunners:template": "linux-x64",
        "Name": "jitrunners-linux-x64",
        "jitrunners:job-id": "4242",
        "jitrunners:run-id": "777",
        "jitrunners:run-attempt": "1",
        "jitrunners:repo": "acme/widgets",
        "jitrunners:installation-id": "99",
        "jitrunners:delivery-id": "dlv-4242",
        # Set once at launch: the job it was launched for, and which launch of it (DESIGN §6b).
        "jitrunners:launched-for": "4242/1/777/acme/widgets",
        "jitrunners:launch-attempt": "1",
    }
    assert instance["InstanceLifecycle"] == "spot"
    [start] = world.starts()
    assert (start.kind, start.instance_id, start.job_id) == ("start", instance["InstanceId"], 4242)
    assert world.sent[0][1] == 0  # START_DELAY_S
    assert world.github.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize(("status", "code"), [("completed", 200), ("in_progress", 200), ("", 404)])
def test_launch_of_a_job_no_longer_queued_is_dropped(
    world: World, lambda_context: Any, status: str, code: int
) -> None:
    job_status(world, 1, status, code)
    response = run(sqs_event(launch_message(1)), lambda_context)
    assert failed_ids(response) == []
    assert world.instances() == []
    assert world.sent == []


def test_check_job_queued_can_be_turned_off(
    world: World, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jitrunners import config

    monkeypatch.setenv("CHECK_JOB_QUEUED", "false")
    config.get_settings.cache_clear()
    response = run(sqs_event(launch_message(1)), lambda_context)
    assert failed_ids(response) == []
    assert len(world.instances()) == 1
    # Only the org template's runner group is asked about (once per process), never the job;
    # then the runner's JIT config, ahead of boot (one attempt: this test's GitHub has none).
    assert [c.request.url for c in world.github.calls] == [
        f"{API}/orgs/acme/actions/runner-groups/1",
        f"{API}/orgs/acme/actions/runners/generate-jitconfig",
    ]


def test_a_checked_launch_of_an_attempt_github_has_superseded_launches_nothing(
    world: World, lambda_context: Any
) -> None:
    """Job 15 failed and was re-run: GitHub has it queued again as attempt 2 (same job id). A
    late copy of attempt 1's launch (a retry, a redriven duplicate) must not launch a runner:
    attempt 2's own delivery launches for it. Attempt 2's launch still goes."""
    world.github.get(
        f"{API}/repos/acme/widgets/actions/jobs/15",
        json={"id": 15, "status": "queued", "run_attempt": 2},
    )
    first = launch_message(15)
    assert first.run_attempt == 1
    response = run(sqs_event((first, 2)), lambda_context)  # a retry: checked with GitHub
    assert failed_ids(response) == []
    assert world.instances() == []

    second = replace(first, run_attempt=2, delivery_id="dlv-15-2")
    assert failed_ids(run(sqs_event((second, 2)), lambda_context)) == []
    assert len(world.instances()) == 1


def test_batch_of_one_template_uses_one_create_fleet(
    world: World, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jitrunners import config

    monkeypatch.setenv("RUNNER_TEMPLATES", json.dumps([_template(max_runners=20)]))
    config.get_settings.cache_clear()
    config._parsed.clear()
    messages = [launch_message(100 + i) for i in range(10)]
    for m in messages:
        job_status(world, m.job_id)
    with ec2_hook("CreateFleet", lambda _p: None) as fleets:
        response = run(sqs_event(*messages), lambda_context)
    assert failed_ids(response) == []
    assert len(fleets) == 1
    assert fleets[0]["body"]["TargetCapacitySpecification.TotalTargetCapacity"] == 10
    instances = world.instances()
    assert len(instances) == 10
    # The fleet's tags are common to its instances: each gets its job tags from its start,
    # whose message names its job and its instance (one CreateTags per job, after SendCommand).
    assert all("jitrunners:job-id" not in tags_of(i) for i in instances)
    assert {tags_of(i)["jitrunners:template"] for i in instances} == {"linux-x64"}
    starts = world.starts()
    assert {s.instance_id for s in starts} == {i["InstanceId"] for i in instances}
    assert {s.job_id for s in starts} == {m.job_id for m in messages}


def _template(**overrides: Any) -> dict[str, Any]:
    from tests.conftest import TEMPLATES

    return {**TEMPLATES[0], **overrides}


def test_max_runners_holds_under_a_batch_bigger_than_the_limit(
    world: World, lambda_context: Any
) -> None:
    messages = [launch_message(200 + i) for i in range(5)]  # linux-x64 allows 3
    for m in messages:
        job_status(world, m.job_id)
    response = run(sqs_event(*messages), lambda_context)

    assert failed_ids(response) == []  # deferred, not failed: no receive is spent waiting
    assert len(world.instances()) == 3
    deferred = [(m, d) for m, d in world.sent if m.kind == "launch"]
    assert len(deferred) == 2
    assert all(delay > 0 for _, delay in deferred)
    # GitHub was asked about the jobs that got a slot only: one listing of their workflow run
    # answered the three (they share the payloads' run).
    assert job_checks(world) == 1
    assert run_listings(world) == 1

    # The next batch finds the template full: nothing launches, the messages wait again, and
    # waiting costs no GitHub call.
    world.sent.clear()
    response = run(sqs_event(*(m for m, _ in deferred)), lambda_context)
    assert failed_ids(response) == []
    assert len(world.instances()) == 3
    assert len([m for m, _ in world.sent if m.kind == "launch"]) == 2
    assert job_checks(world) == 1


def job_checks(world: World) -> int:
    """GitHub calls that answered whether jobs are still queued: a job's, or its run's jobs."""
    return sum(
        1
        for call in world.github.calls
        if "/actions/jobs/" in call.request.url or re.search(r"/runs/\d+/jobs", call.request.url)
    )


def run_listings(world: World) -> int:
    return sum(1 for call in world.github.calls if re.search(r"/runs/\d+/jobs", call.request.url))


def test_a_job_gone_while_others_wait_frees_its_slot_for_the_next(
    world: World, lambda_context: Any
) -> None:
    messages = [launch_message(250 + i) for i in range(4)]  # linux-x64 allows 3
    job_status(world, 250, status="completed")
    for m in messages[1:]:
        job_status(world, m.job_id)
    response = run(sqs_event(*messages), lambda_context)
    assert failed_ids(response) == []
    assert len(world.instances()) == 3  # the completed job's slot went to the fourth
    assert [m for m, _ in world.sent if m.kind == "launch"] == []
    assert job_checks(world) == 1  # one listing of their run answered the four


def test_global_max_runners_spans_templates(
    world: World, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jitrunners import config

    monkeypatch.setenv("MAX_RUNNERS", "2")
    config.get_settings.cache_clear()
    messages = [launch_message(300 + i) for i in range(2)]
    messages += [launch_message(310 + i, labels=["self-hosted", "arm64"]) for i in range(2)]
    for m in messages:
        job_status(world, m.job_id)
    response = run(sqs_event(*messages), lambda_context)
    assert failed_ids(response) == []
    assert len(world.instances()) == 2
    assert len([m for m, _ in world.sent if m.kind == "launch"]) == 2


def test_duplicate_launch_for_a_job_attempt_launches_nothing(
    world: World, lambda_context: Any
) -> None:
    job_status(world, 7)
    message = launch_message(7)
    response = run(sqs_event(message, message), lambda_context)
    assert failed_ids(response) == []
    assert len(world.instances()) == 1
    response = run(sqs_event(message), lambda_context)  # a redelivered webhook
    assert failed_ids(response) == []
    assert len(world.instances()) == 1
    assert len(world.starts()) == 1


def test_unknown_message_version_fails_only_that_record(world: World, lambda_context: Any) -> None:
    job_status(world, 8)
    bad = json.dumps({**json.loads(launch_message(9).to_json()), "v": MESSAGE_VERSION + 1})
    response = run(sqs_event(bad, launch_message(8), "not json"), lambda_context)
    assert failed_ids(response) == ["msg-0", "msg-2"]
    assert len(world.instances()) == 1


def _spot_no_capacity(params: dict[str, Any]) -> Any:
    if params["body"].get("TargetCapacitySpecification.DefaultTargetCapacityType") == "spot":
        return AWSResponse("https://ec2", 200, {}, None), {
            "Errors": [fleet_error("InsufficientInstanceCapacity", "spot")],
            "Instances": [],
        }
    return None


def test_spot_without_capacity_falls_back_to_on_demand(world: World, lambda_context: Any) -> None:
    job_status(world, 10)
    with ec2_hook("CreateFleet", _spot_no_capacity) as fleets:
        response = run(sqs_event(launch_message(10)), lambda_context)
    assert failed_ids(response) == []
    assert len(fleets) == 2
    [instance] = world.instances()
    assert "InstanceLifecycle" not in instance  # on-demand
    assert len(world.starts()) == 1


def test_spot_only_template_without_capacity_retries_later(
    world: World, lambda_context: Any
) -> None:
    message = launch_message(11, labels=["self-hosted", "arm64"])
    job_status(world, 11)
    with ec2_hook("CreateFleet", _spot_no_capacity) as fleets:
        response = run(sqs_event(message), lambda_context)
    assert failed_ids(response) == ["msg-0"]
    assert len(fleets) == 1
    assert world.visibility == [("receipt-0", 60)]


def test_ec2_throttling_sends_the_record_back_for_a_few_seconds(
    world: World, lambda_context: Any
) -> None:
    """A throttled CreateFleet is not slept through: the record goes back to the queue for a
    random 2-10 s (spread, so the records of one throttle do not return together), and its next
    receive launches."""
    job_status(world, 12)
    faults = [error_response("RequestLimitExceeded", 503)]
    with ec2_hook("CreateFleet", lambda _p: faults.pop() if faults else None):
        response = run(sqs_event(launch_message(12)), lambda_context)
    assert failed_ids(response) == ["msg-0"]
    [(receipt, delay)] = world.visibility
    assert receipt == "receipt-0"
    assert 2 <= delay <= 10
    assert world.clock.slept == []
    assert world.instances() == []

    assert failed_ids(run(sqs_event((launch_message(12), 2)), lambda_context)) == []
    assert len(world.instances()) == 1


def test_a_throttled_start_goes_back_to_the_queue_and_starts_once(
    world: World, lambda_context: Any
) -> None:
    """SendCommand throttled (SSM's ThrottlingException): the record comes back within seconds,
    not after the queue's visibility timeout, and its retry starts the runner exactly once."""
    start = _launched(world, lambda_context)
    jit_endpoint(world)
    world.visibility.clear()
    throttle = [error_response("ThrottlingException", 400)]
    sent: list[int] = []
    events = client("ssm").meta.events

    def refuse(**_: Any) -> Any:
        return throttle.pop() if throttle else None

    def answered(http_response: Any, **_: Any) -> None:
        sent.append(http_response.status_code)

    events.register_first("before-call.ssm.SendCommand", refuse)
    events.register("after-call.ssm.SendCommand", answered)
    try:
        assert failed_ids(run(sqs_event(start), lambda_context)) == ["msg-0"]
        [(_, delay)] = world.visibility
        assert 2 <= delay <= 10
        assert world.clock.slept == []
        assert failed_ids(run(sqs_event((start, 2)), lambda_context)) == []
    finally:
        events.unregister("before-call.ssm.SendCommand", refuse)
        events.unregister("after-call.ssm.SendCommand", answered)
    assert sent == [400, 200]  # refused once, then one runner command
    assert len(world.jit_calls) == 1  # the retry reused the stored JIT config


def test_quota_error_fails_the_message_towards_the_dlq(
    world: World, lambda_context: Any, log_lines: Any
) -> None:
    job_status(world, 13)
    with ec2_hook("CreateFleet", lambda _p: error_response("VcpuLimitExceeded")):
        response = run(sqs_event(launch_message(13)), lambda_context)
    assert failed_ids(response) == ["msg-0"]
    assert world.visibility == []  # the queue's own back-off and maxReceiveCount apply
    assert world.sent == []
    errors = [line for line in log_lines() if line["level"] == "ERROR"]
    assert errors
    assert errors[0]["code"] == "VcpuLimitExceeded"
    assert errors[0]["job_id"] == 13


def test_partial_fleet_launch_fails_only_the_jobs_left_without_instance(
    world: World, lambda_context: Any
) -> None:
    messages = [launch_message(400 + i, labels=["self-hosted", "arm64"]) for i in range(2)]
    for m in messages:
        job_status(world, m.job_id)

    def one_of_two(http_response: Any, parsed: dict[str, Any], **_: Any) -> None:
        # Moto fills every pool; keep one instance as if the rest had found no capacity.
        ids = [i for group in parsed["Instances"] for i in group["InstanceIds"]]
        boto3.client("ec2").terminate_instances(InstanceIds=ids[1:])
        parsed["Instances"] = [{**parsed["Instances"][0], "InstanceIds": ids[:1]}]
        parsed["Errors"] = [fleet_error("InsufficientInstanceCapacity", "spot", "m6g.large")]

    events = client("ec2").meta.events
    events.register("after-call.ec2.CreateFleet", one_of_two)
    try:
        response = run(sqs_event(*messages), lambda_context)
    finally:
        events.unregister("after-call.ec2.CreateFleet", one_of_two)
    assert failed_ids(response) == ["msg-1"]
    assert len(world.instances()) == 1
    assert [s.job_id for s in world.starts()] == [400]
    assert world.visibility == [("receipt-1", 60)]


def test_github_5xx_on_job_check_fails_the_record_for_retry(
    world: World, lambda_context: Any
) -> None:
    from jitrunners.config import get_settings
    from jitrunners.github.client import get_client

    get_client(get_settings())._sleep = world.clock.sleep
    job_status(world, 14, code=502)
    response = run(sqs_event(launch_message(14)), lambda_context)
    assert failed_ids(response) == ["msg-0"]
    assert len(world.github.calls) == 3  # retried inside the call, with back-off
    assert world.clock.slept == [0.5, 1.0]
    assert world.instances() == []


def test_github_secondary_rate_limit_puts_the_message_back_for_retry_after(
    world: World, lambda_context: Any
) -> None:
    world.github.get(
        f"{API}/repos/acme/widgets/actions/jobs/15",
        status=403,
        headers={"Retry-After": "90"},
        json={"message": "You have exceeded a secondary rate limit."},
    )
    response = run(sqs_event(launch_message(15)), lambda_context)
    assert failed_ids(response) == ["msg-0"]
    assert world.visibility == [("receipt-0", 90)]
    assert len(world.github.calls) == 1  # no hammering
    assert world.instances() == []


# --- start ------------------------------------------------------------------------------------
def _launched(world: World, ctx: Any, job_id: int = 4242, **kw: Any) -> Any:
    job_status(world, job_id)
    run(sqs_event(launch_message(job_id, **kw)), ctx)
    [start] = world.starts()
    world.sent.clear()
    return start


def test_a_batch_of_starts_and_taken_jobs_describes_its_instances_in_one_call(
    world: World, lambda_context: Any
) -> None:
    starts = [_launched(world, lambda_context, job_id=job) for job in (81, 82, 83)]
    jit_endpoint(world, "orgs/acme")
    taken = [start.taken_by(start.instance_id) for start in starts[:2]]
    describes: list[dict[str, Any]] = []
    client("ec2").meta.events.register(
        "provide-client-params.ec2.DescribeInstances", lambda params, **_: describes.append(params)
    )

    assert failed_ids(run(sqs_event(*starts, *taken), lambda_context)) == []

    assert len(world.jit_calls) == 3  # every runner started
    assert len(describes) == 1  # for the whole batch, instead of one per message


def test_a_batch_of_swaps_lists_our_instances_once_and_judges_by_its_own_tag_writes(
    world: World, lambda_context: Any
) -> None:
    """Three runners took each other's jobs (A, launched for 81, took 83; B for 82 took 81; C for
    83 took 82). One batch of their `taken` messages describes its runners once and lists our
    live instances once; each swap's tag write is what the next message of the batch judges by,
    exactly as a fresh listing per message would: B's write (it owes 81 now) leaves 83 with no
    runner known when C's message comes, so 83's need is passed on once, and A's message finds
    81 covered by B."""
    starts = [_launched(world, lambda_context, job_id=job) for job in (81, 82, 83)]
    a, b, c = (start.instance_id for start in starts)
    jobs = {start.job_id: start for start in starts}
    taken = [jobs[81].taken_by(b), jobs[82].taken_by(c), jobs[83].taken_by(a)]
    describes: list[dict[str, Any]] = []
    client("ec2").meta.events.register(
        "provide-client-params.ec2.DescribeInstances", lambda params, **_: describes.append(params)
    )

    assert failed_ids(run(sqs_event(*taken), lambda_context)) == []

    assert len(describes) == 2  # the batch's runners, and our live instances once
    passed_on = [m for m, _ in world.sent if m.kind == "launch"]
    assert [m.job_id for m in passed_on] == [83]
    owes = {
        i["InstanceId"]: {t["Key"]: t["Value"] for t in i.get("Tags", [])}["jitrunners:job-id"]
        for i in world.instances()
    }
    assert owes == {a: "83", b: "81", c: "82"}


def test_a_throttled_batch_describe_sends_its_starts_back_without_describing_one_by_one(
    world: World, lambda_context: Any
) -> None:
    """The batch's one DescribeInstances throttled: its starts do not each describe into the
    throttled bucket (a retry storm); they go back to the queue for a few seconds, and start
    on their next receive."""
    starts = [_launched(world, lambda_context, job_id=job) for job in (91, 92, 93)]
    jit_endpoint(world, "orgs/acme")
    world.visibility.clear()
    with ec2_hook(
        "DescribeInstances", lambda _p: error_response("RequestLimitExceeded", 503)
    ) as seen:
        # Retries (a second receive): each start looks at its instance before starting.
        response = run(sqs_event(*[(s, 2) for s in starts]), lambda_context)
    assert failed_ids(response) == ["msg-0", "msg-1", "msg-2"]
    assert len(seen) == 1
    assert all(2 <= delay <= 10 for _, delay in world.visibility)
    assert world.jit_calls == []

    assert failed_ids(run(sqs_event(*[(s, 3) for s in starts]), lambda_context)) == []
    assert len(world.jit_calls) == 3


def test_a_start_whose_tags_were_not_written_is_retried_and_tags_its_command(
    world: World, lambda_context: Any
) -> None:
    """Without its command tag the housekeeper would take a running runner for one that never
    started: the record fails, and its retry finds the command instead of sending another."""
    start = _launched(world, lambda_context)
    jit_endpoint(world, "orgs/acme")
    commands = _capture_commands()

    with ec2_hook("CreateTags", lambda _p: error_response("RequestLimitExceeded", 503)):
        assert failed_ids(run(sqs_event(start), lambda_context)) == ["msg-0"]
    assert failed_ids(run(sqs_event((start, 2)), lambda_context)) == []

    assert len(commands) == 1
    [instance] = [i for i in world.instances() if i["InstanceId"] == start.instance_id]
    tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
    assert tags["jitrunners:command-id"]


@pytest.mark.parametrize(
    ("queued_s_ago", "receives", "attempt", "asked"),
    [
        (5, 1, 1, False),  # its webhook queued it moments ago: GitHub has just said so
        (120, 1, 1, True),  # a late delivery, a redelivery, a reconciliation of an old job
        (5, 2, 1, True),  # a retry: time has passed since the delivery
        (5, 1, 2, True),  # a relaunch, or a need passed on after a swap
    ],
)
def test_only_a_fresh_first_launch_skips_the_still_queued_check(
    world: World,
    lambda_context: Any,
    queued_s_ago: int,
    receives: int,
    attempt: int,
    asked: bool,
) -> None:
    from datetime import UTC, datetime, timedelta

    queued = datetime.now(UTC) - timedelta(seconds=queued_s_ago)
    message = replace(
        launch_message(91, created_at=queued.isoformat().replace("+00:00", "Z")), attempt=attempt
    )
    check = world.github.get(
        f"{API}/repos/acme/widgets/actions/jobs/91", json={"id": 91, "status": "queued"}
    )

    assert failed_ids(run(sqs_event((message, receives)), lambda_context)) == []

    assert check.call_count == (1 if asked else 0)
    assert len(world.starts()) == 1


def _capture_commands() -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    client("ssm").meta.events.register(
        "provide-client-params.ssm.SendCommand", lambda params, **_: seen.append(params)
    )
    return seen


@pytest.mark.parametrize(
    ("labels", "path", "group"),
    [(None, "orgs/acme", 1), (["self-hosted", "arm64"], "repos/acme/widgets", 1)],
)
def test_start_stores_jit_config_and_sends_the_runner_command(
    world: World, lambda_context: Any, labels: list[str] | None, path: str, group: int
) -> None:
    start = _launched(world, lambda_context, labels=labels)
    jit_endpoint(world, path)
    commands = _capture_commands()

    response = run(sqs_event(start), lambda_context)

    assert failed_ids(response) == []
    instance_id = start.instance_id
    [sent] = world.jit_calls
    assert sent["name"] == f"{instance_id}-4242-1"  # its instance and the job it came for
    assert sent["runner_group_id"] == group
    assert "self-hosted" in sent["labels"]
    name = f"/jitrunners/jit/{instance_id}"
    raw = boto3.client("ssm")
    param = raw.get_parameter(Name=name, WithDecryption=True)["Parameter"]
    assert (param["Type"], param["Value"]) == ("SecureString", JIT)
    tags = {
        t["Key"]: t["Value"]
        for t in raw.list_tags_for_resource(ResourceType="Parameter", ResourceId=name)["TagList"]
    }
    assert tags["jitrunners:instance-arn"] == (
        f"arn:aws:ec2:eu-west-1:123456789012:instance/{instance_id}"
    )
    [command] = commands
    assert command["DocumentName"] == "AWS-RunShellScript"
    assert command["Parameters"]["commands"] == [f"/opt/jitrunners/start-runner.sh {name} 300"]
    assert command["Parameters"]["executionTimeout"] == ["86400"]
    assert command["Comment"] == "jitrunners job 4242 acme/widgets"
    assert JIT not in json.dumps(command)
    [instance] = world.instances()
    instance_tags = tags_of(instance)
    assert instance_tags["jitrunners:command-id"]
    assert instance_tags["jitrunners:started-at"].endswith("Z")


def test_a_launch_stores_the_jit_config_while_the_instance_boots(
    world: World, lambda_context: Any
) -> None:
    """GitHub's points are spent at launch, not after the boot: the launch asks for each new
    runner's JIT config and stores it; its start (`jit_stored`) only sends the command."""
    jit_endpoint(world)
    job_status(world, 4242)
    assert failed_ids(run(sqs_event(launch_message(4242)), lambda_context)) == []
    [start] = world.starts()
    assert start.jit_stored
    [sent] = world.jit_calls
    assert sent["name"] == f"{start.instance_id}-4242-1"
    name = f"/jitrunners/jit/{start.instance_id}"
    stored = boto3.client("ssm").get_parameter(Name=name, WithDecryption=True)["Parameter"]
    assert stored["Value"] == JIT
    commands = _capture_commands()

    assert failed_ids(run(sqs_event(start), lambda_context)) == []

    assert len(world.jit_calls) == 1  # none more at the start
    [command] = commands
    assert command["Parameters"]["commands"] == [f"/opt/jitrunners/start-runner.sh {name} 300"]


def test_a_launch_leaves_the_jit_config_to_the_start_when_github_cannot_take_it(
    world: World, lambda_context: Any
) -> None:
    """GitHub answers 502 at launch: one attempt, no back-off in the launch (the start asks
    again from SQS, as it always did), and the start message says nothing is stored."""
    failing = world.github.add(
        "POST", f"{API}/orgs/acme/actions/runners/generate-jitconfig", status=502
    )
    job_status(world, 4242)
    assert failed_ids(run(sqs_event(launch_message(4242)), lambda_context)) == []
    [start] = world.starts()
    assert not start.jit_stored
    assert failing.call_count == 1
    assert world.clock.slept == []
    world.github.remove(failing)
    jit_endpoint(world)

    assert failed_ids(run(sqs_event(start), lambda_context)) == []
    assert len(world.jit_calls) == 1


def test_a_start_that_github_rate_limits_waits_as_a_copy_that_skips_the_retry_checks(
    world: World, lambda_context: Any
) -> None:
    """A retried start (its checks run: no command sent, no JIT config stored) meets GitHub's
    secondary limit: the start goes back as a copy delayed by GitHub's `retry-after`, not as
    this record (whose receives count toward the DLQ). Nothing was sent to the instance, so the
    copy starts as a first delivery, without `ListCommands` and `DescribeParameters`."""
    start = _launched(world, lambda_context)
    assert not start.jit_stored
    limited = world.github.add(
        "POST",
        f"{API}/orgs/acme/actions/runners/generate-jitconfig",
        status=403,
        headers={"Retry-After": "42"},
        json={"message": "You have exceeded a secondary rate limit."},
    )
    checks: list[str] = []
    for operation in ("ListCommands", "DescribeParameters"):
        client("ssm").meta.events.register(
            f"provide-client-params.ssm.{operation}",
            lambda params, op=operation, **_: checks.append(op),
        )
    commands = _capture_commands()

    response = run(sqs_event((start, 3)), lambda_context)

    assert failed_ids(response) == []
    assert sorted(checks) == ["DescribeParameters", "ListCommands"]
    [(copy, delay)] = world.sent
    assert (copy, delay) == (start, 42)
    assert commands == []
    world.github.remove(limited)
    jit_endpoint(world)
    checks.clear()
    # 42 s later (the client holds calls back until then): a shaper that has seen no limit.
    from jitrunners.config import get_settings
    from jitrunners.github.client import get_client
    from jitrunners.github.shaping import Shaper

    github = get_client(get_settings())
    github.shaper = Shaper(github.shaper.points_per_minute)

    assert failed_ids(run(sqs_event(copy), lambda_context)) == []

    assert checks == []
    assert len(commands) == 1
    assert len(world.jit_calls) == 1


def _agent_not_ready(**_: Any) -> Any:
    return AWSResponse("https://ssm", 400, {}, None), {
        "Error": {"Code": "InvalidInstanceId", "Message": "Instances not in a valid state"}
    }


def _no_agent_online(**_: Any) -> Any:
    return AWSResponse("https://ssm", 200, {}, None), {"InstanceInformationList": []}


def test_a_start_polls_its_agent_without_commands_or_github_again(
    world: World, lambda_context: Any
) -> None:
    """The batch asks SSM once whether its starts' agents are online: while one is not, its start
    sends no command and polls every POLL_S; its JIT config is made once, on the first delivery,
    and used when the agent is up."""
    start = _launched(world, lambda_context)
    jit_endpoint(world)
    commands = _capture_commands()
    events = client("ssm").meta.events
    events.register("before-call.ssm.DescribeInstanceInformation", _no_agent_online)
    try:
        first = run(sqs_event(start), lambda_context)
        second = run(sqs_event((start, 2)), lambda_context)
    finally:
        events.unregister("before-call.ssm.DescribeInstanceInformation", _no_agent_online)
    assert failed_ids(first) == failed_ids(second) == ["msg-0"]
    assert world.visibility == [("receipt-0", POLL_S), ("receipt-0", POLL_S)]
    assert len(world.jit_calls) == 1
    assert commands == []
    third = run(sqs_event((start, 3)), lambda_context)
    assert failed_ids(third) == []
    assert len(world.jit_calls) == 1  # the stored parameter is reused
    assert len(commands) == 1


def test_agent_not_ready_backs_off_after_its_fast_polls(world: World, lambda_context: Any) -> None:
    """SendCommand refused although SSM listed the agent (or SSM could not say): POLL_S for the
    first FAST_POLLS receives, then 10 s, 20 s, ...: under maxReceiveCount in a start timeout."""
    start = _launched(world, lambda_context)
    jit_endpoint(world)
    events = client("ssm").meta.events
    events.register("before-call.ssm.SendCommand", _agent_not_ready)
    try:
        for receive in (1, FAST_POLLS, FAST_POLLS + 1, FAST_POLLS + 2):
            assert failed_ids(run(sqs_event((start, receive)), lambda_context)) == ["msg-0"]
    finally:
        events.unregister("before-call.ssm.SendCommand", _agent_not_ready)
    delays = [delay for _, delay in world.visibility]
    assert delays == [POLL_S, POLL_S, 10, 20]
    assert len(world.jit_calls) == 1  # the stored parameter is reused


def test_start_past_timeout_terminates_cleans_up_and_relaunches(
    world: World, lambda_context: Any
) -> None:
    from datetime import timedelta

    start = _launched(world, lambda_context)
    jit_endpoint(world)
    runners = world.github.get(
        f"{API}/orgs/acme/actions/runners",
        json={
            "runners": [{"id": 1001, "name": f"{start.instance_id}-4242-1", "status": "offline"}]
        },
    )
    deleted = world.github.delete(f"{API}/orgs/acme/actions/runners/1001", status=204)
    events = client("ssm").meta.events
    events.register("before-call.ssm.SendCommand", _agent_not_ready)
    try:
        run(sqs_event(start), lambda_context)
        world.clock.now += timedelta(seconds=900)
        response = run(sqs_event((start, 5)), lambda_context)
    finally:
        events.unregister("before-call.ssm.SendCommand", _agent_not_ready)

    assert failed_ids(response) == []
    assert world.instances() == []  # terminated
    assert ssm.list_jit_parameters("jitrunners") == []
    assert runners.call_count == 1
    assert deleted.call_count == 1
    [relaunch] = [m for m, _ in world.sent if m.kind == "launch"]
    assert (relaunch.job_id, relaunch.attempt, relaunch.instance_id) == (4242, 2, None)


def _throttled(**_: Any) -> Any:
    return AWSResponse("https://ec2", 503, {}, None), {
        "Error": {"Code": "RequestLimitExceeded", "Message": "Request limit exceeded."}
    }


@pytest.mark.parametrize(
    "again",
    [
        lambda start: (start, 2),  # the same message's next receive
        # The redrive puts a start back as a new message (SQS counts its receives anew): a retry
        # all the same, or its second command's runner would find the parameter spent and fail,
        # ending the instance.
        lambda start: start.redriven(),
    ],
    ids=["next_receive", "redriven_from_the_dlq"],
)
def test_retry_after_an_untagged_send_starts_no_second_runner(
    world: World, lambda_context: Any, again: Any
) -> None:
    start = _launched(world, lambda_context)
    jit_endpoint(world)
    commands = _capture_commands()
    events = client("ec2").meta.events
    events.register("before-call.ec2.CreateTags", _throttled)
    try:
        first = run(sqs_event(start), lambda_context)  # command sent, tag write refused
    finally:
        events.unregister("before-call.ec2.CreateTags", _throttled)
    assert failed_ids(first) == ["msg-0"]
    assert "jitrunners:command-id" not in tags_of(world.instances()[0])

    second = run(sqs_event(again(start)), lambda_context)

    assert failed_ids(second) == []
    assert len(commands) == 1  # no second runner on the instance
    assert len(world.jit_calls) == 1
    [sent] = boto3.client("ssm").list_commands(InstanceId=start.instance_id)["Commands"]
    assert tags_of(world.instances()[0])["jitrunners:command-id"] == sent["CommandId"]


def test_retry_for_an_instance_already_gone_relaunches_the_job(
    world: World, lambda_context: Any
) -> None:
    start = _launched(world, lambda_context)
    jit_endpoint(world)
    commands = _capture_commands()
    boto3.client("ec2").terminate_instances(InstanceIds=[start.instance_id])

    response = run(sqs_event((start, 2)), lambda_context)

    assert failed_ids(response) == []
    assert commands == []
    assert world.jit_calls == []
    [relaunch] = [m for m, _ in world.sent if m.kind == "launch"]
    assert (relaunch.job_id, relaunch.attempt) == (4242, 2)


# --- re-run checks (a job failed on one of our runners) ----------------------------------------
def _rerun_check(world: World, ctx: Any, launched_for: int, failed: int) -> Any:
    """An instance launched for one job that ran (and lost) another: the runner is fungible."""
    start = _launched(world, ctx, job_id=launched_for)
    payload = workflow_job_payload(
        action="completed", job_id=failed, conclusion="failure", runner_name=start.instance_id
    )
    job = WorkflowJob.from_payload(payload)
    return start.instance_id, JobMessage.rerun_check_for(job, "linux-x64", f"dlv-{failed}")


@pytest.fixture
def reruns_on(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Before `world`, which resets the process caches (and hooks its clients) after it."""
    monkeypatch.setenv("RERUN_INTERRUPTED_JOBS", "true")


def _failed_job(world: World, job_id: int, runner: str) -> Any:
    world.github.get(
        f"{API}/repos/acme/widgets/actions/jobs/{job_id}",
        json={"id": job_id, "status": "completed", "conclusion": "failure", "runner_name": runner},
    )
    return world.github.post(f"{API}/repos/acme/widgets/actions/jobs/{job_id}/rerun", status=201)


def test_job_lost_to_a_spot_reclaim_is_rerun_once_whichever_job_the_instance_was_for(
    reruns_on: None, world: World, lambda_context: Any
) -> None:
    instance_id, check = _rerun_check(world, lambda_context, launched_for=61, failed=62)
    rerun = _failed_job(world, 62, instance_id)
    reclaim_spot(instance_id)

    first = run(sqs_event(check), lambda_context)
    again = run(sqs_event(check), lambda_context)  # a redelivered webhook

    assert failed_ids(first) == failed_ids(again) == []
    assert rerun.call_count == 1


def test_a_job_seen_running_on_a_reclaimed_runner_is_rerun_once_it_failed(
    reruns_on: None, world: World, lambda_context: Any
) -> None:
    """Spot took the runner as it took a job it was not launched for: the interruption's record
    names the launched-for job (the swap could not be booked on a gone instance), and the job's
    `completed` delivery is lost. Its `in_progress` delivery is what names the job killed."""
    from jitrunners.aws import markers
    from jitrunners.lifecycle.recovery import rerun as reruns

    instance_id, check = _rerun_check(world, lambda_context, launched_for=65, failed=66)
    in_progress = replace(check, kind="taken")
    # Answered in this order: GitHub notices the lost runner between the two deliveries.
    world.github.get(
        f"{API}/repos/acme/widgets/actions/jobs/66",
        json={"id": 66, "status": "in_progress", "conclusion": None, "runner_name": instance_id},
    )
    rerun = _failed_job(world, 66, instance_id)
    reclaim_spot(instance_id)

    assert failed_ids(run(sqs_event(in_progress), lambda_context)) == []
    assert rerun.call_count == 0  # GitHub has not failed the job yet
    [pending] = markers.list_markers(reruns.pending_path("jitrunners"))
    assert reruns.PendingRerun.from_json(pending.value).job_id == 66

    assert failed_ids(run(sqs_event(in_progress), lambda_context)) == []  # a duplicate delivery
    assert rerun.call_count == 1
    assert list(markers.list_markers(reruns.pending_path("jitrunners"))) == []


@pytest.mark.parametrize("first", ["tags", "delivery"])
def test_a_record_from_another_runners_tags_never_settles_the_record_of_the_runner_that_ran_it(
    first: str, reruns_on: None, world: World, lambda_context: Any
) -> None:
    """Two runners swapped jobs and both were reclaimed: the interruption of the one launched for
    job 70 records 70 from its tags, although 70 ran on the other, which the job's own delivery
    names. Whichever record comes first, the tags' one is settled "ran elsewhere" on its own and
    the delivery's re-runs the job: before, they shared one record per job, and a tags record
    judged after the delivery's had deleted it (a job interrupted on a swap never re-ran)."""
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from jitrunners.aws import markers
    from jitrunners.config import get_settings, load_templates
    from jitrunners.github.client import MAX_ATTEMPTS, get_client
    from jitrunners.lifecycle.cleanup import Context
    from jitrunners.lifecycle.recovery import rerun as reruns

    instance_id, check = _rerun_check(world, lambda_context, launched_for=69, failed=70)
    reclaim_spot(instance_id)
    tagged_for_70 = SimpleNamespace(
        id="i-0fedcba9876543210",
        repo="acme/widgets",
        job_id=70,
        run_id=check.run_id,
        run_attempt=1,
        installation_id=None,
    )
    # GitHub cannot answer the first look (5xx to each of the client's tries); the second and
    # every later one says 70 failed on the runner its delivery names.
    for _ in range(MAX_ATTEMPTS):
        world.github.get(f"{API}/repos/acme/widgets/actions/jobs/70", status=503, json={})
    rerun = _failed_job(world, 70, instance_id)
    settings = get_settings()
    ctx = Context.build(
        settings, load_templates(settings), get_client(settings), lambda: datetime.now(UTC)
    )

    def from_tags() -> str:
        return reruns.record_interruption(tagged_for_70, datetime.now(UTC), ctx)

    if first == "tags":
        assert from_tags() == "wait:github_unavailable"
        assert failed_ids(run(sqs_event(check), lambda_context)) == []
        assert rerun.call_count == 1
    else:
        assert failed_ids(run(sqs_event(check), lambda_context)) == []
        assert from_tags() == "ran_elsewhere"
        assert rerun.call_count == 0
        [pending] = markers.list_markers(reruns.pending_path("jitrunners"))
        assert reruns.PendingRerun.from_json(pending.value).instance_id == instance_id

    reruns.advance_all(ctx)  # the housekeeper's pass
    assert rerun.call_count == 1
    assert list(markers.list_markers(reruns.pending_path("jitrunners"))) == []


def test_a_job_running_on_a_healthy_runner_costs_no_rerun_check(
    reruns_on: None, world: World, lambda_context: Any
) -> None:
    _, check = _rerun_check(world, lambda_context, launched_for=67, failed=68)
    job = world.github.get(f"{API}/repos/acme/widgets/actions/jobs/68", json={})

    assert failed_ids(run(sqs_event(replace(check, kind="taken")), lambda_context)) == []
    assert job.call_count == 0


def test_job_failed_on_a_runner_that_was_not_reclaimed_is_not_rerun(
    reruns_on: None, world: World, lambda_context: Any
) -> None:
    instance_id, check = _rerun_check(world, lambda_context, launched_for=63, failed=64)
    rerun = _failed_job(world, 64, instance_id)
    boto3.client("ec2").terminate_instances(InstanceIds=[instance_id])  # ended, not reclaimed

    assert failed_ids(run(sqs_event(check), lambda_context)) == []
    assert rerun.call_count == 0


# --- auth and secrets -------------------------------------------------------------------------
def test_app_auth_mints_one_installation_token_for_many_jobs(
    world: World, lambda_context: Any, monkeypatch: pytest.MonkeyPatch, log_lines: Any
) -> None:
    use_app_auth(monkeypatch)
    mint = world.github.post(
        f"{API}/app/installations/99/access_tokens",
        status=201,
        json={"token": INSTALLATION_TOKEN, "expires_at": "2099-01-01T00:00:00Z"},
    )
    jit_endpoint(world)
    for job_id in (501, 502):
        job_status(world, job_id)
        run(sqs_event(launch_message(job_id)), lambda_context)
    starts = world.starts()
    run(sqs_event(*starts), lambda_context)

    assert mint.call_count == 1
    app_jwt = mint.calls[0].request.headers["Authorization"].removeprefix("Bearer ")
    claims = jwt.decode(app_jwt, options={"verify_signature": False})
    assert claims["iss"] == "4321"
    assert claims["exp"] - claims["iat"] == 600
    used = {c.request.headers["Authorization"] for c in world.github.calls[1:]}
    assert used == {f"Bearer {INSTALLATION_TOKEN}"}
    assert len(world.jit_calls) == 2
    text = log_lines.text()
    key_body = private_key_pem().splitlines()[1]
    for secret in (INSTALLATION_TOKEN, JIT, key_body, app_jwt):
        assert secret not in text


def test_no_log_line_carries_a_secret(world: World, lambda_context: Any, log_lines: Any) -> None:
    start = _launched(world, lambda_context)
    jit_endpoint(world)
    run(sqs_event(start), lambda_context)
    lines = log_lines()
    assert lines
    text = log_lines.text()
    assert JIT not in text
    assert TOKEN not in text
    started = [line for line in lines if line["message"] == "runner started"]
    assert started
    assert started[0]["instance_id"] == start.instance_id
    assert started[0]["job_id"] == 4242
    assert started[0]["template"] == "linux-x64"


def test_instance_whose_start_cannot_be_enqueued_is_terminated(
    world: World, lambda_context: Any
) -> None:
    job_status(world, 21)

    def refuse(params: dict[str, Any], **_: Any) -> Any:
        return AWSResponse("https://sqs", 200, {}, None), {
            "Successful": [],
            "Failed": [{"Id": "0", "Code": "InternalError", "SenderFault": False}],
        }

    events = client("sqs").meta.events
    events.register("before-call.sqs.SendMessageBatch", refuse)
    try:
        response = run(sqs_event(launch_message(21)), lambda_context)
    finally:
        events.unregister("before-call.sqs.SendMessageBatch", refuse)
    assert failed_ids(response) == ["msg-0"]
    assert world.instances() == []
    assert world.visibility == [("receipt-0", 30)]


# --- the security boundary: allowlist again, and the runner group --------------------------------
def _narrow_allowlist(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    from jitrunners import config

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    config.get_settings.cache_clear()  # not the clients: the world's hooks live on them


@pytest.mark.parametrize(
    ("narrowed", "reason"),
    [
        ({"ALLOWED_OWNERS": "other-org"}, "owner_not_allowed"),
        ({"ALLOWED_REPOS": "acme/app"}, "repo_not_allowed"),
    ],
)
@pytest.mark.parametrize("redrives", [0, 2])
def test_launch_of_a_repository_no_longer_allowed_is_dropped_not_retried(
    world: World,
    lambda_context: Any,
    monkeypatch: pytest.MonkeyPatch,
    log_lines: Any,
    narrowed: dict[str, str],
    reason: str,
    redrives: int,
) -> None:
    """Queued (and DLQ'd, redriven) jobs of a repository taken off the allowlist launch nothing."""
    job_status(world, 71)
    message = launch_message(71)
    for _ in range(redrives):
        message = message.redriven()
    _narrow_allowlist(monkeypatch, **narrowed)

    response = run(sqs_event(message), lambda_context)

    assert failed_ids(response) == []  # dropped: the message is deleted, not retried
    assert world.instances() == []
    assert world.sent == []
    assert len(world.github.calls) == 0
    [line] = [x for x in log_lines() if x.get("reason") == reason]
    assert (line["level"], line["job_id"], line["kind"]) == ("WARNING", 71, "launch")


def test_rerun_check_of_a_repository_no_longer_allowed_is_dropped(
    reruns_on: None, world: World, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance_id, check = _rerun_check(world, lambda_context, launched_for=73, failed=74)
    rerun = _failed_job(world, 74, instance_id)
    reclaim_spot(instance_id)
    calls_before = len(world.github.calls)
    _narrow_allowlist(monkeypatch, ALLOWED_OWNERS="other-org")

    assert failed_ids(run(sqs_event(check), lambda_context)) == []
    assert rerun.call_count == 0
    assert len(world.github.calls) == calls_before


@pytest.mark.parametrize(
    ("group", "problem"),
    [
        ({"visibility": "all"}, "visibility is 'all'"),
        ({"visibility": "private"}, "visibility is 'private'"),
        ({"allows_public_repositories": True}, "allows public repositories"),
        ({"code": 404}, "does not exist"),
    ],
)
def test_org_template_whose_runner_group_is_not_a_safe_boundary_launches_nothing_and_keeps_the_job(
    world: World,
    lambda_context: Any,
    log_lines: Any,
    capsys: pytest.CaptureFixture[str],
    group: dict[str, Any],
    problem: str,
) -> None:
    runner_group(world, 1, **group)
    job_status(world, 81)

    response = run(sqs_event(launch_message(81)), lambda_context)

    assert world.instances() == []
    # Kept: the record fails slowly (5 min) and reaches the DLQ after maxReceiveCount, from
    # which the redrive brings it back once the operator has fixed the group.
    assert failed_ids(response) == ["msg-0"]
    assert world.visibility == [("receipt-0", 300)]
    [error] = [x for x in log_lines() if x["level"] == "ERROR"]
    assert (error["template"], error["runner_group_id"], error["org"]) == ("linux-x64", 1, "acme")
    assert problem in error["problem"]
    out = capsys.readouterr().out
    assert '"RunnerGroupUnsafe"' in out


def test_runner_group_is_asked_about_once_per_process_and_not_for_repo_templates(
    world: World, lambda_context: Any
) -> None:
    for job_id in (91, 92):
        job_status(world, job_id)
    job_status(world, 93)
    run(sqs_event(launch_message(91)), lambda_context)
    run(sqs_event(launch_message(92)), lambda_context)
    run(sqs_event(launch_message(93, labels=["self-hosted", "arm64"])), lambda_context)

    asked = [c for c in world.github.calls if "/runner-groups/" in c.request.url]
    assert len(asked) == 1
    assert len(world.instances()) == 3


def test_launch_of_a_job_taken_by_the_runner_of_another_job_gives_that_job_a_launch(
    world: World, lambda_context: Any
) -> None:
    """Job 7's webhook came late: the runner launched for job 8 took job 7 meanwhile. Job 7's
    launch is dropped, and job 8, still queued, gets a launch of its own (DESIGN 6b swap)."""
    job_status(world, 8)
    run(sqs_event(launch_message(8)), lambda_context)
    [instance] = world.instances()
    runner = instance["InstanceId"]
    world.github.get(
        f"{API}/repos/acme/widgets/actions/jobs/7",
        json={"id": 7, "status": "in_progress", "runner_name": runner},
    )
    sent_before = len(world.sent)

    response = run(sqs_event(launch_message(7)), lambda_context)

    assert failed_ids(response) == []
    assert len(world.instances()) == 1  # nothing launched for job 7: it has its runner
    assert tags_of(world.instances()[0])["jitrunners:job-id"] == "7"  # the runner owes job 7
    [(owed, delay)] = world.sent[sent_before:]
    assert (owed.kind, owed.job_id, owed.template, delay) == (
        "launch",
        8,
        "linux-x64",
        PASS_ON_DELAY_S,
    )


def test_a_launch_of_a_job_run_by_a_runner_already_gone_passes_nothing_on(
    world: World, lambda_context: Any
) -> None:
    """The runner launched for job 8 ran job 7 and ended before job 7's launch was handled. The
    deliveries that name the runner (`taken`) pass job 8's need on; a dropped launch does not,
    or launches through runners that can no longer be marked would pass needs round in a ring.
    A gone instance cannot be tagged (EC2 ended its profile association): nothing is written."""
    job_status(world, 8)
    run(sqs_event(launch_message(8)), lambda_context)
    [instance] = world.instances()
    runner = instance["InstanceId"]
    client("ec2").terminate_instances(InstanceIds=[runner])
    world.github.get(
        f"{API}/repos/acme/widgets/actions/jobs/7",
        json={"id": 7, "status": "completed", "runner_name": runner},
    )
    sent_before = len(world.sent)

    response = run(sqs_event(launch_message(7)), lambda_context)

    assert failed_ids(response) == []
    assert world.sent[sent_before:] == []
