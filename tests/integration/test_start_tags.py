"""A cold job's instance gets its job tags in one CreateTags, at its start (tags.py): between its
launch and its start it carries only its fleet's tags, and its `start` message owes the job.

The scale-up Lambda end to end against moto (EC2, SSM, SQS); GitHub mocked with `responses`
(scale-up) or the fake GitHub (scale-down, housekeeper)."""

# The `world` fixture is imported from tests.support; pytest injects it by parameter name.
# ruff: noqa: F811

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import pytest

from jitrunners.handlers import scale_up
from jitrunners.models import JobMessage
from tests.support.ec2 import ec2_hook, error_response
from tests.support.events import spot_event
from tests.support.pools import describe, tags_of
from tests.support.scale_up import (
    World,
    failed_ids,
    jit_endpoint,
    job_status,
    launch_message,
    sqs_event,
    world,  # noqa: F401 - fixture
)
from tests.support.world import Clock, spot_reclaim

JOB_TAGS = (
    "jitrunners:job-id",
    "jitrunners:run-id",
    "jitrunners:run-attempt",
    "jitrunners:repo",
    "jitrunners:delivery-id",
    "jitrunners:installation-id",
    "jitrunners:launched-for",
    "jitrunners:launch-attempt",
)
STARTED_TAGS = ("jitrunners:command-id", "jitrunners:started-at", "jitrunners:runner-name")


def launch(world: World, ctx: Any, *job_ids: int) -> list[JobMessage]:
    """Launch the jobs in one batch (one fleet); their start messages, sent ones cleared."""
    for job_id in job_ids:
        job_status(world, job_id)
    assert failed_ids(scale_up.handler(sqs_event(*map(launch_message, job_ids)), ctx)) == []
    starts = world.starts()
    assert sorted(s.job_id for s in starts) == sorted(job_ids)
    world.sent.clear()
    return starts


def relaunches(world: World) -> list[tuple[int, int]]:
    return [(m.job_id, m.attempt) for m, _ in world.sent if m.kind == "launch"]


@pytest.mark.parametrize("jobs", [1, 3])
def test_a_cold_job_costs_one_create_tags_over_its_launch_and_its_start(
    world: World, lambda_context: Any, tag_writes: list[dict[str, Any]], jobs: int
) -> None:
    starts = launch(world, lambda_context, *range(300, 300 + jobs))
    if jobs > 1:
        # Launched together: only the fleet's common tags until the start.
        for start in starts:
            assert not set(JOB_TAGS) & tags_of(describe(str(start.instance_id))).keys()
    assert tag_writes == []
    jit_endpoint(world)

    assert failed_ids(scale_up.handler(sqs_event(*starts), lambda_context)) == []

    assert len(tag_writes) == jobs, "one CreateTags per job, launch and start together"
    for start in starts:
        tags = tags_of(describe(str(start.instance_id)))
        assert set(JOB_TAGS) | set(STARTED_TAGS) <= tags.keys()
        assert tags["jitrunners:job-id"] == str(start.job_id)
        assert tags["jitrunners:launched-for"] == f"{start.job_id}/1/777/acme/widgets"
        assert tags["jitrunners:runner-name"] == f"{start.instance_id}-{start.job_id}-1"


def test_a_start_retried_after_its_command_was_sent_writes_every_tag(
    world: World, lambda_context: Any, tag_writes: list[dict[str, Any]]
) -> None:
    """SendCommand succeeded, the tag write did not: the retry finds the command (no second
    runner) and writes the job tags with the started ones."""
    start, _ = launch(world, lambda_context, 310, 311)
    jit_endpoint(world)
    with ec2_hook("CreateTags", lambda _p: error_response("RequestLimitExceeded", 503)):
        assert failed_ids(scale_up.handler(sqs_event(start), lambda_context)) == ["msg-0"]
    assert "jitrunners:job-id" not in tags_of(describe(str(start.instance_id)))

    assert failed_ids(scale_up.handler(sqs_event((start, 2)), lambda_context)) == []

    tags = tags_of(describe(str(start.instance_id)))
    [command] = boto3.client("ssm").list_commands(InstanceId=start.instance_id)["Commands"]
    assert tags["jitrunners:command-id"] == command["CommandId"]
    assert set(JOB_TAGS) | set(STARTED_TAGS) <= tags.keys()
    assert tags["jitrunners:job-id"] == "310"
    assert len(world.jit_calls) == 1


def test_a_retried_start_keeps_a_swap_booked_before_its_tag_write(
    world: World, lambda_context: Any
) -> None:
    """The runner took job 999 before the start's tags were written (the books wrote 999's job
    tags): the retried start adds what it was launched for and its started tags, and leaves
    the job it owes now alone."""
    start, _ = launch(world, lambda_context, 320, 321)
    jit_endpoint(world)
    with ec2_hook("CreateTags", lambda _p: error_response("RequestLimitExceeded", 503)):
        assert failed_ids(scale_up.handler(sqs_event(start), lambda_context)) == ["msg-0"]
    job_status(world, 999, "in_progress")
    taken = launch_message(999).taken_by(str(start.instance_id))
    assert failed_ids(scale_up.handler(sqs_event(taken), lambda_context)) == []

    assert failed_ids(scale_up.handler(sqs_event((start, 2)), lambda_context)) == []

    tags = tags_of(describe(str(start.instance_id)))
    assert tags["jitrunners:job-id"] == "999"
    assert tags["jitrunners:launched-for"] == "320/1/777/acme/widgets"
    assert tags["jitrunners:command-id"]


def test_an_instance_interrupted_before_its_start_gets_its_job_relaunched(
    world: World,
    lambda_context: Any,
    scale_down_event: Callable[[dict[str, Any]], str],
) -> None:
    """Spot takes the instance before its start: scale-down cleans it up (it names no job and
    relaunches nothing), and the start message, which owes the job, relaunches it."""
    start, other = launch(world, lambda_context, 330, 331)
    jit_endpoint(world)
    spot_reclaim(str(start.instance_id))

    assert scale_down_event(spot_event(str(start.instance_id))).startswith("cleaned:")
    assert relaunches(world) == []
    assert failed_ids(scale_up.handler(sqs_event((start, 2)), lambda_context)) == []

    assert relaunches(world) == [(330, 2)]
    assert world.jit_calls == []  # no JIT config for an instance gone
    assert tags_of(describe(str(other.instance_id)))["jitrunners:template"] == "linux-x64"


def test_an_instance_reaped_before_its_start_gets_its_job_relaunched(
    world: World,
    lambda_context: Any,
    clock: Clock,
    run_housekeeper: Callable[[], dict[str, Any]],
) -> None:
    """The housekeeper reaps an instance past its start timeout (its start message was held
    up): the reap relaunches nothing, the start message finds the instance gone and does."""
    [start] = launch(world, lambda_context, 340)
    boto3.client("ec2").delete_tags(
        Resources=[str(start.instance_id)],
        Tags=[{"Key": key} for key in JOB_TAGS],
    )  # as launched with others: its fleet's tags only
    clock.advance(minutes=30)

    run_housekeeper()

    [instance] = boto3.client("ec2").describe_instances(InstanceIds=[str(start.instance_id)])[
        "Reservations"
    ][0]["Instances"]
    assert instance["State"]["Name"] in ("shutting-down", "terminated")
    assert relaunches(world) == []
    jit_endpoint(world)

    assert failed_ids(scale_up.handler(sqs_event((start, 3)), lambda_context)) == []

    assert relaunches(world) == [(340, 2)]
    assert world.jit_calls == []


def test_a_swap_is_covered_by_the_taken_jobs_runner_awaiting_its_start(
    world: World, lambda_context: Any, tag_writes: list[dict[str, Any]]
) -> None:
    """Runner R (launched alone for job 352) takes job 350 while 350's own runner, launched
    with 351's, awaits its start and names no job yet: that runner will serve 352 as GitHub
    hands it any queued job, so 352 gets no launch of its own (nor an instance too many)."""
    launch(world, lambda_context, 350, 351)
    [runner] = launch(world, lambda_context, 352)
    tag_writes.clear()
    job_status(world, 350, "in_progress")
    taken = launch_message(350).taken_by(str(runner.instance_id))

    assert failed_ids(scale_up.handler(sqs_event(taken), lambda_context)) == []

    tags = tags_of(describe(str(runner.instance_id)))
    assert (tags["jitrunners:job-id"], tags["jitrunners:launched-for"]) == (
        "350",
        "352/1/777/acme/widgets",
    )
    assert "jitrunners:passed-on" not in tags
    assert relaunches(world) == []
    assert len(tag_writes) == 1
