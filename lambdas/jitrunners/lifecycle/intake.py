"""What to do with one webhook delivery: authenticate, filter, route, and enqueue a launch."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from jitrunners import signature
from jitrunners.aws import deliveries
from jitrunners.aws.deliveries import DeliveryStoreError
from jitrunners.aws.params import ParameterError
from jitrunners.config import ConfigError, RunnerTemplate, Settings
from jitrunners.models import (
    JobMessage,
    PayloadError,
    WorkflowJob,
    aware_instant,
    runner_instance,
    runner_launched_for,
    runner_path,
)
from jitrunners.observability import MetricUnit, count, logger, observe
from jitrunners.routing import match_template, refusal, sizing_not_enabled
from jitrunners.sizing import SizingRefused, for_job

# A signed delivery with this header set to 1 or true is checked like any other (signature,
# allowlist, routing) and answered with what would happen; nothing is claimed or enqueued.
DRY_RUN_HEADER: Final = "x-jitrunners-dry-run"

# How long a delivery id stays claimed. GitHub lets a delivery be redelivered for 3 days; a
# `queued` delivery whose job is older than this is refused, so replaying a captured delivery
# after its claim expired is useless too (GitHub cancels jobs queued for 24 h anyway).
CLAIM_TTL: Final = timedelta(days=3)
MAX_DELIVERY_ID_LEN: Final = 100  # GitHub's are GUIDs (36 characters)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """A delivery as it reached us: header names lower-cased, the body as the exact bytes signed."""

    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class WebhookResponse:
    status: int
    body: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IntakeDeps:
    """What intake needs from the outside world; the handler wires AWS, tests wire fakes or moto."""

    secrets: Callable[[], Sequence[str]]
    templates: Callable[[], Sequence[RunnerTemplate]]
    enqueue: Callable[[JobMessage], str]
    # Replay guard (None: no guard). claim(key, runner) -> False when already claimed (the key:
    # the delivery id, or the job's for a delivery naming the runner that took it, with that
    # runner, or for a job that ended elsewhere: `claim_key`); both raise DeliveryStoreError
    # when the store is unavailable.
    claim: Callable[[str, str | None], bool] | None = None
    release: Callable[[str], None] | None = None
    clock: Callable[[], datetime] = field(default=lambda: utcnow())  # noqa: PLW0108


def _reject(status: int, reason: str, detail: str | None = None) -> WebhookResponse:
    count("WebhookRejected", reason=reason)
    logger.info("webhook rejected", extra={"reason": reason, "status": status, "detail": detail})
    body = {"error": reason}
    if detail:
        body["detail"] = detail
    return WebhookResponse(status, body)


def _ignore(reason: str, status: int = 202, **extra: Any) -> WebhookResponse:
    count("WebhookIgnored", reason=reason)
    logger.info("webhook ignored", extra={"reason": reason, **extra})
    return WebhookResponse(status, {"ignored": reason, **extra})


def _refuse_sizing(job: WorkflowJob, exc: SizingRefused) -> WebhookResponse:
    # 2xx: the delivery was fine, the job asks for what its template refuses; nothing launches
    # (never a bigger or unbounded instance instead). The job stays queued on GitHub.
    count("WebhookIgnored", reason=exc.reason)
    count("SizingRefused", reason=exc.reason)
    logger.warning(
        "job refused: sizing label outside the template's policy",
        extra={"reason": exc.reason, "label": exc.label[:100], "detail": exc.detail},
    )
    return WebhookResponse(
        202,
        {
            "ignored": exc.reason,
            "job_id": job.job_id,
            "label": exc.label[:100],
            "detail": exc.detail,
        },
    )


def _unavailable(reason: str, exc: Exception) -> WebhookResponse:
    # Our own failure, never the client's: a 5xx makes GitHub record the delivery as failed, which
    # is what lets it be redelivered (by an operator or the housekeeper) once we are healthy.
    count("WebhookFailed", reason=reason)
    logger.error("webhook not processed", extra={"reason": reason, "detail": str(exc)})
    return WebhookResponse(503 if reason != "enqueue_failed" else 500, {"error": reason})


def _kind_for(action: str, payload: dict[str, Any], settings: Settings) -> str | None:
    """The job message a `workflow_job` delivery becomes (DESIGN §4, §6b), or None to ignore it.

    - queued: `launch`.
    - waiting (environment approval): `release`: a runner started for it would idle out.
    - in_progress on one of our runners: `taken` (which runner took which job: swaps).
    - completed on one of our runners: `taken`, or `rerun` when it failed and re-runs are on
      (a spot reclaim may have killed it; the re-run check records the runner as `taken` does).
    - completed without having run on one of our runners (cancelled while queued, or run by
      another runner): `release`: runners launched for it and still idle are stopped.
    """
    job = payload.get("workflow_job")
    job = job if isinstance(job, dict) else {}
    runner = job.get("runner_name")
    ours = isinstance(runner, str) and runner_instance(runner) is not None
    if action == "queued":
        return "launch"
    if action == "waiting":
        return "release"
    if action == "in_progress":
        return "taken" if ours else None
    if action == "completed":
        if not ours:
            return "release"
        failed = job.get("conclusion") == "failure"
        return "rerun" if failed and settings.rerun_interrupted_jobs else "taken"
    return None


def _stale(job: WorkflowJob, now: datetime) -> str | None:
    """Why a `queued` delivery is too old to act on (its job's age), or None."""
    queued = aware_instant(job.queued_at)
    if queued is None:
        return "job_age_unknown"
    return "job_too_old" if now - queued > CLAIM_TTL else None


def _queue_to_runner_s(payload: Mapping[str, Any]) -> float | None:
    """How long the job waited for a runner: `started_at` (a runner took it) minus `created_at`
    (queued), both from the `in_progress` delivery; None when either is missing or odd."""
    job = payload.get("workflow_job")
    if not isinstance(job, Mapping):
        return None
    created, started = aware_instant(job.get("created_at")), aware_instant(job.get("started_at"))
    if created is None or started is None or started < created:
        return None
    return (started - created).total_seconds()


def _measure_queue_to_runner(job: WorkflowJob, template: str, seconds: float | None) -> None:
    """QueueToRunnerLatency by template and path (cold, stopped, hot: the runner's name says),
    once per `in_progress` delivery of a job one of our runners took (README "Warm pools")."""
    path = runner_path(job.runner_name)
    if job.action != "in_progress" or path is None or seconds is None:
        return
    observe("QueueToRunnerLatency", seconds, MetricUnit.Seconds, template=template, path=path)


def claim_key(kind: str, job: WorkflowJob, delivery_id: str) -> tuple[str, str | None]:
    """What a delivery is claimed by, and the runner the claim records.

    A delivery naming the runner of ours that took its job (`taken`, `rerun`) is claimed by job
    attempt (`deliveries.ran_key`), not by delivery id, so a copy of it with a new id (GitHub's
    own duplicate) is a duplicate too, and the claim doubles as the record that the job ran on
    one of ours, which scale-up reads to settle a launch without asking GitHub (README "Calls
    per job"). A swap's `in_progress` and `completed` (`taken`) share one claim, the attempt's
    `in_progress` key: both say the same thing (R took X), so whichever comes second is a
    duplicate, neither claimed nor enqueued again (it cost a `SendMessage` and a booking that
    found R's tags already rewritten). A `rerun` (`completed`, failed) has its own. A `completed`
    delivery of a job that did not run on one of ours (`release`: cancelled while queued, or run
    by another runner) is claimed by job attempt too, as ended elsewhere (ENDED_ELSEWHERE): a
    launch of that job waiting in the queue is then dropped from the record. Every other
    delivery is claimed by its id."""
    if kind in ("taken", "rerun") and job.action in deliveries.RAN_ACTIONS and job.runner_name:
        action = "in_progress" if kind == "taken" else job.action
        key = deliveries.ran_key(job.repo, job.job_id, job.run_attempt, action)
        return key, job.runner_name
    if kind == "release" and job.action == "completed":
        key = deliveries.ran_key(job.repo, job.job_id, job.run_attempt, job.action)
        return key, deliveries.ENDED_ELSEWHERE
    return delivery_id, None


def _release(key: str, deps: IntakeDeps) -> None:
    """Undo the claim of a delivery we failed to enqueue, so its redelivery is taken."""
    if deps.release is None:
        return
    try:
        deps.release(key)
    except DeliveryStoreError as exc:
        # Its redelivery will be answered "duplicate" until the claim expires: say so loudly.
        count("DeliveryReleaseFailed")
        logger.error("cannot release the delivery claim", extra={"detail": str(exc)})


def handle_delivery(
    request: WebhookRequest, settings: Settings, deps: IntakeDeps
) -> WebhookResponse:
    """Decide one delivery. Client input never yields a 5xx; only our own failures do."""
    count("WebhookReceived")
    if len(request.body) > settings.max_body_bytes:
        return _reject(413, "payload_too_large", f"body over {settings.max_body_bytes} bytes")

    try:
        secrets = deps.secrets()
    except (ParameterError, ConfigError) as exc:
        return _unavailable("secret_unavailable", exc)
    usable = signature.usable_secrets(secrets)
    if len(usable) < len(secrets):
        # Never the lines themselves: a short one may still be half of a real secret.
        logger.warning(
            "webhook secret: placeholder or short lines ignored",
            extra={"ignored_lines": len(secrets) - len(usable)},
        )
    if not usable:
        count("WebhookSecretNotConfigured")
        logger.error(
            "webhook secret not configured: every delivery is refused (fail closed)",
            extra={"lines": len(secrets), "min_bytes": signature.MIN_SECRET_BYTES},
        )
        return _reject(
            401,
            "secret_not_configured",
            f"the webhook secret is unset, a placeholder or shorter than "
            f"{signature.MIN_SECRET_BYTES} bytes",
        )
    secrets = usable
    if not signature.verify(secrets, request.body, request.headers.get("x-hub-signature-256")):
        return _reject(401, "bad_signature")

    event = request.headers.get("x-github-event", "")
    delivery_id = request.headers.get("x-github-delivery", "")
    if delivery_id:
        logger.append_keys(delivery_id=delivery_id[:100])
    if not event:
        return _reject(400, "missing_event_header", "X-GitHub-Event header is required")
    if event == "ping":
        logger.info("ping received")
        return WebhookResponse(200, {"msg": "pong"})
    if event != "workflow_job":
        return _ignore("event_not_handled", event=event[:100])
    if not delivery_id:
        return _reject(400, "missing_delivery_header", "X-GitHub-Delivery header is required")
    if len(delivery_id) > MAX_DELIVERY_ID_LEN:
        return _reject(400, "invalid_delivery_header", "X-GitHub-Delivery header is too long")

    try:
        payload = json.loads(request.body)
    except (ValueError, RecursionError):
        return _reject(400, "malformed_json", "body is not valid JSON")
    action = payload.get("action") if isinstance(payload, dict) else None
    if not isinstance(action, str):
        return _reject(400, "invalid_payload", "missing field action")
    kind = _kind_for(action, payload, settings)
    if kind is None:
        return _ignore("action_not_handled", action=action[:50])
    try:
        job = WorkflowJob.from_payload(payload)
    except PayloadError as exc:
        return _reject(400, "invalid_payload", str(exc))
    logger.append_keys(job_id=job.job_id, repo=job.repo)
    if kind == "launch":
        stale = _stale(job, deps.clock())
        if stale:
            # 2xx, not 4xx: a late redelivery of a real delivery is not an attack, and a 4xx
            # would make the housekeeper ask GitHub to redeliver it again. Nothing is enqueued.
            count("WebhookIgnored", reason=stale)
            logger.warning(
                "queued delivery refused: its job is older than the replay window",
                extra={"reason": stale, "queued_at": job.queued_at[:40]},
            )
            return WebhookResponse(202, {"ignored": stale, "job_id": job.job_id})

    why = refusal(job, settings)
    if why:
        count("WebhookIgnored", reason=why)
        logger.warning("job refused: repository may not use these runners", extra={"reason": why})
        return WebhookResponse(202, {"ignored": why, "job_id": job.job_id})

    try:
        templates = deps.templates()
    except (ParameterError, ConfigError) as exc:
        return _unavailable("templates_unavailable", exc)
    template = match_template(job.labels, templates)
    if template is None:
        if kind == "launch" and sizing_not_enabled(job.labels, templates):
            return _ignore("sizing_not_enabled", job_id=job.job_id, labels=list(job.labels)[:20])
        return _ignore("no_template", job_id=job.job_id, labels=list(job.labels)[:20])
    logger.append_keys(template=template.name)
    if kind == "launch":
        try:
            for_job(job.labels, template)
        except SizingRefused as exc:
            return _refuse_sizing(job, exc)

    if request.headers.get(DRY_RUN_HEADER, "").strip().lower() in ("1", "true"):
        # A signed test delivery (`jitrunners webhook test`): every check above ran; nothing
        # is claimed or enqueued, so nothing launches. The answer says what would have happened.
        count("WebhookDryRun")
        logger.info("dry run: nothing enqueued", extra={"would": kind})
        return WebhookResponse(
            202, {"dry_run": True, "would": kind, "job_id": job.job_id, "template": template.name}
        )
    waited = _queue_to_runner_s(payload) if action == "in_progress" else None
    if kind == "taken" and runner_launched_for(job.runner_name) == (job.job_id, job.run_attempt):
        # The runner launched for this job took it: no swap, nothing to book (its name says so,
        # models.RUNNER_NAME_RE). Neither claimed nor enqueued: the common case costs no AWS call.
        count("JobEventsOwnRunner")
        _measure_queue_to_runner(job, template.name, waited)
        logger.info(
            f"job {action} on the runner launched for it: nothing to book",
            extra={"runner_name": job.runner_name, "queue_to_runner_s": waited},
        )
        return WebhookResponse(202, {"recorded": "own_runner", "job_id": job.job_id})
    message = JobMessage.launch_for(job, template.name, delivery_id)
    if kind == "rerun":
        message = JobMessage.rerun_check_for(job, template.name, delivery_id)
    elif kind == "taken":
        message = message.taken_by(runner_instance(job.runner_name))
    elif kind == "release":
        message = message.released()
    key, runner = claim_key(kind, job, delivery_id)
    if deps.claim is not None:
        try:
            first = deps.claim(key, runner)
        except DeliveryStoreError as exc:
            return _unavailable("claim_unavailable", exc)
        if not first:
            # GitHub's own duplicate (or a replay within the claim window): already enqueued.
            return _ignore("duplicate", job_id=job.job_id)
    try:
        message_id = deps.enqueue(message)
    except Exception as exc:  # noqa: BLE001 - any enqueue failure must reach GitHub as a 5xx
        _release(key, deps)
        return _unavailable("enqueue_failed", exc)
    if kind == "rerun":
        count("RerunChecksQueued")
        logger.info(
            "job failed on one of our runners: re-run check queued",
            extra={"message_id": message_id, "instance_id": job.runner_name},
        )
        return WebhookResponse(202, {"rerun_check": True, "job_id": job.job_id})
    if kind != "launch":
        count("JobEventsQueued", kind=kind)
        # After the enqueue: a delivery we failed (5xx) is redelivered and measured then; a
        # duplicate returned above was measured the first time.
        _measure_queue_to_runner(job, template.name, waited)
        logger.info(
            f"job {action}: {kind} queued",
            extra={
                "message_id": message_id,
                "runner_name": job.runner_name or None,
                "queue_to_runner_s": waited,
            },
        )
        return WebhookResponse(202, {"recorded": kind, "job_id": job.job_id})
    count("WebhookAccepted")
    logger.info("job accepted", extra={"message_id": message_id, "labels": list(job.labels)})
    return WebhookResponse(202, {"accepted": True, "job_id": job.job_id, "template": template.name})
