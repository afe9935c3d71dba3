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

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final

from jitrunners.aws import fleet
from jitrunners.models import INSTANCE_ID_RE, JobMessage
from jitrunners.observability import count, logger

if TYPE_CHECKING:
    from jitrunners.config import RunnerTemplate
    from jitrunners.lifecycle.scale_up import ScaleUpDeps

# A need passed on more often than this (a ring of runners that took each other's jobs, all gone)
# is left to the housekeeper's reconciliation pass instead of circling through the queue.
MAX_LAUNCH_ATTEMPT: Final = 8
# GitHub's job statuses in which a `release` is stale: the job wants (or has) a runner again.
WANTS_A_RUNNER: Final = frozenset({"queued", "in_progress"})


def launched_for_value(message: JobMessage) -> str:
    """The `launched-for` tag of an instance launched for `message`'s job."""
    return f"{message.job_id}/{message.run_attempt}/{message.run_id}/{message.repo}"


def job_tags(message: JobMessage) -> dict[str, str]:
    """The tags that say which job an instance owes (rewritten on a swap)."""
    tags = {
        fleet.TAG_JOB_ID: str(message.job_id),
        fleet.TAG_RUN_ID: str(message.run_id),
        fleet.TAG_RUN_ATTEMPT: str(message.run_attempt),
        fleet.TAG_REPO: message.repo,
        fleet.TAG_DELIVERY_ID: message.delivery_id or "-",
    }
    if message.installation_id is not None:
        tags[fleet.TAG_INSTALLATION_ID] = str(message.installation_id)
    return tags


def launch_tags(message: JobMessage) -> dict[str, str]:
    """Every job tag of a new instance: what it owes, what it was launched for, which launch."""
    return job_tags(message) | {
        fleet.TAG_LAUNCHED_FOR: launched_for_value(message),
        fleet.TAG_LAUNCH_ATTEMPT: str(message.attempt),
    }


def launch_attempt(instance: Any) -> int:
    """Which launch of its job the instance was (its `launch-attempt` tag; 1 when absent)."""
    value = str((getattr(instance, "tags", None) or {}).get(fleet.TAG_LAUNCH_ATTEMPT, "1"))
    return max(1, int(value)) if value.isdigit() else 1


def _launched_for_key(instance: Any) -> tuple[int, int, int, str] | None:
    """(job id, run attempt, run id, repo) from the `launched-for` tag; None if absent or bad."""
    parts = str((instance.tags or {}).get(fleet.TAG_LAUNCHED_FOR, "")).split("/", 3)
    if len(parts) == 4 and all(p.isdigit() for p in parts[:3]) and parts[3].count("/") == 1:
        return int(parts[0]), int(parts[1]), int(parts[2]), parts[3]
    return None


def _owed_key(instance: Any) -> tuple[int, int, int, str] | None:
    """(job id, run attempt, run id, repo) of the job the instance's job tags say it owes."""
    run_id = str((instance.tags or {}).get(fleet.TAG_RUN_ID, ""))
    repo = str(instance.repo or "")
    if instance.job_id is None or not run_id.isdigit() or repo.count("/") != 1:
        return None
    return instance.job_id, instance.run_attempt or 1, int(run_id), repo


def _next_launch(
    instance: Any, template: RunnerTemplate, key: tuple[int, int, int, str], delivery_id: str
) -> JobMessage:
    job_id, run_attempt, run_id, repo = key
    return JobMessage(
        kind="launch",
        job_id=job_id,
        run_id=run_id,
        run_attempt=run_attempt,
        repo=repo,
        owner=repo.split("/", 1)[0],
        installation_id=instance.installation_id,
        # The template's labels: a superset of the job's, and all scale-up needs to pick it.
        labels=template.labels,
        template=template.name,
        delivery_id=delivery_id,
        queued_at="",
        attempt=launch_attempt(instance) + 1,
    )


def launched_for(instance: Any, template: RunnerTemplate | None) -> JobMessage | None:
    """A `launch` for the job the instance was launched for; None when its tags do not say."""
    if template is None:
        return None
    # Launched before the tag existed: its job tags still say why, unless a swap rewrote them.
    key = _launched_for_key(instance) or _owed_key(instance)
    if key is None:
        return None
    return _next_launch(instance, template, key, f"passed-on-{instance.id}")


def owed_launch(instance: Any, template: RunnerTemplate | None) -> JobMessage | None:
    """A `launch` for the job the instance's job tags say it owes (after any swap); None when
    they do not say enough."""
    key = _owed_key(instance)
    if template is None or key is None:
        return None
    delivery_id = str((instance.tags or {}).get(fleet.TAG_DELIVERY_ID, ""))
    if delivery_id in ("", "-"):
        delivery_id = f"relaunch-{instance.id}"
    return _next_launch(instance, template, key, delivery_id)


def launch_claim_key(message: JobMessage) -> str:
    """The claim of one launch of a job attempt (docs/contracts.md "Launch claims")."""
    repo = message.repo.casefold()
    return f"launch:{repo}:{message.job_id}:{message.run_attempt}:{message.attempt}"


def took_another_job(instance: Any) -> bool:
    """Whether the instance's runner took a job other than the one it was launched for (a swap
    booked by rewriting its job tags)."""
    key = _launched_for_key(instance)
    return key is not None and key[:2] != (instance.job_id, instance.run_attempt)


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
    per batch rather than one per message).
    """
    if not INSTANCE_ID_RE.fullmatch(runner_name or ""):
        return "not_ours"
    settings = deps.settings
    runner = fleet.get_instance(runner_name, settings.prefix, settings.runner_instance_profile_arn)
    if runner is None:
        return "not_ours"  # another system's runner, or not one EC2 still lists
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
            fleet.tag_instance(runner.id, job_tags(job))
        return "no_job_tags" if owed is None else "own_job"
    if live is None:
        live = fleet.list_instances(
            settings.prefix, profile_arn=settings.runner_instance_profile_arn
        )
    # Y is covered by a live runner launched for Y, or by X's own runner when that one can run
    # Y (the same template: a runner stolen across templates leaves X's runner unable to).
    covering = next(
        (
            i
            for i in live
            if i.id != runner.id
            and (
                (i.job_id, i.run_attempt) == _key(owed)
                or ((i.job_id, i.run_attempt) == took and i.template == runner.template)
            )
        ),
        None,
    )
    extra = {"runner_name": runner.id, "launched_for": owed.job_id}
    if rewrite:
        count("RunnerSwapped")
    pass_on = covering is None and owed.attempt <= MAX_LAUNCH_ATTEMPT
    if pass_on:
        # Before the write: a write that follows a failed send would hide the need for good.
        deps.enqueue(owed, 0)
        count("NeedPassedOn")
    if rewrite and not gone:
        # The one write of a swap: the runner owes the job it took, and whether the need it was
        # launched for has been passed on (so duplicates and late deliveries pass nothing).
        tags = job_tags(job) | ({fleet.TAG_PASSED_ON: "1"} if pass_on else {})
        fleet.tag_instance(runner.id, tags)
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
    """
    from jitrunners.github.client import GitHubError
    from jitrunners.lifecycle.cleanup import Context, cleanup, runner_scopes

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
            for scope in runner_scopes(instance, ctx.templates):
                runner = ctx.github.find_runner(scope, instance.id, instance.installation_id)
                if runner is None:
                    continue
                if runner.busy:
                    raise GitHubError("runner is busy", status=422)
                # GitHub answers 422 when the runner took a job meanwhile: then it stays.
                ctx.github.delete_runner(scope, runner.id, instance.installation_id)
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
