"""Webhook Lambda: API Gateway (REST v1 or HTTP v2 proxy) event in, HTTP response out."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from jitrunners.aws import deliveries
from jitrunners.aws.queue import send_job
from jitrunners.config import get_settings, load_templates, webhook_secrets
from jitrunners.lifecycle.intake import (
    CLAIM_TTL,
    IntakeDeps,
    WebhookRequest,
    WebhookResponse,
    handle_delivery,
    utcnow,
)
from jitrunners.observability import logger, metrics


def _deps() -> IntakeDeps:
    settings = get_settings()
    table = settings.deliveries_table
    ttl_s = int(CLAIM_TTL.total_seconds())
    return IntakeDeps(
        secrets=lambda: webhook_secrets(settings),
        templates=lambda: load_templates(settings),
        enqueue=lambda message: send_job(settings.job_queue_url, message),
        claim=(
            (
                lambda key, runner: deliveries.claim(
                    table, key, now=utcnow(), ttl_s=ttl_s, runner=runner
                )
            )
            if table
            else None
        ),
        release=(lambda d: deliveries.release(table, d)) if table else None,
    )


def parse_request(event: Any) -> WebhookRequest:
    """The raw delivery from a proxy event (v1 and v2 share these keys). Raises ValueError.

    Powertools' API Gateway data classes decode the body to text; the signature is over the exact
    bytes GitHub sent, so the body is decoded here, once, to bytes.
    """
    if not isinstance(event, dict):
        raise ValueError("event is not an object")
    raw_headers = event.get("headers") or {}
    if not isinstance(raw_headers, dict):
        raise ValueError("headers are not an object")
    headers = {str(k).lower(): str(v) for k, v in raw_headers.items() if v is not None}
    body = event.get("body") or ""
    if not isinstance(body, str):
        raise ValueError("body is not a string")
    if event.get("isBase64Encoded"):
        try:
            return WebhookRequest(headers, base64.b64decode(body, validate=True))
        except (binascii.Error, ValueError):
            raise ValueError("body is not valid base64") from None
    return WebhookRequest(headers, body.encode("utf-8", errors="surrogatepass"))


def _http(response: WebhookResponse) -> dict[str, Any]:
    return {
        "statusCode": response.status,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(response.body, separators=(",", ":")),
    }


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId", clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        request = parse_request(event)
    except ValueError as exc:
        logger.info("webhook rejected", extra={"reason": "malformed_event", "detail": str(exc)})
        return _http(WebhookResponse(400, {"error": "malformed_event", "detail": str(exc)}))
    return _http(handle_delivery(request, get_settings(), _deps()))
