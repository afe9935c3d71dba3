"""Budget guard Lambda: AWS Budgets notifications (SNS) in, the guardrail's action out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from jitrunners.budget import act
from jitrunners.config import get_settings
from jitrunners.observability import logger, metrics


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = get_settings()
    now = datetime.now(UTC)
    records = event.get("Records") if isinstance(event, dict) else None
    outcomes = [
        act(record, settings, by=context.invoked_function_arn, now=now).as_dict()
        for record in records or []
    ]
    return {"outcomes": outcomes}
