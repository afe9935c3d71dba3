"""Build GitHub `workflow_job` payloads and API Gateway proxy events the way GitHub and AWS do."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from jitrunners.signature import sign

SECRET = "s3cr3t-webhook-value"


def workflow_job_payload(
    *,
    action: str = "queued",
    job_id: int = 4242,
    run_id: int = 777,
    run_attempt: int = 1,
    labels: list[str] | None = None,
    repo: str = "acme/widgets",
    private: bool = True,
    installation_id: int | None = 99,
    conclusion: str | None = None,
    runner_name: str | None = None,
    created_at: str | None = None,
) -> dict[str, Any]:
    """A payload as GitHub sends it; the job was queued a minute ago unless `created_at` says."""
    owner = repo.split("/", 1)[0]
    if created_at is None:
        queued = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
        created_at = queued.isoformat().replace("+00:00", "Z")
    payload: dict[str, Any] = {
        "action": action,
        "workflow_job": {
            "id": job_id,
            "run_id": run_id,
            "run_attempt": run_attempt,
            "labels": ["self-hosted", "linux-x64"] if labels is None else labels,
            "status": action,
            "created_at": created_at,
            "name": "build",
        },
        "repository": {
            "full_name": repo,
            "name": repo.split("/", 1)[1],
            "private": private,
            "visibility": "private" if private else "public",
            "owner": {"login": owner},
        },
        "organization": {"login": owner},
    }
    if installation_id is not None:
        payload["installation"] = {"id": installation_id}
    if conclusion is not None:
        payload["workflow_job"]["conclusion"] = conclusion
    if runner_name is not None:
        payload["workflow_job"]["runner_name"] = runner_name
    return payload


def proxy_event(
    body: bytes | str,
    *,
    event: str | None = "workflow_job",
    secret: str | None = SECRET,
    signature: str | None = None,
    delivery: str | None = None,
    version: str = "2.0",
    base64_body: bool = False,
    extra_headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An API Gateway proxy event: HTTP API (2.0, lower-case headers) or REST (1.0)."""
    raw = body.encode() if isinstance(body, str) else body
    headers: dict[str, str] = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/x",
    }
    if event is not None:
        headers["X-GitHub-Event"] = event
    headers["X-GitHub-Delivery"] = delivery or str(uuid.uuid4())
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    elif secret is not None:
        headers["X-Hub-Signature-256"] = sign(secret, raw)
    headers.update(extra_headers or {})
    body_field = base64.b64encode(raw).decode() if base64_body else raw.decode("utf-8", "replace")
    if version == "2.0":
        return {
            "version": "2.0",
            "routeKey": "POST /webhook",
            "rawPath": "/webhook",
            "headers": {k.lower(): v for k, v in headers.items()},
            "requestContext": {"requestId": str(uuid.uuid4()), "http": {"method": "POST"}},
            "body": body_field,
            "isBase64Encoded": base64_body,
        }
    return {
        "resource": "/webhook",
        "path": "/webhook",
        "httpMethod": "POST",
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "requestContext": {"requestId": str(uuid.uuid4()), "stage": "prod"},
        "body": body_field,
        "isBase64Encoded": base64_body,
    }


def signed_job_event(**payload_kwargs: Any) -> dict[str, Any]:
    return proxy_event(json.dumps(workflow_job_payload(**payload_kwargs)))
