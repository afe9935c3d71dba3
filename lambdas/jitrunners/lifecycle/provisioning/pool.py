"""Warm pools (README "Warm pools"): members launched, made ready, and served to jobs.

- A member is launched with the template's tags and `jitrunners:pool` (hot or stopped), for no
  job. Its `ready` message waits for its SSM agent: a hot member then gets a JIT config for no
  job in particular (`i-<instance>-hot`, the template's labels) and its runner waits, registered,
  until GitHub hands it a job or its idle age ends it; a stopped member is stopped.
- A job's launch is served by the pool before anything is launched: by a hot member (GitHub
  hands the queued job to it; the launch checks again after POOL_CHECK_S and launches cold if
  the job still waits), else by a stopped member claimed for it atomically and started. Each
  member served is replaced at once; the housekeeper's pass (recovery/pool_pass.py) refills what
  that misses and drains members the schedule no longer wants.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Final

from botocore.exceptions import BotoCoreError, ClientError

from jitrunners import guardrail
from jitrunners.aws import fleet, ssm
from jitrunners.config import RunnerTemplate
from jitrunners.lifecycle import spot_breaker
from jitrunners.lifecycle.members import free_members, ready_hot, ready_stopped
from jitrunners.lifecycle.provisioning import headcount
from jitrunners.lifecycle.provisioning.jit import Registration, store_jit_config
from jitrunners.lifecycle.provisioning.start import agent_poll_delay
from jitrunners.lifecycle.provisioning.tags import (
    booting_for,
    launch_tags,
    stamp,
    started_tags,
    template_tags,
)
from jitrunners.lifecycle.records import Record, RecordFailed, ScaleUpDeps
from jitrunners.models import JobMessage, PoolMessage, runner_name
from jitrunners.observability import MetricUnit, count, logger, observe
from jitrunners.pools import HOT, STOPPED

if TYPE_CHECKING:
    from jitrunners.github.client import RunnerScope

# A job handed to a hot member is checked again after this long: still queued, it launches cold.
POOL_CHECK_S: Final = 15
# A claimed stopped member's agent is back within seconds of StartInstances.
STOPPED_START_DELAY_S: Final = 5
# A stopped member's claim outlives any start of it.
CLAIM_TTL_S: Final = 3600


def pool_owner(template: RunnerTemplate, deps: ScaleUpDeps) -> str:
    """The organization a template's hot members register with ("" when nobody says)."""
    pool = template.pool
    if pool is not None and pool.owner:
        return pool.owner
    owners = deps.settings.allowed_owners
    return owners[0] if len(owners) == 1 else ""


_INSTALLATIONS: dict[str, int | None] = {}


def _installation(owner: str, deps: ScaleUpDeps) -> int | None:
    """The App installation of `owner` (None with a token), cached for the process."""
    if deps.settings.github_auth_mode != "app":
        return None
    key = owner.casefold()
    if key not in _INSTALLATIONS:
        found = next(
            (i.id for i in deps.github().list_installations() if i.account.casefold() == key),
            None,
        )
        if found is None:
            raise LookupError(f"the GitHub App is not installed on {owner}")
        _INSTALLATIONS[key] = found
    return _INSTALLATIONS[key]


def may_serve(message: JobMessage, template: RunnerTemplate) -> bool:
    """Whether the template's pool may serve the job: a pool's members carry the template's
    labels and instance types only, so a sized job always launches its own instance."""
    from jitrunners import sizing

    return template.pool is not None and sizing.for_job(message.labels, template) is None


def servable(instances: Sequence[fleet.Instance], template: RunnerTemplate) -> int:
    """How many jobs the template's pool can serve now (ready hot and stopped members)."""
    if template.pool is None:
        return 0
    return len(ready_hot(instances, template.name)) + len(ready_stopped(instances, template.name))


@dataclass
class Served:
    """What the pool did for a batch's launches of one template."""

    hot: int = 0
    stopped: int = 0
    outcomes: dict[str, str] = field(default_factory=dict)  # record message id -> outcome


def serve(
    items: Sequence[tuple[Record, JobMessage]],
    template: RunnerTemplate,
    live: Sequence[fleet.Instance],
    deps: ScaleUpDeps,
) -> Served:
    """Serve what the template's pool can of a batch's (claimed, unsized) launches; each served
    record's outcome is `pooled:hot` or `pooled:stopped`. The rest launch cold; the caller
    replaces the members served (`replace`) once they have."""
    served = Served()
    if template.pool is None:
        return served
    hot = len(ready_hot(live, template.name))
    parked = ready_stopped(live, template.name)
    for record, message in items:
        # A first launch only: a job handed to the pool once and still waiting goes cold.
        # A hot member's job is confirmed by the checked relaunch: without that check
        # (CHECK_JOB_QUEUED off) it would launch a second runner for every job.
        if message.attempt == 1 and hot > served.hot and deps.settings.check_job_queued:
            served.hot += 1
            _hand_to_hot(message, deps)
            served.outcomes[record.message_id] = "pooled:hot"
            continue
        while parked and record.message_id not in served.outcomes:
            if _claim_stopped(parked.pop(0), message, deps):
                served.stopped += 1
                served.outcomes[record.message_id] = "pooled:stopped"
    return served


def _hand_to_hot(message: JobMessage, deps: ScaleUpDeps) -> None:
    """GitHub hands the queued job to a registered hot member by itself: nothing is launched.
    The launch comes back after POOL_CHECK_S as a checked one (not fresh): if a hot member took
    the job, its `in_progress` booked it and the check drops the launch without asking GitHub;
    if the job still waits (the member took another job first), it launches cold."""
    count("PoolServed", kind=HOT, template=message.template)
    logger.info("job handed to a hot pool member", extra={"check_in_s": POOL_CHECK_S})
    deps.enqueue(message.relaunch(), POOL_CHECK_S)


def _claim_stopped(member: fleet.Instance, message: JobMessage, deps: ScaleUpDeps) -> bool:
    """Claim a stopped member for the job (one claim per member, ever: two concurrent launches
    never start the same one), tag it with the job, start it, and queue the job's start."""
    from jitrunners.aws import deliveries

    settings = deps.settings
    table = settings.deliveries_table
    now = deps.clock()
    try:
        if table and not deliveries.claim_launch(
            table,
            f"pool:{member.id}",
            f"{message.job_id}/{message.run_attempt}",
            now=now,
            ttl_s=CLAIM_TTL_S,
        ):
            count("PoolClaimLost")
            return False
        fleet.tag_instance(
            member.id,
            launch_tags(message) | {fleet.TAG_CLAIMED_AT: stamp(now)},
        )
        fleet.start_described(member, settings.prefix)
    except (deliveries.DeliveryStoreError, ClientError, BotoCoreError, fleet.FleetError) as exc:
        # The member may be tagged but not started: it is no longer free, so nothing else
        # claims it, and the housekeeper ends it (a stopped instance with a job).
        logger.warning(
            "cannot start a stopped pool member: the job launches cold",
            extra={"instance_id": member.id, "detail": str(exc)},
        )
        count("PoolFillFailed", template=message.template, reason="start_failed")
        return False
    deps.enqueue(message.start_for(member.id, STOPPED), STOPPED_START_DELAY_S)
    count("PoolServed", kind=STOPPED, template=message.template)
    logger.info("stopped pool member started for the job", extra={"instance_id": member.id})
    return True


def replace_served(
    template: RunnerTemplate,
    served: Served,
    live: Sequence[fleet.Instance],
    deps: ScaleUpDeps,
    cap: int,
) -> int:
    """Launch a new member for each one served that the pool's target still wants, within `cap`
    (the room max_runners leaves once the batch's jobs launched: jobs come first); returns how
    many were launched."""
    made = 0
    for kind, n in ((HOT, served.hot), (STOPPED, served.stopped)):
        if n and cap - made > 0:
            made += launch_members(template, kind, n, live, deps, cap=cap - made, replacing=True)
    return made


def deficit(
    template: RunnerTemplate, kind: str, live: Sequence[fleet.Instance], now: datetime
) -> int:
    """Members of `kind` the template's pool wants beyond those it has."""
    if template.pool is None or template.max_runners == 0:
        return 0
    want = template.pool.targets(now)[kind]
    return max(0, want - len(free_members(live, template.name, kind)))


def room(template: RunnerTemplate, live: Sequence[fleet.Instance], deps: ScaleUpDeps) -> int:
    """Instances the template may still launch under its and the global max_runners."""
    mine = sum(1 for i in live if i.template == template.name and i.state not in _ENDING)
    total = sum(1 for i in live if i.state not in _ENDING)
    return headcount.room(template, mine, total, deps.settings.max_runners)


_ENDING: Final = frozenset({"shutting-down", "terminated"})


def launch_members(
    template: RunnerTemplate,
    kind: str,
    wanted: int,
    live: Sequence[fleet.Instance],
    deps: ScaleUpDeps,
    *,
    cap: int | None = None,
    replacing: bool = False,
) -> int:
    """Launch up to `wanted` members, bounded by the pool's deficit and by max_runners room;
    returns how many. `replacing`: `wanted` members were just served, and `live` still lists
    them as free. A pool that cannot fill never holds a job back: jobs launch cold."""
    settings = deps.settings
    n = min(wanted, room(template, live, deps) if cap is None else cap)
    if template.pool is None or template.max_runners == 0:
        return 0
    if replacing:
        # Only what the pool lacks once they are gone: a pool over its target (a window that
        # lowered it) shrinks as jobs take its members instead of keeping its old size.
        free = len(free_members(live, template.name, kind)) - wanted
        n = min(n, template.pool.targets(deps.clock())[kind] - free)
    else:
        n = min(n, deficit(template, kind, live, deps.clock()))
    if n <= 0:
        return 0
    tags = template_tags(settings.prefix, template) | {fleet.TAG_POOL: kind}
    if kind == HOT:
        owner = pool_owner(template, deps)
        try:
            installation = _installation(owner, deps) if owner else None
        except Exception as exc:  # noqa: BLE001 - GitHubError, LookupError: say so, launch none
            return _fill_failed(template, kind, "no_installation", str(exc))
        if not owner:
            return _fill_failed(
                template, kind, "no_owner", "set the pool's owner (several owners are allowed)"
            )
        # Hot runners join the template's runner group like any runner of ours: only a group
        # that is a safe boundary (README "Security boundary") gets them.
        from jitrunners.github.client import GitHubError
        from jitrunners.lifecycle.provisioning.boundary import group_refusal

        try:
            problem = group_refusal(
                template,
                owner,
                installation,
                deps.github,
                allow_public_repos=settings.allow_public_repos,
            )
        except GitHubError as exc:
            return _fill_failed(template, kind, "github_unavailable", str(exc))
        if problem:
            return _fill_failed(template, kind, "runner_group_unsafe", problem)
        tags[fleet.TAG_OWNER] = owner
        if installation is not None:
            tags[fleet.TAG_INSTALLATION_ID] = str(installation)
        market = guardrail.launch_market(template.market, settings.prefix)
        market = spot_breaker.market_for(template, market, settings, deps.clock())
    else:
        # EC2 stops only on-demand instances of ours (a one-time spot instance cannot stop).
        market = "on-demand"
        try:
            version = fleet.launch_template_version(template.launch_template)
        except (ClientError, BotoCoreError):
            version = ""
        if version:
            tags[fleet.TAG_LT_VERSION] = version
    try:
        result = fleet.launch(
            launch_template=template.launch_template,
            instance_types=template.instance_types,
            subnet_ids=template.subnet_ids or settings.runner_subnet_ids,
            count=n,
            market=market,
            tags=tags,
        )
    except fleet.FleetError as exc:
        return _fill_failed(template, kind, exc.code, str(exc))
    launched = result.instances
    if len(launched) < n:
        codes = [e.code for e in result.errors] or ["UnfulfillableCapacity"]
        _fill_failed(template, kind, codes[0], f"{len(launched)} of {n} members launched")
    messages = [
        PoolMessage(action="ready", template=template.name, pool=kind, instance_id=i.id)
        for i in launched
    ]
    sent = deps.enqueue_many(messages, settings.start_delay_s)
    unsent = [i.id for i, message_id in zip(launched, sent, strict=True) if message_id is None]
    if unsent:
        # A member nobody will make ready must not live on.
        fleet.terminate(unsent, settings.prefix, settings.runner_instance_profile_arn)
    made = len(launched) - len(unsent)
    if made:
        count("PoolMemberLaunched", made, kind=kind, template=template.name)
        logger.info(
            "pool members launched",
            extra={"template": template.name, "pool": kind, "count": made, "market": market},
        )
    return made


def _fill_failed(template: RunnerTemplate, kind: str, reason: str, detail: str) -> int:
    count("PoolFillFailed", template=template.name, reason=reason)
    logger.warning(
        "pool cannot fill: jobs launch cold",
        extra={"template": template.name, "pool": kind, "reason": reason, "detail": detail},
    )
    return 0


def fill(message: PoolMessage, deps: ScaleUpDeps, live: Sequence[fleet.Instance]) -> str:
    """A `fill` message: launch what the pool lacks, up to the message's count."""
    template = deps.template(message.template)
    if template is None or template.pool is None:
        return "no_pool"
    made = launch_members(template, message.pool, message.count, live, deps)
    return f"filled:{made}"


def make_ready(
    message: PoolMessage,
    record: Record,
    deps: ScaleUpDeps,
    describe: Callable[[str], fleet.Instance | None],
    online: Callable[[str], bool | None],
) -> str:
    """A `ready` message: once the member's agent is online, start its hot runner or stop it."""
    assert message.instance_id is not None  # PoolMessage.from_data guarantees it
    settings = deps.settings
    template = deps.template(message.template)
    instance = describe(message.instance_id)
    if instance is None or instance.state not in fleet.LIVE_STATES:
        return "gone"
    if template is None or template.pool is None:
        fleet.terminate_described([instance], settings.prefix)
        return "no_pool"
    if not fleet.free_member(instance) or instance.command_id:
        return "already_ready"
    if not online(instance.id):  # None (SSM could not say): asked again in a moment
        age = booting_for(instance, deps.clock())
        if age < template.start_timeout_s:
            delay = agent_poll_delay(record.receive_count, age, template.start_timeout_s)
            raise RecordFailed("member's agent not online yet", delay)
        fleet.terminate_described([instance], settings.prefix)
        _fill_failed(template, message.pool, "start_timeout", instance.id)
        return "gave_up"
    if message.pool == STOPPED:
        fleet.stop_described([instance], settings.prefix)
        count("PoolMemberReady", kind=STOPPED, template=template.name)
        logger.info("stopped pool member booted and stopped", extra={"instance_id": instance.id})
        return "stopped"
    return _start_hot(instance, template, record, deps)


def _start_hot(
    instance: fleet.Instance, template: RunnerTemplate, record: Record, deps: ScaleUpDeps
) -> str:
    from jitrunners.github.client import RunnerScope

    assert template.pool is not None
    settings = deps.settings
    owner = str(instance.tags.get(fleet.TAG_OWNER, ""))
    scope: RunnerScope = RunnerScope("org", owner)
    param = settings.jit_param_name(instance.id)
    name = runner_name(instance.id, None, None, HOT)
    if record.receive_count <= 1 or not ssm.parameter_exists(param):
        store_jit_config(
            deps,
            instance.id,
            Registration(
                scope, name, template.labels, template.runner_group_id, instance.installation_id
            ),
        )
    now = deps.clock()
    try:
        command_id = ssm.send_runner_command(
            instance.id,
            param_name=param,
            script_path=settings.runner_script_path,
            # Its idle timeout is the pool's idle age: a member no job took for that long exits,
            # is terminated, and the pool launches a fresh one.
            idle_timeout_s=template.pool.hot_max_idle_s,
            max_lifetime_s=template.max_lifetime_s,
            start_timeout_s=template.start_timeout_s,
            comment=f"{settings.prefix} pool {template.name}",
            os=template.os,
            output_log_group=settings.ssm_output_log_group,
        )
    except ssm.AgentNotReady:
        delay = agent_poll_delay(
            record.receive_count, booting_for(instance, now), template.start_timeout_s
        )
        raise RecordFailed("member's agent not online yet", delay) from None
    fleet.tag_instance(instance.id, started_tags(command_id, now, name))
    count("PoolMemberReady", kind=HOT, template=template.name)
    if instance.launch_time is not None:
        observe(
            "PoolMemberReadySeconds",
            (now - instance.launch_time).total_seconds(),
            MetricUnit.Seconds,
        )
    logger.info("hot pool member's runner started", extra={"command_id": command_id})
    return "hot"


def describe_for_pool(deps: ScaleUpDeps) -> list[fleet.Instance]:
    """Our instances a pool decision counts: live ones and stopped (or stopping) members."""
    settings = deps.settings
    return fleet.list_instances(
        settings.prefix,
        (*fleet.LIVE_STATES, "stopping", "stopped"),
        profile_arn=settings.runner_instance_profile_arn,
    )
