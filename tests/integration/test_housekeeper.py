"""Housekeeper: from a seeded mix of healthy and broken resources, exactly the broken go."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.conftest import _reset_process_caches
from tests.support import world
from tests.support.world import Clock, FakeDelivery, FakeGitHub

ORG = "orgs/acme"


pytestmark = pytest.mark.usefixtures("fast_ec2")


@pytest.fixture
def app_mode(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_APP_ID", "12345")
    _reset_process_caches()


@pytest.fixture
def run(run_housekeeper: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    return run_housekeeper


@dataclass
class Mix:
    healthy: list[str] = field(default_factory=list)
    bad: dict[str, str] = field(default_factory=dict)  # instance id -> expected reason
    foreign: list[str] = field(default_factory=list)
    orphan_params: list[str] = field(default_factory=list)
    orphan_runners: list[str] = field(default_factory=list)
    kept_runners: list[str] = field(default_factory=list)


def seed(clock: Clock, github: FakeGitHub) -> Mix:
    """Healthy, stuck, expired, finished-but-missed, stopped, foreign and orphaned resources."""
    mix = Mix()
    # moto stamps parameters with the wall clock: run the injected clock ahead of it, so that
    # parameters written now are past their grace period at the sweep.
    clock.advance(minutes=10)
    now = clock()
    ago = lambda **d: now - timedelta(**d)  # noqa: E731

    # Healthy: a runner at work (its command unknown to SSM = still running), and a fresh launch.
    busy = world.launch(
        launched_at=ago(minutes=30),
        command_id=world.command_id("running"),
        started_at=ago(minutes=29),
    )
    github.register(ORG, busy, status="online", busy=True)
    fresh = world.launch(launched_at=ago(minutes=3))
    world.put_jit_param(fresh)
    mix.healthy += [busy, fresh]
    mix.kept_runners.append(busy)

    # Stuck: launched 20 minutes ago and never started (start timeout 600 s + grace).
    stuck = world.launch(launched_at=ago(minutes=20))
    world.put_jit_param(stuck)
    github.register(ORG, stuck, status="offline")
    mix.bad[stuck] = "start_timeout"
    # Expired: past the template's max lifetime, command still "running".
    expired = world.launch(
        launched_at=ago(hours=25), command_id=world.command_id("forever"), started_at=ago(hours=25)
    )
    mix.bad[expired] = "max_lifetime"
    # Finished, but scale-down never heard of it.
    finished = world.launch(launched_at=ago(minutes=40))
    command = world.send_runner_command(finished)
    world._backend_instance(finished).add_tag("jitrunners:command-id", command)
    github.register(ORG, finished, status="offline")
    mix.bad[finished] = "command_success_missed"
    # Stopped (by hand, or a spot stop).
    stopped = world.launch(
        launched_at=ago(minutes=10), command_id=world.command_id("s"), started_at=ago(minutes=9)
    )
    world.stop(stopped)
    mix.bad[stopped] = "stopped"

    # Foreign: old, never started, no prefix tag (and one of another deployment's prefix).
    mix.foreign.append(world.launch(launched_at=ago(days=3), prefix=None))
    mix.foreign.append(world.launch(launched_at=ago(days=3), prefix="other"))
    github.register(ORG, mix.foreign[0], status="offline")  # named like an instance, not ours
    mix.kept_runners.append(mix.foreign[0])

    # Orphans: a parameter and a registration whose instance is gone.
    gone = world.launch(
        launched_at=ago(hours=1), command_id=world.command_id("g"), started_at=ago(minutes=59)
    )
    world.terminate(gone)
    github.register(ORG, gone, status="offline")
    mix.orphan_runners.append(gone)
    mix.orphan_params.append(world.put_jit_param("i-0aaaaaaaaaaaaaaa1"))
    mix.orphan_params.append(world.put_jit_param(gone))
    return mix


def test_exactly_the_bad_resources_are_removed_and_a_second_run_does_nothing(
    run: Callable[[], dict[str, Any]], clock: Clock, github: FakeGitHub, log_lines: Any
) -> None:
    mix = seed(clock, github)

    answer = run()

    terminated = {
        target: reason for kind, target, reason in answer["actions"] if kind == "terminate"
    }
    assert terminated == mix.bad
    assert answer["zombies"] == len(mix.bad)
    for instance_id in mix.bad:
        assert world.state(instance_id) == "terminated"
        assert instance_id not in github.all_runner_names()
    for instance_id in mix.healthy + mix.foreign:
        assert world.state(instance_id) == "running"
    assert world.jit_params() == {mix.healthy[1]}  # the fresh launch keeps its parameter
    assert github.all_runner_names() == set(mix.kept_runners)
    # Every action is logged with its reason.
    for kind, target, reason in answer["actions"]:
        assert any(
            line.get("reason") == reason and target.endswith(str(line.get("instance_id", "-")))
            for line in log_lines()
        ), (kind, target)

    second = run()
    assert second["actions"] == []
    assert second["zombies"] == 0


def test_dry_run_reports_everything_and_changes_nothing(
    run: Callable[[], dict[str, Any]],
    clock: Clock,
    github: FakeGitHub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mix = seed(clock, github)
    monkeypatch.setenv("DRY_RUN", "true")
    _reset_process_caches()
    runners_before = github.all_runner_names()
    params_before = world.jit_params()

    answer = run()

    assert answer["dry_run"] is True
    terminated = {
        target: reason for kind, target, reason in answer["actions"] if kind == "terminate"
    }
    assert terminated == mix.bad
    assert any(kind == "delete_parameter" for kind, _, _ in answer["actions"])
    assert any(kind == "delete_runner" for kind, _, _ in answer["actions"])
    for instance_id in mix.bad:
        assert world.state(instance_id) in ("running", "stopped")
    assert github.all_runner_names() == runners_before
    assert world.jit_params() == params_before
    assert github.calls["delete_runner"] == 0


def test_start_timeout_gives_scale_up_its_grace(
    run: Callable[[], dict[str, Any]], clock: Clock
) -> None:
    # 600 s start timeout + 2 min grace: at 11 minutes scale-up may still be retrying the start.
    young = world.launch(launched_at=clock() - timedelta(minutes=11))
    assert run()["actions"] == []
    clock.advance(minutes=2)
    assert run()["actions"] == [["terminate", young, "start_timeout"]]


def test_unknown_template_falls_back_to_default_limits(
    run: Callable[[], dict[str, Any]], clock: Clock
) -> None:
    removed = world.launch(template="gone-template", launched_at=clock() - timedelta(minutes=30))
    assert run()["actions"] == [["terminate", removed, "start_timeout"]]


def test_hundreds_of_instances_and_parameters_are_swept_through_pagination(
    run: Callable[[], dict[str, Any]], clock: Clock
) -> None:
    stuck = world.launch_many(120, launched_at=clock() - timedelta(hours=1))
    for index in range(130):
        world.put_jit_param(f"i-0{index:016x}")
    clock.advance(minutes=10)

    answer = run()

    kinds = [kind for kind, _, _ in answer["actions"]]
    assert kinds.count("terminate") == 120
    assert kinds.count("delete_parameter") == 130
    assert world.live_ours() == set()
    assert world.jit_params() == set()
    assert len(stuck) == 120


def test_a_parameter_whose_instance_ec2_lists_as_ended_goes_at_once_in_batches_of_ten(
    run: Callable[[], dict[str, Any]], clock: Clock
) -> None:
    """Both of an instance's end events lost (a spot reclaim): its runner read its parameter and
    left it to scale-down, which never heard. EC2 lists the instance as terminated, so the pass
    deletes the parameter however new; one of an instance EC2 does not list (yet) waits."""
    from jitrunners.aws.clients import client

    ended = []
    for _ in range(11):
        instance_id = world.launch(
            launched_at=clock() - timedelta(minutes=3),
            command_id=world.command_id("reclaimed"),
            started_at=clock() - timedelta(minutes=2),
        )
        world.put_jit_param(instance_id)
        world.terminate(instance_id)
        ended.append(instance_id)
    unlisted = "i-0bbbbbbbbbbbbbbb1"
    world.put_jit_param(unlisted)
    calls: list[list[str]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        calls.append(list(params["Names"]))

    events = client("ssm").meta.events
    events.register("before-parameter-build.ssm.DeleteParameters", record)
    try:
        answer = run()
    finally:
        events.unregister("before-parameter-build.ssm.DeleteParameters", record)

    deleted = [target for kind, target, _ in answer["actions"] if kind == "delete_parameter"]
    assert sorted(deleted) == sorted(world.jit_param_name(i) for i in ended)
    assert [len(names) for names in calls] == [10, 1]
    assert world.jit_params() == {unlisted}
    clock.advance(minutes=10)
    run()
    assert world.jit_params() == set()


# --- failed webhook deliveries (GitHub App mode) ---------------------------------------------


def _delivery(clock: Clock, id_: int, guid: str, code: int, **kwargs: Any) -> FakeDelivery:
    defaults: dict[str, Any] = {"event": "workflow_job", "action": "queued", "redelivery": False}
    age = kwargs.pop("age", timedelta(hours=1))
    return FakeDelivery(
        id_, guid, status_code=code, delivered_at=clock() - age, **{**defaults, **kwargs}
    )


def test_failed_workflow_job_deliveries_are_redelivered_once(
    app_mode: None, run: Callable[[], dict[str, Any]], clock: Clock, github: FakeGitHub
) -> None:
    github.deliveries = [
        _delivery(clock, 1, "lost", 502),
        _delivery(clock, 2, "lost-twice", 0),
        _delivery(clock, 3, "lost-twice", 503, redelivery=True, age=timedelta(minutes=30)),
        _delivery(clock, 4, "recovered", 500),
        _delivery(clock, 5, "recovered", 202, redelivery=True),
        _delivery(clock, 6, "fine", 202),
        _delivery(clock, 7, "push", 500, event="push"),
        _delivery(clock, 8, "completed", 500, action="completed"),
        _delivery(clock, 9, "too-old", 500, age=timedelta(days=4)),
    ]

    first = run()

    assert sorted(github.redelivered) == [1, 3]
    assert sorted(t for k, t, _ in first["actions"] if k == "redeliver") == ["lost", "lost-twice"]

    # Until GitHub has made the attempt we asked for, we never ask again.
    assert run()["actions"] == []
    assert sorted(github.redelivered) == [1, 3]


@pytest.mark.parametrize("hours_apart", [0, 1])
def test_a_redelivery_that_failed_too_is_asked_for_again_up_to_a_cap(
    app_mode: None,
    run: Callable[[], dict[str, Any]],
    clock: Clock,
    github: FakeGitHub,
    hours_apart: int,
) -> None:
    """Attempts at once (each pass lists them all), or an hour apart (each pass lists only the
    newest: the marker's count keeps the cap)."""
    from jitrunners.lifecycle.recovery.sweep import MAX_DELIVERY_ATTEMPTS

    github.deliveries = [_delivery(clock, 1, "refused", 502)]
    run()
    for attempt in range(2, 10):
        clock.advance(hours=hours_apart)
        # GitHub made the attempt we asked for, and our endpoint failed it again.
        github.deliveries.append(
            _delivery(clock, attempt, "refused", 500, redelivery=True, age=timedelta(0))
        )
        run()
        run()  # a second pass before GitHub's next attempt asks for nothing
    assert github.redelivered == list(range(1, MAX_DELIVERY_ATTEMPTS))


def listing_starts(github: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> list[datetime]:
    """Where each pass's listing of deliveries starts (its `since`)."""
    starts: list[datetime] = []
    real = github.list_deliveries

    def listing(since: datetime) -> Any:
        starts.append(since)
        return real(since)

    monkeypatch.setattr(github, "list_deliveries", listing)
    return starts


def test_a_pass_lists_deliveries_from_where_the_last_one_stopped(
    app_mode: None,
    run: Callable[[], dict[str, Any]],
    clock: Clock,
    github: FakeGitHub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first pass lists the whole redelivery window; the next ones from the newest delivery
    the last one saw, less the overlap (at 10,000 jobs an hour the window is ~20,000 pages)."""
    from jitrunners.lifecycle.recovery.sweep import LISTING_OVERLAP, REDELIVERY_WINDOW

    starts = listing_starts(github, monkeypatch)
    t0 = clock()
    github.deliveries = [
        _delivery(clock, 1, "fine", 202, age=timedelta(hours=2)),
        _delivery(clock, 2, "fine-too", 202, age=timedelta(minutes=30)),
    ]
    run()
    clock.advance(minutes=10)
    github.deliveries.append(_delivery(clock, 3, "lost", 502, age=timedelta(minutes=1)))
    run()
    clock.advance(minutes=10)
    run()  # nothing new: the same start

    assert starts == [
        t0 - REDELIVERY_WINDOW,
        t0 - timedelta(minutes=30) - LISTING_OVERLAP,
        t0 + timedelta(minutes=9) - LISTING_OVERLAP,
    ]
    assert github.redelivered == [3]


def test_a_delivery_given_back_is_listed_again_however_far_newer_ones_reach(
    app_mode: None,
    run: Callable[[], dict[str, Any]],
    clock: Clock,
    github: FakeGitHub,
) -> None:
    """GitHub could not take the request for a delivery two hours old while newer ones were
    listed too: the mark stops before it, so the next pass still sees it and asks."""
    github.deliveries = [
        _delivery(clock, 1, "lost", 502, age=timedelta(hours=2)),
        _delivery(clock, 2, "fine", 202, age=timedelta(0)),
    ]
    github.failing.add("redeliver")
    run()
    github.failing.clear()
    clock.advance(hours=1)
    github.deliveries.append(_delivery(clock, 3, "fine-too", 202, age=timedelta(0)))
    run()
    assert github.redelivered == [1]


def test_a_redelivery_github_could_not_take_is_asked_for_at_the_next_run(
    app_mode: None, run: Callable[[], dict[str, Any]], clock: Clock, github: FakeGitHub
) -> None:
    github.deliveries = [_delivery(clock, 1, "lost", 502)]
    github.failing.add("redeliver")
    run()
    assert (github.redelivered, github.calls["redeliver"]) == ([], 1)

    github.failing.clear()
    run()
    run()
    assert github.redelivered == [1]


def test_with_reruns_on_failed_completed_deliveries_are_redelivered_too(
    app_mode: None,
    run: Callable[[], dict[str, Any]],
    clock: Clock,
    github: FakeGitHub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Only a job's `completed` webhook names the job a reclaimed runner lost.
    monkeypatch.setenv("RERUN_INTERRUPTED_JOBS", "true")
    _reset_process_caches()
    github.deliveries = [
        _delivery(clock, 1, "completed", 500, action="completed"),
        _delivery(clock, 2, "in-progress", 500, action="in_progress"),
    ]
    run()
    assert github.redelivered == [1]


@pytest.mark.parametrize("held_by", ["runtime record", "terraform"])
def test_failed_deliveries_wait_while_the_kill_switch_holds_the_webhook(
    app_mode: None,
    run: Callable[[], dict[str, Any]],
    clock: Clock,
    github: FakeGitHub,
    held_by: str,
) -> None:
    """A redelivery asked for while the webhook refuses everything fails too, and each delivery
    is asked for once: the failed ones wait until the switch is lifted."""
    import boto3

    from jitrunners import guardrail

    ssm = boto3.client("ssm")
    setting = guardrail.terraform_setting_name("jitrunners")
    record = guardrail.record_name("jitrunners", guardrail.KILL_SWITCH)
    held = json.dumps({"kill_switch": held_by == "terraform", "reserved_concurrency": {}})
    ssm.put_parameter(Name=setting, Value=held, Type="String")
    if held_by == "runtime record":
        ssm.put_parameter(Name=record, Value="{}", Type="String")
    github.deliveries = [_delivery(clock, 1, "refused", 500)]

    assert run()["actions"] == []
    assert github.redelivered == []
    assert github.calls["list_deliveries"] == 0

    # Lifted: the next sweep asks for it.
    if held_by == "runtime record":
        ssm.delete_parameter(Name=record)
    released = json.dumps({"kill_switch": False, "reserved_concurrency": {}})
    ssm.put_parameter(Name=setting, Value=released, Type="String", Overwrite=True)
    run()
    assert github.redelivered == [1]


def test_token_mode_does_not_list_deliveries(
    run: Callable[[], dict[str, Any]], github: FakeGitHub, clock: Clock
) -> None:
    github.deliveries = [_delivery(clock, 1, "lost", 502)]
    run()
    assert github.calls["list_deliveries"] == 0
    assert github.redelivered == []


def test_dry_run_does_not_redeliver(
    app_mode: None,
    run: Callable[[], dict[str, Any]],
    clock: Clock,
    github: FakeGitHub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DRY_RUN", "true")
    _reset_process_caches()
    github.deliveries = [_delivery(clock, 1, "lost", 502)]

    assert run()["actions"] == [["redeliver", "lost", "delivery_failed"]]
    assert github.redelivered == []


def test_runner_that_never_started_is_left_to_scale_up_to_relaunch(
    run: Callable[[], dict[str, Any]], clock: Clock, github: FakeGitHub, env: dict[str, str]
) -> None:
    from tests.conftest import drain
    from tests.support.world import FakeJob

    # Scale-up's start step relaunches (and caps attempts of) instances that never came online;
    # a second relaunch from the housekeeper would get around that cap.
    stuck = world.launch(launched_at=clock() - timedelta(minutes=30), job_id=55)
    github.jobs[("acme/app", 55)] = FakeJob(55, "queued")

    assert run()["actions"] == [["terminate", stuck, "start_timeout"]]
    assert run()["actions"] == []
    assert drain(env["JOB_QUEUE_URL"]) == []


def test_started_runner_ended_with_both_events_lost_is_relaunched_once(
    run: Callable[[], dict[str, Any]], clock: Clock, github: FakeGitHub, env: dict[str, str]
) -> None:
    from jitrunners.models import JobMessage
    from tests.conftest import drain
    from tests.support.world import FakeJob

    reclaimed = world.launch(
        launched_at=clock() - timedelta(minutes=8),
        job_id=56,
        command_id=world.command_id("reclaimed"),
        started_at=clock() - timedelta(minutes=7),
    )
    world.terminate(reclaimed)  # spot took it; the warning and the state change were lost
    github.jobs[("acme/app", 56)] = FakeJob(56, "queued")

    assert run()["actions"] == [["relaunch", reclaimed, "ended_before_its_job_ran"]]
    assert run()["actions"] == []
    [message] = [JobMessage.from_json(m["Body"]) for m in drain(env["JOB_QUEUE_URL"])]
    assert (message.kind, message.job_id) == ("launch", 56)


def test_an_ended_runner_that_exited_by_itself_costs_one_ssm_read_per_container(
    run: Callable[[], dict[str, Any]], clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EC2 lists a terminated instance for about an hour. One whose runner ended by itself (and
    whose batch wrote no runner-exited tag: a small batch) is read once, not at every pass."""
    from jitrunners.aws import ssm

    done = world.launch(
        launched_at=clock() - timedelta(minutes=8),
        job_id=58,
        command_id=world.command_id("done"),
        started_at=clock() - timedelta(minutes=7),
    )
    world.terminate(done)
    reads: list[str] = []

    def status(command_id: str, instance_id: str) -> str:
        reads.append(instance_id)
        return "Success"

    monkeypatch.setattr(ssm, "get_command_status", status)
    for _ in range(3):
        assert run()["actions"] == []
    assert reads == [done]
    _reset_process_caches()  # a cold container
    assert run()["actions"] == []
    assert reads == [done, done]


def test_spot_reclaim_with_both_events_lost_is_rerun_once_the_job_failed(
    run: Callable[[], dict[str, Any]],
    clock: Clock,
    github: FakeGitHub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.support.world import FakeJob

    monkeypatch.setenv("RERUN_INTERRUPTED_JOBS", "true")
    _reset_process_caches()
    reclaimed = world.launch(
        launched_at=clock() - timedelta(minutes=8),
        job_id=57,
        command_id=world.command_id("mid-job"),
        started_at=clock() - timedelta(minutes=7),
    )
    by_hand = world.launch(
        launched_at=clock() - timedelta(minutes=8),
        job_id=58,
        command_id=world.command_id("by-hand"),
        started_at=clock() - timedelta(minutes=7),
    )
    world.spot_reclaim(reclaimed)  # the warning and the state change were both lost
    world.terminate(by_hand)  # not a spot reclaim: a failed job there is the job's own doing
    github.jobs[("acme/app", 57)] = FakeJob(57, "in_progress", None, reclaimed)
    github.jobs[("acme/app", 58)] = FakeJob(58, "completed", "failure", by_hand)

    reason = "Server.SpotInstanceTermination"
    assert ["record_interruption", reclaimed, reason] in run()["actions"]
    assert github.reruns == []  # GitHub has not noticed the lost runner yet

    github.jobs[("acme/app", 57)] = FakeJob(57, "completed", "failure", reclaimed)
    clock.advance(minutes=5)
    assert run()["actions"] == []
    assert github.reruns == [("acme/app", 57)]
    run()
    assert github.reruns == [("acme/app", 57)]


def test_a_reclaim_recorded_before_its_swap_was_booked_is_recorded_for_the_job_it_killed(
    run: Callable[[], dict[str, Any]],
    clock: Clock,
    github: FakeGitHub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The warning came first (recorded for job 59, the job the runner was launched for), then
    the `in_progress` of job 60 booked the swap on the still-running instance, and the state
    change was lost: the job tags now name the job the reclaim killed."""
    from jitrunners.aws import fleet, markers
    from jitrunners.lifecycle.recovery import rerun
    from tests.support.world import FakeJob

    monkeypatch.setenv("RERUN_INTERRUPTED_JOBS", "true")
    _reset_process_caches()
    reclaimed = world.launch(
        launched_at=clock() - timedelta(minutes=8),
        job_id=59,
        command_id=world.command_id("swapped"),
        started_at=clock() - timedelta(minutes=7),
    )
    markers.claim(f"{rerun.recorded_path('jitrunners')}/{reclaimed}", "59", "jitrunners")
    fleet.tag_instance(reclaimed, {"jitrunners:job-id": "60"})
    world.spot_reclaim(reclaimed)
    github.jobs[("acme/app", 60)] = FakeJob(60, "completed", "failure", reclaimed)

    reason = "Server.SpotInstanceTermination"
    assert ["record_interruption", reclaimed, reason] in run()["actions"]
    assert github.reruns == [("acme/app", 60)]
    assert run()["actions"] == []
    assert github.reruns == [("acme/app", 60)]


def test_one_unreadable_command_status_does_not_stop_the_sweep(
    run: Callable[[], dict[str, Any]], clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import ClientError

    from jitrunners.aws import ssm

    throttled = world.launch(
        launched_at=clock() - timedelta(minutes=30), command_id=world.command_id("t")
    )
    stuck = world.launch(launched_at=clock() - timedelta(minutes=30))

    def status(command_id: str, instance_id: str) -> str | None:
        raise ClientError({"Error": {"Code": "ThrottlingException"}}, "GetCommandInvocation")

    monkeypatch.setattr(ssm, "get_command_status", status)

    assert run()["actions"] == [["terminate", stuck, "start_timeout"]]
    assert world.state(throttled) == "running"


def test_runner_registration_still_busy_or_online_is_kept_after_its_instance_is_gone(
    run: Callable[[], dict[str, Any]], clock: Clock, github: FakeGitHub
) -> None:
    """GitHub's view lags EC2's: a runner it still reports running a job (or online) is not an
    orphan yet, even though its instance has ended. Deleting it would fail its job."""
    ago = clock() - timedelta(minutes=30)
    busy, online, idle = (
        world.launch(launched_at=ago, job_id=job, command_id=world.command_id(f"c{job}"))
        for job in (71, 72, 73)
    )
    github.register(ORG, busy, status="offline", busy=True)
    github.register(ORG, online, status="online")
    github.register(ORG, idle, status="offline")
    for instance_id in (busy, online, idle):
        world.terminate(instance_id)

    actions = run()["actions"]

    assert actions == [["delete_runner", f"{ORG}/{idle}", "instance_gone"]]
    assert github.all_runner_names() == {busy, online}
    assert github.calls["delete_runner"] == 1


def test_runners_github_lists_online_cost_no_command_status(
    run: Callable[[], dict[str, Any]], clock: Clock, github: FakeGitHub
) -> None:
    """A pass asks SSM only about runners GitHub does not list online: busy runners cost no
    GetCommandInvocation. One whose command ended while GitHub still lists it online (its
    process just exited) is judged on the pass after GitHub marks it offline."""
    from jitrunners.aws.clients import client

    clock.advance(minutes=10)
    now = clock()
    busy = [
        world.launch(
            launched_at=now - timedelta(minutes=30),
            command_id=world.command_id(f"running-{n}"),
            started_at=now - timedelta(minutes=29),
        )
        for n in range(3)
    ]
    for instance_id in busy:
        github.register(ORG, instance_id, status="online", busy=True)
    finished = world.launch(launched_at=now - timedelta(minutes=40))
    world._backend_instance(finished).add_tag(
        "jitrunners:command-id", world.send_runner_command(finished)
    )
    runner = github.register(ORG, finished, status="online")
    asked: list[str] = []
    client("ssm").meta.events.register(
        "provide-client-params.ssm.GetCommandInvocation",
        lambda params, **_: asked.append(params["InstanceId"]),
    )

    assert run()["zombies"] == 0
    assert asked == []
    runner.status = "offline"
    answer = run()
    assert [(t, r) for k, t, r in answer["actions"] if k == "terminate"] == [
        (finished, "command_success_missed")
    ]
    assert asked == [finished]


def test_ended_runners_a_scale_down_batch_marked_exited_cost_no_command_status(
    run: Callable[[], dict[str, Any]], clock: Clock, github: FakeGitHub
) -> None:
    """EC2 lists a terminated instance for about an hour: each pass read the command of every one
    of them to tell a runner that ended itself from one whose instance died first. The mark a
    scale-down batch writes before its terminate (jitrunners:runner-exited) answers that."""
    from jitrunners.aws.clients import client

    clock.advance(minutes=10)
    now = clock()
    marked, unmarked = (
        world.launch(
            launched_at=now - timedelta(minutes=30),
            command_id=world.command_id(f"done-{n}"),
            started_at=now - timedelta(minutes=29),
        )
        for n in range(2)
    )
    world._backend_instance(marked).add_tag("jitrunners:runner-exited", "true")
    for instance_id in (marked, unmarked):
        world.terminate(instance_id)
    asked: list[str] = []
    client("ssm").meta.events.register(
        "provide-client-params.ssm.GetCommandInvocation",
        lambda params, **_: asked.append(params["InstanceId"]),
    )

    run()
    assert asked == [unmarked]


def test_a_throttled_parameter_listing_ends_that_stage_not_the_pass(
    run: Callable[[], dict[str, Any]],
    clock: Clock,
    github: FakeGitHub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SSM's shared bucket drained (a burst's runners deleting their parameters): the orphan
    parameter sweep's listing is throttled. The pass goes on (zombies, orphan registrations)
    and the parameters go at the next one. In a 1,000-job burst every pass raised here, so no
    later stage ever ran and 23 JIT configs stayed."""
    from botocore.exceptions import ClientError

    from jitrunners.aws import ssm

    mix = seed(clock, github)
    listing = ssm.list_jit_parameters

    def throttled(prefix: str) -> Any:
        raise ClientError({"Error": {"Code": "ThrottlingException"}}, "DescribeParameters")

    monkeypatch.setattr(ssm, "list_jit_parameters", throttled)
    answer = run()

    terminated = {t: r for kind, t, r in answer["actions"] if kind == "terminate"}
    assert terminated == mix.bad
    assert not any(kind == "delete_parameter" for kind, _, _ in answer["actions"])
    assert mix.orphan_runners[0] not in github.all_runner_names()
    assert {p.rsplit("/", 1)[-1] for p in mix.orphan_params} <= world.jit_params()

    monkeypatch.setattr(ssm, "list_jit_parameters", listing)
    run()
    assert world.jit_params() == {mix.healthy[1]}
