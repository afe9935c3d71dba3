"""The whole pipeline under job-level chaos: users cancel, approve late and re-run; runners take
jobs they were not launched for; instances boot around their start timeout.

Every run uses short template timeouts, so that a runner that idles out or an instance given up at
its start timeout costs seconds. The invariants: every job not cancelled completes, every runner
that took no job ended within its bound, nothing is left, no template over its `max_runners`, and
the per-job record names the runner that ran each job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devstack.agent import AGENT_UNIT_ENV
from devstack.faults import FAULTS, JOB_FAULTS
from devstack.stack import Options, Stack
from tests.support.waits import PATIENCE_S

pytestmark = pytest.mark.e2e

START_TIMEOUT_S = 10
IDLE_TIMEOUT_S = 4
HOUSEKEEPER_EVERY_S = 3.0


def run(tmp_path: Path, **kwargs: Any) -> tuple[Stack, dict[str, Any]]:
    settings: dict[str, Any] = {
        "job_seconds": 0.5,
        "redrive_every_s": 2.0,
        "housekeeper_every_s": HOUSEKEEPER_EVERY_S,
        "visibility_timeout_s": 2,
        "max_receive_count": 6,
        "workdir": tmp_path,
        "timeout_s": PATIENCE_S,  # a hang guard: a run takes 10-40 s on an idle machine
        "template_overrides": {
            "start_timeout_s": START_TIMEOUT_S,
            "idle_timeout_s": IDLE_TIMEOUT_S,
        },
    }
    options = Options(**{**settings, **kwargs})
    stack = Stack(options, out=(tmp_path / "progress.txt").open("w"))
    try:
        stack.start()
        summary = stack.run_demo()
    finally:
        stack.stop()
    return stack, summary


def ended_in_time(stack: Stack, record: Any) -> bool:
    """An instance whose runner took no job ends by itself (the runner idles out and exits;
    scale-down ends it on the event) or at a housekeeper pass after its deadline. The deadline
    runs from the runner's start: its idle timeout, then the grace its script gives the runner
    to stop (JITRUNNERS_STOP_GRACE_S). A runner never started is due at the start timeout. A
    start may come after the start timeout (the agent came online late, or the start message
    waited out GitHub errors) and still be right: the runner is ready, and the housekeeper only
    reaps an instance never started after the start timeout and its grace. Judged by the order
    of events, not by a wall-clock bound, so a busy machine, on which every step comes later,
    does not fail it: it is seen ended before the third pass that started after the deadline.
    One pass of leeway: when the exit's event was lost, the pass after ends it."""
    found = next(t for t in stack.world.tf_templates if t["name"] == record.template)
    stop_grace = float(AGENT_UNIT_ENV["JITRUNNERS_STOP_GRACE_S"])
    due_start = record.launched_at + found["start_timeout_s"]
    started = max(due_start, record.runner_started_at or 0.0)
    deadline = started + found["idle_timeout_s"] + stop_grace
    later = [start for start, _ in stack.functions["housekeeper"].runs if start >= deadline]
    if len(later) < 3:
        return True  # the run ended first; that it was terminated is asserted apart
    return bool(record.terminated_at <= later[2])


def assert_chaos_clean(stack: Stack, summary: dict[str, Any]) -> None:
    lines = stack.progress.lines
    outcomes = {key: stack.sim.job_outcome(key, a) for key, a in stack.sim.logical_jobs().items()}
    assert set(outcomes.values()) <= {"success", "cancelled"}, (outcomes, lines)
    assert summary["completed"] + summary["cancelled"] == summary["jobs"], lines
    for key in ("instances_left", "jit_params_left", "runners_left", "queue_left", "dlq_left"):
        assert summary[key] == 0, (key, lines)
    limits = {t["name"]: t["max_runners"] for t in stack.world.tf_templates}
    for template, peak in stack.max_per_template.items():
        assert peak <= limits[template], (template, peak)
    assert stack.iam_denials() == [], "a request the module's own policies deny"
    text = stack.logged_text() + stack.commands_text()
    for secret in stack.sim.issued_secrets:
        if secret != stack.sim.webhook_secret:
            assert secret not in text

    instances = {r.instance_id: r for r in stack.instance_records()}
    for record in instances.values():
        assert record.terminated_at is not None, (record, lines)
        if not record.took_job:
            assert ended_in_time(stack, record), (record, lines)
    # The record names the runner of every attempt that ran, one of ours, one attempt each.
    records = stack.job_records()
    for job in records:
        if job.conclusion == "success":
            assert job.runner in instances, (job, lines)
            assert (job.job_id, job.run_attempt) in instances[job.runner].jobs_run
        if job.runner is not None:
            assert len(instances[job.runner].jobs_run) == 1, (job, instances[job.runner])
    ran = sum(1 for job in records if job.runner in instances)
    assert summary["extra_instances"] == summary["instances_launched"] - ran
    assert summary["swaps"] == sum(1 for job in records if job.swap)


EVIDENCE = {
    "cancel": lambda s: s.cancelled(),
    "approval": lambda s: s.sim.counters["jobs_approved"],
    "rerun": lambda s: s.sim.counters["user_reruns"],
    "steal": lambda s: s.sim.counters["steals"],
    "slow-boot": lambda s: (
        s.agent.counters["slow_boot_before"] + s.agent.counters["slow_boot_after"]
    ),
}


@pytest.mark.parametrize("fault", JOB_FAULTS)
def test_each_job_fault_alone_leaves_every_job_done_and_nothing_behind(
    tmp_path: Path, fault: str
) -> None:
    fraction = {"steal": 0.5, "slow-boot": 0.6}.get(fault, 1.0)
    stack, summary = run(tmp_path, jobs=4, seed=21, faults={fault: fraction})
    assert_chaos_clean(stack, summary)
    assert EVIDENCE[fault](stack) > 0, f"{fault} was never injected"


def test_cancels_at_every_stage_complete_as_cancelled(tmp_path: Path) -> None:
    stack, summary = run(tmp_path, jobs=6, seed=3, faults={"cancel": 1.0})
    assert_chaos_clean(stack, summary)
    assert summary["cancelled"] == 6
    stages = {stack.sim.plans[key].cancel for key in stack.sim.logical_jobs()}
    assert stages == {"queued", "booting", "running"}
    ran = [job for job in stack.job_records() if job.runner is not None]
    assert ran, "no job was cancelled while running"
    assert all(job.conclusion == "cancelled" for job in ran)


def test_slow_approvals_outlast_the_first_runner_and_still_run(tmp_path: Path) -> None:
    stack, summary = run(tmp_path, jobs=4, seed=21, faults={"approval": 1.0})
    assert_chaos_clean(stack, summary)
    assert stack.sim.counters["approvals_long"] > 0
    assert stack.sim.counters["approvals_short"] > 0
    assert summary["completed"] == 4


def test_reruns_run_the_next_attempt_under_the_same_job_id(tmp_path: Path) -> None:
    stack, summary = run(tmp_path, jobs=3, seed=21, faults={"rerun": 1.0})
    assert_chaos_clean(stack, summary)
    for attempts in stack.sim.logical_jobs().values():
        assert [a.run_attempt for a in attempts] == [1, 2]
        assert len({a.id for a in attempts}) == 1
        assert len({a.runner_name for a in attempts}) == 2  # two ephemeral runners


def test_stolen_runners_leave_no_job_without_a_runner(tmp_path: Path) -> None:
    stack, summary = run(tmp_path, jobs=6, seed=5, faults={"steal": 0.5})
    assert_chaos_clean(stack, summary)
    assert summary["completed"] == 6
    assert summary["swaps"] >= stack.sim.counters["steals"] > 0


def test_every_fault_at_once(tmp_path: Path) -> None:
    faults = dict.fromkeys(FAULTS, 0.2)
    faults.update({"cancel": 0.3, "approval": 0.3, "rerun": 0.3, "steal": 0.3})
    stack, summary = run(tmp_path, jobs=6, seed=31, faults=faults)
    assert_chaos_clean(stack, summary)


def test_a_job_only_its_own_runner_could_run_gets_another_when_that_runner_is_stolen(
    tmp_path: Path,
) -> None:
    """DESIGN 6b: an arm64 job A and a `self-hosted,linux` job B in one repository. A's arm64
    runner comes up first and is handed B (`steal`); B's own x64 runner, a few seconds later,
    cannot run A. A needs a launch of its own (swap bookkeeping on B's `in_progress`, or the
    housekeeper's reconciliation)."""
    options = Options(
        jobs=2,
        seed=41,
        faults={"steal": 1.0},
        job_seconds=0.5,
        redrive_every_s=2.0,
        housekeeper_every_s=HOUSEKEEPER_EVERY_S,
        visibility_timeout_s=2,
        max_receive_count=6,
        workdir=tmp_path,
        timeout_s=90,  # a stranded job fails the test in a minute and a half, not at PATIENCE_S
        template_overrides={"start_timeout_s": START_TIMEOUT_S, "idle_timeout_s": IDLE_TIMEOUT_S},
    )
    stack = Stack(options, out=(tmp_path / "progress.txt").open("w"))
    arm64 = next(t for t in stack.world.tf_templates if t["name"] == "linux-arm64")

    def queue_jobs() -> list[Any]:
        return [
            stack.sim.queue_job("acme/widgets", arm64["labels"], name="arm64-only"),
            stack.sim.queue_job("acme/widgets", ["self-hosted", "linux"], name="any-linux"),
        ]

    try:
        stack.start()
        assert stack.agent is not None
        # x64 agents come online 3 s late: the arm64 runner polls first, with both jobs queued.
        stack.agent.slow_boot = 1.0
        stack.agent._draw_slow_boot = lambda iid: (  # type: ignore[method-assign]
            3.0 if stack.seen_instances.get(iid, {}).get("template") == "linux-x64" else 0.0
        )
        stack.queue_jobs = queue_jobs  # type: ignore[method-assign]
        summary = stack.run_demo()
    finally:
        stack.stop()
    assert stack.sim.counters["steals"] == 1, stack.progress.lines
    assert_chaos_clean(stack, summary)
    assert summary["completed"] == 2
    arm64_job = next(r for r in stack.job_records() if r.name == "arm64-only")
    assert arm64_job.runner is not None
    assert stack.seen_instances[arm64_job.runner]["template"] == "linux-arm64"
