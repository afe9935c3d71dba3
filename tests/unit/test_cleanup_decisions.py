"""Pure decisions of the sweeping Lambdas: scopes, when an instance must end, redrive, re-runs."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jitrunners.config import Settings, parse_templates
from jitrunners.lifecycle.cleanup import Context, runner_scopes
from jitrunners.lifecycle.recovery.redrive import RedriveDeps, decide
from jitrunners.lifecycle.recovery.rerun import PendingRerun, _verdict
from jitrunners.lifecycle.recovery.sweep import why_end
from jitrunners.models import JobMessage
from tests.conftest import TEMPLATES
from tests.support.world import FakeGitHub, FakeJob

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@dataclass
class Inst:
    id: str = "i-0123456789abcdef0"
    state: str = "running"
    template: str | None = "linux-x64"
    job_id: int | None = 1
    run_attempt: int | None = 1
    repo: str | None = "acme/app"
    installation_id: int | None = 7
    launch_time: datetime | None = NOW
    command_id: str | None = None
    started_at: str | None = None
    lifecycle: str = "spot"
    tags: dict[str, str] = field(default_factory=dict)


def _ctx(**settings: Any) -> Context:
    return Context.build(
        replace(Settings(), **settings), parse_templates(TEMPLATES), FakeGitHub(), lambda: NOW
    )


@pytest.mark.parametrize(
    ("template", "paths"),
    [
        ("linux-x64", ["orgs/acme"]),
        ("linux-arm64", ["repos/acme/app"]),
        ("removed-template", ["orgs/acme", "repos/acme/app"]),
    ],
)
def test_registration_scope_follows_template_and_repo_tag(template: str, paths: list[str]) -> None:
    scopes = runner_scopes(Inst(template=template), _ctx().templates)
    assert [s.path for s in scopes] == paths


@pytest.mark.parametrize("repo", [None, "", "noslash", "a/b/c"])
def test_no_scope_without_a_well_formed_repo_tag(repo: str | None) -> None:
    assert runner_scopes(Inst(repo=repo), _ctx().templates) == []


@pytest.mark.parametrize(
    ("instance", "reason"),
    [
        (Inst(launch_time=NOW - timedelta(minutes=5)), None),
        (Inst(launch_time=NOW - timedelta(minutes=12, seconds=1)), "start_timeout"),
        (Inst(launch_time=NOW - timedelta(hours=24, minutes=6)), "max_lifetime"),
        (Inst(state="stopped"), "stopped"),
        (Inst(state="stopping"), "stopped"),
        # The arm64 template has default limits too; an unknown template falls back to them.
        (Inst(template="nope", launch_time=NOW - timedelta(minutes=13)), "start_timeout"),
    ],
)
def test_when_an_instance_must_end(instance: Inst, reason: str | None) -> None:
    assert why_end(instance, NOW, _ctx()) == reason


@pytest.mark.parametrize(
    ("ended", "reason"),
    [
        (NOW - timedelta(seconds=30), None),  # its status event is still on its way
        (NOW - timedelta(seconds=119), None),
        (NOW - timedelta(minutes=2, seconds=1), "command_success_missed"),
        (None, "command_success_missed"),  # no readable end time: the backstop acts
    ],
)
def test_a_finished_runner_is_left_to_scale_down_for_the_teardown_grace(
    ended: datetime | None, reason: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jitrunners.aws import ssm

    asked: list[tuple[str, str]] = []

    def invocation(command_id: str, instance_id: str) -> ssm.CommandInvocation:
        asked.append((command_id, instance_id))
        return ssm.CommandInvocation("Success", ended)

    monkeypatch.setattr(ssm, "get_command_invocation", invocation)
    instance = Inst(launch_time=NOW - timedelta(minutes=30), command_id="c-1")
    assert why_end(instance, NOW, _ctx()) == reason
    assert asked == [("c-1", instance.id)]
    assert why_end(instance, NOW, _ctx(teardown_grace_s=0)) == "command_success_missed"


def _message(**changes: Any) -> JobMessage:
    base = JobMessage(
        kind="launch",
        job_id=1,
        run_id=2,
        run_attempt=1,
        repo="acme/app",
        owner="acme",
        installation_id=7,
        labels=("self-hosted",),
        template="linux-x64",
        delivery_id="d",
        queued_at=(NOW - timedelta(hours=1)).isoformat(),
    )
    return replace(base, **changes)


@pytest.mark.parametrize(
    ("message", "status", "verdict"),
    [
        (_message(), "queued", "move"),
        (_message(), "in_progress", "drop:job_in_progress"),
        (_message(), None, "drop:job_not_found"),
        (_message(redrives=3), "queued", "hold:max_redrives"),
        (
            _message(queued_at=(NOW - timedelta(hours=25)).isoformat()),
            "queued",
            "drop:older_than_24h",
        ),
        (_message(queued_at="not a time"), "queued", "move"),
        (_message().start_for("i-0123456789abcdef0"), None, "move"),
    ],
)
def test_redrive_verdicts(message: JobMessage, status: str | None, verdict: str) -> None:
    deps = RedriveDeps(job_status=lambda _m: status, clock=lambda: NOW, remaining_ms=lambda: 0)
    assert decide(message, Settings(max_redrives=3), deps) == verdict


def test_max_redrives_zero_never_redrives() -> None:
    deps = RedriveDeps(job_status=lambda _m: "queued", clock=lambda: NOW, remaining_ms=lambda: 0)
    assert decide(_message(), Settings(max_redrives=0), deps) == "hold:max_redrives"


PENDING = PendingRerun("acme/app", 1, 2, 1, 7, "i-0123456789abcdef0", NOW.isoformat())


@pytest.mark.parametrize(
    ("job", "pending", "verdict"),
    [
        (None, PENDING, "gone"),
        (FakeJob(1, "in_progress", None, PENDING.instance_id), PENDING, "wait:in_progress"),
        (FakeJob(1, "completed", "failure", PENDING.instance_id), PENDING, "rerun"),
        (FakeJob(1, "completed", "success", PENDING.instance_id), PENDING, "not_failed:success"),
        (FakeJob(1, "completed", "failure", "i-0other"), PENDING, "ran_elsewhere"),
        (FakeJob(1, "completed", "cancelled", None), PENDING, "not_run_here"),
        (
            FakeJob(1, "completed", "failure", PENDING.instance_id),
            replace(PENDING, run_attempt=2),
            "max_reruns",
        ),
        (
            FakeJob(1, "in_progress", None, PENDING.instance_id),
            replace(PENDING, interrupted_at=(NOW - timedelta(hours=2)).isoformat()),
            "expired",
        ),
    ],
)
def test_rerun_verdicts(job: FakeJob | None, pending: PendingRerun, verdict: str) -> None:
    assert _verdict(job, pending, _ctx(max_reruns=1)) == verdict


def test_a_runner_github_lists_online_is_not_asked_about(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its process runs: no GetCommandInvocation (each pass asked SSM about every runner). The
    limits that need no command status still apply."""
    from jitrunners.aws import ssm

    asked: list[str] = []

    def invocation(command_id: str, instance_id: str) -> ssm.CommandInvocation:
        asked.append(instance_id)
        return ssm.CommandInvocation("Success", None)

    monkeypatch.setattr(ssm, "get_command_invocation", invocation)
    instance = Inst(launch_time=NOW - timedelta(minutes=30), command_id="c-1")
    assert why_end(instance, NOW, _ctx(), online=True) is None
    assert asked == []
    assert (
        why_end(instance, NOW, _ctx(teardown_grace_s=0), online=False) == "command_success_missed"
    )
    assert asked == [instance.id]
    old = replace(instance, launch_time=NOW - timedelta(days=2))
    assert why_end(old, NOW, _ctx(), online=True) == "max_lifetime"


@pytest.mark.parametrize(
    ("started_at", "asks"),
    [
        ("2026-11-22T11:59:00Z", False),  # sent 60 s ago: it cannot have ended a grace ago
        ("2026-11-22T11:58:11Z", False),  # 109 s: still inside the grace less the margin
        ("2026-11-22T11:58:10Z", True),  # 110 s: SSM's clock may be ahead: ask
        ("2026-11-22T11:50:00Z", True),
        (None, True),  # no tag (an instance started before the tag existed): ask
        ("yesterday", True),
    ],
)
def test_a_runner_whose_command_was_sent_inside_the_grace_is_not_asked_about(
    started_at: str | None, asks: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not listed online (booting, registering) but its command sent less than the teardown
    grace ago: even an ended command would be left to scale-down, so SSM is not asked."""
    from jitrunners.aws import ssm

    asked: list[str] = []

    def invocation(command_id: str, instance_id: str) -> ssm.CommandInvocation:
        asked.append(instance_id)
        return ssm.CommandInvocation("Failed", NOW - timedelta(minutes=5))

    monkeypatch.setattr(ssm, "get_command_invocation", invocation)
    instance = Inst(
        launch_time=NOW - timedelta(minutes=30), command_id="c-1", started_at=started_at
    )
    assert why_end(instance, NOW, _ctx()) == ("command_failed_missed" if asks else None)
    assert asked == ([instance.id] if asks else [])
