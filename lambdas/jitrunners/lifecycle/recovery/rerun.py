"""Re-run jobs killed by a spot interruption, once they have failed, at most MAX_RERUNS per run.

The warning comes two minutes before the instance goes; GitHub marks the job failed only after the
runner has been lost, minutes later. So the interruption writes a *pending* record (an SSM
parameter, which outlives the instance) and whoever looks next -- scale-down at once, then every
housekeeper run -- advances it: still running -> wait; failed -> claim and re-run; anything else
-> forget. The claim is one SSM parameter per (run, attempt), created atomically, so of any number
of concurrent or repeated attempts exactly one calls GitHub; and we only re-run attempts 1..N, so a
run gets at most N re-runs from us whatever happens.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from jitrunners.aws import markers
from jitrunners.lifecycle.cleanup import Context
from jitrunners.observability import count, logger

# A job not failed an hour after its runner was reclaimed was picked up or finished elsewhere.
PENDING_LIFETIME: Final = timedelta(hours=1)
# Claims are kept past GitHub's own re-run window (30 days is its log retention; a week is plenty
# to stop a second re-run of the same attempt).
CLAIM_LIFETIME: Final = timedelta(days=7)
# EC2 lists a terminated instance for about an hour; a day is plenty.
RECORDED_LIFETIME: Final = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class PendingRerun:
    repo: str
    job_id: int
    run_id: int
    run_attempt: int
    installation_id: int | None
    instance_id: str
    interrupted_at: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PendingRerun:
        data = json.loads(text)
        return cls(
            repo=str(data["repo"]),
            job_id=int(data["job_id"]),
            run_id=int(data["run_id"]),
            run_attempt=int(data["run_attempt"]),
            installation_id=data.get("installation_id"),
            instance_id=str(data["instance_id"]),
            interrupted_at=str(data["interrupted_at"]),
        )


def pending_path(prefix: str) -> str:
    return f"/{prefix}/state/reruns/pending"


def pending_name(prefix: str, job_id: int, instance_id: str) -> str:
    """One pending record per job and the instance suspected of running it. Each is judged on
    its own: a record written from a runner's tags that a swap made stale ("ran elsewhere") is
    settled without touching the record of the runner that did run the job, whichever of the
    two was written first."""
    return f"{pending_path(prefix)}/{job_id}/{instance_id}"


def _write_pending(pending: PendingRerun, prefix: str) -> str:
    """Create the pending record of this job and instance unless it exists; its name."""
    name = pending_name(prefix, pending.job_id, pending.instance_id)
    if not markers.claim(name, pending.to_json(), prefix):
        logger.debug("re-run already pending", extra={"job_id": pending.job_id})
    return name


def claims_path(prefix: str) -> str:
    return f"/{prefix}/state/reruns/claimed"


def recorded_path(prefix: str) -> str:
    """One record per interrupted instance already handed to this module (by either caller)."""
    return f"/{prefix}/state/reruns/instances"


def recorded_instances(prefix: str) -> dict[str, str]:
    """Interrupted instance -> the job id its interruption was recorded for."""
    return {m.name.rsplit("/", 1)[-1]: m.value for m in markers.list_markers(recorded_path(prefix))}


def _int_tag(instance: Any, attr: str, tag: str) -> int | None:
    value = getattr(instance, attr, None)
    if value in (None, ""):
        value = (getattr(instance, "tags", None) or {}).get(tag)
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def record_interruption(instance: Any, at: datetime, ctx: Context) -> str:
    """Remember that this instance's job may need a re-run; then try to advance it right away."""
    if not ctx.settings.rerun_interrupted_jobs:
        return "disabled"
    job_id = _int_tag(instance, "job_id", "jitrunners:job-id")
    run_id = _int_tag(instance, "run_id", "jitrunners:run-id")
    attempt = _int_tag(instance, "run_attempt", "jitrunners:run-attempt")
    repo = str(getattr(instance, "repo", "") or "")
    if job_id is None or run_id is None or attempt is None or repo.count("/") != 1:
        logger.info("interrupted instance lacks job tags: nothing to re-run")
        return "no_job"
    pending = PendingRerun(
        repo=repo,
        job_id=job_id,
        run_id=run_id,
        run_attempt=attempt,
        installation_id=_int_tag(instance, "installation_id", "jitrunners:installation-id"),
        instance_id=str(instance.id),
        interrupted_at=at.isoformat(),
    )
    prefix = ctx.settings.prefix
    name = _write_pending(pending, prefix)
    # After the pending record (which must exist first): the housekeeper skips instances with
    # this record for this job, so a settled re-run is not recorded again while EC2 still lists
    # the instance. A swap booked after the warning (the runner took another job) rewrites the
    # job tags: then the record names the job the runner really ran, and is overwritten.
    record = f"{recorded_path(prefix)}/{instance.id}"
    if not markers.claim(record, str(job_id), prefix):
        markers.put(record, str(job_id))
    return advance(name, pending, ctx)


def check_failed_job(message: Any, ctx: Context, instance: Any) -> str:
    """Job `message.job_id` ran on our runner `instance` (named by the job's own delivery) and
    failed, or the runner was reclaimed under it: re-run the job once it has failed, if a spot
    reclaim killed that runner. This names the job exactly, whichever job the instance was
    launched for or its tags name; the records and claims are those of record_interruption, so a
    job reached by several paths is re-run once."""
    if not ctx.settings.rerun_interrupted_jobs:
        return "disabled"
    prefix = ctx.settings.prefix
    instance_id = str(instance.id)
    reclaimed = instance.spot_reclaimed or markers.exists(f"{recorded_path(prefix)}/{instance_id}")
    if not reclaimed:
        logger.info("job failed on a runner that was not reclaimed: not re-run")
        return "not_interrupted"
    pending = PendingRerun(
        repo=message.repo,
        job_id=message.job_id,
        run_id=message.run_id,
        run_attempt=message.run_attempt,
        installation_id=message.installation_id,
        instance_id=instance_id,
        interrupted_at=ctx.clock().isoformat(),
    )
    # The job's own delivery names the runner that ran it. A record of the same job written
    # from another instance's tags (two runners that swapped jobs, both reclaimed) is its own
    # record, settled as "ran elsewhere" without touching this one.
    return advance(_write_pending(pending, prefix), pending, ctx)


def advance(name: str, pending: PendingRerun, ctx: Context) -> str:
    """One look at GitHub for a pending re-run; the record is deleted once it is settled."""
    from jitrunners.github.client import GitHubError

    keys = {"job_id": pending.job_id, "repo": pending.repo, "instance_id": pending.instance_id}
    try:
        job = ctx.github.get_job(pending.repo, pending.job_id, pending.installation_id)
    except GitHubError as exc:
        logger.warning(
            "cannot ask GitHub about the job; trying later", extra={**keys, "status": exc.status}
        )
        return "wait:github_unavailable"
    outcome = _verdict(job, pending, ctx)
    if outcome.startswith("wait"):
        logger.info(
            "interrupted job not failed yet; checking later", extra={**keys, "outcome": outcome}
        )
        return outcome
    if outcome == "rerun":
        outcome = _rerun(pending, ctx, keys)
        if outcome.startswith("wait"):
            return outcome  # the record stays for the next look
    if not ctx.dry_run:
        markers.remove(name)
    count("InterruptedJobs", outcome=outcome.split(":")[0])
    logger.info("interrupted job settled", extra={**keys, "outcome": outcome})
    return outcome


def _verdict(job: Any, pending: PendingRerun, ctx: Context) -> str:
    if job is None:
        return "gone"
    from jitrunners.models import runner_instance

    runner = str(getattr(job, "runner_name", "") or "")
    if runner and runner_instance(runner) != pending.instance_id:
        # Runners are fungible: this job ran on another runner, ours ran something we cannot name.
        return "ran_elsewhere"
    status = str(getattr(job, "status", "") or "")
    if status != "completed":
        interrupted = datetime.fromisoformat(pending.interrupted_at)
        if ctx.clock() - interrupted > PENDING_LIFETIME:
            return "expired"
        return f"wait:{status or 'unknown'}"
    if not runner:
        return "not_run_here"
    conclusion = str(getattr(job, "conclusion", "") or "")
    if conclusion != "failure":
        return f"not_failed:{conclusion or 'none'}"
    if pending.run_attempt > ctx.settings.max_reruns:
        return "max_reruns"
    return "rerun"


def _rerun(pending: PendingRerun, ctx: Context, keys: dict[str, Any]) -> str:
    from jitrunners.github.client import GitHubError

    if ctx.dry_run:
        logger.info("would re-run interrupted job", extra=keys)
        return "rerun:dry_run"
    claim = f"{claims_path(ctx.settings.prefix)}/{pending.run_id}-{pending.run_attempt}"
    try:
        if not markers.claim(claim, str(pending.job_id), ctx.settings.prefix):
            return "already_rerun"
    except (ClientError, BotoCoreError):
        return "wait:claim_failed"
    try:
        ctx.github.rerun_job(pending.repo, pending.job_id, pending.installation_id)
    except GitHubError as exc:
        if exc.retryable:
            # Rate limited or GitHub unavailable: nothing was re-run. Give the claim back; the
            # pending record stays, so the next housekeeper run tries again.
            markers.remove(claim)
            logger.warning(
                "GitHub unavailable for the re-run; trying later",
                extra={**keys, "status": exc.status},
            )
            return "wait:github_unavailable"
        # The claim stays: a re-run that GitHub refused (run already re-running, too old, no
        # permission) is not retried, which is the safe side of "never loop".
        logger.warning("GitHub refused the re-run", extra={**keys, "status": exc.status})
        return "rerun_refused"
    count("JobsRerun")
    return "rerun"


def advance_all(ctx: Context) -> dict[str, int]:
    """Housekeeper pass: advance every pending re-run, expire old claims."""
    outcomes: dict[str, int] = {}
    for marker in list(markers.list_markers(pending_path(ctx.settings.prefix))):
        try:
            pending = PendingRerun.from_json(marker.value)
        except (ValueError, KeyError, TypeError):
            logger.warning("unreadable re-run record removed", extra={"record": marker.name})
            if not ctx.dry_run:
                markers.remove(marker.name)
            continue
        outcome = advance(marker.name, pending, ctx).split(":")[0]
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    for path, lifetime in (
        (claims_path(ctx.settings.prefix), CLAIM_LIFETIME),
        (recorded_path(ctx.settings.prefix), RECORDED_LIFETIME),
    ):
        for marker in list(markers.list_markers(path)):
            if ctx.clock() - marker.last_modified > lifetime and not ctx.dry_run:
                markers.remove(marker.name)
    return outcomes
