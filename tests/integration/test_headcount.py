"""Scale-up's headcount (lifecycle/provisioning/headcount.py) through the real handler on moto:
launch batches within HEADCOUNT_MAX_AGE_S decide on the container's last list of our instances
and its own launches since, and list afresh whenever a kept list could decide wrongly."""

# The `world` fixture is imported from tests.support; pytest injects it by parameter name.
# ruff: noqa: F811

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from jitrunners import config
from jitrunners.aws.clients import client
from jitrunners.handlers import scale_up
from jitrunners.lifecycle.provisioning import headcount
from tests.support.scale_up import (
    World,
    failed_ids,
    job_status,
    launch_message,
    sqs_event,
    world,  # noqa: F401 - fixture
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(headcount.HEADCOUNT, "_clock", fake)
    return fake


@pytest.fixture
def listings() -> list[dict[str, Any]]:
    """Every DescribeInstances that lists all our instances (no instance-id filter)."""
    calls: list[dict[str, Any]] = []

    def seen(params: dict[str, Any], **_: Any) -> None:
        if not any(f["Name"] == "instance-id" for f in params.get("Filters", [])):
            calls.append(params)

    client("ec2").meta.events.register("provide-client-params.ec2.DescribeInstances", seen)
    return calls


def launch(world: World, ctx: Any, *job_ids: int) -> dict[str, Any]:
    messages = [launch_message(job_id) for job_id in job_ids]
    for message in messages:
        job_status(world, message.job_id)
    response = scale_up.handler(sqs_event(*messages), ctx)
    assert failed_ids(response) == []
    return response


def live(world: World) -> list[str]:
    return [
        i["InstanceId"] for i in world.instances() if i["State"]["Name"] in ("pending", "running")
    ]


def deferred(world: World) -> list[int]:
    return [m.job_id for m, delay in world.sent if m.kind == "launch" and delay > 0]


def test_launch_batches_within_the_age_list_our_instances_once(
    world: World, lambda_context: Any, clock: Clock, listings: list[dict[str, Any]]
) -> None:
    launch(world, lambda_context, 501)
    clock.now += 4.9
    launch(world, lambda_context, 502)
    assert len(listings) == 1  # the first batch's; the second counted on it
    clock.now += 0.2  # 5.1 s after the list: too old
    launch(world, lambda_context, 503)
    assert len(listings) == 2
    assert len(live(world)) == 3


def test_the_containers_own_launches_count_against_max_runners(
    world: World, lambda_context: Any, clock: Clock, listings: list[dict[str, Any]]
) -> None:
    """linux-x64 allows 3 runners: after 2, a batch of one fits the kept count (no listing); the
    next would defer for want of room, so it lists first, and defers on what EC2 says."""
    launch(world, lambda_context, 601, 602)
    launch(world, lambda_context, 603)
    assert len(listings) == 1
    assert len(live(world)) == 3
    launch(world, lambda_context, 604)
    assert len(listings) == 2  # no room on the kept count: listed again before deferring
    assert len(live(world)) == 3
    assert deferred(world) == [604]


def test_a_runner_ended_since_the_list_frees_its_slot_without_a_wait(
    world: World, lambda_context: Any, clock: Clock, listings: list[dict[str, Any]]
) -> None:
    launch(world, lambda_context, 701, 702, 703)
    client("ec2").terminate_instances(InstanceIds=[live(world)[0]])
    launch(world, lambda_context, 704)  # the kept list still counts 3 of 3
    assert len(listings) == 2
    assert len(live(world)) == 3
    assert deferred(world) == []


@pytest.mark.parametrize(("max_age", "launched"), [("0", 1), ("5", 2)])
def test_another_containers_launch_counts_from_the_next_list(
    world: World,
    lambda_context: Any,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    max_age: str,
    launched: int,
) -> None:
    """What another invocation launched since this container's list is counted from its next
    list on: with HEADCOUNT_MAX_AGE_S=0 (a list per batch) never exceeded, within the age by at
    most the other invocation's launches (README "Scaling", the headcount)."""
    monkeypatch.setenv("HEADCOUNT_MAX_AGE_S", max_age)
    config.get_settings.cache_clear()
    launch(world, lambda_context, 801)
    kept = dict(headcount.HEADCOUNT._listed), headcount.HEADCOUNT._at
    launch(world, lambda_context, 802)  # "another container": this one's list as it was
    headcount.HEADCOUNT._listed, headcount.HEADCOUNT._at = dict(kept[0]), kept[1]
    launch(world, lambda_context, 803, 804)  # 3 allowed; 2 live, 1 of them unknown to the list
    assert len(live(world)) == 2 + launched
    clock.now += 5
    launch(world, lambda_context, 805)
    assert len(live(world)) == 2 + launched  # listed again: full, whatever the age


def test_a_job_held_on_the_kept_list_is_judged_on_a_fresh_one(
    world: World, lambda_context: Any, clock: Clock, listings: list[dict[str, Any]]
) -> None:
    """Job 901's instance is on the kept list and has since ended unstarted (a spot reclaim):
    its relaunch must not be taken for a duplicate of an instance that is gone."""
    launch(world, lambda_context, 901)
    [first] = live(world)
    client("ec2").terminate_instances(InstanceIds=[first])
    relaunch = replace(launch_message(901), attempt=2)
    response = scale_up.handler(sqs_event(relaunch), lambda_context)
    assert failed_ids(response) == []
    assert len(listings) == 2
    [second] = live(world)
    assert second != first
