"""Job bookkeeping (DESIGN §6b): which runner owes which job, and where a need goes on a swap.

Runners are fungible: the runner launched for job Y may take job X. Each instance carries two
records in its tags: the job it was launched for (`launched-for`, set once at launch) and the job
it owes now (the job tags). When runner R, launched for Y, takes X:

- R now owes X (its job tags are rewritten, with a mark when Y's need was passed on: the one
  small write a swap costs). Re-runs and relaunches of R act on X from then on.
- Y lost the runner launched for it. If X had a runner of its own that is still live (booting or
  idle), that runner now serves Y as GitHub hands it any queued job: nothing to do. Otherwise Y
  gets a launch of its own, which scale-up admits only while Y is still queued and not covered.

The same rule runs wherever we learn that X ran on R: the `in_progress` and `completed`
deliveries (`taken` messages), and a `launch` for X that finds X already taken. It is idempotent
(R's job tags already naming X, or a live runner covering X or Y, ends it), so lost, duplicated
or reordered deliveries at worst leave a need for the housekeeper's reconciliation pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final

from jitrunners.aws import fleet
from jitrunners.lifecycle.provisioning import headcount
from jitrunners.lifecycle.provisioning.tags import (
    awaiting_start,
    job_tags,
    launch_attempt,
    launched_for,
)
from jitrunners.models import JobMessage, runner_instance
from jitrunners.observability import count, logger

if TYPE_CHECKING:
    from jitrunners.lifecycle.records import ScaleUpDeps

# A need passed on more often than this (a ring of runners that took each other's jobs, all gone)
# is left to the housekeeper's reconciliation pass instead of circling through the queue.
MAX_LAUNCH_ATTEMPT: Final = 8
# A need passed on waits this long in the queue before its launch is judged. In a burst of jobs
# with the same labels most swaps are crossings: when R (launched for Y) takes X, Y has mostly
# been taken by another runner already, its `in_progress` delivery in flight. After the wait the
# launch finds Y's taker on our list and drops without a GitHub call; sent at once, each asked
# GitHub whether Y was still queued (a point of the primary installation, held back with the
# burst's JIT configs) and a launch that found Y queued still would start a surplus instance.
# A need that is real (Y's own runner gone before it took a job) starts this much later.
PASS_ON_DELAY_S: Final = 10
# GitHub's job statuses in which a `release` is stale: the job wants (or has) a runner again.
WANTS_A_RUNNER: Final = frozenset({"queued", "in_progress"})


def launch_claim_key(message: JobMessage) -> str:
    """The claim of one launch of a job attempt (docs/contracts.md "Launch claims")."""
    repo = message.repo.casefold()
    return f"launch:{repo}:{message.job_id}:{message.run_attempt}:{message.attempt}"


def _key(message: JobMessage) -> tuple[int, int]:
    return (message.job_id, message.run_attempt)


def record_taken(
    job: JobMessage,
    runner_name: str,
    deps: ScaleUpDeps,
    live: Sequence[fleet.Instance] | None = None,
) -> str:
    """Job `job` ran (or runs) on runner `runner_name`: keep the books; returns the outcome.

    `live` is our live instances when the caller has listed them already (one DescribeInstances
    per batch rather than one per message); a live runner is found there without a describe.
    """
    instance_id = runner_instance(runner_name)
    runner = next((i for i in live or () if i.id == instance_id), None)
    if runner is None and live is not None and job.kind == "launch":
        # Not among our live instances: gone (its job ran and it ended), or not ours. A launch's
        # books do nothing with either (keep_books: "settled", "runner_gone"), so no describe.
        # (One stopped by hand, which scale-down ends, is booked by the deliveries naming it.)
        return "runner_not_live"
    if runner is None:
        runner = find_runner(runner_name, deps)
    if runner is None:
        return "not_ours"  # another system's runner, or not one EC2 still lists
    return keep_books(job, runner, deps, live)


def find_runner(runner_name: str, deps: ScaleUpDeps) -> fleet.Instance | None:
    """Our instance behind a runner name, or None (another system's runner, or one EC2 no longer
    lists)."""
    instance_id = runner_instance(runner_name)
    if instance_id is None:
        return None
    settings = deps.settings
    return fleet.get_instance(instance_id, settings.prefix, settings.runner_instance_profile_arn)


def keep_books(
    job: JobMessage,
    runner: fleet.Instance,
    deps: ScaleUpDeps,
    live: Sequence[fleet.Instance] | Callable[[], list[fleet.Instance]] | None = None,
    ran_on: Callable[[JobMessage], str | None] | None = None,
) -> str:
    """record_taken for a runner already described.

    `live`: our live instances, or what lists them when they are needed (a batch's listing,
    shared by its messages). A list is kept current: the runner's entry is replaced once its
    job tags are rewritten here, so a later message of the same batch judges by what is
    written. `ran_on`: the runner of ours a job ran on, or ENDED_ELSEWHERE, by the webhook's
    job-ran claims (None: not recorded), asked about the job the runner was launched for once
    it took another: a job that ran or ended needs no cover, so nothing is listed for it."""
    settings = deps.settings
    took = _key(job)
    gone = runner.state in fleet.GONE_STATES
    rewrite = (runner.job_id, runner.run_attempt) != took
    if not rewrite and gone:
        return "settled"  # recorded while it ran
    if gone and job.kind == "launch":
        # A launch of X, dropped because X ran on a runner already gone: the deliveries that
        # name X's runner pass its need on (`taken`); a chain of launches through runners that
        # can no longer be marked would pass needs round in a ring (R ran X for Y, R' ran Y for
        # X). What they lost is the reconciliation pass's.
        return "runner_gone"
    if not rewrite and runner.tags.get(fleet.TAG_PASSED_ON):
        return "already_passed_on"  # a duplicate or late delivery of this swap
    owed = launched_for(runner, deps.template(str(runner.template or "")))
    if owed is not None and job.kind == "launch":
        # A need handed along a chain of swaps counts its hops, so a ring ends at the cap.
        owed = replace(owed, attempt=max(owed.attempt, job.attempt + 1))
    if owed is None or _key(owed) == took:
        if rewrite and not gone:
            _retag(runner, job_tags(job), live)
        return "no_job_tags" if owed is None else "own_job"
    extra = {"runner_name": runner.id, "launched_for": owed.job_id}
    if rewrite:
        count("RunnerSwapped")
    taker = ran_on(owed) if ran_on is not None else None
    if taker is not None:
        # Y ran on a runner of ours already, or ended elsewhere (the webhook booked its
        # delivery): the need is met, whatever covers it, and no listing of our instances is
        # needed to say so. In a burst of jobs with the same labels this is most swaps
        # (crossings).
        if rewrite and not gone:
            _retag(runner, job_tags(job), live)
        logger.info(
            "runner took another job; the job it was launched for ran on another runner",
            extra={**extra, "covered_by": taker or "a runner not ours (or cancelled)"},
        )
        return "swap:ran"
    if callable(live):
        live = live()
    elif live is None:
        live = fleet.list_instances(
            settings.prefix, profile_arn=settings.runner_instance_profile_arn
        )
    # Y is covered by a live runner launched for Y, or by X's own runner when that one can run
    # Y (the same template: a runner stolen across templates leaves X's runner unable to). X's
    # own runner may not have started yet, and then names no job (tags.awaiting_start): an
    # instance of the template awaiting its start counts, as it may be X's. When it is another
    # job's, the next delivery about X (its `completed`), once the instances have started and
    # name their jobs, or the reconciliation pass launches for Y.
    #
    # Not for a launch of X being dropped (X ran on R): that launch was X's runner, so no
    # instance awaiting its start is X's, and each is another job's. Counting one as cover
    # there lost Y's need whenever it was some other job's runner; and as nothing marks an
    # instance as counted, one such instance covered a hundred needs in a 1,000-job burst.
    may_be_xs = job.kind != "launch"
    covering = next(
        (
            i
            for i in live
            if i.id != runner.id
            and (
                (i.job_id, i.run_attempt) == _key(owed)
                or ((i.job_id, i.run_attempt) == took and i.template == runner.template)
                or (may_be_xs and awaiting_start(i) and i.template == runner.template)
            )
        ),
        None,
    )
    pass_on = covering is None and owed.attempt <= MAX_LAUNCH_ATTEMPT
    if pass_on:
        # Before the write: a write that follows a failed send would hide the need for good.
        deps.enqueue(owed, PASS_ON_DELAY_S)
        count("NeedPassedOn")
    if rewrite and not gone:
        # The one write of a swap: the runner owes the job it took, and whether the need it was
        # launched for has been passed on (so duplicates and late deliveries pass nothing).
        tags = job_tags(job) | ({fleet.TAG_PASSED_ON: "1"} if pass_on else {})
        _retag(runner, tags, live)
    if pass_on:
        logger.info(
            "runner took another job: the job it was launched for gets a launch of its own",
            extra=extra,
        )
        return "swap:passed_on"
    if covering is None:
        count("NeedLeftToReconciliation")
        logger.warning("need passed on too often: left to the reconciliation pass", extra=extra)
        return "swap:left"
    # X's own runner is still live (it will serve Y), or Y has a runner already.
    logger.info(
        "runner took another job; the job it was launched for is covered",
        extra={**extra, "covered_by": covering.id},
    )
    return "swap:covered"


def _retag(
    runner: fleet.Instance,
    tags: dict[str, str],
    live: Sequence[fleet.Instance] | Callable[[], list[fleet.Instance]] | None,
) -> None:
    """Write the runner's job tags, and keep the caller's `live` list as EC2 now has it (a
    listing not made yet, or none, has nothing to keep)."""
    headcount.tag_instance(runner.id, tags)
    if isinstance(live, list):
        for index, instance in enumerate(live):
            if instance.id == runner.id:
                live[index] = fleet.retagged(instance, tags)


def release_job(job: JobMessage, deps: ScaleUpDeps) -> str:
    """Job `job` wants no runner for now (cancelled before a runner took it, or waiting for an
    approval): stop the runners launched for it that have not taken a job, instead of letting
    them idle until their timeout. Returns the outcome.

    Nothing is stopped while GitHub has the job queued or in progress again: the `release`
    reached us after the job was approved (or after its `queued` delivery's launch, which a
    batch plans before it handles `release` messages), and stopping its runner would leave it,
    or the job that runner covers after a swap, without one.

    A runner is stopped only once GitHub has deleted its registration, which GitHub refuses while
    the runner is busy: a deleted registration can never take a job, so no job is killed. An
    instance with no registration yet is still booting (its start has not asked GitHub for a JIT
    config): it is terminated at once, and a start that comes later finds it gone.

    A cold instance launched with others names its job only from its start on (tags.py): one
    released before its start is not found here. Its start goes ahead; its runner takes another
    queued job of its labels or idles out (idle_timeout_s) and ends like any idle runner; its
    launch claim expires (a job approved meanwhile is served by that runner, or launched for by
    the reconciliation pass).
    """
    from jitrunners.github.client import GitHubError
    from jitrunners.lifecycle.cleanup import Context, cleanup, deregister_idle

    settings = deps.settings
    live = fleet.list_instances(settings.prefix, profile_arn=settings.runner_instance_profile_arn)
    launched = [i for i in live if (i.job_id, i.run_attempt) == _key(job)]
    if not launched:
        return "nothing_to_stop"
    ctx = Context.build(settings, deps.templates(), deps.github(), deps.clock)
    # The delivery may be stale: a waiting job approved since (its `queued` delivery may even
    # have launched in this batch, launches being planned first), or one a runner took since.
    # Then the runner launched for it serves it, or the job whose need it covers after a swap.
    try:
        now = ctx.github.get_job(job.repo, job.job_id, job.installation_id)
    except GitHubError as exc:
        logger.info("cannot check a released job: runners left alone", extra={"status": exc.status})
        return "left_alone"
    if now is not None and now.status in WANTS_A_RUNNER:
        count("ReleaseSkipped", reason=f"job_{now.status}")
        logger.info(
            "release skipped: GitHub has the job queued or running again",
            extra={"job_status": now.status},
        )
        return "stale"
    stopped = 0
    for instance in launched:
        extra = {"instance_id": instance.id}
        try:
            deregister_idle(instance, ctx)
        except GitHubError as exc:
            # Busy (it took some other job) or GitHub unavailable: leave the runner be; it ends
            # by itself after its job or its idle timeout.
            logger.info(
                "runner of a released job left alone", extra={**extra, "status": exc.status}
            )
            continue
        # Its registrations were deleted above (first, so a busy runner is never killed).
        result = cleanup(instance, "job_released", ctx, registrations=False)
        stopped += 1 if result.terminated else 0
        _release_launch_claim(job, instance, settings.deliveries_table)
        count("RunnerStopped", reason="job_released")
        logger.info("runner of a job that needs none now stopped", extra=extra)
    return f"stopped:{stopped}" if stopped else "left_alone"


def _release_launch_claim(job: JobMessage, instance: Any, table: str) -> None:
    """A stopped runner's launch claim is given back: after an approval GitHub sends `queued`
    again (another delivery), and that launch must not count as a duplicate."""

    from jitrunners.aws import deliveries

    if not table:
        return
    launch = replace(job, kind="launch", attempt=launch_attempt(instance))
    try:
        deliveries.release(table, launch_claim_key(launch))
    except deliveries.DeliveryStoreError as exc:
        # The claim expires after the runner's start and idle timeouts; until then the job
        # waits for the reconciliation pass.
        logger.warning("cannot release the launch claim", extra={"detail": str(exc)})
