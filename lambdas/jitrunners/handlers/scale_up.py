"""Scale-up Lambda: an SQS batch of job messages in, partial batch failures out."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from jitrunners.aws.inbox import retry_later
from jitrunners.aws.queue import send_job, send_jobs
from jitrunners.config import get_settings, load_templates
from jitrunners.lifecycle.records import ScaleUpDeps
from jitrunners.lifecycle.scale_up import ScaleUpBatch
from jitrunners.observability import logger, metrics

# A batch whose every record failed is reported like any other partial failure, not raised:
# raising would make Lambda retry the whole batch, including records already acknowledged.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def _deps(context: LambdaContext) -> ScaleUpDeps:
    from jitrunners.github.client import get_client

    settings = get_settings()
    # arn:<partition>:lambda:<region>:<account>:function:<name> -> the EC2 instance ARN base.
    _, partition, _, region, account = context.invoked_function_arn.split(":")[:5]
    return ScaleUpDeps(
        settings=settings,
        templates=lambda: load_templates(settings),
        # A rate limit puts that record back for its Retry-After (RecordFailed), never sleeps.
        github=lambda: get_client(settings).without_waiting(),
        enqueue=lambda message, delay: send_job(
            settings.job_queue_url, message, delay_s=settings.retry_delay(delay)
        ),
        enqueue_many=lambda messages, delay: send_jobs(
            settings.job_queue_url, messages, delay_s=delay
        ),
        retry_later=lambda receipt, delay: retry_later(
            settings.job_queue_url, receipt, settings.retry_delay(delay)
        ),
        arn_base=f"arn:{partition}:ec2:{region}:{account}:instance/",
    )


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    batch = ScaleUpBatch(_deps(context))
    batch.prepare(event.get("Records") or [])
    return process_partial_response(
        event=event, record_handler=batch.handle, processor=processor, context=context
    )
