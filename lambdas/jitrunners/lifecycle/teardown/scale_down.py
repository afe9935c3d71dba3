"""What to do with the EventBridge events about our instances: clean up ours, leave the rest alone.

Events come in batches (scale-down reads them from the teardown queue): a batch describes every
instance its events name in one DescribeInstances, handles each event with its described
instance, and at the end terminates every instance it decided to end in one TerminateInstances
and deletes the JIT config parameters of the runners it cleaned up in one DeleteParameters per 10
(the runner script only reads its parameter).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from jitrunners.aws import fleet, ssm
from jitrunners.aws.clients import error_code
from jitrunners.lifecycle import spot_breaker
from jitrunners.lifecycle.cleanup import CleanupIncomplete, Context, cleanup, terminate_batch
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
from jitrunners.observability import MetricUnit, count, logger, observe

# A finished command of a document other than ssm.RUNNER_DOCUMENTS on one of our instances (an
# operator's ad-hoc command) must not end a runner that may be mid-job.
RUNNER_DOCUMENTS: Final = ssm.RUNNER_DOCUMENTS
_RECORD_KEYS: Final = ("instance_id", "template", "job_id")
# Written, with the runner command's status, on an instance whose runner command ended by itself
# (Success, Failed) just before the batch terminates it: the state change that follows reads it
# in its DescribeInstances instead of asking SSM. Only this Lambda writes it (IAM: this key alone).
TAG_RUNNER_EXITED: Final = fleet.TAG_RUNNER_EXITED
# ... from this many such instances in a batch: one CreateTags (EC2's tag bucket refills 10/s and
# is the one scale-up's tag writes bind a burst on) is worth it against as many
# GetCommandInvocation calls (20/s) from two upwards; below three, at low load, the SSM reads stay.
TAG_EXITED_FROM: Final = 3
# Instances whose runner command this container saw end by itself (it ended them, or SSM said
# so): the two state changes that follow each (`shutting-down`, `terminated`) need neither the
# tag nor an SSM read when they reach the same container. Oldest forgotten first.
EXITED_MEMORY: Final = 20_000
_EXITED: OrderedDict[str, None] = OrderedDict()


def _remember_exited(instance_id: str) -> None:
    _EXITED[instance_id] = None
    _EXITED.move_to_end(instance_id)
    while len(_EXITED) > EXITED_MEMORY:
        _EXITED.popitem(last=False)


def reset() -> None:
    """Forget what this container saw (a new process, for tests)."""
    _EXITED.clear()


def handle_event(event: LifecycleEvent, ctx: Context) -> str:
    """Act on one event (a batch of one); returns the outcome (for logs and tests). Safe to
    repeat, any order.

    Raises CleanupIncomplete when a step failed transiently (the instance is terminated all the
    same when it was to be), so that the event is retried; every step is idempotent, so a retry
    redoes only what is missing.
    """
    batch = Teardown.describe([event], ctx)
    try:
        outcome = batch.handle("event", event)
    finally:
        failed = batch.terminate()
    if failed:
        raise CleanupIncomplete("terminate")
    return outcome


class Teardown:
    """One batch of events: the instances they name, described once, and the terminations the
    batch decided on, held until `terminate()`. Each event is handled under a key (its SQS
    message id), so that a termination that fails fails back the events that asked for it."""

    def __init__(self, instances: dict[str, fleet.Instance], ctx: Context) -> None:
        self.ctx = ctx
        self.instances = instances
        self._ends: dict[str, tuple[fleet.Instance, str]] = {}
        self._keys: dict[str, set[str]] = {}
        self._exited: dict[str, str] = {}  # instance id -> its runner command's own end status
        self._params: dict[str, set[str]] = {}  # JIT parameter name -> the keys that asked

    @classmethod
    def describe(cls, events: Iterable[LifecycleEvent], ctx: Context) -> Teardown:
        """One DescribeInstances (per 200 ids) for every instance the events name. Only
        instances carrying our prefix tag (and, live, our instance profile) come back: a foreign
        instance and one EC2 no longer describes look the same, and both are left alone."""
        ids = sorted({event.instance_id for event in events})
        found = fleet.list_by_ids(
            ctx.settings.prefix, ids, profile_arn=ctx.settings.runner_instance_profile_arn
        )
        return cls({instance.id: instance for instance in found}, ctx)

    def handle(self, key: str, event: LifecycleEvent) -> str:
        """Act on one event with its described instance; terminations wait for `terminate()`.
        Raises CleanupIncomplete when a step failed transiently."""
        logger.remove_keys(list(_RECORD_KEYS))
        logger.append_keys(instance_id=event.instance_id)
        instance = self.instances.get(event.instance_id)
        if instance is None:
            if isinstance(event, InstanceStateChanged) and event.gone:
                # Possibly ours but too old to describe: a parameter under our own path is ours
                # by construction, so that much can still be cleaned (a no-op for foreign ones).
                self._drop_parameter(key, event.instance_id)
                return "not_ours_or_unknown:parameter_checked"
            logger.debug("event for an instance that is not ours (or unknown); ignored")
            return "ignored:not_ours"
        logger.append_keys(template=instance.template, job_id=instance.job_id)
        if isinstance(event, CommandFinished):
            return self._command_finished(key, event, instance)
        if isinstance(event, SpotInterruption):
            return self._spot_interruption(key, event, instance)
        return self._state_changed(key, event, instance)

    def terminate(self) -> list[str]:
        """End every instance the batch decided to end, in one TerminateInstances (per 1,000),
        then delete the batch's JIT parameters; returns the keys of the events whose instance
        could not be terminated or whose parameter could not be deleted (to retry)."""
        logger.remove_keys(list(_RECORD_KEYS))
        ends = list(self._ends.values())
        self._ends.clear()
        self._mark_exited([instance for instance, _ in ends if instance.id in self._exited])
        failed = terminate_batch(ends, self.ctx) if ends else []
        for instance, _ in ends:
            if instance.id in self._exited and instance.id not in failed:
                _remember_exited(instance.id)
        keys = {key for instance_id in failed for key in self._keys.get(instance_id, ())}
        return sorted(keys | self._delete_parameters())

    def _drop_parameter(self, key: str, instance_id: str) -> None:
        """Delete the instance's JIT parameter with the batch's (`terminate()`)."""
        self._params.setdefault(self.ctx.settings.jit_param_name(instance_id), set()).add(key)

    def _delete_parameters(self) -> set[str]:
        """One DeleteParameters per 10 of the batch's parameters (those already gone are skipped
        by SSM); returns the keys of the events whose parameters a refused call named (a
        throttle: they come back from SQS; the housekeeper's orphan sweep is the last resort)."""
        params = dict(self._params)
        self._params.clear()
        names = sorted(params)
        if names and self.ctx.dry_run:
            logger.info("would delete JIT parameters if present", extra={"parameters": names})
            return set()
        retry: set[str] = set()
        for start in range(0, len(names), ssm.DELETE_CHUNK):
            chunk = names[start : start + ssm.DELETE_CHUNK]
            try:
                deleted = ssm.delete_parameters(chunk)
            except (ClientError, BotoCoreError) as exc:
                code = error_code(exc) or type(exc).__name__
                count("CleanupIncomplete", reason="parameter")
                logger.warning(
                    "JIT parameters not deleted: their events are retried",
                    extra={"failed": f"parameter:{code}", "parameters": chunk},
                )
                retry.update(key for name in chunk for key in params[name])
                continue
            if deleted:
                logger.info(
                    "JIT parameters deleted",
                    extra={"parameters": sorted(deleted), "count": len(deleted)},
                )
        return retry

    def _mark_exited(self, instances: list[fleet.Instance]) -> None:
        """One CreateTags for the batch: these runners ended themselves. Best effort: without
        the tag the state change asks SSM, as it always could."""
        if len(instances) < TAG_EXITED_FROM or self.ctx.dry_run:
            return
        try:
            fleet.tag_described(instances, self.ctx.settings.prefix, {TAG_RUNNER_EXITED: "true"})
        except (ClientError, BotoCoreError) as exc:
            logger.info("runner-exited tags not written", extra={"detail": type(exc).__name__})

    # --- the events ------------------------------------------------------------------------

    def _end(self, key: str, instance: fleet.Instance, reason: str) -> None:
        """Terminate the instance at the end of the batch (the first reason given wins)."""
        self._ends.setdefault(instance.id, (instance, reason))
        self._keys.setdefault(instance.id, set()).add(key)

    def _command_finished(self, key: str, event: CommandFinished, instance: fleet.Instance) -> str:
        if not event.terminal:
            logger.debug("command not finished yet", extra={"status": event.status})
            return f"ignored:status_{event.status}"
        ours = str(instance.command_id or "")
        if (ours and ours != event.command_id) or (
            not ours and event.document not in RUNNER_DOCUMENTS
        ):
            logger.info(
                "a command other than the runner's finished; runner left alone",
                extra={"command_id": event.command_id},
            )
            return "ignored:other_command"
        _observe_job_duration(instance, event.at)
        reason = f"command_{event.status.lower()}"
        # An ephemeral runner that ran its job exits 0 after GitHub has removed its
        # registration: on Success none is left. Otherwise the registration goes first; the
        # instance and the parameter (the runner only read it) at the end of the batch.
        ran = event.status == "Success"
        if ours == event.command_id and event.status in ssm.RUNNER_EXITED_STATUSES:
            self._exited[instance.id] = event.status
        self._end(key, instance, reason)
        self._drop_parameter(key, instance.id)
        _finish(
            cleanup(
                instance, reason, self.ctx, terminate=False, parameter=False, registrations=not ran
            )
        )
        cost.report(instance, event.at, reason)
        return f"cleaned:{reason}"

    def _spot_interruption(
        self, key: str, event: SpotInterruption, instance: fleet.Instance
    ) -> str:
        _spot_interrupted(instance, event.at, self.ctx)
        # The re-run record first: it must exist even if a cleanup step fails and raises.
        outcome = rerun.record_interruption(instance, event.at, self.ctx)
        self._end(key, instance, "spot_interruption")
        self._drop_parameter(key, instance.id)
        _finish(cleanup(instance, "spot_interruption", self.ctx, terminate=False, parameter=False))
        if fleet.free_member(instance):
            refill(instance, self.ctx)
        cost.report(instance, event.at, "spot_interruption")
        relaunch_if_queued(instance, "spot_interruption", self.ctx)
        return f"cleaned:spot_interruption:{outcome.split(':')[0]}"

    def _state_changed(
        self, key: str, event: InstanceStateChanged, instance: fleet.Instance
    ) -> str:
        ctx = self.ctx
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
            # batch ended the instance and deleted its parameter, and no job lost a runner. A
            # lost command event leaves at most a registration and the parameter for the
            # housekeeper's orphan sweeps.
            logger.debug("instance ended after its runner did: nothing left to do")
            return "ignored:runner_ended_itself"
        if instance.spot_reclaimed:
            # The interruption warning was lost (or came late): EC2's state reason still tells.
            _spot_interrupted(instance, event.at, ctx)
            rerun.record_interruption(instance, event.at, ctx)
        # A stopped instance of ours can never run a job again (its JIT config is spent): end it.
        reason = f"instance_{event.state.replace('-', '_')}"
        if event.state in ("stopping", "stopped"):
            self._end(key, instance, reason)
        self._drop_parameter(key, instance.id)
        _finish(cleanup(instance, reason, ctx, terminate=False, parameter=False))
        if instance.state not in fleet.GONE_STATES:
            cost.report(instance, event.at, reason)  # gone before: reported when it was ended
        relaunch_if_queued(instance, reason, ctx)
        return f"cleaned:{reason}"


def _runner_ended_itself(instance: Any) -> bool:
    """The instance's runner command had finished before the instance went: the tag the batch
    that ended it wrote says so, or else one SSM read (which replaces a parameter delete and two
    GitHub calls: the registration and the job's status)."""
    if instance.spot_reclaimed or not instance.command_id:
        return False
    if instance.id in _EXITED or (getattr(instance, "tags", None) or {}).get(TAG_RUNNER_EXITED):
        return True
    status = ssm.get_command_status(instance.command_id, instance.id)
    if status in ssm.RUNNER_EXITED_STATUSES:
        _remember_exited(instance.id)  # an ended command's status never changes
        return True
    return False


def _spot_interrupted(instance: Any, at: datetime, ctx: Context) -> None:
    """One interruption for the template's spot breaker; keyed by instance, so its warning and
    its reclaim count once."""
    template = ctx.templates.get(str(getattr(instance, "template", "") or ""))
    if template is not None:
        spot_breaker.record(template, instance.id, "interruption", ctx.settings, at)


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


def _finish(result: Any) -> None:
    if result.incomplete:
        raise CleanupIncomplete(", ".join(result.incomplete))
