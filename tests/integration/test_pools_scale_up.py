"""Warm pools through the scale-up Lambda (README "Warm pools"): jobs served by hot and stopped
members, members replaced, `fill` and `ready` messages. moto EC2/SSM/SQS/DynamoDB, GitHub mocked
with `responses`; which SSM agents are online from a DescribeInstanceInformation hook (the test
says, so an agent can stay offline while its instance runs)."""

# The `world` fixture is imported from tests.support; pytest injects it by parameter name.
# ruff: noqa: F811

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from jitrunners.aws.clients import client
from jitrunners.handlers import scale_up
from jitrunners.lifecycle.provisioning import pool
from jitrunners.models import PoolMessage
from tests.conftest import TEMPLATES
from tests.support.ec2 import ec2_hook, fleet_error
from tests.support.github import API
from tests.support.pools import TEMPLATE, describe, emf, member, state, tags_of, with_pool
from tests.support.scale_up import (
    INSTALLATION_TOKEN,
    World,
    failed_ids,
    jit_endpoint,
    job_status,
    launch_message,
    sqs_event,
    use_app_auth,
    world,  # noqa: F401 - fixture
)

DELIVERIES = "jitrunners-deliveries"
SIZED = ["self-hosted", "linux", "x64", "cpu=4", "ram=16"]


def launched_for_jobs(world: World) -> list[dict[str, Any]]:
    return [i for i in world.instances() if "jitrunners:job-id" in tags_of(i)]


def new_members(world: World, kind: str, old: set[str]) -> list[dict[str, Any]]:
    return [
        i
        for i in world.instances(("pending", "running", "stopping", "stopped"))
        if tags_of(i).get("jitrunners:pool") == kind and i["InstanceId"] not in old
    ]


@pytest.fixture
def agents(world: World) -> Iterator[set[str]]:
    """The instances whose SSM agent is online: DescribeInstanceInformation answers from this set
    (ahead of the local stack's moto answer, where every running instance is online)."""
    from botocore.awsrequest import AWSResponse

    online: set[str] = set()

    def answer(params: dict[str, Any], **_: Any) -> Any:
        body = params.get("body") or {}
        if isinstance(body, bytes):
            body = json.loads(body or b"{}")
        wanted = [v for f in body.get("Filters", []) for v in f.get("Values", [])]
        found = [{"InstanceId": i, "PingStatus": "Online"} for i in wanted if i in online]
        return AWSResponse("https://ssm", 200, {}, None), {"InstanceInformationList": found}

    event = "before-call.ssm.DescribeInstanceInformation"
    client("ssm").meta.events.register(event, answer)
    yield online
    client("ssm").meta.events.unregister(event, answer)


@pytest.fixture(autouse=True)
def fresh_installations() -> Iterator[None]:
    pool._INSTALLATIONS.clear()
    yield
    pool._INSTALLATIONS.clear()


@pytest.fixture
def claims(world: World, monkeypatch: pytest.MonkeyPatch) -> str:
    from jitrunners import config

    client("dynamodb").create_table(
        TableName=DELIVERIES,
        KeySchema=[{"AttributeName": "delivery_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "delivery_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    monkeypatch.setenv("DELIVERIES_TABLE", DELIVERIES)
    config.get_settings.cache_clear()
    return DELIVERIES


def app_installation(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """App auth; the App is installed on acme (installation 99)."""
    use_app_auth(monkeypatch)
    world.github.get(
        f"{API}/app/installations",
        json=[{"id": 99, "account": {"login": "acme"}}],
    )
    world.github.post(
        f"{API}/app/installations/99/access_tokens",
        status=201,
        json={"token": INSTALLATION_TOKEN, "expires_at": "2099-01-01T00:00:00Z"},
    )


def run(*items: Any, ctx: Any) -> dict[str, Any]:
    return scale_up.handler(sqs_event(*items), ctx)


# --- hot members serve jobs ---------------------------------------------------------------------
def test_an_unsized_job_goes_to_a_ready_hot_member_checked_later_and_the_member_is_replaced(
    world: World, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_pool(monkeypatch, hot=1)
    app_installation(world, monkeypatch)
    hot = member("hot")
    job_status(world, 4242)

    response = run(launch_message(4242), ctx=lambda_context)

    assert failed_ids(response) == []
    assert launched_for_jobs(world) == []  # GitHub hands the job to the hot runner
    assert world.starts() == []
    [(check, delay)] = world.sent
    assert (check.kind, check.job_id, check.attempt, delay) == ("launch", 4242, 2, 15)
    assert delay == pool.POOL_CHECK_S
    [replacement] = new_members(world, "hot", {hot})
    tags = tags_of(replacement)
    assert tags["jitrunners:owner"] == "acme"
    assert tags["jitrunners:installation-id"] == "99"
    assert tags["jitrunners:template"] == TEMPLATE
    assert "jitrunners:job-id" not in tags
    [(ready, _)] = world.pool_sent
    assert (ready.action, ready.pool, ready.instance_id) == (
        "ready",
        "hot",
        replacement["InstanceId"],
    )
    assert state(hot) == "running"


def test_a_sized_job_launches_cold_even_with_a_ready_hot_member(
    world: World, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_pool(monkeypatch, hot=1, sizing=True)
    hot = member("hot")
    job_status(world, 4243)

    response = run(launch_message(4243, labels=SIZED), ctx=lambda_context)

    assert failed_ids(response) == []
    [cold] = launched_for_jobs(world)
    assert tags_of(cold)["jitrunners:job-id"] == "4243"
    assert "jitrunners:pool" not in tags_of(cold)
    assert [s.instance_id for s in world.starts()] == [cold["InstanceId"]]
    assert [m for m, _ in world.sent if m.kind == "launch"] == []
    assert world.pool_sent == []  # nothing served, nothing replaced
    assert new_members(world, "hot", {hot}) == []


def test_a_second_launch_of_a_job_never_goes_to_a_hot_member(
    world: World, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check after POOL_CHECK_S found the job still queued: it launches cold."""
    with_pool(monkeypatch, hot=1)
    hot = member("hot")
    job_status(world, 4244)

    response = run(replace(launch_message(4244), attempt=2), ctx=lambda_context)

    assert failed_ids(response) == []
    [cold] = launched_for_jobs(world)
    assert tags_of(cold)["jitrunners:job-id"] == "4244"
    assert [m for m, _ in world.sent if m.kind == "launch"] == []
    assert world.pool_sent == []
    assert new_members(world, "hot", {hot}) == []


def test_the_check_of_a_job_a_hot_member_took_drops_it_without_asking_github(
    world: World, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job's `in_progress` named the hot member (a `taken` message books it there); the
    check POOL_CHECK_S later finds the job's runner by its tags: nothing launches."""
    with_pool(monkeypatch, hot=1)
    hot = member("hot")
    job_status(world, 4245)
    run(launch_message(4245), ctx=lambda_context)
    [(check, _)] = world.sent
    world.sent.clear()
    replacements = new_members(world, "hot", {hot})

    booked = run(launch_message(4245).taken_by(hot), ctx=lambda_context)
    response = run(check, ctx=lambda_context)

    assert failed_ids(booked) == failed_ids(response) == []
    assert tags_of(describe(hot))["jitrunners:job-id"] == "4245"
    assert launched_for_jobs(world) == [describe(hot)]
    assert world.sent == []
    assert job_checks(world) == 1  # the first launch's only
    assert new_members(world, "hot", {hot}) == replacements


def test_a_replacement_ec2_refuses_never_holds_the_served_job_back(
    world: World,
    lambda_context: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    log_lines: Any,
) -> None:
    with_pool(monkeypatch, hot=1)
    hot = member("hot")
    job_status(world, 4246)

    def no_capacity(params: dict[str, Any]) -> Any:
        from botocore.awsrequest import AWSResponse

        return AWSResponse("https://ec2", 200, {}, None), {
            "Errors": [
                fleet_error("InsufficientInstanceCapacity", "spot"),
                fleet_error("InsufficientInstanceCapacity", "on-demand"),
            ],
            "Instances": [],
        }

    with ec2_hook("CreateFleet", no_capacity):
        response = run(launch_message(4246), ctx=lambda_context)

    assert failed_ids(response) == []
    assert [(m.job_id, m.attempt) for m, _ in world.sent] == [(4246, 2)]  # handed, checked
    assert new_members(world, "hot", {hot}) == []
    assert world.pool_sent == []
    failed = emf(capsys.readouterr().out, "PoolFillFailed")
    assert [(f["template"], f["reason"]) for f in failed if "reason" in f] == [
        (TEMPLATE, "InsufficientInstanceCapacity")
    ]
    assert any(line["message"] == "pool cannot fill: jobs launch cold" for line in log_lines())


def job_checks(world: World) -> int:
    return sum(1 for call in world.github.calls if "/actions/jobs/" in call.request.url)


# --- stopped members serve jobs -----------------------------------------------------------------
def test_a_parked_stopped_member_is_claimed_tagged_and_started_for_the_job(
    world: World, lambda_context: Any, monkeypatch: pytest.MonkeyPatch, claims: str
) -> None:
    with_pool(monkeypatch, stopped=1)
    parked = member("stopped")
    assert state(parked) == "stopped"
    job_status(world, 4242)

    response = run(launch_message(4242), ctx=lambda_context)

    assert failed_ids(response) == []
    assert state(parked) == "running"
    tags = tags_of(describe(parked))
    assert tags["jitrunners:job-id"] == "4242"
    assert tags["jitrunners:launched-for"] == "4242/1/777/acme/widgets"
    assert tags["jitrunners:pool"] == "stopped"
    claimed_at = datetime.strptime(tags["jitrunners:claimed-at"], "%Y-%m-%dT%H:%M:%SZ")
    assert claimed_at.replace(tzinfo=UTC) == world.clock().replace(microsecond=0)
    claim = client("dynamodb").get_item(
        TableName=claims, Key={"delivery_id": {"S": f"pool:{parked}"}}
    )
    assert "Item" in claim
    # Nothing launched for the job; the job's start names the member and its path.
    assert [i for i in launched_for_jobs(world) if i["InstanceId"] != parked] == []
    [start] = world.starts()
    assert (start.instance_id, start.pool, start.job_id) == (parked, "stopped", 4242)
    # The member served is replaced by a fresh stopped member, launched on-demand.
    [replacement] = new_members(world, "stopped", {parked})
    assert tags_of(replacement)["jitrunners:lt-version"] == "1"
    assert "InstanceLifecycle" not in replacement
    assert [(m.action, m.instance_id) for m, _ in world.pool_sent] == [
        ("ready", replacement["InstanceId"])
    ]

    # The start gives the member the job's JIT config under its stopped-path name.
    jit_endpoint(world)
    response = run(start, ctx=lambda_context)
    assert failed_ids(response) == []
    [jit] = world.jit_calls
    assert jit["name"] == f"{parked}-4242-1-stopped"
    assert tags_of(describe(parked))["jitrunners:runner-name"] == jit["name"]


def test_two_concurrent_launches_claim_one_parked_member_once(
    world: World, lambda_context: Any, monkeypatch: pytest.MonkeyPatch, claims: str
) -> None:
    """Two batches both saw the member free (each described the fleet before the other claimed):
    the DynamoDB claim lets exactly one start it; the other job launches cold."""
    with_pool(monkeypatch, stopped=1)
    parked = member("stopped")
    for job_id in (501, 502):
        job_status(world, job_id)
    describe_for_pool = pool.describe_for_pool
    before: list[Any] = []

    def as_before_either_claimed(deps: Any) -> list[Any]:
        if not before:
            before.extend(describe_for_pool(deps))
        return list(before)

    monkeypatch.setattr(pool, "describe_for_pool", as_before_either_claimed)

    first = run(launch_message(501), ctx=lambda_context)
    second = run(launch_message(502), ctx=lambda_context)

    assert failed_ids(first) == failed_ids(second) == []
    assert tags_of(describe(parked))["jitrunners:job-id"] == "501"
    starts = {s.job_id: s for s in world.starts()}
    assert (starts[501].instance_id, starts[501].pool) == (parked, "stopped")
    assert starts[502].pool == ""
    [cold] = [i for i in launched_for_jobs(world) if i["InstanceId"] != parked]
    assert (cold["InstanceId"], tags_of(cold)["jitrunners:job-id"]) == (
        starts[502].instance_id,
        "502",
    )


# --- max_runners --------------------------------------------------------------------------------
def test_a_full_template_still_serves_from_its_pool_and_defers_cold_launches(
    world: World, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two hot members fill max_runners 2: two jobs go to them, the third waits; no room is
    left for replacements."""
    with_pool(monkeypatch, max_runners=2, hot=2)
    members = {member("hot"), member("hot")}
    messages = [launch_message(600 + i) for i in range(3)]
    for m in messages:
        job_status(world, m.job_id)

    response = run(*messages, ctx=lambda_context)

    assert failed_ids(response) == []
    assert launched_for_jobs(world) == []
    launches = sorted((m.job_id, m.attempt, d) for m, d in world.sent if m.kind == "launch")
    assert launches == [(600, 2, pool.POOL_CHECK_S), (601, 2, pool.POOL_CHECK_S), (602, 1, 60)]
    assert new_members(world, "hot", members) == []
    assert world.pool_sent == []


def test_members_served_are_replaced_only_within_room(
    world: World, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_pool(monkeypatch, max_runners=3, hot=2)
    members = {member("hot"), member("hot")}
    messages = [launch_message(700 + i) for i in range(2)]
    for m in messages:
        job_status(world, m.job_id)

    response = run(*messages, ctx=lambda_context)

    assert failed_ids(response) == []
    assert len(new_members(world, "hot", members)) == 1  # 2 served, room for 1
    assert [m.action for m, _ in world.pool_sent] == ["ready"]


def test_parked_members_count_against_the_global_max_runners(
    world: World, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped instances are counted too: two parked linux-x64 members fill MAX_RUNNERS 2, so
    an arm64 job (another template, no pool) waits."""
    from jitrunners import config

    with_pool(monkeypatch, stopped=2)
    monkeypatch.setenv("MAX_RUNNERS", "2")
    config.get_settings.cache_clear()
    members = {member("stopped"), member("stopped")}
    arm = launch_message(760, labels=["self-hosted", "arm64"])
    job_status(world, 760)

    response = run(arm, ctx=lambda_context)

    assert failed_ids(response) == []
    assert launched_for_jobs(world) == []
    assert [(m.job_id, m.attempt, d) for m, d in world.sent] == [(760, 1, 60)]  # deferred
    assert {state(i) for i in members} == {"stopped"}


def test_a_member_served_from_a_pool_over_its_target_is_not_replaced(
    world: World, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A window lowered the target to one hot member while two idle: the one left is enough.
    Replacing it anyway would keep the pool at its old size for as long as jobs keep coming."""
    with_pool(monkeypatch, max_runners=3, hot=1)
    members = {member("hot"), member("hot")}
    job_status(world, 750)

    response = run(launch_message(750), ctx=lambda_context)

    assert failed_ids(response) == []
    assert [(m.job_id, m.attempt) for m, _ in world.sent] == [(750, 2)]  # served
    assert new_members(world, "hot", members) == []
    assert world.pool_sent == []


# --- ready messages -----------------------------------------------------------------------------
def ready(instance_id: str, kind: str = "hot") -> PoolMessage:
    return PoolMessage(action="ready", template=TEMPLATE, pool=kind, instance_id=instance_id)


def test_a_hot_member_whose_agent_is_online_gets_its_runner(
    world: World, lambda_context: Any, monkeypatch: pytest.MonkeyPatch, agents: set[str]
) -> None:
    with_pool(monkeypatch, hot=1, hot_max_idle_s=120)
    jit_endpoint(world)
    booted = member("hot", ready=False, launched_at=world.clock() - timedelta(seconds=40))
    agents.add(booted)

    response = run(ready(booted), ctx=lambda_context)

    assert failed_ids(response) == []
    [jit] = world.jit_calls
    assert jit["name"] == f"{booted}-hot"
    assert jit["labels"] == TEMPLATES[0]["labels"]
    assert jit["runner_group_id"] == 1
    tags = tags_of(describe(booted))
    [command] = boto3.client("ssm").list_commands(CommandId=tags["jitrunners:command-id"])[
        "Commands"
    ]
    [line] = command["Parameters"]["commands"]
    assert line.split()[-2:] == [f"/jitrunners/jit/{booted}", "120"]  # idle = hot_max_idle_s
    assert tags["jitrunners:runner-name"] == f"{booted}-hot"
    assert "jitrunners:started-at" in tags
    assert "jitrunners:job-id" not in tags


def test_a_member_whose_agent_is_not_online_is_retried(
    world: World, lambda_context: Any, monkeypatch: pytest.MonkeyPatch, agents: set[str]
) -> None:
    with_pool(monkeypatch, hot=1, stopped=1)
    jit_endpoint(world)
    booting = member("hot", ready=False, launched_at=world.clock() - timedelta(seconds=40))
    stopping = member("stopped", ready=False, launched_at=world.clock() - timedelta(seconds=40))

    response = run(ready(booting), ready(stopping, "stopped"), ctx=lambda_context)

    assert failed_ids(response) == ["msg-0", "msg-1"]
    assert world.jit_calls == []
    assert (state(booting), state(stopping)) == ("running", "running")
    from jitrunners.lifecycle.provisioning.start import POLL_S

    assert [delay for _, delay in world.visibility] == [POLL_S] * 2  # polled like a start


def test_a_member_whose_agent_never_came_online_is_ended_and_counted(
    world: World,
    lambda_context: Any,
    monkeypatch: pytest.MonkeyPatch,
    agents: set[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    with_pool(monkeypatch, hot=1)
    late = member("hot", ready=False, launched_at=world.clock() - timedelta(seconds=601))

    response = run(ready(late), ctx=lambda_context)

    assert failed_ids(response) == []
    assert state(late) in ("shutting-down", "terminated")
    failed = emf(capsys.readouterr().out, "PoolFillFailed")
    assert [(f["template"], f["reason"]) for f in failed if "reason" in f] == [
        (TEMPLATE, "start_timeout")
    ]


def test_a_stopped_member_whose_agent_is_online_is_stopped(
    world: World, lambda_context: Any, monkeypatch: pytest.MonkeyPatch, agents: set[str]
) -> None:
    with_pool(monkeypatch, stopped=1)
    booted = member("stopped", ready=False, launched_at=world.clock() - timedelta(seconds=40))
    agents.add(booted)

    response = run(ready(booted, "stopped"), ctx=lambda_context)

    assert failed_ids(response) == []
    assert state(booted) == "stopped"
    assert world.jit_calls == []
    assert "jitrunners:command-id" not in tags_of(describe(booted))


# --- fill messages ------------------------------------------------------------------------------
def fill(kind: str, count: int) -> PoolMessage:
    return PoolMessage(action="fill", template=TEMPLATE, pool=kind, count=count)


def test_a_fill_launches_the_deficit_only(
    world: World, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_pool(monkeypatch, max_runners=5, hot=1, stopped=3)
    old = {member("stopped")}

    response = run(fill("stopped", 10), ctx=lambda_context)

    assert failed_ids(response) == []
    launched = new_members(world, "stopped", old)
    assert len(launched) == 2  # target 3, one there
    assert {m.instance_id for m, _ in world.pool_sent} == {i["InstanceId"] for i in launched}
    assert {m.pool for m, _ in world.pool_sent} == {"stopped"}


def test_a_fill_launches_within_room_only(
    world: World, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jobs' runners hold two of max_runners 3: one hot member of the two wanted."""
    with_pool(monkeypatch, max_runners=3, hot=2)
    for job_id in (801, 802):
        job_status(world, job_id)
        run(launch_message(job_id), ctx=lambda_context)
    assert len(launched_for_jobs(world)) == 2

    response = run(fill("hot", 2), ctx=lambda_context)

    assert failed_ids(response) == []
    assert len(new_members(world, "hot", set())) == 1
    assert [m.action for m, _ in world.pool_sent] == ["ready"]


def test_a_drained_template_fills_nothing(
    world: World, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_pool(monkeypatch, max_runners=0, hot=2, stopped=1)

    response = run(fill("hot", 2), fill("stopped", 1), ctx=lambda_context)

    assert failed_ids(response) == []
    assert world.instances() == []
    assert world.pool_sent == []


def test_a_hot_pool_fills_only_a_runner_group_that_is_a_safe_boundary(
    world: World,
    lambda_context: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Hot runners join the template's runner group before any job names a repository: a group
    open to every repository of the org gets none (README "Security boundary")."""
    from tests.support.scale_up import runner_group

    with_pool(monkeypatch, hot=2)
    runner_group(world, visibility="all")

    response = run(fill("hot", 2), ctx=lambda_context)

    assert failed_ids(response) == []
    assert new_members(world, "hot", set()) == []
    refused = emf(capsys.readouterr().out, "PoolFillFailed")
    assert [r["reason"] for r in refused if "reason" in r] == ["runner_group_unsafe"]


def test_without_the_still_queued_check_no_job_goes_to_a_hot_member(
    world: World, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job handed to a hot member is confirmed by its checked relaunch; with CHECK_JOB_QUEUED
    off that relaunch would launch a second runner for it, so the job launches cold."""
    from jitrunners import config

    with_pool(monkeypatch, hot=1)
    monkeypatch.setenv("CHECK_JOB_QUEUED", "false")
    config.get_settings.cache_clear()
    hot = member("hot")

    response = run(launch_message(4246), ctx=lambda_context)

    assert failed_ids(response) == []
    [cold] = launched_for_jobs(world)
    assert tags_of(cold)["jitrunners:job-id"] == "4246"
    assert [m for m, _ in world.sent if m.kind == "launch"] == []
    assert new_members(world, "hot", {hot}) == []
