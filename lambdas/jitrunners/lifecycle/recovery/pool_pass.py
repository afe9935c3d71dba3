"""The housekeeper's warm-pool pass (README "Warm pools"): each template's pool brought to its
target for now (its schedule window), members the target no longer wants drained, stopped
members booted from an older launch template recycled, and the pool's size and deficit
published. Scale-up launches the members (a `fill` message): the housekeeper never waits on EC2
capacity or an agent."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from jitrunners.aws import fleet
from jitrunners.config import RunnerTemplate
from jitrunners.lifecycle.cleanup import Context, cleanup, deregister_idle
from jitrunners.lifecycle.members import free_members
from jitrunners.models import PoolMessage
from jitrunners.observability import MetricUnit, count, logger, observe
from jitrunners.pools import HOT, KINDS, STOPPED

AWS_ERRORS: Final = (ClientError, BotoCoreError)


def refill(instance: Any, ctx: Context) -> None:
    """A member ended before any job took it (spot reclaim, idle age, lost): ask scale-up for
    another now rather than at the next pass. Best effort: the next pass fills what this misses."""
    from jitrunners.aws.queue import QueueError, send_job

    kind = fleet.pool_of(instance)
    if not ctx.settings.job_queue_url or not instance.template or not kind:
        return
    message = PoolMessage(action="fill", template=str(instance.template), pool=kind)
    try:
        send_job(ctx.settings.job_queue_url, message)
    except QueueError as exc:
        logger.info("cannot ask for a pool refill: next pass", extra={"detail": str(exc)})


def pool_pass(ctx: Context, instances: Sequence[Any], now: datetime) -> dict[str, int]:
    """One pass over every template with a pool (or with members left from one); returns
    actions by kind, for the housekeeper's report."""
    done: dict[str, int] = {"fill_requested": 0, "drained": 0, "recycled": 0}
    by_template = {t.name: t for t in ctx.templates.values()}
    names = set(by_template) | {str(i.template) for i in instances if fleet.free_member(i)}
    for name in sorted(names):
        template = by_template.get(name)
        members = free_members(instances, name)
        if (template is None or template.pool is None) and not members:
            continue
        targets = _targets(template, now)
        for kind in KINDS:
            _one_kind(ctx, template, name, kind, targets[kind], instances, done)
    return done


def _targets(template: RunnerTemplate | None, now: datetime) -> dict[str, int]:
    if template is None or template.pool is None or template.max_runners == 0:
        return {HOT: 0, STOPPED: 0}
    return template.pool.targets(now)


def _one_kind(
    ctx: Context,
    template: RunnerTemplate | None,
    name: str,
    kind: str,
    target: int,
    instances: Sequence[Any],
    done: dict[str, int],
) -> None:
    members = free_members(instances, name, kind)
    stale = _stale(template, members) if kind == STOPPED and template else []
    keep = [m for m in members if m not in stale]
    surplus: list[Any] = []
    if target == 0:
        surplus = keep  # off-hours, no pool, or a drained template: every free member goes
    elif kind == STOPPED:
        # Over target (a smaller window, a smaller pool): parked members beyond it go, the
        # oldest first. A claimed member is tagged with its job at once, so none is miscounted.
        ready = sorted(
            (m for m in keep if _ready(m)),
            key=lambda m: m.launch_time.timestamp() if m.launch_time else 0.0,
        )
        surplus = ready[: max(0, len(keep) - target)]
    # Hot members over a non-zero target are left to their idle age: one GitHub just handed a
    # job looks free until that job's `in_progress` is booked, so a count cannot tell which.
    ended = 0
    for member in stale:
        if _drain(member, "pool_recycled", ctx):
            done["recycled"] += 1
            ended += 1
    for member in surplus:
        if _drain(member, "pool_drained", ctx):
            done["drained"] += 1
            ended += 1
    size = len(members) - ended
    missing = max(0, target - size)
    if template is not None and template.pool is not None:
        observe("PoolSize", size, MetricUnit.Count, template=name, kind=kind)
        observe("PoolDeficit", missing, MetricUnit.Count, template=name, kind=kind)
    if missing and template is not None:
        _ask_fill(ctx, name, kind, missing, done)


def _ready(member: Any) -> bool:
    return (
        member.state == "stopped" if fleet.pool_of(member) == STOPPED else bool(member.command_id)
    )


def _stale(template: RunnerTemplate, members: Sequence[Any]) -> list[Any]:
    """Stopped members booted from a launch template version that is no longer the default."""
    if not members:
        return []
    try:
        current = fleet.launch_template_version(template.launch_template)
    except AWS_ERRORS as exc:
        logger.info("cannot read the launch template version", extra={"detail": str(exc)})
        return []
    return [m for m in members if current and m.tags.get(fleet.TAG_LT_VERSION, current) != current]


def _drain(member: Any, reason: str, ctx: Context) -> bool:
    """End a free member. A hot member's registration is deleted first (GitHub refuses while the
    runner is busy: then it ran a job meanwhile and stays)."""
    from jitrunners.github.client import GitHubError

    extra = {"instance_id": member.id, "pool": fleet.pool_of(member), "reason": reason}
    if ctx.dry_run:
        logger.info("would end a pool member", extra=extra)
        return False
    if fleet.pool_of(member) == HOT and member.command_id:
        try:
            deregister_idle(member, ctx)
        except GitHubError as exc:
            logger.info("pool member left alone", extra={**extra, "status": exc.status})
            return False
    result = cleanup(member, reason, ctx, registrations=False)
    count("PoolMemberEnded", reason=reason)
    logger.info("pool member ended", extra=extra)
    return bool(result.terminated)


def _ask_fill(ctx: Context, name: str, kind: str, missing: int, done: dict[str, int]) -> None:
    from jitrunners.aws.queue import QueueError, send_job

    if ctx.dry_run or not ctx.settings.job_queue_url:
        return
    message = PoolMessage(action="fill", template=name, pool=kind, count=min(missing, 100))
    try:
        send_job(ctx.settings.job_queue_url, message)
    except QueueError as exc:
        logger.warning("cannot ask for a pool fill: next pass", extra={"detail": str(exc)})
        return
    done["fill_requested"] += 1
