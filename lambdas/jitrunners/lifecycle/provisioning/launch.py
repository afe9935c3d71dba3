"""`launch` messages: account, check, launch a batch's instances per template, enqueue starts."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING

from jitrunners import guardrail, sizing
from jitrunners.aws import fleet
from jitrunners.aws.clients import throttle_delay_s, throttled
from jitrunners.config import RunnerTemplate
from jitrunners.lifecycle import spot_breaker
from jitrunners.lifecycle.provisioning import bookkeeping, boundary, headcount, pool
from jitrunners.lifecycle.provisioning.jit import ahead_of_boot
from jitrunners.lifecycle.provisioning.job_checks import JobChecks
from jitrunners.lifecycle.provisioning.tags import fleet_tags, launch_tags, took_another_job
from jitrunners.lifecycle.records import Outcome, Record, RecordFailed, ScaleUpDeps, correlated
from jitrunners.models import JobMessage, aware_instant
from jitrunners.observability import count, logger

# Back-offs (seconds) before a failed launch is tried again.
LIMIT_DELAY_S = 60  # over max runners: a runner will free up within minutes
CAPACITY_DELAY_S = 60
THROTTLE_DELAY_S = 30
GITHUB_DELAY_S = 30
# A launch claim outlives the runner's wait for its job (start and idle timeouts) by this much.
CLAIM_MARGIN_S = 300
# A launch its webhook queued moments ago needs no "still queued?" check: GitHub has just said
# so, a duplicate delivery loses the launch claim, and a cancel that follows is a `release` that
# stops the instance. Asking anyway cost one GitHub call per job (a sixth of the points a job
# costs with its generate-jitconfig) and, under GitHub's secondary limits, held launches back.
FRESH_LAUNCH = timedelta(seconds=30)
# The template's runner group is unsafe: an operator must fix it. The message fails slowly until it
# reaches the DLQ (alarm), from which the redrive brings it back once the group is fixed.
UNSAFE_GROUP_DELAY_S = 300

if TYPE_CHECKING:
    from jitrunners.github.client import GitHubError

Item = tuple[Record, JobMessage]


def plan_launches(items: Sequence[Item], deps: ScaleUpDeps) -> dict[str, Outcome]:
    """Decide and carry out every `launch` of a batch; returns each record's outcome."""
    outcomes: dict[str, Outcome] = {}
    settings = deps.settings
    try:
        listed, fresh = _listing(items, deps)
    except Exception as exc:  # noqa: BLE001 - without counts nothing may launch; retry later
        logger.warning("cannot count runners", extra={"detail": str(exc)})
        delay = throttle_delay_s() if throttled(exc) else THROTTLE_DELAY_S
        failure = RecordFailed("cannot count runners", delay)
        return {record.message_id: Outcome("failed", failure) for record, _ in items}
    live, per_template, total = _counted(listed)
    books: Sequence[fleet.Instance] | Callable[[], list[fleet.Instance]] = live
    if not fresh:
        # The books of a job a runner took meanwhile judge by what EC2 lists now.
        books = _fresh_live(deps)
    # Which live instance owes each job (None: one launched earlier in this batch).
    live_jobs: dict[tuple[int | None, int | None], fleet.Instance | None] = {
        (i.job_id, i.run_attempt): i for i in live
    }

    groups: dict[str, list[Item]] = defaultdict(list)
    fresh_ones: set[str] = set()
    for record, message in items:
        with correlated(message):
            outcome = _screen(message, deps, live_jobs, live)
        if outcome is None:
            groups[message.template].append((record, message))
            if _fresh(message, record, deps):
                fresh_ones.add(record.message_id)
        else:
            outcomes[record.message_id] = outcome
    # Of the launches to check, those whose job ran on one of our runners or ended elsewhere,
    # by the webhook's records (None: the records could not be read, or are not kept; then
    # GitHub is asked about each, per workflow run where a run has several).
    asked = [
        item for group in groups.values() for item in group if item[0].message_id not in fresh_ones
    ]
    ran = _jobs_ran(asked, deps)
    checks = JobChecks(deps.github, (m for _, m in asked) if ran is None else ())

    for name, group in groups.items():
        template = deps.template(name)
        assert template is not None  # checked by _screen
        room = headcount.room(template, per_template[name], total, settings.max_runners)
        # Jobs a warm pool can serve need no room: their member is counted already.
        members = pool.servable(listed, template)
        accepted: list[Item] = []
        pooled: list[Item] = []
        for record, message in group:
            with correlated(message):
                if ran and record.message_id in ran:
                    outcomes[record.message_id] = _ran_on(
                        message, ran[record.message_id], deps, books
                    )
                    continue
                poolable = len(pooled) < members and pool.may_serve(message, template)
                if not poolable and len(accepted) >= room:
                    # No slot: deferred before GitHub is asked anything. Waiting launches come
                    # back every LIMIT_DELAY_S; asking about each every time cost one GitHub
                    # call per waiting job per minute (a burst's backlog, over the rate limit).
                    outcomes[record.message_id] = _defer(message, deps, template)
                    continue
                outcome = _confirm(
                    message,
                    deps,
                    books,
                    record.message_id in fresh_ones or ran is not None,
                    checks=checks,
                )
            if outcome is not None:
                outcomes[record.message_id] = outcome
            else:
                (pooled if poolable else accepted).append((record, message))
        # One claim call for the group's cold and pooled launches alike.
        claimed = {r.message_id for r, _ in _claimed(accepted + pooled, template, deps, outcomes)}
        accepted = [item for item in accepted if item[0].message_id in claimed]
        pooled = [item for item in pooled if item[0].message_id in claimed]
        served = pool.Served()
        if pooled:
            served = pool.serve(pooled, template, listed, deps)
            for record, message in pooled:
                result = served.outcomes.get(record.message_id)
                if result is not None:
                    outcomes[record.message_id] = Outcome(result)
                elif len(accepted) < room:
                    accepted.append((record, message))  # claimed already: launches cold
                else:
                    outcomes[record.message_id] = _defer(message, deps, template)
        # One fleet request per distinct sizing (None: the template's instance types).
        by_size: dict[str, list[Item]] = defaultdict(list)
        for record, message in accepted:
            asked = sizing.for_job(message.labels, template)  # admitted by _screen
            by_size[asked.key if asked else ""].append((record, message))
        for same_size in by_size.values():
            launched = _launch_group(template, same_size, deps)
            outcomes.update(launched)
            started = sum(1 for o in launched.values() if o.result == "launched")
            per_template[name] += started
            total += started
        if served.hot or served.stopped:
            cap = headcount.room(template, per_template[name], total, settings.max_runners)
            made = pool.replace_served(template, served, listed, deps, cap)
            per_template[name] += made
            total += made
            if made:
                headcount.reset()  # members launched: the next batch lists them
    return outcomes


def _counted(
    listed: Sequence[fleet.Instance],
) -> tuple[list[fleet.Instance], Counter[str | None], int]:
    """The live instances, and what counts against `max_runners` (live ones and parked pool
    members) per template and in all."""
    live = [i for i in listed if i.state in fleet.LIVE_STATES]
    counted = live + [i for i in listed if i.state not in fleet.LIVE_STATES and fleet.pool_of(i)]
    return live, Counter(i.template for i in counted), len(counted)


def _fresh_live(deps: ScaleUpDeps) -> Callable[[], list[fleet.Instance]]:
    """Our live instances listed afresh when first asked for, once."""
    kept: list[list[fleet.Instance]] = []

    def live() -> list[fleet.Instance]:
        if not kept:
            listed, _ = headcount.HEADCOUNT.listing(
                partial(pool.describe_for_pool, deps), deps.settings.headcount_max_age_s, fresh=True
            )
            kept.append([i for i in listed if i.state in fleet.LIVE_STATES])
        return kept[0]

    return live


def _listing(items: Sequence[Item], deps: ScaleUpDeps) -> tuple[list[fleet.Instance], bool]:
    """Our instances for the batch's decisions: the container's kept list while it is young
    enough to decide this batch (headcount.py), else one DescribeInstances (stopped pool
    members too: they count against max_runners and serve jobs)."""
    settings = deps.settings
    describe = partial(pool.describe_for_pool, deps)
    listed, fresh = headcount.HEADCOUNT.listing(describe, settings.headcount_max_age_s)
    if fresh:
        return listed, True
    live, per_template, total = _counted(listed)
    templates = {
        name: template
        for name in {m.template for _, m in items}
        if (template := deps.template(name)) is not None
    }
    wanted = Counter(m.template for _, m in items if m.template in templates)
    stale = headcount.needs_fresh(
        [(m.job_id, m.run_attempt) for _, m in items],
        ((i.job_id, i.run_attempt) for i in live if i.job_id is not None),
        any(t.pool is not None for t in templates.values()),
        wanted,
        lambda name: headcount.room(
            templates[name], per_template[name], total, settings.max_runners
        ),
        settings.max_runners - total,
    )
    if not stale:
        return listed, False
    return headcount.HEADCOUNT.listing(describe, settings.headcount_max_age_s, fresh=True)


def _screen(
    message: JobMessage,
    deps: ScaleUpDeps,
    live_jobs: dict[tuple[int | None, int | None], fleet.Instance | None],
    live: Sequence[fleet.Instance],
) -> Outcome | None:
    """The checks that cost no GitHub call: None when the message may launch (if there is room,
    and GitHub confirms: `_confirm`); otherwise its outcome (dropped or failed)."""
    if deps.template(message.template) is None:
        count("LaunchFailed", code="UnknownTemplate")
        logger.error("launch refused: no runner template of that name; message goes to the DLQ")
        return Outcome("failed", RecordFailed("unknown template"))
    if boundary.refused_repository(message, deps.settings):
        return Outcome("refused")
    template = deps.template(message.template)
    assert template is not None
    try:
        # Again at launch: the templates may have changed since the webhook admitted the job.
        sizing.for_job(message.labels, template)
    except sizing.SizingRefused as exc:
        return _sizing_refused(exc.reason, exc.label, exc.detail)
    key: tuple[int | None, int | None] = (message.job_id, message.run_attempt)
    if key in live_jobs:
        holder = live_jobs[key]
        if holder is not None and took_another_job(holder):
            # A runner launched for another job runs this one (a swap booked earlier): this
            # launch is a need that runner's own job may still have (a relaunch after the
            # job's own runner died unstarted, say). The books say where it goes.
            count("LaunchDropped", reason="job_taken")
            logger.info("launch dropped: a runner of ours took the job")
            _taken(message, holder.id, deps, live)
            return Outcome("dropped")
        # A redelivered webhook or a retried message: the instance it asked for exists already.
        count("LaunchDropped", reason="duplicate")
        logger.info("launch skipped: this job attempt already has a live instance")
        return Outcome("duplicate")
    live_jobs[key] = None  # a second copy in this batch is a duplicate too
    return None


def _fresh(message: JobMessage, record: Record, deps: ScaleUpDeps) -> bool:
    """A first launch of a job queued within FRESH_LAUNCH, on its first receive."""
    if message.attempt != 1 or message.redrives or record.receive_count > 1:
        return False
    queued = aware_instant(message.queued_at)
    if queued is None:
        return False
    return timedelta(0) <= deps.clock() - queued <= FRESH_LAUNCH


def _confirm(
    message: JobMessage,
    deps: ScaleUpDeps,
    live: Sequence[fleet.Instance] | Callable[[], list[fleet.Instance]],
    settled: bool = False,
    *,
    checks: JobChecks,
) -> Outcome | None:
    """What GitHub says, asked only for a launch that has a slot: None when the job is still
    queued and the template's runner group is a safe boundary; otherwise the outcome.

    `settled`: GitHub need not be asked, because the job was queued moments ago (`_fresh`) or
    the webhook's job records were read for this launch and name no end of its job. The records
    answer what the check guards against: a job one of our runners took (`in_progress`,
    `completed` on ours) and a job that ended elsewhere (cancelled while queued, or run by
    another runner: its `completed` delivery). What they can miss is a delivery still on its way
    or failed (the housekeeper redelivers those); its `release` then stops the instance launched
    meanwhile, or the runner's idle timeout does. Asking GitHub for every launch that waited
    cost one call per job of a burst (0.8-1.0 a job at 10,000) against the points the JIT
    configs need. Without readable records GitHub is asked, per workflow run (`checks`)."""
    if deps.settings.check_job_queued and not settled:
        from jitrunners.github.client import GitHubError

        try:
            job = checks.get(message)
        except GitHubError as exc:
            return _github_failed(exc, "the job")
        if job is None or job.status != "queued":
            status = "gone" if job is None else job.status
            count("LaunchDropped", reason=f"job_{status}")
            logger.info("launch dropped: the job is no longer queued", extra={"job_status": status})
            if job is not None and job.runner_name and job.run_attempt == message.run_attempt:
                _taken(message, job.runner_name, deps, live)
            return Outcome("dropped")
        if job.run_attempt > message.run_attempt:
            # Queued again, as a later attempt (a re-run keeps the job id): that attempt's own
            # delivery launches for it. This one (a late retry or a redriven copy) would launch
            # a runner no job of its attempt needs.
            count("LaunchDropped", reason="job_attempt_superseded")
            logger.info(
                "launch dropped: GitHub has a later attempt of the job queued",
                extra={"job_run_attempt": job.run_attempt},
            )
            return Outcome("dropped")
    # Last: no need to ask about the group for a job that is gone (and it is cached anyway).
    return _check_groups_and_size(message, deps)


def _check_groups_and_size(message: JobMessage, deps: ScaleUpDeps) -> Outcome | None:
    """None when the template's runner group is a safe boundary and a sized job's size fits;
    otherwise the outcome."""
    outcome = _check_runner_group(message, deps)
    if outcome is not None:
        return outcome
    template = deps.template(message.template)
    assert template is not None  # checked by _screen
    asked = sizing.for_job(message.labels, template)  # admitted by _screen
    return None if asked is None else _check_sizing_fits(asked, template)


def _jobs_ran(items: Sequence[Item], deps: ScaleUpDeps) -> dict[str, str] | None:
    """Of `items` (launches to check), those whose job attempt the webhook's records say ran on
    a runner of ours (message id -> that runner's name) or ended elsewhere (-> ENDED_ELSEWHERE);
    one BatchGetItem for the batch. A launch they do not name goes ahead without a GitHub call
    (`_confirm`). None when the records are not kept (no table) or could not be read: GitHub is
    asked then; empty when nothing is checked (`check_job_queued` off, or every launch is
    fresh)."""
    from jitrunners.aws import deliveries

    table = deps.settings.deliveries_table
    if not table:
        return None
    if not items or not deps.settings.check_job_queued:
        return {}
    keys = (k for _, m in items for k in deliveries.ran_keys(m.repo, m.job_id, m.run_attempt))
    try:
        found = deliveries.jobs_ran(table, keys, now=deps.clock())
    except deliveries.DeliveryStoreError as exc:
        logger.info("cannot read the job-ran records: GitHub is asked", extra={"detail": str(exc)})
        return None
    return {
        record.message_id: runner
        for record, m in items
        if (runner := deliveries.taker(found, m.repo, m.job_id, m.run_attempt)) is not None
    }


def _ran_on(
    message: JobMessage,
    runner_name: str,
    deps: ScaleUpDeps,
    live: Sequence[fleet.Instance] | Callable[[], list[fleet.Instance]],
) -> Outcome:
    """A launch whose job ran on `runner_name`, one of ours, or ended elsewhere (ENDED_ELSEWHERE),
    by the webhook's records: what `_confirm` does when GitHub says the job is in progress or
    completed, without asking."""
    from jitrunners.aws.deliveries import ENDED_ELSEWHERE

    if runner_name == ENDED_ELSEWHERE:
        count("LaunchDropped", reason="job_completed")
        logger.info("launch dropped: the job ended without a runner of ours")
        return Outcome("dropped")
    count("LaunchDropped", reason="job_ran")
    logger.info(
        "launch dropped: the job ran on a runner of ours", extra={"runner_name": runner_name}
    )
    _taken(message, runner_name, deps, live)
    return Outcome("dropped")


def _taken(
    message: JobMessage,
    runner_name: str,
    deps: ScaleUpDeps,
    live: Sequence[fleet.Instance] | Callable[[], list[fleet.Instance]],
) -> None:
    """The job of a dropped launch ran on `runner_name`: if that runner was launched for another
    job, that job's need moves on (DESIGN §6b). Best effort: the drop stands whatever happens
    here, and the housekeeper's reconciliation pass is the net for what this misses."""
    from botocore.exceptions import BotoCoreError, ClientError

    from jitrunners.aws import queue

    try:
        bookkeeping.record_taken(message, runner_name, deps, live() if callable(live) else live)
    except (ClientError, BotoCoreError, queue.QueueError) as exc:
        logger.warning("cannot keep the books of a taken job", extra={"detail": str(exc)})


def _github_failed(exc: GitHubError, what: str, **extra: object) -> Outcome:
    """A launch check GitHub could not answer: the record is retried, after the rate limit's
    reset when GitHub gave one."""
    from jitrunners.github.client import GitHubRateLimited

    if isinstance(exc, GitHubRateLimited):
        count("LaunchFailed", code="GitHubRateLimited")
        logger.warning(
            f"GitHub rate limit: checking {what} retried later",
            extra={"wait_s": exc.retry_after_s, **extra},
        )
        return Outcome("failed", RecordFailed("github rate limited", _ceil(exc.retry_after_s)))
    count("LaunchFailed", code=f"GitHub{exc.status or 'Unavailable'}")
    logger.warning(
        f"cannot check {what} on GitHub: launch retried later",
        extra={"detail": str(exc), **extra},
    )
    return Outcome("failed", RecordFailed("github unavailable", GITHUB_DELAY_S))


def _check_runner_group(message: JobMessage, deps: ScaleUpDeps) -> Outcome | None:
    """None when the template's runner group is a safe boundary; otherwise the failed outcome."""
    from jitrunners.github.client import GitHubError

    template = deps.template(message.template)
    assert template is not None  # checked by _screen
    try:
        problem = boundary.runner_group_refusal(
            template, message, deps.github, allow_public_repos=deps.settings.allow_public_repos
        )
    except GitHubError as exc:
        return _github_failed(exc, "the runner group", runner_group_id=template.runner_group_id)
    if problem is None:
        return None
    count("LaunchFailed", code="RunnerGroupUnsafe")
    return Outcome("failed", RecordFailed("runner group unsafe", UNSAFE_GROUP_DELAY_S))


def _sizing_refused(reason: str, label: str, detail: str) -> Outcome:
    """A sized job its template cannot launch: nothing is launched (never a bigger or unbounded
    instance instead); the message is deleted and the job stays queued on GitHub until a
    template admits it or it is cancelled."""
    count("SizingRefused", reason=reason)
    logger.warning(
        "launch refused: sizing label outside the template's policy",
        extra={"reason": reason, "label": label[:100], "detail": detail},
    )
    return Outcome("refused")


def _check_sizing_fits(asked: sizing.Sizing, template: RunnerTemplate) -> Outcome | None:
    """None when some instance type meets the sized job's requirements; otherwise its refusal
    (no type fits) or a retry (EC2 could not say)."""
    assert template.sizing is not None  # for_job returned a request
    requirements = asked.instance_requirements(template.sizing)
    try:
        types = fleet.instance_types_for(requirements, sizing.EC2_ARCHITECTURE[asked.arch])
    except fleet.FleetError as exc:
        count("LaunchFailed", code=exc.code)
        logger.warning("cannot list the instance types for a sized job", extra={"code": exc.code})
        return Outcome("failed", RecordFailed(f"instance types: {exc.code}", THROTTLE_DELAY_S))
    if types:
        return None
    return _sizing_refused(
        "sizing_unsatisfiable",
        "/".join(asked.labels),
        f"no instance type meets {asked.key} within families {'+'.join(template.sizing.families)}",
    )


def _defer(message: JobMessage, deps: ScaleUpDeps, template: RunnerTemplate) -> Outcome:
    """Over a max-runners limit: send the message back with a delay instead of failing it, so
    waiting for a free slot does not spend the queue's receive count (and drift into the DLQ)."""
    count("RunnerLimitReached")
    logger.info(
        "launch deferred: max runners reached",
        extra={"template_max": template.max_runners, "global_max": deps.settings.max_runners},
    )
    try:
        deps.enqueue(message, LIMIT_DELAY_S)
    except Exception as exc:  # noqa: BLE001 - then the original comes back instead
        logger.warning("cannot defer the launch", extra={"detail": str(exc)})
        return Outcome("failed", RecordFailed("deferral failed", LIMIT_DELAY_S))
    return Outcome("deferred")


def _claimed(
    items: list[Item], template: RunnerTemplate, deps: ScaleUpDeps, outcomes: dict[str, Outcome]
) -> list[Item]:
    """The items whose launch this batch may make: the first launch of a job attempt (the one a
    `queued` delivery asks for) is claimed for that delivery, atomically, so that two deliveries
    of one job (GitHub's duplicates with different ids) processed by concurrent batches launch
    one instance. The claim lives as long as the runner could wait for the job; a `release` of
    the job gives it back. All the items' claims are one DynamoDB call (a transaction; a lone
    claim, a conditional put)."""
    from jitrunners.aws import deliveries

    table = deps.settings.deliveries_table
    if not table:
        return items
    ttl_s = template.start_timeout_s + template.idle_timeout_s + CLAIM_MARGIN_S
    # Relaunches, needs passed on and reconciliation launches (attempt 2 and up) come from us,
    # not from a delivery: the duplicate check by tags is theirs. Claiming them too would let one
    # hold the claim against the next for its whole lifetime (a reconciliation pass would pick
    # the same refused job every run).
    claims = {
        record.message_id: (
            bookkeeping.launch_claim_key(message),
            message.delivery_id or record.message_id,
        )
        for record, message in items
        if message.attempt <= 1
    }
    answers: dict[tuple[str, str], bool] = {}
    unavailable: deliveries.DeliveryStoreError | None = None
    if claims:
        try:
            answers = deliveries.claim_launches(
                table, list(claims.values()), now=deps.clock(), ttl_s=ttl_s
            )
        except deliveries.DeliveryStoreError as exc:
            unavailable = exc
    kept: list[Item] = []
    for record, message in items:
        claim = claims.get(record.message_id)
        if claim is None:
            kept.append((record, message))
            continue
        with correlated(message):
            if unavailable is not None:
                logger.warning(
                    "cannot claim the launch: retried later", extra={"detail": str(unavailable)}
                )
                failure = RecordFailed("launch claim unavailable", THROTTLE_DELAY_S)
                outcomes[record.message_id] = Outcome("failed", failure)
                continue
            if not answers[claim]:
                count("LaunchDropped", reason="duplicate_claimed")
                logger.info("launch skipped: another delivery of this job attempt launches it")
                outcomes[record.message_id] = Outcome("duplicate")
                continue
        kept.append((record, message))
    return kept


def _launch_group(
    template: RunnerTemplate, items: Sequence[Item], deps: ScaleUpDeps
) -> dict[str, Outcome]:
    """One instant fleet for all of a template's launches in the batch."""
    settings = deps.settings
    asked = sizing.for_job(items[0][1].labels, template)  # the same for every item
    tags = fleet_tags(settings.prefix, template, asked.labels if asked else ())
    if len(items) == 1:
        # A lone launch gets its job tags at creation, for free. Several jobs' instances get
        # theirs from their starts, with the started tags: one CreateTags per job (tags.py).
        tags |= launch_tags(items[0][1])
    market, requirements = template.market, None
    if asked is not None and template.sizing is not None:
        market = asked.market(template.market)
        requirements = fleet.Requirements(
            asked.instance_requirements(template.sizing),
            asked.disk_gb,
            template.sizing.root_device,
        )
    # Spot-only (budget guardrail) overrides the market while it is engaged; then the spot
    # breaker may turn a market that still allows on-demand to on-demand.
    market = guardrail.launch_market(market, settings.prefix)
    market = spot_breaker.market_for(template, market, settings, deps.clock())
    try:
        result = fleet.launch(
            launch_template=template.launch_template,
            instance_types=template.instance_types,
            subnet_ids=template.subnet_ids or settings.runner_subnet_ids,
            count=len(items),
            market=market,
            tags=tags,
            requirements=requirements,
        )
    except fleet.FleetError as exc:
        if isinstance(exc, fleet.CapacityError) and market != "on-demand":
            _spot_refused(template, deps)
        return {record.message_id: _launch_failed(message, exc) for record, message in items}
    headcount.HEADCOUNT.launched(fleet.launched_instance(i, tags) for i in result.instances)
    for error in result.errors:
        count("LaunchPoolError", code=error.code)
    # Spot fell short for capacity or price (a pool's error while spot launched them all is not):
    spot_short = sum(1 for i in result.instances if i.market == "spot") < len(items)
    if spot_short and any(
        e.market == "spot" and isinstance(fleet.classify(e.code), fleet.CapacityError)
        for e in result.errors
    ):
        _spot_refused(template, deps)

    pairs = list(zip(items, result.instances, strict=False))
    # Their JIT configs while they boot (GitHub's points spent as early as the burst allows).
    stored = ahead_of_boot([(m, i.id) for (_, m), i in pairs], template, deps)
    # One SendMessageBatch per ten starts rather than a SendMessage each.
    sent = deps.enqueue_many(
        [
            message.start_for(instance.id, jit_stored=instance.id in stored)
            for (_, message), instance in pairs
        ],
        settings.start_delay_s,
    )
    outcomes: dict[str, Outcome] = {}
    for ((record, message), instance), message_id in zip(pairs, sent, strict=True):
        with correlated(message, instance_id=instance.id):
            outcomes[record.message_id] = _after_launch(instance, message_id, deps)
    short = items[len(result.instances) :]
    if short:
        codes = [e.code for e in result.errors] or ["UnfulfillableCapacity"]
        error = fleet.classify(codes[0], "fewer instances launched than asked for")
        for record, message in short:
            outcomes[record.message_id] = _launch_failed(message, error)
    return outcomes


def _spot_refused(template: RunnerTemplate, deps: ScaleUpDeps) -> None:
    """Spot refused (some of) a fleet for capacity or price: one event for the breaker."""
    import uuid

    now = deps.clock()
    spot_breaker.record(
        template, f"capacity-{uuid.uuid4().hex[:12]}", "capacity", deps.settings, now
    )


def _after_launch(instance: fleet.Launched, start_id: str | None, deps: ScaleUpDeps) -> Outcome:
    if start_id is None:
        # An instance nobody will start must not live on; the launch is retried instead.
        logger.error("cannot enqueue start: terminating the instance")
        fleet.terminate(
            [instance.id], deps.settings.prefix, deps.settings.runner_instance_profile_arn
        )
        return Outcome("failed", RecordFailed("start not enqueued", THROTTLE_DELAY_S))
    count("RunnerLaunched", market=instance.market)
    logger.info(
        "runner instance launched",
        extra={"market": instance.market, "instance_type": instance.instance_type},
    )
    return Outcome("launched", extra={"instance_id": instance.id})


def _launch_failed(message: JobMessage, error: fleet.FleetError) -> Outcome:
    with correlated(message):
        count("LaunchFailed", code=error.code)
        if isinstance(error, fleet.LaunchConfigError):
            # Quota or configuration: retrying soon will not help; after the queue's max receives
            # the message reaches the DLQ, whose alarm calls an operator.
            logger.error("launch failed: quota or configuration", extra={"code": error.code})
            return Outcome("failed", RecordFailed(f"launch failed: {error.code}"))
        # A throttle: back in a few seconds, spread (EC2's bucket refills within seconds).
        throttled = isinstance(error, fleet.ThrottledError)
        delay = throttle_delay_s() if throttled else CAPACITY_DELAY_S
        logger.warning("launch failed: retried later", extra={"code": error.code})
        return Outcome("failed", RecordFailed(f"launch failed: {error.code}", delay))


def _ceil(seconds: float) -> int:
    return max(1, int(-(-seconds // 1)))
