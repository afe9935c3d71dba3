"""Redrive Lambda (schedule): DLQ messages back to the job queue within the invocation's time."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from jitrunners.config import get_settings
from jitrunners.lifecycle.recovery.redrive import RedriveDeps, redrive
from jitrunners.lifecycle.wiring import github_client, job_status, utc_now
from jitrunners.observability import logger, metrics


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE, clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = get_settings()
    github = github_client()
    deps = RedriveDeps(
        job_status=lambda message: job_status(github, message),
        clock=utc_now,
        remaining_ms=context.get_remaining_time_in_millis,
    )
    report = redrive(settings.dlq_url, settings.job_queue_url, settings, deps)
    logger.info(
        "redrive done", extra={"outcomes": dict(report.outcomes), "batches": report.batches}
    )
    return {"moved": report.moved, "outcomes": dict(report.outcomes)}
