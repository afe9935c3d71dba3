"""The reconciliation's decision over plain data: queued jobs minus booting and idle runners."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from jitrunners.config import RunnerTemplate
from jitrunners.lifecycle.recovery.reconcile import (
    ANY_SCOPE,
    LiveRunner,
    QueuedJob,
    decide,
    scope_key,
)
from jitrunners.models import WorkflowJob

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
GRACE = timedelta(seconds=120)
ORG_ACME = "org:acme"
LIMITS = {"x64": 10, "arm": 10}


def job(job_id: int, *, age_s: float = 600, template: str = "x64", scope: str = ORG_ACME,
        attempt: int = 1) -> QueuedJob:  # fmt: skip
    repo = scope.split(":", 1)[1] if scope.startswith("repo:") else "acme/app"
    created = NOW - timedelta(seconds=age_s)
    seen = WorkflowJob(
        action="queued",
        job_id=job_id,
        run_id=job_id * 10,
        run_attempt=attempt,
        labels=("self-hosted",),
        repo=repo,
        owner=repo.split("/")[0],
        private=False,
        installation_id=7,
        queued_at=created.isoformat(),
    )
    return QueuedJob(
        job=seen,
        template=template,
        scope=scope,
        created_at=created,
    )


def runner(name: str, *, supply: bool = True, template: str = "x64", scope: str = ORG_ACME,
           job: tuple[int, int | None] | None = None) -> LiveRunner:  # fmt: skip
    return LiveRunner(name, template, scope, job, supply)


def launched(queued: list[QueuedJob], live: Sequence[LiveRunner] = (), **kwargs: Any) -> list[int]:
    options: dict[str, Any] = {
        "now": NOW,
        "grace": GRACE,
        "template_max": LIMITS,
        "global_max": 100,
        **kwargs,
    }
    return [j.job_id for j in decide(queued, live, **options).chosen]


def test_a_queued_job_nobody_launched_for_gets_a_launch() -> None:
    assert launched([job(1)]) == [1]


def test_a_booting_or_idle_runner_covers_a_queued_job_and_a_busy_one_does_not() -> None:
    assert launched([job(1)], [runner("i-booting")]) == []
    assert launched([job(1)], [runner("i-busy", supply=False)]) == [1]
    assert launched([job(1), job(2)], [runner("i-idle")]) == [1]


def test_a_runner_awaiting_its_start_covers_one_job_of_its_template_in_any_scope() -> None:
    """Launched with others and not started, it names no job or scope yet: it is the supply
    of the job its start message names, one of the queued ones of its template."""
    waiting = runner("i-awaiting", scope=ANY_SCOPE)
    assert launched([job(1, scope="org:globex")], [waiting]) == []
    assert launched([job(1), job(2, scope="org:globex")], [waiting]) == [2]
    assert launched([job(1, template="arm")], [waiting]) == [1]


def test_runners_cover_jobs_of_their_own_template_only() -> None:
    assert launched([job(1, template="arm")], [runner("i-x64")]) == [1]


def test_org_runners_pool_per_owner_and_repo_runners_per_repository() -> None:
    org_elsewhere = runner("i-1", scope="org:acme")
    assert launched([job(1, scope="org:acme")], [org_elsewhere]) == []
    assert launched([job(1, scope="org:globex")], [org_elsewhere]) == [1]
    repo_runner = runner("i-2", scope="repo:acme/app")
    assert launched([job(2, scope="repo:acme/app")], [repo_runner]) == []
    assert launched([job(3, scope="repo:acme/lib")], [repo_runner]) == [3]


def test_scope_key_follows_the_template_scope_case_insensitively() -> None:
    org = RunnerTemplate("x64", ("self-hosted",), "lt", ("m7i.large",), scope="org")
    repo = RunnerTemplate("arm", ("self-hosted",), "lt", ("m7g.large",), scope="repo")
    assert scope_key(org, "Acme/App") == scope_key(org, "acme/lib") == "org:acme"
    assert scope_key(repo, "Acme/App") == "repo:acme/app" != scope_key(repo, "acme/lib")


def test_young_jobs_count_as_demand_but_are_left_to_the_webhook() -> None:
    young, old = job(1, age_s=30), job(2, age_s=600)
    assert launched([young]) == []
    # Two queued, no runner: only the old one is launched for; the young one's launch is the
    # webhook's (and it would take the old job's runner if that came first: fungible).
    assert launched([young, old]) == [2]
    # A runner booting for the young job does not hide the old job's need.
    assert launched([young, old], [runner("i-young", job=(1, 1))]) == [2]
    assert launched([job(3, age_s=120)]) == [3]  # grace is inclusive of its end


def test_a_job_a_live_instance_names_is_never_chosen_scale_up_would_drop_it() -> None:
    # i-1 was launched for job 1 and runs another job: job 1 needs a runner, but scale-up drops
    # a launch for a job a live instance names (duplicate check).
    busy = runner("i-1", supply=False, job=(1, 1))
    decision = decide([job(1)], [busy], now=NOW, grace=GRACE, template_max=LIMITS, global_max=9)
    assert decision.chosen == []
    assert decision.skipped["named_by_live_instance"] == 1
    assert decision.deficits == {("x64", ORG_ACME): 1}
    # Another queued job of the pool gets the launch instead; any runner takes the oldest.
    assert launched([job(1), job(2)], [busy]) == [2]
    # A re-run's new attempt is not the attempt the instance names.
    assert launched([job(1, attempt=2)], [busy]) == [1]


def test_oldest_first_and_at_most_the_deficit_per_template_and_scope() -> None:
    queued = [job(i, age_s=1000 - i) for i in range(1, 6)]  # job 1 oldest
    assert launched(queued, [runner("i-a"), runner("i-b")]) == [1, 2, 3]


def test_launches_per_pass_are_bounded_oldest_first_across_groups() -> None:
    queued = [job(i, age_s=1000 - i, template="x64" if i % 2 else "arm") for i in range(1, 30)]
    assert launched(queued, per_pass=4) == [1, 2, 3, 4]
    assert len(launched(queued)) == 20  # the default bound


def test_template_and_global_max_runners_count_every_live_instance() -> None:
    queued = [job(i, age_s=1000 - i) for i in range(1, 6)]
    busy = [runner(f"i-{n}", supply=False) for n in range(3)]
    assert launched(queued, busy, template_max={"x64": 5}) == [1, 2]
    foreign_template = [runner(f"i-gone-{n}", template="removed", scope="") for n in range(4)]
    assert launched(queued, busy + foreign_template, global_max=8) == [1]
    decision = decide(queued, busy, now=NOW, grace=GRACE, template_max={"x64": 3}, global_max=9)
    assert (decision.chosen, decision.skipped["max_runners"]) == ([], 5)


def test_a_launch_already_sent_this_pass_counts_as_supply_and_is_not_repeated() -> None:
    assert launched([job(1)], launching={(1, 1)}) == []
    assert launched([job(1), job(2)], launching={(1, 1)}) == [2]
    assert launched([job(1), job(2)], [runner("i-idle")], launching={(1, 1)}) == []


def test_a_job_listed_twice_is_one_job() -> None:
    assert launched([job(1), job(1)], [runner("i-1")]) == []


jobs_st = st.lists(
    st.builds(
        job,
        st.integers(1, 40),
        age_s=st.floats(0, 900),
        template=st.sampled_from(["x64", "arm"]),
        scope=st.sampled_from(["org:acme", "org:globex", "repo:acme/app"]),
    ),
    max_size=40,
)
runners_st = st.lists(
    st.builds(
        runner,
        st.text("abc", min_size=1, max_size=3),
        supply=st.booleans(),
        template=st.sampled_from(["x64", "arm", "removed"]),
        scope=st.sampled_from(["org:acme", "org:globex", "repo:acme/app"]),
        job=st.none() | st.tuples(st.integers(1, 40), st.just(1)),
    ),
    max_size=15,
)


@settings(max_examples=200, deadline=None)
@given(jobs_st, runners_st, st.integers(0, 12), st.integers(0, 25), st.integers(0, 25))
def test_never_more_than_the_deficit_the_bounds_or_an_ineligible_job(
    queued: list[QueuedJob], live: list[LiveRunner], per_pass: int, tmax: int, gmax: int
) -> None:
    limits = {"x64": tmax, "arm": tmax}
    decision = decide(
        queued, live, now=NOW, grace=GRACE, template_max=limits, global_max=gmax, per_pass=per_pass
    )
    chosen = decision.chosen
    assert len(chosen) <= per_pass
    assert len({j.job_id for j in chosen}) == len(chosen)
    assert len(live) + len(chosen) <= max(gmax, len(live))
    per_template = Counter(r.template for r in live) + Counter(j.template for j in chosen)
    for template in {j.template for j in chosen}:
        assert per_template[template] <= limits[template]
    named = {r.job for r in live}
    first: dict[int, QueuedJob] = {}
    for j in queued:
        first.setdefault(j.job_id, j)
    for j in chosen:
        assert NOW - j.created_at >= GRACE
        assert (j.job_id, j.run_attempt) not in named
    demand = Counter((j.template, j.scope) for j in first.values())
    supply = Counter((r.template, r.scope) for r in live if r.supply)
    for key, n in Counter((j.template, j.scope) for j in chosen).items():
        assert n <= demand[key] - supply[key]
