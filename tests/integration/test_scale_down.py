"""Scale-down: every event kind ends our runner cleanly; foreign instances are never touched."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest

from jitrunners.aws import fleet
from jitrunners.config import get_settings, load_templates
from jitrunners.lifecycle.cleanup import Context
from tests.conftest import _reset_process_caches
from tests.support import world
from tests.support.events import command_event, spot_event, state_event
from tests.support.world import Clock, FakeGitHub, FakeJob

ORG = "orgs/acme"
REPO_SCOPE = "repos/acme/app"


pytestmark = pytest.mark.usefixtures("fast_ec2")


@pytest.fixture
def call(scale_down_event: Callable[[dict[str, Any]], str]) -> Callable[[dict[str, Any]], str]:
    return scale_down_event


def _ours(clock: Clock, github: FakeGitHub, *, scope: str = ORG, **kwargs: Any) -> tuple[str, str]:
    command = kwargs.pop("command_id", world.command_id("ours"))
    instance_id = world.launch(
        launched_at=clock() - timedelta(minutes=5),
        command_id=command,
        started_at=clock() - timedelta(minutes=4),
        **kwargs,
    )
    world.put_jit_param(instance_id)
    github.register(scope, instance_id, status="offline")
    return instance_id, command


def _assert_clean(instance_id: str, github: FakeGitHub) -> None:
    assert world.state(instance_id) == "terminated"
    assert instance_id not in world.jit_params()
    assert instance_id not in github.all_runner_names()


@pytest.mark.parametrize("status", ["Failed", "TimedOut", "Cancelled"])
def test_finished_runner_command_ends_our_instance(
    call: Callable[[dict[str, Any]], str], clock: Clock, github: FakeGitHub, status: str
) -> None:
    instance_id, command = _ours(clock, github)

    outcome = call(command_event(instance_id, command, status))

    assert outcome == f"cleaned:command_{status.lower()}"
    _assert_clean(instance_id, github)


def test_a_runner_that_ran_its_job_is_ended_without_asking_github(
    call: Callable[[dict[str, Any]], str],
    clock: Clock,
    github: FakeGitHub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Success: GitHub removed the ephemeral runner after its job; the runner script only read
    its parameter. Terminating and the batch's parameter delete are all that is left."""
    from jitrunners.aws import ssm

    instance_id, command = _ours(clock, github)
    github.runners.clear()
    deletes: list[str] = []
    monkeypatch.setattr(ssm, "delete_parameter", lambda name: deletes.append(name) or False)

    with _calls("DeleteParameters", service="ssm") as batch_deletes:
        assert call(command_event(instance_id, command, "Success")) == "cleaned:command_success"
    _assert_clean(instance_id, github)
    assert (sum(github.calls.values()), deletes) == (0, [])
    assert batch_deletes == [{"Names": [world.jit_param_name(instance_id)]}]


def test_an_instance_ending_after_its_runner_did_costs_one_ssm_read(
    call: Callable[[dict[str, Any]], str],
    clock: Clock,
    github: FakeGitHub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The state change that follows a finished runner's cleanup: no job lost its runner, and
    nothing is left to delete."""
    from jitrunners.aws import ssm

    instance_id = world.launch(launched_at=clock() - timedelta(minutes=5))
    command = world.send_runner_command(instance_id)  # moto: finished with Success
    fleet.tag_instance(instance_id, {fleet.TAG_COMMAND_ID: command})
    world.terminate(instance_id)
    deletes: list[str] = []
    monkeypatch.setattr(ssm, "delete_parameter", lambda name: deletes.append(name) or False)

    assert call(state_event(instance_id, "terminated")) == "ignored:runner_ended_itself"
    assert (sum(github.calls.values()), deletes) == (0, [])


def test_state_changes_after_a_batch_ended_finished_runners_ask_ssm_nothing(
    batch: Callable[..., list[str]],
    call: Callable[[dict[str, Any]], str],
    clock: Clock,
    github: FakeGitHub,
) -> None:
    """A batch that terminates runners that ended themselves (three or more) tags them so in one
    CreateTags: the state changes that follow read the tag in their describe. A smaller batch
    leaves it to the container's memory, or else one SSM read each."""
    from jitrunners.aws.clients import client
    from jitrunners.lifecycle.teardown import scale_down

    finished = [_ours(clock, github) for _ in range(4)]
    reads: list[dict[str, Any]] = []
    events = client("ssm").meta.events
    hook = "before-parameter-build.ssm.GetCommandInvocation"

    def read(params: dict[str, Any], **_: Any) -> None:
        reads.append(params)

    events.register(hook, read)
    try:
        with _calls("CreateTags") as tagged:
            assert batch(*(command_event(i, c, "Success") for i, c in finished[:3])) == []
            assert call(command_event(*finished[3], "Success")) == "cleaned:command_success"
        assert sorted(tagged[0]["Resources"]) == sorted(i for i, _ in finished[:3])
        assert len(tagged) == 1
        assert reads == []
        for instance_id, _ in finished[:3]:
            assert call(state_event(instance_id, "terminated")) == "ignored:runner_ended_itself"
        assert reads == []
        assert call(state_event(finished[3][0], "shutting-down")) == "ignored:runner_ended_itself"
        assert reads == []  # untagged, but this container ended it and remembers why
        scale_down.reset()  # the state change reaches another container
        call(state_event(finished[3][0], "terminated"))
        assert len(reads) == 1  # untagged: asked SSM (moto's invocation for our fake id is unknown)
    finally:
        events.unregister(hook, read)


def test_a_runner_command_that_did_not_end_by_itself_leaves_no_exited_tag(
    batch: Callable[..., list[str]], clock: Clock, github: FakeGitHub
) -> None:
    """TimedOut: RunCommand ended the runner, not the runner itself; the state change asks."""
    finished = [_ours(clock, github) for _ in range(3)]
    with _calls("CreateTags") as tagged:
        assert batch(*(command_event(i, c, "TimedOut") for i, c in finished)) == []
    assert tagged == []
    assert {world.state(i) for i, _ in finished} == {"terminated"}


def test_an_instance_ended_under_a_running_runner_is_cleaned_and_checked_for_a_relaunch(
    call: Callable[[dict[str, Any]], str], clock: Clock, github: FakeGitHub
) -> None:
    instance_id, _ = _ours(clock, github)  # its command has not finished
    github.jobs[("acme/app", 100)] = FakeJob(100, "in_progress", None, instance_id)
    world.terminate(instance_id)

    assert call(state_event(instance_id, "terminated")) == "cleaned:instance_terminated"
    _assert_clean(instance_id, github)
    assert github.calls["get_job"] == 1


def test_repo_scoped_template_deletes_the_repository_registration(
    call: Callable[[dict[str, Any]], str], clock: Clock, github: FakeGitHub
) -> None:
    instance_id, command = _ours(clock, github, template="linux-arm64", scope=REPO_SCOPE)

    call(command_event(instance_id, command, "Failed"))

    _assert_clean(instance_id, github)


def test_foreign_instances_are_never_touched(
    call: Callable[[dict[str, Any]], str], clock: Clock, github: FakeGitHub, log_lines: Any
) -> None:
    foreign = world.launch(launched_at=clock(), prefix=None)
    other_prefix = world.launch(launched_at=clock(), prefix="someone-else")
    github.register(ORG, foreign, status="offline")

    for instance_id in (foreign, other_prefix):
        assert call(command_event(instance_id, "cmd-x", "Success")) == "ignored:not_ours"
        assert call(spot_event(instance_id)) == "ignored:not_ours"
        assert call(state_event(instance_id, "running")) == "ignored:not_ours"
        # A gone-state event only looks under our own parameter path, where nothing of theirs is.
        assert call(state_event(instance_id, "stopped")).startswith("not_ours_or_unknown")

    assert world.state(foreign) == world.state(other_prefix) == "running"
    assert foreign in github.all_runner_names()
    assert sum(github.calls.values()) == 0


def test_the_same_event_twice_does_no_harm(
    call: Callable[[dict[str, Any]], str], clock: Clock, github: FakeGitHub
) -> None:
    instance_id, command = _ours(clock, github)
    event = command_event(instance_id, command, "Failed")

    assert call(event) == "cleaned:command_failed"
    assert call(event) == "cleaned:command_failed"

    _assert_clean(instance_id, github)
    assert github.calls["delete_runner"] == 1


@pytest.mark.parametrize(
    "order",
    [
        ("state:terminated", "command", "spot"),
        ("spot", "state:shutting-down", "command"),
        ("command", "spot", "state:terminated"),
    ],
)
def test_events_in_any_order_end_in_the_same_clean_state(
    call: Callable[[dict[str, Any]], str], clock: Clock, github: FakeGitHub, order: tuple[str, ...]
) -> None:
    instance_id, command = _ours(clock, github)
    for item in order:
        if item == "command":
            call(command_event(instance_id, command, "Success"))
        elif item == "spot":
            call(spot_event(instance_id))
        else:
            if item == "state:terminated":
                world.terminate(instance_id)  # EC2 says so only once it is true
            call(state_event(instance_id, item.split(":")[1]))

    _assert_clean(instance_id, github)


def test_unfinished_or_unrelated_commands_leave_the_runner_alone(
    call: Callable[[dict[str, Any]], str], clock: Clock, github: FakeGitHub
) -> None:
    instance_id, command = _ours(clock, github)

    assert call(command_event(instance_id, command, "InProgress")) == "ignored:status_InProgress"
    assert call(command_event(instance_id, "cmd-operator", "Success")) == "ignored:other_command"

    assert world.state(instance_id) == "running"
    assert instance_id in world.jit_params()
    assert instance_id in github.all_runner_names()


def test_runner_command_finishing_before_its_id_was_tagged_still_ends_the_instance(
    call: Callable[[dict[str, Any]], str], clock: Clock, github: FakeGitHub
) -> None:
    instance_id = world.launch(launched_at=clock())
    github.register(ORG, instance_id, status="offline")

    assert call(command_event(instance_id, "cmd-new", "Failed")) == "cleaned:command_failed"
    assert call(
        command_event(instance_id, "cmd-x", "Success", document="AWS-RunPatchBaseline")
    ) in (
        "cleaned:command_success",  # already terminated: nothing left to do either way
        "ignored:other_command",
    )
    _assert_clean(instance_id, github)


def test_stopped_instances_of_ours_are_terminated_and_cleaned(
    call: Callable[[dict[str, Any]], str], clock: Clock, github: FakeGitHub
) -> None:
    instance_id, _ = _ours(clock, github)
    world.stop(instance_id)

    assert call(state_event(instance_id, "stopped")) == "cleaned:instance_stopped"

    _assert_clean(instance_id, github)


def test_running_state_changes_need_nothing(
    call: Callable[[dict[str, Any]], str], clock: Clock, github: FakeGitHub
) -> None:
    instance_id, _ = _ours(clock, github)
    assert call(state_event(instance_id, "running")) == "ignored:state_running"
    assert world.state(instance_id) == "running"


def test_terminated_by_hand_cleans_parameter_and_registration(
    call: Callable[[dict[str, Any]], str], clock: Clock, github: FakeGitHub
) -> None:
    instance_id, _ = _ours(clock, github)
    world.terminate(instance_id)

    assert call(state_event(instance_id, "terminated")) == "cleaned:instance_terminated"

    _assert_clean(instance_id, github)


def test_instance_ec2_has_forgotten_still_gets_its_parameter_deleted(
    call: Callable[[dict[str, Any]], str],
) -> None:
    gone = "i-0fedcba9876543210"
    world.put_jit_param(gone)

    assert call(state_event(gone, "terminated")) == "not_ours_or_unknown:parameter_checked"
    assert gone not in world.jit_params()


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"detail-type": "EC2 Command Invocation Status-change Notification", "source": "aws.ssm"},
        {**command_event("i-0123456789abcdef0", "c", "Success"), "detail": {"status": "Success"}},
        {**spot_event("i-0123456789abcdef0"), "time": None},
        {
            **state_event("i-0123456789abcdef0", "running"),
            "detail-type": "AWS API Call via CloudTrail",
        },
    ],
)
def test_malformed_events_are_logged_and_dropped(
    call: Callable[[dict[str, Any]], str], event: dict[str, Any], log_lines: Any
) -> None:
    assert call(event) == "dropped:malformed"
    [line] = [entry for entry in log_lines() if entry["message"] == "malformed event dropped"]
    assert line["level"] == "WARNING"


def test_github_failure_returns_the_record_for_a_retry_after_doing_what_it_could(
    call: Callable[[dict[str, Any]], str], clock: Clock, github: FakeGitHub
) -> None:
    instance_id, command = _ours(clock, github)
    github.failing.add("find_runner")
    event = command_event(instance_id, command, "Failed")

    assert call(event) == "retry"  # a batch item failure: the record goes back to the queue
    assert world.state(instance_id) == "terminated"
    assert instance_id not in world.jit_params()

    github.failing.clear()  # the teardown queue hands the record back after its visibility timeout
    assert call(event) == "cleaned:command_failed"
    _assert_clean(instance_id, github)


def test_log_lines_carry_correlation_keys_and_no_secret(
    call: Callable[[dict[str, Any]], str], clock: Clock, github: FakeGitHub, log_lines: Any
) -> None:
    instance_id, command = _ours(clock, github, job_id=4242)

    call(command_event(instance_id, command, "Success"))

    lines = [line for line in log_lines() if line["message"] == "instance terminated"]
    assert lines
    assert lines[0]["instance_id"] == instance_id
    assert lines[0]["job_id"] == 4242
    assert lines[0]["template"] == "linux-x64"
    assert "secret-jit-config" not in log_lines.text()


def test_metrics_report_terminations_lifetime_and_job_duration(
    call: Callable[[dict[str, Any]], str],
    clock: Clock,
    github: FakeGitHub,
    capsys: pytest.CaptureFixture[str],
) -> None:
    instance_id, command = _ours(clock, github)

    call(command_event(instance_id, command, "Success", time=clock().isoformat()))

    out = capsys.readouterr().out
    assert '"Terminations"' in out
    assert '"reason":"command_success"' in out
    assert '"InstanceLifetime"' in out
    assert '"JobDuration"' in out


# --- spot interruptions and re-runs ----------------------------------------------------------


@pytest.fixture
def reruns(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    monkeypatch.setenv("RERUN_INTERRUPTED_JOBS", "true")
    monkeypatch.setenv("MAX_RERUNS", "1")
    _reset_process_caches()


def test_spot_interruption_cleans_up_without_rerun_by_default(
    call: Callable[[dict[str, Any]], str], clock: Clock, github: FakeGitHub
) -> None:
    instance_id, _ = _ours(clock, github)

    assert call(spot_event(instance_id)) == "cleaned:spot_interruption:disabled"

    _assert_clean(instance_id, github)
    assert github.reruns == []


def test_interrupted_job_is_rerun_once_it_has_failed(
    reruns: None, call: Callable[[dict[str, Any]], str], clock: Clock, github: FakeGitHub
) -> None:
    from jitrunners.lifecycle.recovery import rerun

    instance_id, _ = _ours(clock, github, job_id=77, run_attempt=1)
    github.jobs[("acme/app", 77)] = FakeJob(77, "in_progress", None, instance_id)
    event = spot_event(instance_id, time=clock().isoformat())

    # Two minutes before the end the job has not failed yet: the re-run waits.
    assert call(event) == "cleaned:spot_interruption:wait"
    assert call(event) == "cleaned:spot_interruption:wait"  # duplicate warning
    assert github.reruns == []

    # GitHub notices the lost runner and fails the job; the next housekeeper pass re-runs it.
    github.jobs[("acme/app", 77)] = FakeJob(77, "completed", "failure", instance_id)
    clock.advance(minutes=5)
    ctx = Context.build(get_settings(), load_templates(get_settings()), github, clock)
    assert rerun.advance_all(ctx) == {"rerun": 1}
    assert rerun.advance_all(ctx) == {}
    assert call(event) in (
        "cleaned:spot_interruption:rerun",
        "cleaned:spot_interruption:already_rerun",
    )
    assert github.reruns == [("acme/app", 77)]


def test_spot_reclaim_seen_only_as_a_state_change_still_records_the_rerun(
    reruns: None, call: Callable[[dict[str, Any]], str], clock: Clock, github: FakeGitHub
) -> None:
    instance_id, _ = _ours(clock, github, job_id=81)
    github.jobs[("acme/app", 81)] = FakeJob(81, "completed", "failure", instance_id)
    world.spot_reclaim(instance_id)  # the interruption warning was lost

    assert call(state_event(instance_id, "terminated")) == "cleaned:instance_terminated"

    assert github.reruns == [("acme/app", 81)]
    _assert_clean(instance_id, github)


def test_a_rerun_github_could_not_take_is_tried_again_later(
    reruns: None, call: Callable[[dict[str, Any]], str], clock: Clock, github: FakeGitHub
) -> None:
    from jitrunners.lifecycle.recovery import rerun

    instance_id, _ = _ours(clock, github, job_id=82)
    github.jobs[("acme/app", 82)] = FakeJob(82, "completed", "failure", instance_id)
    github.failing.add("rerun_job")  # rate limited / 5xx: nothing was re-run

    assert call(spot_event(instance_id)) == "cleaned:spot_interruption:wait"
    assert github.reruns == []

    github.failing.clear()
    ctx = Context.build(get_settings(), load_templates(get_settings()), github, clock)
    assert rerun.advance_all(ctx) == {"rerun": 1}
    assert rerun.advance_all(ctx) == {}
    assert github.reruns == [("acme/app", 82)]


def test_reruns_stop_at_max_reruns_per_run(
    reruns: None, call: Callable[[dict[str, Any]], str], clock: Clock, github: FakeGitHub
) -> None:
    instance_id, _ = _ours(clock, github, job_id=78, run_attempt=2)  # already re-run once
    github.jobs[("acme/app", 78)] = FakeJob(78, "completed", "failure", instance_id)

    assert call(spot_event(instance_id)) == "cleaned:spot_interruption:max_reruns"
    assert github.reruns == []


def test_a_job_that_ran_on_another_runner_is_not_rerun(
    reruns: None, call: Callable[[dict[str, Any]], str], clock: Clock, github: FakeGitHub
) -> None:
    instance_id, _ = _ours(clock, github, job_id=79)
    github.jobs[("acme/app", 79)] = FakeJob(79, "completed", "failure", "i-0someoneelse0000")

    assert call(spot_event(instance_id)) == "cleaned:spot_interruption:ran_elsewhere"
    assert github.reruns == []


def test_pending_rerun_gives_up_after_an_hour(
    reruns: None, call: Callable[[dict[str, Any]], str], clock: Clock, github: FakeGitHub
) -> None:
    from jitrunners.lifecycle.recovery import rerun

    instance_id, _ = _ours(clock, github, job_id=80)
    github.jobs[("acme/app", 80)] = FakeJob(80, "in_progress", None, instance_id)
    call(spot_event(instance_id, time=clock().isoformat()))

    clock.advance(hours=2)
    ctx = Context.build(get_settings(), load_templates(get_settings()), github, clock)
    assert rerun.advance_all(ctx) == {"expired": 1}
    assert rerun.advance_all(ctx) == {}
    assert github.reruns == []


# --- relaunch after an involuntary end --------------------------------------------------------


def test_reclaimed_runner_whose_job_still_waits_gets_one_new_launch(
    call: Callable[[dict[str, Any]], str], clock: Clock, github: FakeGitHub, env: dict[str, str]
) -> None:
    from jitrunners.models import JobMessage
    from tests.conftest import drain

    instance_id, _ = _ours(clock, github, job_id=90, run_id=900)
    github.jobs[("acme/app", 90)] = FakeJob(90, "queued")

    call(spot_event(instance_id))
    call(spot_event(instance_id))  # duplicate warning
    world.terminate(instance_id)
    call(state_event(instance_id, "terminated"))  # and the state change that follows

    [message] = [JobMessage.from_json(m["Body"]) for m in drain(env["JOB_QUEUE_URL"])]
    assert (message.kind, message.job_id, message.run_id, message.template) == (
        "launch",
        90,
        900,
        "linux-x64",
    )
    _assert_clean(instance_id, github)


@pytest.mark.parametrize("reclaimed", [True, False], ids=["reclaimed", "ended_by_us"])
def test_a_reclaimed_runner_whose_job_another_of_ours_took_sends_the_need_on(
    call: Callable[[dict[str, Any]], str],
    clock: Clock,
    github: FakeGitHub,
    env: dict[str, str],
    reclaimed: bool,
) -> None:
    """Runner S waited for job 92, which runner R (ours) took: S carried R's own need (DESIGN
    §6b). Reclaimed before it took a job, S sends a launch of 92 that scale-up passes on to the
    job R was launched for. After our own terminate of an idle runner there is no such need."""
    from tests.conftest import drain

    spare, _ = _ours(clock, github, job_id=92)
    github.jobs[("acme/app", 92)] = FakeJob(92, "in_progress", None, "i-0123456789abcdef0")
    world.terminate(spare)
    if reclaimed:
        call(spot_event(spare))
    else:
        call(state_event(spare, "terminated"))

    sent = [json.loads(m["Body"]) for m in drain(env["JOB_QUEUE_URL"])]
    assert [(m["kind"], m["job_id"]) for m in sent] == ([("launch", 92)] if reclaimed else [])


def test_finished_runners_never_relaunch(
    call: Callable[[dict[str, Any]], str], clock: Clock, github: FakeGitHub, env: dict[str, str]
) -> None:
    from tests.conftest import drain

    instance_id, command = _ours(clock, github, job_id=91)
    github.jobs[("acme/app", 91)] = FakeJob(91, "queued")  # taken by nobody yet, but this runner
    call(command_event(instance_id, command, "Failed"))  # idled out: its own doing

    assert drain(env["JOB_QUEUE_URL"]) == []


def test_instance_with_our_tag_but_not_our_instance_profile_is_never_terminated(
    call: Callable[[dict[str, Any]], str],
    clock: Clock,
    github: FakeGitHub,
    monkeypatch: pytest.MonkeyPatch,
    log_lines: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Anyone with ec2:CreateTags can tag an instance as ours; nobody else can give it our
    instance profile without iam:PassRole on the runner role."""
    monkeypatch.setenv("RUNNER_INSTANCE_PROFILE_ARN", world.instance_profile(world.RUNNER_PROFILE))
    get_settings.cache_clear()
    ours, command = _ours(clock, github, profile=world.RUNNER_PROFILE)
    impostor, _ = _ours(clock, github, profile="someone-elses-profile")
    bare, _ = _ours(clock, github)  # our tag, no instance profile at all

    for instance_id in (impostor, bare):
        assert call(command_event(instance_id, "cmd-ours", "Success")) == "ignored:not_ours"
        assert call(state_event(instance_id, "stopped")).startswith("not_ours_or_unknown")
    call(command_event(ours, command, "Success"))

    assert world.state(impostor) == world.state(bare) == "running"
    assert world.state(ours) == "terminated"
    flagged = {x["instance_id"] for x in log_lines() if "instance profile" in x["message"]}
    assert flagged == {impostor, bare}
    assert '"ForeignTaggedInstances"' in capsys.readouterr().out
    # Terminated, ours keeps being ours for its history although EC2 ended its profile
    # association (a terminated instance shows no IamInstanceProfile): it is found, not flagged.
    assert fleet.get_instance(ours, "jitrunners", world.instance_profile(world.RUNNER_PROFILE))


# --- batches from the teardown queue -----------------------------------------------------------


@pytest.fixture
def batch(
    scale_down_event: Callable[[dict[str, Any]], str], lambda_context: Any
) -> Callable[..., list[str]]:
    """The scale-down handler on one SQS batch of events (bodies as given: a str is sent as is);
    returns the message ids of the records it handed back (`msg-<index>`)."""
    from jitrunners.handlers import scale_down
    from tests.support.events import sqs_batch

    def run(*events: Any) -> list[str]:
        response = scale_down.handler(sqs_batch(*events), lambda_context)
        return sorted(item["itemIdentifier"] for item in response["batchItemFailures"])

    return run


@contextmanager
def _calls(
    operation: str,
    respond: Callable[[dict[str, Any]], Any] = lambda params: None,
    *,
    service: str = "ec2",
) -> Iterator[list[dict[str, Any]]]:
    """The parameters of every `operation` call on the adapters' `service` client;
    `respond(params)` may answer instead of moto (a fault) by returning (http, parsed)."""
    from jitrunners.aws.clients import client

    seen: list[dict[str, Any]] = []
    events = client(service).meta.events

    def record(params: dict[str, Any], **_: Any) -> None:
        seen.append(dict(params))

    def answer(**_: Any) -> Any:
        return respond(seen[-1])

    events.register(f"before-parameter-build.{service}.{operation}", record)
    events.register(f"before-call.{service}.{operation}", answer)
    try:
        yield seen
    finally:
        events.unregister(f"before-parameter-build.{service}.{operation}", record)
        events.unregister(f"before-call.{service}.{operation}", answer)


def test_a_batch_describes_its_instances_once_and_terminates_them_in_one_call(
    batch: Callable[..., list[str]], clock: Clock, github: FakeGitHub
) -> None:
    finished = [_ours(clock, github) for _ in range(4)]
    foreign = world.launch(launched_at=clock(), prefix=None)
    events = [
        command_event(i, c, "Failed" if n % 2 else "Success") for n, (i, c) in enumerate(finished)
    ]
    events.append(command_event(foreign, world.command_id("theirs"), "Success"))
    events.append(state_event(finished[0][0], "running"))

    world.put_jit_param(foreign)
    with (
        _calls("DescribeInstances") as described,
        _calls("TerminateInstances") as terminated,
        _calls("DeleteParameters", service="ssm") as deleted,
    ):
        assert batch(*events, "not json") == []

    assert len(described) == 1
    [call] = terminated
    assert sorted(call["InstanceIds"]) == sorted(i for i, _ in finished)
    # The runners only read their parameters: the batch deletes all four in one call.
    [names] = deleted
    assert names == {"Names": sorted(world.jit_param_name(i) for i, _ in finished)}
    assert not {i for i, _ in finished} & world.jit_params()
    for instance_id, _ in finished[1::2]:
        _assert_clean(instance_id, github)
    assert world.state(foreign) == "running"
    assert foreign in world.jit_params()


def test_eleven_parameters_take_two_calls_and_a_refused_call_brings_its_events_back(
    batch: Callable[..., list[str]], clock: Clock, github: FakeGitHub
) -> None:
    """DeleteParameters takes 10 names. A call Parameter Store refuses (its throughput is
    shared by the account) fails back the events whose parameters it named; their instances end
    all the same, and the retried events delete what is left."""
    from tests.support.ec2 import error_response

    finished = [_ours(clock, github) for _ in range(11)]
    github.runners.clear()  # ephemeral runners that ran their jobs: GitHub removed them
    events = [command_event(i, c, "Success") for i, c in finished]
    names = sorted(world.jit_param_name(i) for i, _ in finished)
    throttled = error_response("ThrottlingException", 400)

    def refuse_the_second(params: dict[str, Any]) -> Any:
        return throttled if names[10] in params["Names"] else None

    with _calls("DeleteParameters", refuse_the_second, service="ssm") as deleted:
        failed = batch(*events)

    assert [call["Names"] for call in deleted] == [names[:10], names[10:]]
    last = next(n for n, (i, _) in enumerate(finished) if world.jit_param_name(i) == names[10])
    assert failed == [f"msg-{last}"]
    assert {world.state(i) for i, _ in finished} == {"terminated"}
    assert set(world.jit_params()) & {i for i, _ in finished} == {finished[last][0]}

    assert batch(events[last]) == []
    assert not {i for i, _ in finished} & world.jit_params()


def test_only_the_record_that_failed_comes_back_and_its_instance_still_ends(
    batch: Callable[..., list[str]], clock: Clock, github: FakeGitHub
) -> None:
    (ok1, c1), (bad, c2), (ok2, c3) = (_ours(clock, github) for _ in range(3))
    github.failing.add("find_runner")  # only a failed runner's cleanup asks GitHub

    events = (
        command_event(ok1, c1, "Success"),
        command_event(bad, c2, "Failed"),
        command_event(ok2, c3, "Success"),
    )
    assert batch(*events) == ["msg-1"]
    assert {world.state(i) for i in (ok1, bad, ok2)} == {"terminated"}

    github.failing.clear()  # the queue hands the record back: it redoes only what is missing
    assert batch(events[1]) == []
    _assert_clean(bad, github)


def test_records_whose_instance_could_not_be_terminated_come_back(
    batch: Callable[..., list[str]], clock: Clock, github: FakeGitHub
) -> None:
    from tests.support.ec2 import error_response

    (first, c1), (second, c2) = (_ours(clock, github) for _ in range(2))
    events = (command_event(first, c1, "Success"), command_event(second, c2, "Success"))

    with _calls("TerminateInstances", lambda params: error_response("RequestLimitExceeded", 503)):
        assert batch(*events, "{}") == ["msg-0", "msg-1"]  # the malformed record is dropped
    assert {world.state(first), world.state(second)} == {"running"}

    assert batch(*events) == []
    assert {world.state(first), world.state(second)} == {"terminated"}


def test_a_terminate_refused_for_an_instance_ended_meanwhile_is_retried_with_what_is_live(
    batch: Callable[..., list[str]], clock: Clock, github: FakeGitHub
) -> None:
    """Described at the batch's start, one instance ends before the batch's TerminateInstances:
    it no longer carries our instance profile, and our policy refuses the whole call."""
    from tests.support.ec2 import error_response

    (first, c1), (second, c2) = (_ours(clock, github) for _ in range(2))
    refusals = iter([error_response("UnauthorizedOperation", 403)])

    def refuse_once(params: dict[str, Any]) -> Any:
        world.terminate(second)  # ended by someone else meanwhile
        return next(refusals, None)

    events = (command_event(first, c1, "Success"), command_event(second, c2, "Success"))
    with _calls("TerminateInstances", refuse_once) as terminated:
        assert batch(*events) == []

    assert [sorted(call["InstanceIds"]) for call in terminated] == [
        sorted([first, second]),
        [first],
    ]
    assert {world.state(first), world.state(second)} == {"terminated"}
