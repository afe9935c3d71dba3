"""What to do with one EventBridge event about an instance: clean up ours, leave the rest alone."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from jitrunners.aws import fleet, ssm
from jitrunners.lifecycle import spot_breaker
from jitrunners.lifecycle.cleanup import CleanupIncomplete, Context, cleanup
from jitrunners.lifecycle.members import parked
from jitrunners.lifecycle.recovery import rerun
from jitrunners.lifecycle.recovery.pool_pass import refill
from jitrunners.lifecycle.recovery.relaunch import relaunch_if_queued
from jitrunners.lifecycle.teardown import cost
from jitrunners.lifecycle.teardown.events import (
    CommandFinished,
    InstanceStateChanged,
    LifecycleEvent,
    SpotInterruption,
)
from jitrunners.observability import MetricUnit, logger, observe

# A finished command of a document other than ssm.RUNNER_DOCUMENTS on one of our instances (an
# operator's ad-hoc command) must not end a runner that may be mid-job.
RUNNER_DOCUMENTS: Final = ssm.RUNNER_DOCUMENTS


def handle_event(event: LifecycleEvent, ctx: Context) -> str:
    """Act on one event; returns the outcome (for logs and tests). Safe to repeat, any order.

    Raises CleanupIncomplete when a step failed transiently, so that the asynchronous invocation
    is retried; every step is idempotent, so a retry redoes only what is missing.
    """
    logger.append_keys(instance_id=event.instance_id)
    # Only instances carrying our prefix tag come back: a foreign instance and one EC2 no longer
    # describes look the same here, and both are left alone.
    instance = fleet.get_instance(
        event.instance_id, ctx.settings.prefix, ctx.settings.runner_instance_profile_arn
    )
    if instance is None:
        if isinstance(event, InstanceStateChanged) and event.gone:
            # Possibly ours but too old to describe: a parameter under our own path is ours by
            # construction, so that much can still be cleaned (a no-op for foreign instances).
            _delete_param_only(event.instance_id, ctx)
            return "not_ours_or_unknown:parameter_checked"
        logger.debug("event for an instance that is not ours (or unknown); ignored")
        return "ignored:not_ours"
    logger.append_keys(
        template=getattr(instance, "template", None), job_id=getattr(instance, "job_id", None)
    )

    if isinstance(event, CommandFinished):
        return _command_finished(event, instance, ctx)
    if isinstance(event, SpotInterruption):
        _spot_interrupted(instance, event.at, ctx)
        # The re-run record first: it must exist even if a cleanup step fails and raises.
        outcome = rerun.record_interruption(instance, event.at, ctx)
        _finish(cleanup(instance, "spot_interruption", ctx))
        if fleet.free_member(instance):
            refill(instance, ctx)
        cost.report(instance, event.at, "spot_interruption")
        relaunch_if_queued(instance, "spot_interruption", ctx)
        return f"cleaned:spot_interruption:{outcome.split(':')[0]}"
    if not event.gone:
        logger.debug("instance state change needs nothing", extra={"state": event.state})
        return f"ignored:state_{event.state}"
    if event.state in ("stopping", "stopped") and parked(instance):
        # A stopped pool member that booted once and was stopped by scale-up: ready for a job.
        return "ignored:pool_member_parked"
    if fleet.free_member(instance):
        # A pool member that ended before any job took it: the pool launches another.
        refill(instance, ctx)
    if _runner_ended_itself(instance):
        # Its command's end was the runner's own (it ran its job, or idled out): that event's
        # cleanup ended the instance, and no job lost a runner. A lost command event leaves at
        # most a registration for the housekeeper's orphan sweep.
        logger.debug("instance ended after its runner did: nothing left to do")
        return "ignored:runner_ended_itself"
    if instance.spot_reclaimed:
        # The interruption warning was lost (or came late): EC2's state reason still tells.
        _spot_interrupted(instance, event.at, ctx)
        rerun.record_interruption(instance, event.at, ctx)
    # A stopped instance of ours can never run a job again (its JIT config is spent): end it.
    reason = f"instance_{event.state.replace('-', '_')}"
    result = cleanup(instance, reason, ctx, terminate=event.state in ("stopping", "stopped"))
    _finish(result)
    if instance.state not in fleet.GONE_STATES:
        cost.report(instance, event.at, reason)  # gone before: reported when it was ended
    relaunch_if_queued(instance, reason, ctx)
    return f"cleaned:{reason}"


def _runner_ended_itself(instance: Any) -> bool:
    """The instance's runner command had finished before the instance went (one SSM read, which
    replaces a parameter delete and two GitHub calls: the registration and the job's status)."""
    if instance.spot_reclaimed or not instance.command_id:
        return False
    status = ssm.get_command_status(instance.command_id, instance.id)
    return status in ssm.RUNNER_EXITED_STATUSES


def _spot_interrupted(instance: Any, at: datetime, ctx: Context) -> None:
    """One interruption for the template's spot breaker; keyed by instance, so its warning and
    its reclaim count once."""
    template = ctx.templates.get(str(getattr(instance, "template", "") or ""))
    if template is not None:
        spot_breaker.record(template, instance.id, "interruption", ctx.settings, at)


def _command_finished(event: CommandFinished, instance: Any, ctx: Context) -> str:
    if not event.terminal:
        logger.debug("command not finished yet", extra={"status": event.status})
        return f"ignored:status_{event.status}"
    ours = str(getattr(instance, "command_id", "") or "")
    if (ours and ours != event.command_id) or (not ours and event.document not in RUNNER_DOCUMENTS):
        logger.info(
            "a command other than the runner's finished; runner left alone",
            extra={"command_id": event.command_id},
        )
        return "ignored:other_command"
    _observe_job_duration(instance, event.at)
    reason = f"command_{event.status.lower()}"
    # The runner script reads and deletes the parameter before it starts the runner, and an
    # ephemeral runner that ran its job exits 0 after GitHub has removed its registration: on
    # Success neither is left (a failed delete is the housekeeper's orphan sweep's).
    # A runner that ran its job is healthy: nothing but us ends its instance now, so it is
    # terminated as described above (after any other end, spot may be taking it meanwhile).
    ran = event.status == "Success"
    _finish(
        cleanup(instance, reason, ctx, parameter=not ran, registrations=not ran, recheck=not ran)
    )
    cost.report(instance, event.at, reason)
    return f"cleaned:{reason}"


def _observe_job_duration(instance: Any, finished: datetime) -> None:
    started = getattr(instance, "started_at", None)
    if isinstance(started, str) and started:
        try:
            started = datetime.fromisoformat(started.replace("Z", "+00:00"))
        except ValueError:
            return
    if isinstance(started, datetime):
        seconds = (finished - started).total_seconds()
        if seconds >= 0:
            observe("JobDuration", seconds, MetricUnit.Seconds)


def _delete_param_only(instance_id: str, ctx: Context) -> None:
    if ssm.delete_parameter(ctx.settings.jit_param_name(instance_id)):
        logger.info("JIT parameter of a gone instance deleted")


def _finish(result: Any) -> None:
    if result.incomplete:
        raise CleanupIncomplete(", ".join(result.incomplete))
