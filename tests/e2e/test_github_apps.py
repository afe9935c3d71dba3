"""JIT configs and job checks spread over several GitHub Apps, against the simulator and its
rate limits."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from devstack.github_sim import GitHubSim, SimApp
from devstack.quotas import GitHubLimits, GitHubQuotas
from jitrunners.github.auth import AppAuth, LazyAppAuth
from jitrunners.github.client import (
    GitHubClient,
    GitHubRateLimited,
    RunnerScope,
    app_for_job,
    app_for_runner,
)
from jitrunners.github.shaping import Shaper
from jitrunners.models import runner_name

ORG = RunnerScope("org", "acme")


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _client(sim: GitHubSim, *apps: SimApp | LazyAppAuth, shaper: Shaper | None = None):
    extra = tuple(
        app if isinstance(app, LazyAppAuth) else LazyAppAuth(str(app.app_id), _key(app))
        for app in apps
    )
    auth = AppAuth(str(sim.app_id), sim.private_key_pem)
    return GitHubClient(auth, sim.url, sleep=lambda s: None, extra_apps=extra, shaper=shaper)


def _key(app: SimApp):
    return lambda: app.private_key_pem


def _name(job_id: int, instance: int = 0) -> str:
    return runner_name(f"i-{instance:08x}{job_id:09x}", job_id, 1)


def _jit(client: GitHubClient, sim: GitHubSim, job_id: int, instance: int = 0) -> None:
    name = _name(job_id, instance)
    client.without_waiting().generate_jitconfig(ORG, name, ["self-hosted"], 1, sim.installation_id)


def test_two_apps_generate_twice_the_jit_configs_a_minute_each_on_its_own_budget(
    sim: GitHubSim,
) -> None:
    clock = Clock()
    second = sim.add_app()
    # 50 points a minute per installation: 10 JIT configs (5 points each) per App and minute.
    quotas = GitHubQuotas(GitHubLimits(points_per_minute=50), clock=clock)
    sim.rate_limits = quotas
    client = _client(sim, second, shaper=Shaper(50, clock))

    for job_id in range(2000, 2020):
        _jit(client, sim, job_id)
    with pytest.raises(GitHubRateLimited) as held:
        _jit(client, sim, 2020)

    assert sim.jitconfigs_by_installation == {sim.installation_id: 10, second.installation_id: 10}
    assert quotas.refused == {}  # GitHub refused nothing: the 21st was never sent
    assert held.value.status is None
    assert held.value.retry_after_s == pytest.approx(60)
    # Each App's installation spent its own minute; each App's JWT its own budget.
    assert quotas.points_taken[str(sim.installation_id)] == 50
    assert quotas.points_taken[str(second.installation_id)] == 50
    assert quotas.admitted[f"app {sim.app_id}"] == 1  # its installation token
    assert quotas.admitted[f"app {second.app_id}"] == 2  # its installation on acme, its token
    assert sim.calls["GET /orgs/{org}/installation"] == 1  # looked up once, then cached


def test_a_job_asks_the_same_app_whichever_instance_starts_it(sim: GitHubSim) -> None:
    second, third = sim.add_app(), sim.add_app()
    client = _client(sim, second, third)
    installations = (sim.installation_id, second.installation_id, third.installation_id)
    jobs = range(3000, 3030)
    for job_id in jobs:
        _jit(client, sim, job_id)
    expected = Counter(installations[app_for_runner(_name(job), 3)] for job in jobs)
    assert sim.jitconfigs_by_installation == expected
    assert len(expected) == 3

    # The same job started again on other instances: always its own App's installation.
    job = 3007
    before = Counter(sim.jitconfigs_by_installation)
    for instance in (1, 2, 3):
        _jit(client, sim, job, instance)
    own = installations[app_for_runner(_name(job), 3)]
    assert sim.jitconfigs_by_installation - before == {own: 3}


def test_each_job_is_checked_by_its_own_app_on_that_app_s_points(sim: GitHubSim) -> None:
    clock = Clock()
    second = sim.add_app()
    quotas = GitHubQuotas(GitHubLimits(points_per_minute=10_000), clock=clock)
    sim.rate_limits = quotas
    client = _client(sim, second)
    jobs = [sim.queue_job("acme/widgets", ["self-hosted"], name=f"b{i}") for i in range(20)]
    for job in jobs:
        status = client.get_job(job.repo, job.id, sim.installation_id)
        assert status is not None
        assert (status.id, status.status) == (job.id, "queued")

    installations = (sim.installation_id, second.installation_id)
    expected = Counter(installations[app_for_job(str(job.id), 2)] for job in jobs)
    assert len(expected) == 2
    # A job check is a GET: one point of the job's App's installation.
    assert {i: quotas.points_taken[str(i)] for i in installations} == expected
    assert sim.calls["GET /repos/{repo}/installation"] == 1  # looked up once, then cached
    # The App that generates a job's runners' JIT configs is the one that checks the job.
    assert all(app_for_runner(_name(job.id), 2) == app_for_job(str(job.id), 2) for job in jobs)


def test_an_app_not_installed_on_the_org_leaves_its_jobs_to_the_primary(sim: GitHubSim) -> None:
    second = sim.add_app()
    sim.installations[second.installation_id] = "another-org"
    client = _client(sim, second)
    for job_id in range(4000, 4010):
        _jit(client, sim, job_id)
    assert sim.jitconfigs_by_installation == {sim.installation_id: 10}
    assert sim.calls["GET /orgs/{org}/installation"] == 1  # "not installed" is cached too


def test_an_app_whose_key_is_a_placeholder_is_skipped_and_read_again_later(
    sim: GitHubSim,
) -> None:
    clock = Clock()
    reads: list[str] = []

    def placeholder() -> str:
        reads.append("read")
        return "REPLACE_ME"

    app = LazyAppAuth("7", placeholder, clock=clock, retry_s=300)
    client = _client(sim, app)
    for job_id in range(5000, 5010):
        _jit(client, sim, job_id)
    assert sim.jitconfigs_by_installation == {sim.installation_id: 10}
    assert reads == ["read"]
    assert app.error == "InvalidKeyError"  # the failure's type, never the value
    assert "REPLACE" not in app.error
    clock.now += 301
    _jit(client, sim, next(j for j in range(5010, 5100) if app_for_runner(_name(j), 2) == 1))
    assert reads == ["read", "read"]
