"""Housekeeper Lambda (schedule): the safety net for lost events and crashed invocations."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from jitrunners.config import get_settings
from jitrunners.lifecycle.recovery.sweep import sweep
from jitrunners.lifecycle.wiring import lifecycle_context
from jitrunners.observability import logger, metrics


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE, clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # A rate limit ends that part of the sweep; the next run (minutes later) picks it up.
    ctx = lifecycle_context(dry_run=get_settings().dry_run, waiting=False)
    report = sweep(ctx, context.get_remaining_time_in_millis)
    return {
        "dry_run": ctx.dry_run,
        "zombies": report.zombies,
        "actions": [list(action) for action in report.actions],
    }
