"""The housekeeper's instance listing: every ended instance EC2 lists is described once per
container, not at every pass (lifecycle/recovery/listing.py), against moto's EC2."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from tests.conftest import _reset_process_caches
from tests.support import world
from tests.support.world import Clock, FakeGitHub, FakeJob

pytestmark = pytest.mark.usefixtures("fast_ec2")


@pytest.fixture
def calls(
    monkeypatch: pytest.MonkeyPatch,
) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """Every listing the housekeeper's view asks EC2 for: (states, instance ids)."""
    from jitrunners.aws import fleet

    made: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
    real = fleet.list_instances

    def listing(prefix: str, states: Any = fleet.LIVE_STATES, **kwargs: Any) -> Any:
        made.append((tuple(states), tuple(kwargs.get("instance_ids", ()))))
        return real(prefix, states, **kwargs)

    monkeypatch.setattr(fleet, "list_instances", listing)
    return made


@pytest.fixture
def view(env: dict[str, str], github: FakeGitHub, clock: Clock) -> Callable[[], dict[str, str]]:
    """One pass's view of our instances: state by id."""
    from jitrunners.config import get_settings, load_templates
    from jitrunners.lifecycle.cleanup import Context
    from jitrunners.lifecycle.recovery.listing import our_instances

    def states() -> dict[str, str]:
        ctx = Context.build(get_settings(), load_templates(get_settings()), github, clock)
        return {i.id: i.state for i in our_instances(ctx, clock())}

    return states


def test_between_full_listings_a_pass_lists_the_live_and_describes_the_newly_ended_by_id(
    view: Callable[[], dict[str, str]], calls: list[Any], clock: Clock
) -> None:
    from jitrunners.aws.fleet import ALL_STATES
    from jitrunners.lifecycle.recovery.listing import NOT_ENDED

    live = world.launch(launched_at=clock() - timedelta(minutes=2))
    gone = world.launch(launched_at=clock() - timedelta(minutes=9))
    world.terminate(gone)

    # A container's first pass lists every state.
    assert view() == {live: "running", gone: "terminated"}
    assert calls == [(ALL_STATES, ())]

    # `live` ends between two passes: the next describes it by id, once.
    world.terminate(live)
    clock.advance(minutes=5)
    calls.clear()
    assert view() == {live: "terminated", gone: "terminated"}
    assert calls == [(NOT_ENDED, ()), (ALL_STATES, (live,))]

    clock.advance(minutes=5)
    calls.clear()
    assert view() == {live: "terminated", gone: "terminated"}
    assert calls == [(NOT_ENDED, ())]

    # Launched and ended between two passes: not seen until the next full listing.
    brief = world.launch(launched_at=clock())
    world.terminate(brief)
    clock.advance(minutes=4)
    assert brief not in view()
    clock.advance(minutes=1)  # 15 minutes after the first
    calls.clear()
    assert view() == {live: "terminated", gone: "terminated", brief: "terminated"}
    assert calls == [(ALL_STATES, ())]


def test_a_cold_container_and_a_zero_period_list_every_state(
    view: Callable[[], dict[str, str]],
    calls: list[Any],
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from jitrunners.aws.fleet import ALL_STATES
    from jitrunners.lifecycle.recovery.listing import NOT_ENDED

    world.launch(launched_at=clock())
    view()
    view()
    assert calls == [(ALL_STATES, ()), (NOT_ENDED, ())]
    _reset_process_caches()  # a cold container
    calls.clear()
    view()
    assert calls == [(ALL_STATES, ())]

    monkeypatch.setenv("HOUSEKEEPER_FULL_LISTING_S", "0")
    _reset_process_caches()
    calls.clear()
    view()
    view()
    assert calls == [(ALL_STATES, ()), (ALL_STATES, ())]


def test_a_clock_behind_the_last_full_listing_lists_every_state(
    view: Callable[[], dict[str, str]], calls: list[Any], clock: Clock
) -> None:
    from jitrunners.aws.fleet import ALL_STATES

    world.launch(launched_at=clock())
    view()
    clock.advance(minutes=-1)
    view()
    assert calls == [(ALL_STATES, ()), (ALL_STATES, ())]


def test_a_runner_seen_running_that_ended_with_both_events_lost_is_relaunched_at_the_next_pass(
    run_housekeeper: Callable[[], dict[str, Any]],
    clock: Clock,
    github: FakeGitHub,
    calls: list[Any],
) -> None:
    """The pass after an end nobody reported sees it without listing every ended instance."""
    from jitrunners.aws.fleet import ALL_STATES

    runner = world.launch(
        launched_at=clock() - timedelta(minutes=8),
        job_id=56,
        command_id=world.command_id("running"),
        started_at=clock() - timedelta(minutes=7),
    )
    github.jobs[("acme/app", 56)] = FakeJob(56, "queued")
    assert run_housekeeper()["actions"] == []

    world.spot_reclaim(runner)  # the warning and the state change were lost
    clock.advance(minutes=3)
    calls.clear()
    assert run_housekeeper()["actions"] == [["relaunch", runner, "ended_before_its_job_ran"]]
    assert (ALL_STATES, ()) not in calls
    assert (ALL_STATES, (runner,)) in calls
