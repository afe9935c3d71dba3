"""Queue a new launch when a runner ended involuntarily while the job it came for still waits."""

from __future__ import annotations

from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from jitrunners.aws import markers, queue
from jitrunners.lifecycle.cleanup import Context
from jitrunners.lifecycle.provisioning.tags import owed_launch
from jitrunners.models import runner_instance
from jitrunners.observability import count, logger

# Ends that were not the runner's own doing: a spot reclaim, a stop or terminate by someone else.
# After these the job that caused the launch may have no runner.
INVOLUNTARY: Final = frozenset(
    {
        "spot_interruption",
        "instance_terminated",
        "instance_shutting_down",
        "instance_stopping",
        "instance_stopped",
        "stopped",
    }
)


def relaunch_path(prefix: str) -> str:
    return f"/{prefix}/state/relaunched"


def relaunch_if_queued(instance: Any, reason: str, ctx: Context) -> str:
    """Send one `launch` for the instance's job if GitHub still has it queued (once per instance).

    A runner that ran (or is running) some job when it was reclaimed leaves nothing to relaunch:
    that job failed and re-runs are another matter. But one reclaimed before it took a job leaves
    the job it was launched for without a runner, and GitHub will not ask again.
    """
    from jitrunners.github.client import GitHubError

    if reason not in INVOLUNTARY or not ctx.settings.job_queue_url:
        return "not_needed"
    if not instance.command_id:
        # Never started: scale-up's own start step owns that case (it retries until the start
        # timeout, then terminates and re-queues the launch, and parks it in the DLQ after its
        # last attempt). Relaunching here too would defeat that cap.
        return "not_started"
    message = owed_launch(instance, ctx.templates.get(str(instance.template or "")))
    if message is None:
        return "no_job"
    try:
        job = ctx.github.get_job(message.repo, message.job_id, message.installation_id)
    except GitHubError as exc:
        logger.warning("cannot ask GitHub about the job", extra={"status": exc.status})
        return "unknown"
    if job is None:
        return "not_queued"
    if job.status != "queued":
        runner = runner_instance(job.runner_name)
        reclaimed = reason == "spot_interruption" or bool(getattr(instance, "spot_reclaimed", 0))
        if runner is None or runner == instance.id or not reclaimed:
            return "not_queued"
        # Another runner took the job this one was launched for, and this one was reclaimed
        # before it took any: the need it carried is that runner's own job now (DESIGN §6b).
        # The launch finds it (scale-up drops a launch for a taken job and passes the need on
        # to the job the taking runner was launched for). Only for a reclaim: after our own
        # terminate (an idle runner's end) the state change is no sign of a need.
    if ctx.dry_run:
        logger.info("would relaunch for a still-queued job", extra={"reason": reason})
        return "relaunch:dry_run"
    name = f"{relaunch_path(ctx.settings.prefix)}/{instance.id}"
    try:
        if not markers.claim(name, str(instance.job_id), ctx.settings.prefix):
            return "already_relaunched"
    except (ClientError, BotoCoreError):
        return "unknown"
    try:
        queue.send_job(ctx.settings.job_queue_url, message)
    except queue.QueueError:
        markers.remove(name)  # let a retry of this event (or the housekeeper) try again
        raise
    count("Relaunched", reason=reason)
    logger.info(
        "job still queued after its runner ended: launch re-queued",
        extra={"reason": reason, "job_id": instance.job_id},
    )
    return "relaunched"
