"""Warm pools through the housekeeper and scale-down Lambdas (README "Warm pools"): parked members
are no zombies, a pool the schedule or max_runners no longer wants is drained, stale stopped
members are recycled, deficits ask scale-up for a fill, and a member reclaimed by spot is
refilled. moto EC2/SSM/SQS, the fake GitHub, an injected clock."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from tests.conftest import drain
from tests.support import world
from tests.support.events import spot_event, state_event
from tests.support.pools import TEMPLATE, emf, member, state, with_pool
from tests.support.world import Clock, FakeGitHub

ORG = "orgs/acme"
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]
# Weekdays 07:00-19:00 in Berlin: a Saturday noon is off-hours, a Monday 10:00 in it.
SCHEDULE = {
    "timezone": "Europe/Berlin",
    "windows": [{"days": WEEKDAYS, "start": "07:00", "end": "19:00"}],
}

pytestmark = pytest.mark.usefixtures("fast_ec2")


def next_weekday(clock: Clock, weekday: int, hour_utc: int) -> datetime:
    """The first such day and hour after the clock's start (ahead of moto's wall-clock stamps)."""
    day = clock().date() + timedelta(days=1)
    while day.weekday() != weekday:
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, hour_utc, tzinfo=UTC)


@pytest.fixture
def sweep(run_housekeeper: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    return run_housekeeper


@pytest.fixture
def event(scale_down_event: Callable[[dict[str, Any]], str]) -> Callable[[dict[str, Any]], str]:
    return scale_down_event


def fills(queue_url: str) -> list[tuple[str, str, int]]:
    """The pool `fill` messages on the job queue: (template, kind, count)."""
    found = []
    for message in drain(queue_url):
        body = json.loads(message["Body"])
        if body.get("kind") == "pool" and body.get("action") == "fill":
            found.append((body["template"], body["pool"], body["count"]))
    return sorted(found)


def pool_actions(answer: dict[str, Any]) -> dict[str, str]:
    return {target: n for kind, target, n in answer["actions"] if kind == "pool"}


# --- housekeeper ----------------------------------------------------------------------------------
def test_a_parked_stopped_member_is_not_a_zombie(
    sweep: Callable[[], dict[str, Any]],
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    job_queue: str,
) -> None:
    with_pool(monkeypatch, stopped=1)
    parked = member("stopped", launched_at=clock() - timedelta(hours=2))

    answer = sweep()

    assert answer["actions"] == []
    assert answer["zombies"] == 0
    assert state(parked) == "stopped"
    assert fills(job_queue) == []  # the pool is full


@pytest.mark.parametrize("why", ["off_hours", "drained_template"])
def test_a_pool_whose_target_is_zero_is_drained_but_a_busy_hot_member_stays(
    sweep: Callable[[], dict[str, Any]],
    clock: Clock,
    github: FakeGitHub,
    monkeypatch: pytest.MonkeyPatch,
    job_queue: str,
    why: str,
) -> None:
    if why == "off_hours":
        with_pool(monkeypatch, hot=2, stopped=1, schedule=SCHEDULE)
        clock.now = next_weekday(clock, 5, 11)  # Saturday 12:00 in Berlin
    else:
        with_pool(monkeypatch, max_runners=0, hot=2, stopped=1)
    idle = member("hot", launched_at=clock() - timedelta(minutes=30))
    github.register(ORG, f"{idle}-hot", status="online", busy=False)
    # GitHub has just handed this one a job (its in_progress is not booked: it looks free).
    busy = member("hot", launched_at=clock() - timedelta(minutes=30))
    github.register(ORG, f"{busy}-hot", status="online", busy=True)
    parked = member("stopped", launched_at=clock() - timedelta(hours=1))

    answer = sweep()

    assert pool_actions(answer) == {"drained": "2"}
    assert state(idle) == "terminated"
    assert state(parked) == "terminated"
    assert f"{idle}-hot" not in github.all_runner_names()
    assert state(busy) == "running"
    assert f"{busy}-hot" in github.all_runner_names()
    assert fills(job_queue) == []


def test_over_target_the_oldest_parked_members_go_and_hot_members_idle_out(
    sweep: Callable[[], dict[str, Any]],
    clock: Clock,
    github: FakeGitHub,
    monkeypatch: pytest.MonkeyPatch,
    job_queue: str,
) -> None:
    """A smaller pool: parked members beyond the target end, oldest first; hot members over a
    non-zero target are left to their idle age (one GitHub just handed a job looks free)."""
    with_pool(monkeypatch, hot=1, stopped=1)
    oldest, older, newest = (
        member("stopped", launched_at=clock() - timedelta(hours=h)) for h in (3, 2, 1)
    )
    hot = [member("hot", launched_at=clock() - timedelta(minutes=10)) for _ in range(2)]
    for instance_id in hot:
        github.register(ORG, f"{instance_id}-hot", status="online", busy=False)

    answer = sweep()

    assert pool_actions(answer) == {"drained": "2"}
    assert [state(i) for i in (oldest, older, newest)] == ["terminated", "terminated", "stopped"]
    assert [state(i) for i in hot] == ["running", "running"]
    assert fills(job_queue) == []


def test_a_hot_member_github_will_not_deregister_is_not_terminated(
    sweep: Callable[[], dict[str, Any]],
    clock: Clock,
    github: FakeGitHub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its registration goes first: a terminated member still registered would be handed a job
    GitHub then waits on."""
    with_pool(monkeypatch, max_runners=0, hot=1)
    idle = member("hot", launched_at=clock() - timedelta(minutes=30))
    github.register(ORG, f"{idle}-hot", status="online", busy=False)
    github.failing.add("delete_runner")

    answer = sweep()

    assert pool_actions(answer) == {}
    assert state(idle) == "running"
    assert github.calls["delete_runner"] == 1


def test_the_schedule_window_opening_asks_for_its_members(
    sweep: Callable[[], dict[str, Any]],
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    job_queue: str,
) -> None:
    with_pool(monkeypatch, hot=2, stopped=1, schedule=SCHEDULE)
    clock.now = next_weekday(clock, 5, 11)  # Saturday: nothing wanted
    sweep()
    assert fills(job_queue) == []

    clock.now = next_weekday(clock, 0, 8)  # Monday 10:00 in Berlin
    answer = sweep()

    assert pool_actions(answer) == {"fill_requested": "2"}
    assert fills(job_queue) == [(TEMPLATE, "hot", 2), (TEMPLATE, "stopped", 1)]


def test_a_stopped_member_of_an_older_launch_template_version_is_recycled(
    sweep: Callable[[], dict[str, Any]],
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    job_queue: str,
) -> None:
    with_pool(monkeypatch, stopped=2)
    ec2 = boto3.client("ec2")
    ec2.create_launch_template(
        LaunchTemplateName="jitrunners-linux-x64", LaunchTemplateData={"ImageId": world.AMI}
    )
    ec2.create_launch_template_version(
        LaunchTemplateName="jitrunners-linux-x64",
        SourceVersion="1",
        LaunchTemplateData={"ImageId": "ami-0b5d2c9e4f8a17e36"},
    )
    ec2.modify_launch_template(LaunchTemplateName="jitrunners-linux-x64", DefaultVersion="2")
    old = member("stopped", launched_at=clock() - timedelta(days=1), lt_version="1")
    current = member("stopped", launched_at=clock() - timedelta(hours=1), lt_version="2")

    answer = sweep()

    assert pool_actions(answer) == {"recycled": "1", "fill_requested": "1"}
    assert state(old) == "terminated"
    assert state(current) == "stopped"
    assert fills(job_queue) == [(TEMPLATE, "stopped", 1)]


def test_deficits_ask_for_a_fill_and_size_and_deficit_are_published(
    sweep: Callable[[], dict[str, Any]],
    clock: Clock,
    github: FakeGitHub,
    monkeypatch: pytest.MonkeyPatch,
    job_queue: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with_pool(monkeypatch, hot=2, stopped=1)
    hot = member("hot", launched_at=clock() - timedelta(minutes=10))
    github.register(ORG, f"{hot}-hot", status="online", busy=False)
    capsys.readouterr()

    answer = sweep()

    assert pool_actions(answer) == {"fill_requested": "2"}
    assert fills(job_queue) == [(TEMPLATE, "hot", 1), (TEMPLATE, "stopped", 1)]
    out = capsys.readouterr().out
    published = {
        (name, d["template"], d["kind"]): d["value"]
        for name in ("PoolSize", "PoolDeficit")
        for d in emf(out, name)
    }
    assert published == {
        ("PoolSize", TEMPLATE, "hot"): 1,
        ("PoolDeficit", TEMPLATE, "hot"): 1,
        ("PoolSize", TEMPLATE, "stopped"): 0,
        ("PoolDeficit", TEMPLATE, "stopped"): 1,
    }


# --- scale-down -----------------------------------------------------------------------------------
def test_the_stop_of_a_parked_member_is_not_an_ended_runner(
    event: Callable[[dict[str, Any]], str],
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    job_queue: str,
) -> None:
    with_pool(monkeypatch, stopped=1)
    parked = member("stopped", launched_at=clock() - timedelta(minutes=3))

    for stage in ("stopping", "stopped"):
        assert event(state_event(parked, stage)) == "ignored:pool_member_parked"

    assert state(parked) == "stopped"
    assert fills(job_queue) == []


@pytest.mark.parametrize("warning", [True, False], ids=["interruption_warning", "reclaim_only"])
def test_a_free_hot_member_reclaimed_by_spot_asks_for_a_refill(
    event: Callable[[dict[str, Any]], str],
    clock: Clock,
    github: FakeGitHub,
    monkeypatch: pytest.MonkeyPatch,
    job_queue: str,
    warning: bool,
) -> None:
    with_pool(monkeypatch, hot=1)
    hot = member("hot", launched_at=clock() - timedelta(minutes=30))
    github.register(ORG, f"{hot}-hot", status="online", busy=False)

    if warning:
        outcome = event(spot_event(hot))
    else:
        world.spot_reclaim(hot)
        outcome = event(state_event(hot, "terminated"))

    assert outcome.startswith("cleaned:")
    assert state(hot) == "terminated"
    assert f"{hot}-hot" not in github.all_runner_names()
    assert fills(job_queue) == [(TEMPLATE, "hot", 1)]
