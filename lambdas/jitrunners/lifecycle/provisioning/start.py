"""`start` messages: JIT config into SSM once per instance, then the RunCommand that runs it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from botocore.exceptions import BotoCoreError, ClientError

from jitrunners.aws import fleet, ssm
from jitrunners.aws.clients import error_code
from jitrunners.config import RunnerTemplate
from jitrunners.github.client import GitHubError, RunnerScope
from jitrunners.lifecycle.provisioning import headcount
from jitrunners.lifecycle.provisioning.jit import JitRateLimited, scope_of, store_for_job
from jitrunners.lifecycle.provisioning.tags import booting_for, cold_start_tags, started_tags
from jitrunners.lifecycle.records import Record, RecordFailed, ScaleUpDeps
from jitrunners.models import COLD, JobMessage, runner_name
from jitrunners.observability import MetricUnit, count, logger, observe

# Agent-not-ready polling. The batch asks SSM once which of its starts' agents are online (one
# DescribeInstanceInformation for the whole batch), so a start polls every POLL_S (a claimed
# stopped pool member, whose agent is back within seconds: every POLL_STOPPED_S) for its first
# FAST_POLLS receives (with the start delay, about the first minute of a fresh instance: most
# Linux agents are online by then), then backs off 10 s, 20 s, 40 s ... capped. Every poll is a
# receive of the message: the schedule stays under the queue's maxReceiveCount (20 by default)
# within a start timeout of 10 minutes.
POLL_S = 3
POLL_STOPPED_S = 2
FAST_POLLS = 10
RETRY_BASE_S = 10
RETRY_CAP_S = 120
# After this many launches of one job the next goes to the DLQ instead: a launch template whose
# instances never come online must not loop forever.
MAX_LAUNCH_ATTEMPTS = 3


def agent_poll_delay(
    receive_count: int, age_s: float, start_timeout_s: int, poll_s: int = POLL_S
) -> int:
    """Seconds before a start (or a pool member's `ready`) asks about its agent again."""
    if receive_count <= FAST_POLLS:
        delay = poll_s
    else:
        delay = min(RETRY_CAP_S, RETRY_BASE_S * 2 ** max(0, receive_count - FAST_POLLS - 1))
    return max(1, min(delay, int(start_timeout_s - age_s) + 1))


def start_runner(
    message: JobMessage,
    record: Record,
    deps: ScaleUpDeps,
    describe: Callable[[str], fleet.Instance | None],
    online: Callable[[str], bool | None] = lambda instance_id: None,
) -> str:
    """Start the runner on the instance; returns the outcome. Raises RecordFailed to retry.

    `describe` looks an instance up (the batch describes all its instances in one call);
    `online` says whether its SSM agent is online (the batch asked once: None when unknown)."""
    template = deps.template(message.template)
    if template is None:
        count("StartFailed", reason="unknown_template")
        logger.error("start refused: no runner template of that name; message goes to the DLQ")
        raise RecordFailed("unknown template")
    assert message.instance_id is not None  # JobMessage.from_json guarantees it for starts
    instance_id = message.instance_id
    settings = deps.settings
    param = settings.jit_param_name(instance_id)
    scope = scope_of(template, message)

    comment = f"{settings.prefix} job {message.job_id} {message.repo}"
    instance: fleet.Instance | None = None
    # A message the redrive brought back from the DLQ is a retry too, though SQS counts it anew.
    retry = record.receive_count > 1 or message.redrives > 0
    if retry:
        # A retry. An earlier delivery may have got as far as SendCommand (and then lost its
        # tag write or its invocation): a second command would start a second runner on the
        # instance, possibly after the first finished. Look before starting again.
        instance = describe(instance_id)
        started = _already_started(instance, instance_id, comment, message, deps)
        if started:
            count("StartSkipped", reason="already_started")
            logger.info(
                "runner already started by an earlier delivery", extra={"command_id": started}
            )
            return "already_started"
        if instance is None or instance.state not in fleet.LIVE_STATES:
            _give_up(message, scope, param, deps, "instance_gone")
            return "relaunched"
    elif settings.runner_instance_profile_arn:
        # Before a JIT config is made for it or a command sent to it, the instance must be ours
        # by its instance profile, not only by a tag anyone may set (nor by a message's word).
        instance = describe(instance_id)
        if instance is None:
            # Unknown (EC2 may not list a fresh instance yet) or not ours: never commanded.
            # Retried; a message for a foreign instance ends in the DLQ, visible.
            count("StartFailed", reason="not_our_instance")
            logger.error("start refused: no runner instance of ours has that id")
            raise RecordFailed("not our instance", RETRY_BASE_S)
        if instance.state not in fleet.LIVE_STATES:
            # Ended before its start (stopped because its job was cancelled, or reclaimed): no
            # JIT config for it; the launch is re-queued and finds whether the job still waits.
            _give_up(message, scope, param, deps, "instance_gone")
            return "relaunched"

    # First delivery: no parameter can exist yet unless the launch stored it while the instance
    # booted (`jit_stored`). On a retry (agent not ready) it may: reuse it, never ask GitHub for
    # a second registration.
    try:
        if retry:
            if not ssm.parameter_exists(param):
                store_for_job(message, template, instance_id, deps)
        elif not message.jit_stored:
            store_for_job(message, template, instance_id, deps)
    except JitRateLimited as held:
        return _wait_for_github(message, held, deps)
    if online(instance_id) is False:
        # Not yet (the batch asked SSM once for all its starts): no SendCommand the agent
        # cannot take. The JIT config is stored already, off the path once the agent is up.
        return _agent_not_ready(message, record, template, scope, param, deps, instance)

    try:
        command_id = ssm.send_runner_command(
            instance_id,
            param_name=param,
            script_path=settings.runner_script_path,
            idle_timeout_s=template.idle_timeout_s,
            max_lifetime_s=template.max_lifetime_s,
            start_timeout_s=template.start_timeout_s,
            comment=comment,
            os=template.os,
            output_log_group=settings.ssm_output_log_group,
        )
    except ssm.AgentNotReady:
        return _agent_not_ready(message, record, template, scope, param, deps, instance)

    now = deps.clock()
    try:
        carried = instance.tags if instance is not None else None
        headcount.tag_instance(instance_id, _start_tags(message, command_id, now, carried))
    except (ClientError, BotoCoreError) as exc:
        # The runner runs, but without its command tag the housekeeper would take it for one
        # that never started (and a cold instance would name no job). The retry finds the
        # command (ListCommands) and writes every tag.
        count("StartFailed", reason="tag_failed")
        logger.warning(
            "runner started but its tags were not written: retried",
            extra={"command_id": command_id, "code": error_code(exc) or type(exc).__name__},
        )
        raise RecordFailed("start tags not written", 1) from None
    count("RunnerStarted")
    latency = _seconds_since(message.queued_at, now)
    if latency is not None:
        observe("QueueToStartLatency", latency, MetricUnit.Seconds)
    logger.info("runner started", extra={"command_id": command_id, "queue_to_start_s": latency})
    return "started"


def _wait_for_github(message: JobMessage, held: JitRateLimited, deps: ScaleUpDeps) -> str:
    """GitHub's points are short for the JIT config: the start waits in the queue, as a copy sent
    with GitHub's `retry-after` as its delay rather than this record sent back. Nothing was
    sent to the instance (no parameter stored, no command: a retry checked both first), so the
    copy starts as a first delivery would, without the retry's checks (`ListCommands`,
    `DescribeParameters`: two calls of SSM's shared bucket per wait, 1.2 a job in a 1,000-job
    burst), and the waits spend no receive of the record's `maxReceiveCount`."""
    try:
        deps.enqueue(message, held.retry_after_s or 1)
    except Exception as exc:  # noqa: BLE001 - then this record goes back instead
        logger.warning("cannot send the start back: retried", extra={"detail": str(exc)})
        raise held from None
    count("StartWaiting", reason="github_rate_limited")
    return "waiting:github"


def _start_tags(
    message: JobMessage, command_id: str, at: datetime, carried: Mapping[str, str] | None
) -> dict[str, str]:
    """The start's one tag write: a cold instance's job tags with its started tags; a claimed
    stopped pool member's started tags (its claim wrote its job tags)."""
    assert message.instance_id is not None
    name = runner_name(
        message.instance_id, message.job_id, message.run_attempt, message.pool or COLD
    )
    if message.pool:
        return started_tags(command_id, at, name)
    return cold_start_tags(message, command_id, at, name, carried)


def _already_started(
    instance: fleet.Instance | None,
    instance_id: str,
    comment: str,
    message: JobMessage,
    deps: ScaleUpDeps,
) -> str | None:
    """The runner command an earlier delivery sent to the instance, if any."""
    if instance is not None and instance.command_id:
        return instance.command_id
    command_id = ssm.find_runner_command(instance_id, comment)
    if command_id and instance is not None and instance.state in fleet.LIVE_STATES:
        # Sent but never tagged: write every tag now (the job tags of a cold instance too), so
        # scale-down, the housekeeper and the job books know the runner and its job.
        headcount.tag_instance(
            instance_id, _start_tags(message, command_id, deps.clock(), instance.tags)
        )
    return command_id


def _agent_not_ready(
    message: JobMessage,
    record: Record,
    template: RunnerTemplate,
    scope: RunnerScope,
    param: str,
    deps: ScaleUpDeps,
    instance: fleet.Instance | None = None,
) -> str:
    assert message.instance_id is not None
    if instance is None:
        instance = fleet.get_instance(
            message.instance_id, deps.settings.prefix, deps.settings.runner_instance_profile_arn
        )
    now = deps.clock()
    alive = instance is not None and instance.state in fleet.LIVE_STATES
    age = booting_for(instance, now)
    if alive and age < template.start_timeout_s:
        poll = POLL_STOPPED_S if message.pool == "stopped" else POLL_S
        delay = agent_poll_delay(record.receive_count, age, template.start_timeout_s, poll)
        count("StartRetried")
        logger.info("SSM agent not online yet: start retried", extra={"retry_in_s": delay})
        raise RecordFailed("agent not ready", delay)
    reason = "start_timeout" if alive else "instance_gone"
    _give_up(message, scope, param, deps, reason)
    return "relaunched"


def _give_up(
    message: JobMessage, scope: RunnerScope, param: str, deps: ScaleUpDeps, reason: str
) -> None:
    """Terminate, clean up and launch the job again: another instance may well come up."""
    assert message.instance_id is not None
    settings = deps.settings
    fleet.terminate([message.instance_id], settings.prefix, settings.runner_instance_profile_arn)
    count("RunnerTerminated", reason=reason)
    ssm.delete_parameter(param)
    try:
        github = deps.github()
        name = runner_name(
            message.instance_id, message.job_id, message.run_attempt, message.pool or COLD
        )
        runner = github.find_runner(scope, name, message.installation_id)
        if runner is not None:
            github.delete_runner(scope, runner.id, message.installation_id)
    except GitHubError as exc:
        # Unused JIT registrations expire on GitHub, and the housekeeper deletes offline ones.
        logger.warning("cannot delete the runner registration", extra={"detail": str(exc)})
    relaunch = message.relaunch()
    if relaunch.attempt > MAX_LAUNCH_ATTEMPTS and settings.dlq_url:
        from jitrunners.aws.queue import send_job

        send_job(settings.dlq_url, relaunch)
        count("LaunchGaveUp")
        logger.error(
            "instances of this job never came online: launch parked in the DLQ",
            extra={"reason": reason, "attempt": relaunch.attempt},
        )
        return
    deps.enqueue(relaunch, 0)
    logger.warning(
        "runner did not start: instance terminated, launch re-queued",
        extra={"reason": reason, "attempt": relaunch.attempt},
    )


def _seconds_since(iso: str, now: datetime) -> float | None:
    if not iso:
        return None
    try:
        then = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, (now - then).total_seconds())
