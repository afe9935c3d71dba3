"""Reconciliation: launch for the jobs GitHub still has queued that no runner of ours will take.

Runners are fungible (DESIGN §3b, §6b): GitHub hands a queued job to any idle runner whose labels
match, so launching one runner per `queued` webhook can leave a job without one (a lost delivery,
the runner launched for job A ran job B, a cancelled job's runner took another). This pass counts,
per template and scope, the jobs GitHub has queued against our booting and idle runners and sends
a `launch` for the difference. Scale-up admits those launches like any other (allowlist, duplicate,
still-queued, max-runners checks), so a launch sent in vain costs a message, never an instance.

`decide` is the decision, a pure function over plain data; `reconcile` reads GitHub and acts.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Final

from jitrunners import sizing
from jitrunners.aws import queue
from jitrunners.aws.fleet import LIVE_STATES
from jitrunners.config import RunnerTemplate
from jitrunners.lifecycle.cleanup import Context, runner_scopes
from jitrunners.lifecycle.provisioning.tags import awaiting_start
from jitrunners.models import JobMessage, WorkflowJob, runner_instance
from jitrunners.observability import count, logger
from jitrunners.routing import allowlist_refusal, match_template, refusal

# Launches one pass may send, whatever the deficit: a pass that misjudges (GitHub's view lagging,
# a bug) can cost at most this many instances every housekeeper period.
MAX_LAUNCHES_PER_PASS: Final = 20
# Run statuses whose jobs may be queued: a run with one job running and others queued is
# `in_progress`. (`waiting` runs wait for an approval; `pending` ones for a concurrency group.)
RUN_STATUSES: Final = ("queued", "in_progress")
REASON: Final = "queued_without_runner"
# The scope of a runner awaiting its start (tags.awaiting_start): it names no job or repository
# yet, and will take a queued job of its template in whatever scope its start message names.
ANY_SCOPE: Final = "*"

# Where each repository's run listings resume in this container (the last run id listed), when
# a pass could not list every run of it (Settings.reconcile_run_listings): the next goes on from
# there, round the runs, so each is read within a few passes.
_RESUME: dict[str, int] = {}


def reset() -> None:
    """Forget where the run listings stopped (a new process, for tests)."""
    _RESUME.clear()


# (runner scope path, e.g. "orgs/acme") -> our instance ids registered there -> busy; None when
# the listing failed.
Registrations = Mapping[str, Mapping[str, bool] | None]


@dataclass(frozen=True, slots=True)
class QueuedJob:
    """A job GitHub has `queued`, routed to one of our templates."""

    job: WorkflowJob
    template: str
    scope: str  # scope_key(): where runners that can take it are pooled
    created_at: datetime

    @property
    def job_id(self) -> int:
        return self.job.job_id

    @property
    def run_attempt(self) -> int:
        return self.job.run_attempt

    @property
    def repo(self) -> str:
        return self.job.repo


@dataclass(frozen=True, slots=True)
class LiveRunner:
    """One of our live (pending or running) instances."""

    instance_id: str
    template: str
    scope: str  # scope_key(); ANY_SCOPE awaiting its start; "" when otherwise unknown
    job: tuple[int, int | None] | None  # (job id, run attempt) its tags name
    supply: bool  # booting or idle: it will take a queued job; busy ones will not


@dataclass
class Decision:
    chosen: list[QueuedJob] = field(default_factory=list)
    # (template, scope) -> queued jobs minus supply, where positive.
    deficits: dict[tuple[str, str], int] = field(default_factory=dict)
    skipped: Counter[str] = field(default_factory=Counter)


def scope_key(template: RunnerTemplate, repo: str) -> str:
    """Where runners that can take a job of `repo` are pooled: org runners take any job of their
    owner's repositories (their runner group admitting), repository runners only their own."""
    if template.scope == "org":
        return f"org:{repo.split('/', maxsplit=1)[0].casefold()}"
    return f"repo:{repo.casefold()}"


def decide(
    queued: Iterable[QueuedJob],
    live: Iterable[LiveRunner],
    *,
    now: datetime,
    grace: timedelta,
    template_max: Mapping[str, int],
    global_max: int,
    per_pass: int = MAX_LAUNCHES_PER_PASS,
    launching: Collection[tuple[int, int]] = (),
) -> Decision:
    """Which queued jobs get a launch: per (template, scope), as many as queued jobs outnumber
    the runners that will take one (supply), oldest first, within the bounds.

    A job counts as demand however young, but only one queued for `grace` or longer is launched
    for: the webhook's own launch for a young one may still be on its way. A job that one of our
    live instances names (its job tags) is never chosen: scale-up would drop that launch as a
    duplicate. Such a job waits for another's launch (any runner of the pool takes the oldest
    matching job) or until that instance ends. `launching` names jobs (id, run attempt) a launch
    was sent for already (this pass's relaunches): each is supply on its way, and named.
    A runner awaiting its start (scope ANY_SCOPE) is supply for its template's first deficit
    (the job its start names is queued in one of them): the pass launches too little rather
    than too much, and the next one sees the job tags that start writes.
    """
    decision = Decision()
    runners = list(live)
    supply = Counter((r.template, r.scope) for r in runners if r.supply)
    unplaced = Counter(r.template for r in runners if r.supply and r.scope == ANY_SCOPE)
    named: set[tuple[int, int | None]] = {r.job for r in runners if r.job is not None}
    per_template = Counter(r.template for r in runners)
    total = len(runners)

    unique: dict[int, QueuedJob] = {}
    for job in queued:
        unique.setdefault(job.job_id, job)  # listed twice (a run changed status between lists)
    groups: dict[tuple[str, str], dict[int, QueuedJob]] = defaultdict(dict)
    for job in unique.values():
        groups[(job.template, job.scope)][job.job_id] = job
    on_the_way = set(launching)
    for key, jobs in groups.items():
        for job in jobs.values():
            if (job.job_id, job.run_attempt) in on_the_way:
                supply[key] += 1
                named.add((job.job_id, job.run_attempt))

    candidates: list[QueuedJob] = []
    for key, jobs in sorted(groups.items()):
        deficit = len(jobs) - supply[key]
        placed = min(max(0, deficit), unplaced[key[0]])
        unplaced[key[0]] -= placed
        deficit -= placed
        if deficit <= 0:
            continue
        decision.deficits[key] = deficit
        eligible: list[QueuedJob] = []
        for job in jobs.values():
            if (job.job_id, job.run_attempt) in named:
                decision.skipped["named_by_live_instance"] += 1
            elif now - job.created_at < grace:
                decision.skipped["too_young"] += 1
            else:
                eligible.append(job)
        eligible.sort(key=_age_order)
        candidates += eligible[:deficit]

    for job in sorted(candidates, key=_age_order):
        limit = template_max.get(job.template, 0)
        if len(decision.chosen) >= per_pass:
            decision.skipped["pass_limit"] += 1
        elif per_template[job.template] >= limit or total >= global_max:
            decision.skipped["max_runners"] += 1
        else:
            decision.chosen.append(job)
            per_template[job.template] += 1
            total += 1
    return decision


def _age_order(job: QueuedJob) -> tuple[datetime, int]:
    return (job.created_at, job.job_id)


# --- reading the world ------------------------------------------------------------------------


def live_runners(
    ctx: Context, instances: Iterable[Any], live: set[str], registrations: Registrations
) -> list[LiveRunner]:
    """Our live instances as supply: no registration and not started yet (booting), or an idle
    registration. Where the runner listing failed, an instance counts as supply (the pass then
    launches too little rather than too much; the next pass sees better)."""
    found: list[LiveRunner] = []
    for instance in instances:
        if instance.id not in live or instance.state not in LIVE_STATES:
            continue
        template = ctx.templates.get(str(instance.template or ""))
        repo = str(instance.repo or "")
        scopes = runner_scopes(instance, ctx.templates) if template else []
        job = (instance.job_id, instance.run_attempt) if instance.job_id is not None else None
        if template is not None and awaiting_start(instance):
            found.append(LiveRunner(instance.id, template.name, ANY_SCOPE, None, True))
            continue
        if template is None or not scopes:
            found.append(LiveRunner(instance.id, str(instance.template or "-"), "", job, False))
            continue
        listed = registrations.get(scopes[0].path)
        if listed is None:
            supply = True
        elif instance.id in listed:
            supply = not listed[instance.id]
        else:
            # Started and no registration: its runner ran a job and GitHub removed it, or the
            # registration is gone; either way it takes nothing more.
            supply = not instance.command_id
        found.append(LiveRunner(instance.id, template.name, scope_key(template, repo), job, supply))
    return found


def repositories(ctx: Context, instances: Iterable[Any]) -> dict[str, tuple[str, int | None]]:
    """Repositories to ask about (casefolded name -> (name, installation id)): those our
    instances were launched for (EC2 lists terminated ones for about an hour, so: those with
    jobs lately), and every one ALLOWED_REPOS names. Repositories the allowlist refuses are
    left out: nothing would be launched for them."""
    found: dict[str, tuple[str, int | None]] = {}
    for instance in instances:
        repo = str(instance.repo or "")
        if repo.count("/") != 1:
            continue
        known = found.get(repo.casefold())
        installation_id = instance.installation_id or (known[1] if known else None)
        found[repo.casefold()] = (known[0] if known else repo, installation_id)
    for repo in ctx.settings.allowed_repos:
        if repo.count("/") == 1:
            found.setdefault(repo.casefold(), (repo, None))
    return {
        key: value
        for key, value in sorted(found.items())
        if not allowlist_refusal(key.split("/", maxsplit=1)[0], key, ctx.settings)
    }


def _installations(
    ctx: Context, repos: dict[str, tuple[str, int | None]]
) -> dict[str, tuple[str, int | None]]:
    """App mode: an installation id for every repository (one `GET /app/installations` when a
    repository only the allowlist names has none from an instance's tags)."""
    from jitrunners.github.client import GitHubError

    if ctx.settings.github_auth_mode != "app" or all(i for _, i in repos.values()):
        return repos
    try:
        by_owner = {i.account.casefold(): i.id for i in ctx.github.list_installations()}
    except GitHubError as exc:
        logger.warning("cannot list the App's installations", extra={"status": exc.status})
        by_owner = {}
    resolved: dict[str, tuple[str, int | None]] = {}
    for key, (repo, known) in repos.items():
        installation_id = known or by_owner.get(key.split("/", maxsplit=1)[0])
        if installation_id is None:
            logger.warning("no App installation for the repository", extra={"repo": repo})
            continue
        resolved[key] = (repo, installation_id)
    return resolved


def queued_jobs(
    ctx: Context,
    repos: Mapping[str, tuple[str, int | None]],
    skipped: Counter[str],
    time_left: Callable[[], bool] = lambda: True,
    running: list[WorkflowJob] | None = None,
) -> list[QueuedJob]:
    """The `queued` jobs of these repositories that one of our templates takes, routed as the
    webhook routes them. A repository GitHub cannot answer for is left out (logged), the others
    are still read; a rate limit ends the reading (every further call would meet it too)."""
    from jitrunners.github.client import GitHubError, GitHubRateLimited

    templates = list(ctx.templates.values())
    now = ctx.clock()
    found: list[QueuedJob] = []
    for repo, installation_id in repos.values():
        if not time_left():
            logger.warning("reconciliation: out of time, the other repositories wait")
            skipped["reconcile_out_of_time"] += 1
            break
        try:
            found += _queued_in(ctx, repo, installation_id, templates, now, skipped, running)
        except GitHubRateLimited as exc:
            logger.warning(
                "reconciliation: GitHub rate limit, the other repositories wait",
                extra={"repo": repo, "wait_s": exc.retry_after_s},
            )
            skipped["reconcile_rate_limited"] += 1
            break
        except GitHubError as exc:
            logger.warning(
                "reconciliation: cannot read the repository's queued jobs",
                extra={"repo": repo, "status": exc.status, "detail": str(exc)},
            )
            skipped["reconcile_repo_unreadable"] += 1
    return found


def _queued_in(
    ctx: Context,
    repo: str,
    installation_id: int | None,
    templates: Sequence[RunnerTemplate],
    now: datetime,
    skipped: Counter[str],
    running: list[WorkflowJob] | None = None,
) -> list[QueuedJob]:
    runs: dict[int, Any] = {}
    for status in RUN_STATUSES:
        for run in ctx.github.list_runs(repo, status, installation_id):
            runs.setdefault(run.id, run)
    found: list[QueuedJob] = []
    for run in _this_pass(repo, runs, ctx.settings.reconcile_run_listings, skipped):
        name = str(run.repo) if str(run.repo).count("/") == 1 else repo
        owner = name.split("/", maxsplit=1)[0]
        for job in ctx.github.list_run_jobs(name, run.id, installation_id):
            created = job.created_at or run.created_at or now
            seen = WorkflowJob(
                action=job.status,
                job_id=job.id,
                run_id=job.run_id,
                run_attempt=job.run_attempt,
                labels=job.labels,
                repo=name,
                owner=owner,
                private=bool(run.private),
                installation_id=installation_id,
                queued_at=created.isoformat().replace("+00:00", "Z"),
                runner_name=job.runner_name or "",
            )
            if seen.action == "in_progress" and running is not None and seen.runner_name:
                running.append(seen)
            if seen.action != "queued":
                continue  # waiting (approval), in progress, completed: no runner wanted
            template = match_template(seen.labels, templates)
            if template is None:
                continue  # not for our runners
            why = refusal(seen, ctx.settings)
            if why:
                skipped[f"reconcile_{why}"] += 1
                continue
            try:
                sizing.for_job(seen.labels, template)
            except sizing.SizingRefused as exc:
                skipped[f"reconcile_{exc.reason}"] += 1  # refused at intake already
                continue
            found.append(
                QueuedJob(
                    job=seen,
                    template=template.name,
                    scope=scope_key(template, name),
                    created_at=created,
                )
            )
    return found


# --- the pass ---------------------------------------------------------------------------------


def _this_pass(repo: str, runs: Mapping[int, Any], budget: int, skipped: Counter[str]) -> list[Any]:
    """The runs whose jobs this pass lists: all of them, or at most `budget`, going on from the
    run after the last one the previous pass listed (by id, round the runs). Each listing is a
    GitHub request of the installation: at 10,000 one-job runs an hour about 1,700 runs are in
    progress at once, 20,000 listings an hour at a pass every 5 minutes. A run left for a later
    pass only delays what this pass would find in it (a queued job without a runner, a swap
    whose deliveries were lost): too few launches for a pass, never too many."""
    ordered = [runs[run_id] for run_id in sorted(runs)]
    key = repo.casefold()
    if len(ordered) <= budget:
        _RESUME.pop(key, None)
        return ordered
    after = _RESUME.get(key)
    start = next((i for i, run in enumerate(ordered) if after is not None and run.id > after), 0)
    chosen = (ordered[start:] + ordered[:start])[:budget]
    _RESUME[key] = chosen[-1].id
    skipped["reconcile_runs_deferred"] += len(ordered) - len(chosen)
    return chosen


def reconcile(
    ctx: Context,
    instances: Sequence[Any],
    live: set[str],
    registrations: Registrations,
    report: Any,
    time_left: Callable[[], bool] = lambda: True,
) -> Decision:
    """Read the queued jobs, decide, and send a `launch` for each chosen job (or, in dry-run
    mode, report it). Adds a `reconcile_launch` action per launch to the report."""
    if not ctx.settings.job_queue_url:
        return Decision()
    repos = _installations(ctx, repositories(ctx, instances))
    running: list[WorkflowJob] = []
    queued = queued_jobs(ctx, repos, report.skipped, time_left, running)
    _book_unbooked_swaps(ctx, running, instances, report)
    runners = live_runners(ctx, instances, live, registrations)
    decision = decide(
        queued,
        runners,
        now=ctx.clock(),
        grace=timedelta(seconds=ctx.settings.reconcile_grace_s),
        template_max={name: t.max_runners for name, t in ctx.templates.items()},
        global_max=ctx.settings.max_runners,
        launching=report.launched_jobs,
    )
    for reason, n in decision.skipped.items():
        report.skipped[f"reconcile_{reason}"] += n
    logger.info(
        "reconciliation",
        extra={
            "repositories": len(repos),
            "queued": len(queued),
            "supply": sum(1 for r in runners if r.supply),
            "deficits": {f"{t}@{s}": n for (t, s), n in decision.deficits.items()},
            "launches": len(decision.chosen),
            "skipped": dict(decision.skipped),
            # Runs left for later passes (Settings.reconcile_run_listings).
            "runs_deferred": report.skipped["reconcile_runs_deferred"],
            "dry_run": ctx.dry_run,
        },
    )
    _send_launches(ctx, decision.chosen, report)
    return decision


def _book_unbooked_swaps(
    ctx: Context, running: Sequence[WorkflowJob], instances: Sequence[Any], report: Any
) -> None:
    """A job running on a live runner of ours whose tags name another job is a swap whose
    `in_progress` (and maybe `queued`) deliveries were lost: the runner is busy, yet its tags
    say it waits for the job it was launched for, so neither this pass nor scale-up would ever
    launch for that job. A `taken` message books it (scale-up's job bookkeeping, idempotent)."""
    ours = {i.id: i for i in instances if i.state in LIVE_STATES}
    messages: list[JobMessage] = []
    for job in running:
        runner = ours.get(runner_instance(job.runner_name) or "")
        if runner is None or (runner.job_id, runner.run_attempt) == (job.job_id, job.run_attempt):
            continue
        template = ctx.templates.get(str(runner.template or ""))
        if template is None:
            continue
        # (Not named `launch`: the IAM scan follows names, and fleet.launch is CreateFleet.)
        booked = JobMessage.launch_for(job, template.name, f"reconcile-taken-{job.job_id}")
        # The template's labels: a superset of the job's, and all scale-up needs to pick it.
        messages.append(replace(booked, labels=template.labels, queued_at="").taken_by(runner.id))
        report.add("book_swap", runner.id, f"runs_job_{job.job_id}")
    if not messages or ctx.dry_run:
        return
    sent = queue.send_jobs(ctx.settings.job_queue_url, messages)
    booked = sum(1 for message_id in sent if message_id is not None)
    count("UnbookedSwapsFound", booked)
    logger.info("reconciliation: swaps whose deliveries were lost sent to the books",
                extra={"swaps": booked})  # fmt: skip


def message_for(queued: QueuedJob) -> JobMessage:
    message = JobMessage.launch_for(queued.job, queued.template, f"reconcile-{queued.job_id}")
    # Attempt 2: not the delivery's own launch, so it takes no launch claim (docs/contracts.md).
    return replace(message, attempt=2)


def _send_launches(ctx: Context, jobs: Sequence[QueuedJob], report: Any) -> None:
    if not jobs:
        count("ReconciledLaunches", 0)
        return
    messages = [message_for(job) for job in jobs]
    if ctx.dry_run:
        for job, message in zip(jobs, messages, strict=True):
            report.launched_jobs.add((job.job_id, job.run_attempt))
            report.add("reconcile_launch", f"{job.repo}#{job.job_id}", REASON)
            extra = {**_extra(job, message), "dry_run": True}
            logger.info("would send a reconciliation launch", extra=extra)
        return
    sent = queue.send_jobs(ctx.settings.job_queue_url, messages)
    launched = 0
    for job, message, message_id in zip(jobs, messages, sent, strict=True):
        if message_id is None:
            logger.warning("reconciliation launch not sent; next run", extra=_extra(job, message))
            continue
        launched += 1
        report.launched_jobs.add((job.job_id, job.run_attempt))
        report.add("reconcile_launch", f"{job.repo}#{job.job_id}", REASON)
        logger.info("reconciliation launch", extra=_extra(job, message))
    count("ReconciledLaunches", launched)


def _extra(job: QueuedJob, message: JobMessage) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "repo": job.repo,
        "template": job.template,
        "run_attempt": job.run_attempt,
        "delivery_id": message.delivery_id,
        "reason": REASON,
    }
