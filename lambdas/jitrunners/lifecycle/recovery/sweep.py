"""The housekeeper's decisions: find what lost events and crashed invocations left, end it."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from jitrunners.aws import fleet, markers, ssm
from jitrunners.aws.queue import QueueError
from jitrunners.aws.ssm import TERMINAL_COMMAND_STATUSES
from jitrunners.config import RunnerTemplate
from jitrunners.lifecycle.cleanup import ENDED_STATES, Context, cleanup, runner_scopes
from jitrunners.lifecycle.members import parked
from jitrunners.lifecycle.provisioning.tags import booting_for, command_age
from jitrunners.lifecycle.recovery import listing as instance_listing
from jitrunners.lifecycle.recovery import rerun
from jitrunners.lifecycle.recovery.pool_pass import pool_pass
from jitrunners.lifecycle.recovery.reconcile import reconcile
from jitrunners.lifecycle.recovery.reconcile import reset as reconcile_reset
from jitrunners.lifecycle.recovery.relaunch import relaunch_if_queued, relaunch_path
from jitrunners.models import aware_instant, runner_instance
from jitrunners.observability import count, logger

AWS_ERRORS: Final = (ClientError, BotoCoreError)
# Scale-up retries a start until the start timeout and then cleans up itself: give it that long
# and a little more before the housekeeper steps in, so the two never race.
START_GRACE: Final = timedelta(minutes=2)
# The `started-at` tag is stamped after SendCommand returns, to the second, by the Lambda's
# clock; SSM's end time comes from AWS's. A command is taken to have been sent this much earlier.
CLOCK_MARGIN: Final = timedelta(seconds=10)
# RunCommand's executionTimeout equals the max lifetime: its TimedOut event should end the
# instance; the housekeeper ends it a little after that if the event was lost.
LIFETIME_GRACE: Final = timedelta(minutes=5)
# A parameter is written just after its instance is launched; a describe that lags behind must
# not make a fresh parameter look orphaned. (One whose instance EC2 lists as ended goes at once.)
PARAMETER_GRACE: Final = timedelta(minutes=5)
# GitHub accepts redelivery requests for deliveries of the last 3 days; stay clear of the edge.
REDELIVERY_WINDOW: Final = timedelta(days=3) - timedelta(hours=1)
REDELIVERY_MARKER_LIFETIME: Final = timedelta(days=4)
# A delivery whose redeliveries keep failing (our endpoint refuses it) is asked for at most this
# many times: the original attempt plus its redeliveries.
MAX_DELIVERY_ATTEMPTS: Final = 4
# The newest delivery a pass listed, kept among the redelivery markers (a name no GUID takes):
# the next pass lists from there, less LISTING_OVERLAP, instead of the whole window again.
LISTED_UNTIL: Final = "listed-until"
# GitHub lists an attempt once it is over (up to its 10 s timeout) and not strictly in order:
# each pass lists this much of what the last one saw again.
LISTING_OVERLAP: Final = timedelta(minutes=5)
# A relaunch record only has to outlive the events about its instance (retries, duplicates).
RELAUNCH_MARKER_LIFETIME: Final = timedelta(days=1)
# A fallback for instances whose template was removed from the configuration.
_DEFAULT_LIMITS: Final = RunnerTemplate(
    name="-", labels=("-",), launch_template="-", instance_types=("-",)
)


@dataclass
class SweepReport:
    """Every action taken (or, in dry-run mode, that would have been), as (kind, target, reason)."""

    actions: list[tuple[str, str, str]] = field(default_factory=list)
    zombies: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    # (job id, run attempt) of every job a launch was sent for (or would be, in dry-run mode).
    launched_jobs: set[tuple[int, int]] = field(default_factory=set)

    def add(self, kind: str, target: str, reason: str) -> None:
        self.actions.append((kind, target, reason))


def sweep(ctx: Context, remaining_ms: Callable[[], int] | None = None) -> SweepReport:
    """One housekeeping pass. Each stage is idempotent: a second pass right after does nothing
    (but repeat a reconciliation launch scale-up has not taken yet: scale-up drops the copy)."""
    report = SweepReport()
    now = ctx.clock()
    prefix = ctx.settings.prefix
    # Terminated ones too: EC2 lists them for about an hour, long enough for their tags to tell
    # which GitHub scopes to search for leftover registrations (described once each: listing).
    instances = instance_listing.our_instances(ctx, now)
    ended: set[str] = {i.id for i in instances if i.state in ENDED_STATES}
    # Listed first: a runner GitHub has online needs no look at its command (below).
    listings = _list_runner_scopes(ctx, instances)
    online = _online(listings)

    for instance in instances:
        if instance.id in ended:
            continue
        try:
            reason = why_end(instance, now, ctx, instance.id in online)
        except AWS_ERRORS as exc:
            # One unreadable command status must not stop the sweep of the others.
            logger.warning(
                "cannot judge instance; next run",
                extra={"instance_id": instance.id, "detail": str(exc)},
            )
            continue
        if reason is None:
            continue
        report.zombies += 1
        report.add("terminate", instance.id, reason)
        logger.warning(
            "ending a zombie instance",
            extra={
                "instance_id": instance.id,
                "template": instance.template,
                "job_id": instance.job_id,
                "reason": reason,
                "dry_run": ctx.dry_run,
            },
        )
        result = cleanup(instance, reason, ctx)
        if not result.incomplete:
            ended.add(instance.id)
        _relaunch(instance, reason, ctx, report)
    live = {i.id for i in instances} - ended
    count("Zombies", report.zombies)

    # Before the lost ends' command reads, which share SSM's bucket with its listing: the JIT
    # configs of instances gone are secrets, and their sweep must not starve behind the reads.
    _orphan_parameters(ctx, now, live, ended, report)
    _relaunch_for_lost_ends(ctx, instances, report)
    try:
        pooled = pool_pass(ctx, [i for i in instances if i.id not in ended], now)
    except (*AWS_ERRORS, QueueError) as exc:
        logger.warning("pool pass failed; next run", extra={"detail": str(exc)})
    else:
        for kind, n in pooled.items():
            if n:
                report.add("pool", kind, str(n))

    if report.zombies:
        # Ending zombies deleted registrations: the later stages judge by GitHub's list now.
        listings = _list_runner_scopes(ctx, instances)
    _orphan_runners(ctx, instances, live, listings, report)
    if _time_left(remaining_ms):
        registrations = _registrations(listings, (i.id for i in instances))
        reconcile(ctx, instances, live, registrations, report, lambda: _time_left(remaining_ms))
    if _time_left(remaining_ms):
        outcomes = rerun.advance_all(ctx)
        if outcomes:
            logger.info("pending re-runs advanced", extra={"outcomes": outcomes})
    if ctx.settings.github_auth_mode == "app" and _time_left(remaining_ms):
        _redeliver_failed(ctx, now, report)
    _expire_markers(relaunch_path(prefix), RELAUNCH_MARKER_LIFETIME, now, ctx)
    logger.info(
        "housekeeping done",
        extra={"actions": len(report.actions), "zombies": report.zombies, "dry_run": ctx.dry_run},
    )
    return report


def _time_left(remaining_ms: Callable[[], int] | None) -> bool:
    return remaining_ms is None or remaining_ms() > 15_000


def why_end(instance: Any, now: datetime, ctx: Context, online: bool = False) -> str | None:
    """Why a live instance of ours should be ended now, or None when it is healthy.

    `online`: GitHub lists the instance's runner as online (this pass's listing). Its process
    is running, so its command has not ended: no GetCommandInvocation. Without this, every pass
    asked SSM about every running runner (at 1,000 runners, 50 s of SSM's default 20 calls a
    second per pass); now only about runners GitHub does not list online: ended, crashed, never
    registered or not yet, or in a scope GitHub could not list this pass."""
    if instance.state in ("stopping", "stopped"):
        if parked(instance):
            return None  # a stopped pool member, ready for a job (the pool pass recycles it)
        return "stopped"
    limits = ctx.templates.get(str(instance.template or "")) or _DEFAULT_LIMITS
    launched = instance.launch_time
    age = now - launched if isinstance(launched, datetime) else timedelta(0)
    if age > timedelta(seconds=limits.max_lifetime_s) + LIFETIME_GRACE:
        return "max_lifetime"
    if not instance.command_id:
        # A claimed stopped pool member's start timeout runs from when it was started again.
        if (
            timedelta(seconds=booting_for(instance, now))
            > timedelta(seconds=limits.start_timeout_s) + START_GRACE
        ):
            return "start_timeout"
        return None
    if online:
        return None
    grace = timedelta(seconds=ctx.settings.teardown_grace_s)
    sent = command_age(instance, now)
    if sent is not None and timedelta(seconds=sent) + CLOCK_MARGIN < grace:
        # A command sent less than the grace ago cannot have ended before it: whatever SSM
        # says, the answer below would be None. In a burst most runners GitHub does not list
        # online are still booting or registering: one SSM read each per pass, for nothing.
        return None
    invocation = ssm.get_command_invocation(instance.command_id, instance.id)
    if invocation is None or invocation.status not in TERMINAL_COMMAND_STATUSES:
        return None
    if invocation.ended_at is not None and now - invocation.ended_at < grace:
        # Its status event is on its way to scale-down (the teardown queue batches it, and
        # retries a failed batch): ending it here too would race scale-down and count a zombie
        # that is none.
        return None
    # Scale-down missed the status event (or failed for good): the runner is done.
    return f"command_{invocation.status.lower()}_missed"


def _relaunch_for_lost_ends(ctx: Context, instances: Iterable[Any], report: SweepReport) -> None:
    """Relaunch for instances that ended without their runner exiting, if their job still waits.

    Scale-down does this on the spot warning or state change; when both events were lost this
    is the only place left. A runner that exited by itself (command Success or Failed: the job
    ended, or it idled out) is no reason to launch again: that would loop for a job no runner
    ever gets. Each instance is relaunched at most once (the relaunch record).
    """
    ended = [i for i in instances if i.state in ENDED_STATES]
    # Forget what EC2 no longer lists: the container's memory stays as large as EC2's list.
    _EXITED.intersection_update(i.id for i in ended)
    if not ended:
        return
    _record_lost_interruptions(ctx, ended, report)
    done = {
        m.name.rsplit("/", 1)[-1] for m in markers.list_markers(relaunch_path(ctx.settings.prefix))
    }
    for instance in ended:
        if instance.id in done or not _end_unexplained(instance):
            continue
        try:
            status = (
                ssm.get_command_status(instance.command_id, instance.id)
                if instance.command_id
                else None
            )
        except AWS_ERRORS:
            continue
        if status in ssm.RUNNER_EXITED_STATUSES:
            _EXITED.add(instance.id)  # an ended command's status never changes
            continue
        if _relaunch(instance, "instance_terminated", ctx, report).startswith("relaunch"):
            report.add("relaunch", instance.id, "ended_before_its_job_ran")


# Ended instances whose runner command this container read as exited by itself: EC2 lists a
# terminated instance for about an hour, and without this every pass of a warm container read
# each untagged one again (a 10,000-job burst: thousands of GetCommandInvocation calls a pass).
# A cold container reads each once more. Pruned to what EC2 still lists at every pass.
_EXITED: set[str] = set()


def _end_unexplained(instance: Any) -> bool:
    """Whether an ended instance still needs its command's status read (one SSM call each): not
    when the scale-down batch that ended it wrote that its runner exited (a burst's batches do),
    nor when an earlier pass of this container read so."""
    return not instance.tags.get(fleet.TAG_RUNNER_EXITED) and instance.id not in _EXITED


def reset() -> None:
    """Forget the container's reads (a new process, for tests)."""
    _EXITED.clear()
    instance_listing.reset()
    reconcile_reset()


def _record_lost_interruptions(ctx: Context, ended: list[Any], report: SweepReport) -> None:
    """Spot reclaims nobody told us about: hand them to the re-run logic, once per instance and
    job it owes.

    Scale-down records an interruption from the warning or the state change; when both events
    were lost, EC2's state reason on the terminated instance is the only trace left of it. And
    when the warning came before the swap was booked (the runner took another job), the record
    names the job it was launched for: the rewritten job tags name the one it killed.
    """
    reclaimed = [i for i in ended if i.spot_reclaimed and i.command_id]
    if not reclaimed or not ctx.settings.rerun_interrupted_jobs:
        return
    recorded = rerun.recorded_instances(ctx.settings.prefix)
    for instance in reclaimed:
        if instance.id in recorded and recorded[instance.id] == str(instance.job_id):
            continue  # recorded for the job it owes (a swap booked since rewrites that)
        report.add("record_interruption", instance.id, instance.state_reason)
        extra = {"instance_id": instance.id, "job_id": instance.job_id}
        if ctx.dry_run:
            logger.info("would record a spot interruption whose events were lost", extra=extra)
            continue
        logger.warning("spot interruption found without its events: recorded", extra=extra)
        try:
            rerun.record_interruption(instance, ctx.clock(), ctx)
        except AWS_ERRORS as exc:
            logger.warning("cannot record the interruption; next run", extra={"detail": str(exc)})


def _relaunch(instance: Any, reason: str, ctx: Context, report: SweepReport) -> str:
    try:
        outcome = relaunch_if_queued(instance, reason, ctx)
    except (*AWS_ERRORS, QueueError) as exc:
        logger.warning(
            "relaunch failed; next run", extra={"instance_id": instance.id, "detail": str(exc)}
        )
        return "failed"
    if outcome.startswith("relaunch") and instance.job_id is not None:
        # The reconciliation below must count this launch, not send another for the same job.
        report.launched_jobs.add((instance.job_id, instance.run_attempt or 1))
    return outcome


def _orphan_parameters(
    ctx: Context, now: datetime, live: set[str], ended: set[str], report: SweepReport
) -> None:
    """Delete the JIT config parameters of instances gone (scale-down deletes them with its
    batches; these are the ones whose events were lost). A throttled or failed SSM call ends
    this stage for the pass, not the pass: a pass that raised here (SSM's shared bucket drained
    by a burst's runners) never reached its later stages, and every following pass failed the
    same way while the parameters stayed."""
    try:
        _delete_orphan_parameters(ctx, now, live, ended, report)
    except AWS_ERRORS as exc:
        count("HousekeeperStageFailed", stage="orphan_parameters")
        logger.warning("orphan parameter sweep failed; next run", extra={"detail": str(exc)})


def _delete_orphan_parameters(
    ctx: Context, now: datetime, live: set[str], ended: set[str], report: SweepReport
) -> None:
    """`ended`: instances EC2 lists as ended (their parameters go at once); one EC2 does not
    list at all may be too new for its describe, and its parameter waits PARAMETER_GRACE."""
    doomed: list[tuple[str, str]] = []
    for param in ssm.list_jit_parameters(ctx.settings.prefix):
        instance_id = param.name.rsplit("/", 1)[-1]
        if instance_id in live:
            continue
        modified = param.last_modified
        if (
            instance_id not in ended
            and isinstance(modified, datetime)
            and now - modified < PARAMETER_GRACE
        ):
            report.skipped["parameter_too_new"] += 1
            continue
        report.add("delete_parameter", param.name, "instance_gone")
        count("OrphansDeleted", kind="parameter")
        doomed.append((param.name, instance_id))
    for start in range(0, len(doomed), ssm.DELETE_CHUNK):
        chunk = doomed[start : start + ssm.DELETE_CHUNK]
        if not ctx.dry_run:
            ssm.delete_parameters([name for name, _ in chunk])  # one call per 10
        for name, instance_id in chunk:
            extra = {"instance_id": instance_id, "parameter": name, "reason": "instance_gone"}
            if ctx.dry_run:
                logger.info("would delete orphan JIT parameter", extra=extra)
            else:
                logger.info("orphan JIT parameter deleted", extra=extra)


@dataclass
class ScopeListing:
    """One GitHub runner scope our instances were registered in, listed once per pass."""

    scope: Any
    installation_id: int | None
    runners: list[Any] | None  # None: GitHub could not list them


def _list_runner_scopes(ctx: Context, instances: Iterable[Any]) -> dict[str, ScopeListing]:
    """The runners of every scope our instances (terminated ones included) were registered in,
    one listing per scope and pass: the orphan and reconciliation stages both read it."""
    from jitrunners.github.client import GitHubError

    listings: dict[str, ScopeListing] = {}
    for instance in instances:
        for scope in runner_scopes(instance, ctx.templates):
            if scope.path not in listings:
                listings[scope.path] = ScopeListing(scope, instance.installation_id, None)
    for path, listing in sorted(listings.items()):
        try:
            listing.runners = list(ctx.github.list_runners(listing.scope, listing.installation_id))
        except GitHubError as exc:
            logger.warning("cannot list runners", extra={"scope": path, "status": exc.status})
    return listings


def _online(listings: dict[str, ScopeListing]) -> set[str]:
    """The instance ids whose runners GitHub lists as online, in any scope listed this pass."""
    return {
        str(runner_instance(r.name))
        for listing in listings.values()
        for r in listing.runners or ()
        if r.status == "online" and runner_instance(r.name)
    }


def _registrations(
    listings: dict[str, ScopeListing], ours: Iterable[str]
) -> dict[str, dict[str, bool] | None]:
    """Per scope: our instances' registrations there, by instance id, and whether each is
    busy."""
    mine = set(ours)
    return {
        path: None
        if listing.runners is None
        else {
            str(runner_instance(r.name)): bool(r.busy)
            for r in listing.runners
            if runner_instance(r.name) in mine
        }
        for path, listing in listings.items()
    }


def _orphan_runners(
    ctx: Context,
    instances: Iterable[Any],
    live: set[str],
    listings: dict[str, ScopeListing],
    report: SweepReport,
) -> None:
    """Delete registrations of our gone instances that GitHub still lists as offline and idle.

    Scopes are the ones our instances (terminated ones included) were registered in; within them
    only runners whose name is one of *our* instance ids qualify, so a runner of another system,
    even one named like an instance, is never touched, and neither is a busy or online one.
    """
    from jitrunners.github.client import GitHubError

    ours: dict[str, Any] = {i.id: i for i in instances}
    for path, listing in sorted(listings.items()):
        for runner in listing.runners or ():
            name = str(runner_instance(runner.name))
            if name not in ours:
                continue  # not one of our instances: never ours to delete
            if name in live:
                continue
            if runner.busy or runner.status != "offline":
                report.skipped["runner_busy_or_online"] += 1
                continue
            report.add("delete_runner", f"{path}/{name}", "instance_gone")
            count("OrphansDeleted", kind="runner")
            extra = {"instance_id": name, "scope": path, "reason": "instance_gone"}
            if ctx.dry_run:
                logger.info("would delete orphan runner registration", extra=extra)
                continue
            try:
                ctx.github.delete_runner(listing.scope, runner.id, listing.installation_id)
            except GitHubError as exc:
                logger.warning("cannot delete runner", extra={**extra, "status": exc.status})
                continue
            logger.info("orphan runner registration deleted", extra=extra)


def redelivery_path(prefix: str) -> str:
    return f"/{prefix}/state/redeliveries"


def _redeliver_failed(ctx: Context, now: datetime, report: SweepReport) -> None:
    """Ask GitHub to redeliver `workflow_job` deliveries that never reached us.

    A delivery (guid) may have several attempts; it needs help only when none got a 2xx. Our
    request is remembered as an SSM parameter named after the guid whose value is the attempt we
    asked GitHub to redeliver and how many we have asked for (`<id>:<n>`), written before
    asking: a crash, a retry or a concurrent run never asks twice for one attempt. A redelivery
    that failed too is a newer attempt, asked for again (up to MAX_DELIVERY_ATTEMPTS); a request
    GitHub could not take is given back for the next run.

    Each pass lists the deliveries from where the last one stopped (LISTED_UNTIL, less
    LISTING_OVERLAP), not the whole 3-day window: at 10,000 jobs an hour the window holds about
    two million deliveries, 20,000 pages a pass. What a pass must see again stays in reach: a
    redelivery GitHub makes is a new attempt, listed as new; the mark never passes a delivery
    whose request was given back; and the attempts made before the listed slice are counted from
    the marker."""
    from jitrunners.github.client import GitHubError
    from jitrunners.guardrail import webhook_stopped

    try:
        stopped = webhook_stopped(ctx.settings.prefix)
    except (ClientError, BotoCoreError) as exc:
        logger.warning("cannot read the kill switch: redeliveries wait", extra={"detail": str(exc)})
        return
    if stopped:
        # A redelivery now would fail like the delivery did, and each is asked for once: the
        # failed deliveries wait (within REDELIVERY_WINDOW) until the switch is lifted.
        logger.info("kill switch on: failed deliveries are asked for again once it is lifted")
        return
    path = redelivery_path(ctx.settings.prefix)
    asked = {m.name.rsplit("/", 1)[-1]: m.value for m in markers.list_markers(path)}
    listed_until = aware_instant(asked.pop(LISTED_UNTIL, None))
    since = now - REDELIVERY_WINDOW
    start = since if listed_until is None else max(since, listed_until - LISTING_OVERLAP)
    attempts: dict[str, list[Any]] = defaultdict(list)
    newest: datetime | None = None
    try:
        for delivery in ctx.github.list_deliveries(start):
            newest = delivery.delivered_at if newest is None else max(newest, delivery.delivered_at)
            if delivery.event == "workflow_job":
                attempts[str(delivery.guid)].append(delivery)
    except GitHubError as exc:
        logger.warning("cannot list webhook deliveries", extra={"status": exc.status})
        return
    # Queued jobs start runners; a completed one may be a job lost to a spot reclaim, which only
    # its webhook names (the delivery list does not say whether it failed: ask for all of them).
    wanted: tuple[str | None, ...] = (None, "queued")
    if ctx.settings.rerun_interrupted_jobs:
        wanted += ("completed",)
    for guid, tries in sorted(attempts.items()):
        if any(_delivered(d) for d in tries):
            continue
        latest = max(tries, key=lambda d: (d.delivered_at, d.id))
        if getattr(latest, "action", None) not in wanted:
            continue  # in_progress (and completed, without re-runs) change nothing for us
        if latest.delivered_at < since:
            continue
        before = asked.get(guid)
        before_id, _, before_n = (before or "").partition(":")
        if before is not None and before_id == str(latest.id):
            continue  # asked for already; GitHub has not made the attempt yet
        # Attempts made: those listed, or (when earlier ones fall before the listed slice) the
        # original and each redelivery asked for, by the marker (an old marker: one).
        made = len(tries) if before is None else max(len(tries), _asked(before_n) + 1)
        if before is not None and made >= MAX_DELIVERY_ATTEMPTS:
            continue
        extra = {
            "delivery_id": guid,
            "reason": "delivery_failed",
            "status_code": latest.status_code,
            "attempts": made,
        }
        report.add("redeliver", guid, "delivery_failed")
        if ctx.dry_run:
            logger.info("would ask GitHub to redeliver", extra=extra)
            continue
        name = f"{path}/{guid}"
        value = f"{latest.id}:{made}"
        if before is None:
            if not markers.claim(name, value, ctx.settings.prefix):
                report.actions.pop()
                continue
        else:
            markers.put(name, value)
        try:
            ctx.github.redeliver(latest.id)
        except GitHubError as exc:
            logger.warning("GitHub refused the redelivery", extra={**extra, "status": exc.status})
            if exc.retryable:
                # Nothing was redelivered: give the request back, so the next run asks again
                # (and lists from before this attempt, however far newer deliveries reach).
                if before is None:
                    markers.remove(name)
                else:
                    markers.put(name, before)
                newest = min(newest or latest.delivered_at, latest.delivered_at)
            continue
        count("Redeliveries")
        logger.info("redelivery requested", extra=extra)
    if not ctx.dry_run and newest is not None and newest != listed_until:
        _mark_listed(f"{path}/{LISTED_UNTIL}", newest, listed_until, ctx.settings.prefix)
    _expire_markers(path, REDELIVERY_MARKER_LIFETIME, now, ctx)


def _asked(count_text: str) -> int:
    """Redeliveries asked for, by a marker's count (`<id>:<n>`); 1 for a marker without one."""
    return int(count_text) if count_text.isdigit() else 1


def _mark_listed(name: str, newest: datetime, before: datetime | None, prefix: str) -> None:
    """Keep where this pass's listing stopped; a failed write only means a longer listing."""
    try:
        if before is None and markers.claim(name, newest.isoformat(), prefix):
            return
        markers.put(name, newest.isoformat())
    except AWS_ERRORS as exc:
        logger.warning("cannot keep the deliveries listed", extra={"detail": str(exc)})


def _expire_markers(path: str, lifetime: timedelta, now: datetime, ctx: Context) -> None:
    if ctx.dry_run:
        return
    for marker in list(markers.list_markers(path)):
        if now - marker.last_modified > lifetime:
            markers.remove(marker.name)


def _delivered(delivery: Any) -> bool:
    code = getattr(delivery, "status_code", None)
    return isinstance(code, int) and 200 <= code < 300
