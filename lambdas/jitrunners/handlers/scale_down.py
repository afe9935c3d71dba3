"""Scale-down Lambda: batches of EventBridge events about our instances (from the teardown queue)
in, cleanup out, with partial batch failures."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from jitrunners.lifecycle.teardown.events import EventError, LifecycleEvent, parse_body
from jitrunners.lifecycle.teardown.scale_down import Teardown
from jitrunners.lifecycle.wiring import lifecycle_context
from jitrunners.observability import count, logger, metrics

# A batch in which every record failed is answered like any other (each record listed), not
# raised: the terminations the batch decided on still run after its records.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    records = list(event.get("Records") or [])
    parsed: dict[str, LifecycleEvent | EventError] = {}
    for raw in records:
        record = SQSRecord(raw)
        try:
            parsed[record.message_id] = parse_body(record.body)
        except EventError as exc:
            parsed[record.message_id] = exc
    teardown = Teardown.describe(
        [e for e in parsed.values() if not isinstance(e, EventError)], lifecycle_context()
    )

    def record_handler(record: SQSRecord) -> str:
        item = parsed[record.message_id]
        if isinstance(item, EventError):
            # Dropped, not failed: a retried malformed event would fail the same way every time.
            count("EventsDropped", reason="malformed")
            logger.warning(
                "malformed event dropped",
                extra={"reason": "malformed", "detail": str(item), "outcome": "dropped:malformed"},
            )
            return "dropped:malformed"
        logger.set_correlation_id(record.message_id)
        outcome = teardown.handle(record.message_id, item)
        logger.info("event handled", extra={"outcome": outcome, "event": type(item).__name__})
        return outcome

    with processor(records, record_handler):
        processor.process()
    response = processor.response()
    # Termination comes last, once for the whole batch: a record whose instance it could not
    # end goes back to the queue with the records that failed on their own.
    listed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
    for message_id in teardown.terminate():
        if message_id not in listed:
            response["batchItemFailures"].append({"itemIdentifier": message_id})
    return response
