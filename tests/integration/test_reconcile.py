"""Housekeeper reconciliation: GitHub's queued jobs against our booting and idle runners.

moto plays AWS in-process; the GitHub simulator plays GitHub over HTTP, read by the real client.
Webhooks go nowhere (the simulator has no webhook URL): every job is one whose delivery was lost.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import boto3
import pytest

from devstack.github_sim import ApiError, GitHubSim, SimJob
from jitrunners.config import get_settings, load_templates
from jitrunners.github.auth import AppAuth, TokenAuth
from jitrunners.github.client import GitHubClient
from jitrunners.handlers import housekeeper
from jitrunners.lifecycle.cleanup import Context
from jitrunners.models import JobMessage
from tests.conftest import TEMPLATES, _reset_process_caches, drain
from tests.support import world
from tests.support.world import Clock

X64 = ["self-hosted", "linux", "x64"]  # linux-x64: org scope, max 3 runners
ARM = ["self-hosted", "linux", "arm64"]  # linux-arm64: repository scope, max 2 runners
RUNS = "GET /repos/{repo}/actions/runs"
RUN_JOBS = "GET /repos/{repo}/actions/runs/{id}/jobs"
RUNNERS = "GET /{scope}/actions/runners"


pytestmark = pytest.mark.usefixtures("fast_ec2")


@pytest.fixture
def sim() -> Iterator[GitHubSim]:
    simulator = GitHubSim(seed=3).start()
    yield simulator
    simulator.stop()


@pytest.fixture
def allow(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Callable[..., None]:
    """Name repositories in ALLOWED_REPOS (the reconciliation reads those without instances)."""

    def allow(*repos: str) -> None:
        monkeypatch.setenv("ALLOWED_REPOS", ",".join(repos))
        _reset_process_caches()

    return allow


@pytest.fixture
def run(
    env: dict[str, str],
    sim: GitHubSim,
    clock: Clock,
    lambda_context: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[[], dict[str, Any]]:
    """Invoke the housekeeper handler with the real GitHub client on the simulator."""
    clients: list[GitHubClient] = []

    def context(*, dry_run: bool = False, waiting: bool = True) -> Context:
        settings = get_settings()
        if settings.github_app_id:
            auth: Any = AppAuth(settings.github_app_id, sim.private_key_pem)
        else:
            auth = TokenAuth(sim.pat)
        client = GitHubClient(auth, sim.url)
        clients.append(client if waiting else client.without_waiting())
        return Context.build(
            settings, load_templates(settings), clients[-1], clock, dry_run=dry_run
        )

    monkeypatch.setattr(housekeeper, "lifecycle_context", context)
    return lambda: housekeeper.handler(
        {"id": "evt-reconcile", "detail-type": "Scheduled Event"}, lambda_context
    )


def queued(
    sim: GitHubSim, clock: Clock, repo: str, labels: list[str], *, age: timedelta, **kw: Any
) -> SimJob:
    """A job GitHub queued `age` ago (on the test's clock) whose webhook never reached us."""
    job = sim.queue_job(repo, labels, **kw)
    job.created_at = (clock() - age).strftime("%Y-%m-%dT%H:%M:%SZ")
    return job


OLD = timedelta(minutes=5)


def launches(env: dict[str, str]) -> list[JobMessage]:
    return [JobMessage.from_json(m["Body"]) for m in drain(env["JOB_QUEUE_URL"])]


def reconciled(answer: dict[str, Any]) -> list[str]:
    return [target for kind, target, _ in answer["actions"] if kind == "reconcile_launch"]


def booting(clock: Clock, **kw: Any) -> str:
    """An instance launched a minute ago, not started yet: no registration on GitHub."""
    return world.launch(launched_at=clock() - timedelta(minutes=1), **kw)


def registered(sim: GitHubSim, clock: Clock, scope: str, *, busy: bool, **kw: Any) -> str:
    """A started instance whose runner is registered (online), idle or busy."""
    instance_id = world.launch(
        launched_at=clock() - timedelta(minutes=3),
        command_id=world.command_id(f"cmd-{clock()}-{busy}-{kw}"),
        started_at=clock() - timedelta(minutes=2),
        **kw,
    )
    answer = sim.generate_jitconfig(
        scope, {"name": instance_id, "labels": ["self-hosted"], "runner_group_id": 1}
    )
    runner = sim.runners[answer["runner"]["id"]]
    runner.status, runner.busy, runner.connected = "online", busy, True
    return instance_id


def roomy_templates(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test templates with room for 100 runners each: max_runners bounds nothing here."""
    roomy = [{**t, "max_runners": 100} for t in TEMPLATES]
    monkeypatch.setenv("RUNNER_TEMPLATES", json.dumps(roomy))


# --- the pass launches for what no runner covers ----------------------------------------------


def test_a_queued_job_whose_webhook_was_lost_gets_one_launch_message(
    run: Callable[[], dict[str, Any]],
    sim: GitHubSim,
    clock: Clock,
    env: dict[str, str],
    allow: Callable[..., None],
    log_lines: Any,
) -> None:
    allow("acme/app")
    job = queued(sim, clock, "acme/app", X64, age=OLD)

    answer = run()

    assert reconciled(answer) == [f"acme/app#{job.id}"]
    [message] = launches(env)
    assert (message.kind, message.job_id, message.run_id, message.run_attempt) == (
        "launch",
        job.id,
        job.run_id,
        1,
    )
    assert (message.template, message.repo, message.owner) == ("linux-x64", "acme/app", "acme")
    assert (message.attempt, message.delivery_id) == (2, f"reconcile-{job.id}")
    assert message.labels == tuple(X64)
    [line] = [x for x in log_lines() if x.get("message") == "reconciliation launch"]
    assert line["level"] == "INFO"
    assert (line["job_id"], line["repo"], line["template"], line["run_attempt"]) == (
        job.id,
        "acme/app",
        "linux-x64",
        1,
    )
    assert sim.calls[RUNS] == 2  # queued and in_progress
    assert sim.calls[RUN_JOBS] == 1

    # Scale-up launched an instance for it: it is booting now, and the job is covered.
    booting(clock, job_id=job.id, run_id=job.run_id)
    assert reconciled(run()) == []
    assert launches(env) == []


def test_repositories_are_those_of_our_instances_and_the_allowlist_only(
    run: Callable[[], dict[str, Any]], sim: GitHubSim, clock: Clock, env: dict[str, str]
) -> None:
    # An instance of acme/lib ended (EC2 lists it for about an hour): acme/lib is read.
    ended = world.launch(launched_at=clock() - timedelta(minutes=20), repo="acme/lib")
    world.terminate(ended)
    lib = queued(sim, clock, "acme/lib", X64, age=OLD)
    queued(sim, clock, "acme/unknown", X64, age=OLD)  # nothing of ours was ever there

    assert reconciled(run()) == [f"acme/lib#{lib.id}"]
    assert [m.job_id for m in launches(env)] == [lib.id]


@pytest.mark.parametrize(
    ("runner", "covers"),
    [
        ("booting", True),  # no registration yet: it will take a job
        # Launched with others, not started: no job tags yet (its start message owes its job)
        ("awaiting_start", True),
        ("idle", True),  # registered and idle: GitHub hands it a job
        ("busy", False),  # running another job
        ("finished", False),  # started, registration gone (its runner ran a job): takes nothing
    ],
)
def test_a_booting_or_idle_runner_covers_a_queued_job_a_busy_or_finished_one_does_not(
    runner: str,
    covers: bool,
    run: Callable[[], dict[str, Any]],
    sim: GitHubSim,
    clock: Clock,
    env: dict[str, str],
    allow: Callable[..., None],
) -> None:
    allow("acme/app")
    older = queued(sim, clock, "acme/app", X64, age=OLD + timedelta(seconds=1))
    newer = queued(sim, clock, "acme/app", X64, age=OLD)
    if runner == "booting":
        booting(clock)
    elif runner == "awaiting_start":
        instance_id = booting(clock)
        boto3.client("ec2").delete_tags(
            Resources=[instance_id],
            Tags=[{"Key": f"jitrunners:{k}"} for k in ("job-id", "run-id", "run-attempt", "repo")],
        )
    elif runner == "finished":
        world.launch(
            launched_at=clock() - timedelta(minutes=5),
            command_id=world.command_id("finished"),
            started_at=clock() - timedelta(minutes=4),
        )
    else:
        registered(sim, clock, "orgs/acme", busy=runner == "busy")

    answer = run()

    # Two queued jobs: one launch when the runner covers one of them (the oldest job first).
    expected = [older.id] if covers else [older.id, newer.id]
    assert sorted(m.job_id for m in launches(env)) == expected
    assert len(reconciled(answer)) == len(expected)


def test_supply_is_counted_per_template_and_per_scope(
    run: Callable[[], dict[str, Any]],
    sim: GitHubSim,
    clock: Clock,
    env: dict[str, str],
    allow: Callable[..., None],
) -> None:
    allow("acme/app", "acme/lib", "globex/app")
    # One idle org runner of acme (launched for acme/app) covers an x64 job of any acme repo...
    registered(sim, clock, "orgs/acme", busy=False)
    covered_x64 = queued(sim, clock, "acme/lib", X64, age=OLD)
    # ...but not one of another owner, nor a second acme job.
    globex_x64 = queued(sim, clock, "globex/app", X64, age=OLD + timedelta(seconds=1))
    second_x64 = queued(sim, clock, "acme/app", X64, age=OLD - timedelta(seconds=1))
    # A booting repository-scope runner of acme/app covers an arm64 job of acme/app only.
    booting(clock, template="linux-arm64", repo="acme/app")
    queued(sim, clock, "acme/app", ARM, age=OLD)
    lib_arm = queued(sim, clock, "acme/lib", ARM, age=OLD)

    answer = run()

    by_job = {m.job_id: m.template for m in launches(env)}
    assert by_job == {
        globex_x64.id: "linux-x64",
        lib_arm.id: "linux-arm64",
        # Two acme x64 jobs, one runner: one launch, for the oldest (the covered one is older).
        covered_x64.id: "linux-x64",
    }
    assert second_x64.id not in by_job
    assert len(reconciled(answer)) == 3
    # One runner listing per scope per pass, shared with the orphan-runner stage.
    assert sim.calls[RUNNERS] == 2  # orgs/acme and repos/acme/app


def test_never_for_waiting_cancelled_completed_or_running_jobs(
    run: Callable[[], dict[str, Any]],
    sim: GitHubSim,
    clock: Clock,
    env: dict[str, str],
    allow: Callable[..., None],
) -> None:
    allow("acme/app")
    for status, conclusion in (
        ("waiting", None),
        ("completed", "cancelled"),
        ("completed", "success"),
        ("in_progress", None),
    ):
        job = queued(sim, clock, "acme/app", X64, age=OLD)
        job.status, job.conclusion = status, conclusion
    # A run with one job running and one queued is `in_progress`: its queued job is found.
    running = queued(sim, clock, "acme/app", X64, age=OLD, name="a", run_id=77)
    running.status = "in_progress"
    behind = queued(sim, clock, "acme/app", X64, age=OLD, name="b", run_id=77)
    # Labels no template takes, and an empty runs-on, are not ours.
    queued(sim, clock, "acme/app", ["self-hosted", "gpu"], age=OLD)
    queued(sim, clock, "acme/app", [], age=OLD)

    answer = run()

    assert reconciled(answer) == [f"acme/app#{behind.id}"]
    assert [m.job_id for m in launches(env)] == [behind.id]


def test_a_job_younger_than_the_grace_is_left_to_its_webhook(
    run: Callable[[], dict[str, Any]],
    sim: GitHubSim,
    clock: Clock,
    env: dict[str, str],
    allow: Callable[..., None],
) -> None:
    allow("acme/app")
    job = queued(sim, clock, "acme/app", X64, age=timedelta(seconds=30))

    assert reconciled(run()) == []
    clock.advance(seconds=90)
    assert reconciled(run()) == [f"acme/app#{job.id}"]
    assert [m.job_id for m in launches(env)] == [job.id]


def test_the_grace_is_a_setting(
    run: Callable[[], dict[str, Any]],
    sim: GitHubSim,
    clock: Clock,
    allow: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    allow("acme/app")
    monkeypatch.setenv("RECONCILE_GRACE_S", "10")
    _reset_process_caches()
    job = queued(sim, clock, "acme/app", X64, age=timedelta(seconds=30))
    assert reconciled(run()) == [f"acme/app#{job.id}"]


def test_launches_per_pass_are_bounded_oldest_first(
    run: Callable[[], dict[str, Any]],
    sim: GitHubSim,
    clock: Clock,
    env: dict[str, str],
    allow: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    roomy_templates(monkeypatch)
    allow("acme/app")
    # 25 jobs in one run: two pages of jobs at 20 per page.
    sim.page_size_max = 20
    jobs = [
        queued(sim, clock, "acme/app", X64, age=OLD + timedelta(seconds=i), name=f"j{i}", run_id=9)
        for i in range(25)
    ]

    answer = run()

    oldest = sorted(jobs, key=lambda j: j.created_at)[:20]
    assert sorted(m.job_id for m in launches(env)) == sorted(j.id for j in oldest)
    assert len(reconciled(answer)) == 20
    assert sim.calls[RUN_JOBS] == 2


def test_max_runners_of_the_template_and_globally_count_every_live_instance(
    run: Callable[[], dict[str, Any]],
    sim: GitHubSim,
    clock: Clock,
    env: dict[str, str],
    allow: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    allow("acme/app")
    registered(sim, clock, "orgs/acme", busy=True)  # linux-x64 allows 3
    for i in range(4):
        queued(sim, clock, "acme/app", X64, age=OLD + timedelta(seconds=i), name=f"j{i}")
    assert len(launches_after(run, env)) == 2

    # Globally: 2 allowed, one busy x64 runner and one booting arm64 runner leave no room.
    monkeypatch.setenv("MAX_RUNNERS", "2")
    _reset_process_caches()
    booting(clock, template="linux-arm64")
    assert launches_after(run, env) == []


def launches_after(run: Callable[[], dict[str, Any]], env: dict[str, str]) -> list[JobMessage]:
    run()
    return launches(env)


def test_dry_run_reports_the_launches_and_sends_nothing(
    run: Callable[[], dict[str, Any]],
    sim: GitHubSim,
    clock: Clock,
    env: dict[str, str],
    allow: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    log_lines: Any,
) -> None:
    allow("acme/app")
    monkeypatch.setenv("DRY_RUN", "true")
    _reset_process_caches()
    job = queued(sim, clock, "acme/app", X64, age=OLD)

    answer = run()

    assert answer["dry_run"] is True
    assert answer["actions"] == [
        ["reconcile_launch", f"acme/app#{job.id}", "queued_without_runner"]
    ]
    assert launches(env) == []
    assert any(x.get("message") == "would send a reconciliation launch" for x in log_lines())


def test_one_repository_github_cannot_answer_for_does_not_stop_the_others(
    run: Callable[[], dict[str, Any]],
    sim: GitHubSim,
    clock: Clock,
    env: dict[str, str],
    allow: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    log_lines: Any,
) -> None:
    allow("acme/broken", "acme/fine")
    queued(sim, clock, "acme/broken", X64, age=OLD)
    fine = queued(sim, clock, "acme/fine", X64, age=OLD)
    faults = sim.fault_for

    def fault_for(path: str) -> ApiError | None:
        return ApiError(502, "Server Error") if "/repos/acme/broken/" in path else faults(path)

    monkeypatch.setattr(sim, "fault_for", fault_for)

    assert reconciled(run()) == [f"acme/fine#{fine.id}"]
    assert [m.job_id for m in launches(env)] == [fine.id]
    warned = [x for x in log_lines() if "cannot read the repository" in str(x.get("message"))]
    assert [x["repo"] for x in warned] == ["acme/broken"]


def test_app_mode_finds_the_installation_of_an_allowlisted_repository(
    run: Callable[[], dict[str, Any]],
    sim: GitHubSim,
    clock: Clock,
    env: dict[str, str],
    allow: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GITHUB_APP_ID", str(sim.app_id))
    allow("acme/app", "stranger/app")  # the App is installed on acme only
    job = queued(sim, clock, "acme/app", X64, age=OLD)
    queued(sim, clock, "stranger/app", X64, age=OLD)

    assert reconciled(run()) == [f"acme/app#{job.id}"]
    [message] = launches(env)
    assert message.installation_id == sim.installation_id
    assert sim.calls["GET /app/installations"] == 1
    assert sim.counters["tokens_issued"] >= 1


def test_a_relaunch_in_the_same_pass_is_not_doubled(
    run: Callable[[], dict[str, Any]], sim: GitHubSim, clock: Clock, env: dict[str, str]
) -> None:
    # A started runner ended with both events lost: the relaunch stage sends its job a launch;
    # the reconciliation counts that launch as supply on its way and launches for the other job.
    job = queued(sim, clock, "acme/app", X64, age=OLD + timedelta(seconds=1))
    other = queued(sim, clock, "acme/app", X64, age=OLD)
    ended = world.launch(
        launched_at=clock() - timedelta(minutes=8),
        job_id=job.id,
        run_id=job.run_id,
        command_id=world.command_id("reclaimed"),
        started_at=clock() - timedelta(minutes=7),
    )
    world.terminate(ended)

    answer = run()

    assert ["relaunch", ended, "ended_before_its_job_ran"] in answer["actions"]
    assert reconciled(answer) == [f"acme/app#{other.id}"]
    assert sorted(m.job_id for m in launches(env)) == [job.id, other.id]


def test_a_queued_job_with_refused_sizing_gets_no_launch_and_a_sized_one_does(
    run: Callable[[], dict[str, Any]],
    sim: GitHubSim,
    clock: Clock,
    env: dict[str, str],
    allow: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sized = {
        "name": "sized",
        "labels": ["self-hosted", "linux", "sized"],
        "launch_template": "jitrunners-sized",
        "instance_types": ["m7i.large"],
        "sizing": {"max_cpu": 8, "max_ram_gb": 32, "families": ["m7i"]},
    }
    monkeypatch.setenv("RUNNER_TEMPLATES", json.dumps([*TEMPLATES, sized]))
    allow("acme/app")
    refused = queued(sim, clock, "acme/app", ["self-hosted", "sized", "cpu=64"], age=OLD)
    fits = queued(sim, clock, "acme/app", ["self-hosted", "sized", "cpu=4"], age=OLD)

    answer = run()

    assert reconciled(answer) == [f"acme/app#{fits.id}"]
    [message] = launches(env)
    assert (message.job_id, message.template) == (fits.id, "sized")
    assert message.labels == ("self-hosted", "sized", "cpu=4")
    assert refused.id != fits.id  # the refused one, also old and queued, got nothing


def test_a_pass_lists_at_most_its_budget_of_runs_and_the_next_goes_on_round_them(
    run: Callable[[], dict[str, Any]],
    sim: GitHubSim,
    clock: Clock,
    env: dict[str, str],
    allow: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Five runs with a lost job each, two run listings a pass (`RECONCILE_RUN_LISTINGS`): each
    pass lists two runs' jobs, going on from the run after the last one listed and round again,
    so every run is read within three passes. (At 10,000 one-job runs an hour, listing every run
    in progress each pass was some 20,000 requests an hour.)"""
    roomy_templates(monkeypatch)
    monkeypatch.setenv("RECONCILE_RUN_LISTINGS", "2")
    allow("acme/app")
    jobs = {
        run_id: queued(sim, clock, "acme/app", X64, age=OLD, run_id=run_id).id
        for run_id in (11, 12, 13, 14, 15)
    }

    passes = []
    for _ in range(3):
        before = sim.calls[RUN_JOBS]
        run()
        passes.append(sorted(m.job_id for m in launches(env)))
        assert sim.calls[RUN_JOBS] - before == 2

    # The third pass goes round to the first run again: its launch is still in the queue (as
    # after any pass that runs before scale-up), and scale-up drops the copy as a duplicate.
    assert passes == [
        sorted([jobs[11], jobs[12]]),
        sorted([jobs[13], jobs[14]]),
        sorted([jobs[15], jobs[11]]),
    ]


def test_with_no_more_runs_than_its_budget_a_pass_lists_them_all(
    run: Callable[[], dict[str, Any]],
    sim: GitHubSim,
    clock: Clock,
    env: dict[str, str],
    allow: Callable[..., None],
) -> None:
    allow("acme/app")
    for run_id in (21, 22, 23):
        queued(sim, clock, "acme/app", X64, age=OLD, run_id=run_id)

    run()

    assert sim.calls[RUN_JOBS] == 3
    assert len(launches(env)) == 3
