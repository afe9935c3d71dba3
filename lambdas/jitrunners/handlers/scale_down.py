"""Scale-down Lambda: EventBridge events about our instances in, cleanup out."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from jitrunners.lifecycle.teardown.events import EventError, parse_event
from jitrunners.lifecycle.teardown.scale_down import handle_event
from jitrunners.lifecycle.wiring import lifecycle_context
from jitrunners.observability import count, logger, metrics


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE, clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        parsed = parse_event(event)
    except EventError as exc:
        # Dropped, not raised: a retried malformed event would fail the same way every time.
        count("EventsDropped", reason="malformed")
        logger.warning("malformed event dropped", extra={"reason": "malformed", "detail": str(exc)})
        return {"outcome": "dropped:malformed"}
    return {"outcome": handle_event(parsed, lifecycle_context())}
