"""GitHub's own example deliveries (octokit's webhooks-examples, `make github-schema`) through the
webhook Lambda: each is answered 2xx, and a real queued job for our labels is enqueued."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from jitrunners.handlers import webhook
from tests.conftest import drain
from tests.support import github_openapi
from tests.support.webhooks import proxy_event


def _examples(event: str) -> list[dict[str, Any]]:
    return github_openapi.load().examples[event]


@pytest.mark.parametrize("event", ["workflow_job", "ping"])
def test_githubs_example_deliveries_are_answered_without_error(
    env: dict[str, str], lambda_context: Any, event: str
) -> None:
    answers = []
    for example in _examples(event):
        response = webhook.handler(proxy_event(json.dumps(example), event=event), lambda_context)
        answers.append((example.get("action"), response["statusCode"], response["body"]))
    assert answers
    assert all(200 <= status < 300 for _, status, _ in answers), answers


def test_githubs_queued_example_for_our_labels_is_enqueued(
    env: dict[str, str], lambda_context: Any
) -> None:
    [example, *_] = [e for e in _examples("workflow_job") if e["action"] == "queued"]
    example = copy.deepcopy(example)
    example["workflow_job"]["labels"] = ["self-hosted", "linux-x64"]
    example["repository"].update(private=True, visibility="private")
    # The example is from 2021: older than the replay window, so it is queued again now.
    now = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    example["workflow_job"].update(created_at=now, started_at=now)
    response = webhook.handler(proxy_event(json.dumps(example)), lambda_context)
    assert json.loads(response["body"]).get("accepted"), response["body"]
    [message] = drain(env["JOB_QUEUE_URL"])
    sent = json.loads(message["Body"])
    job = example["workflow_job"]
    assert (sent["job_id"], sent["run_id"], sent["template"]) == (
        job["id"],
        job["run_id"],
        "linux-x64",
    )
    assert sent["repo"] == example["repository"]["full_name"]


@pytest.mark.parametrize("action", ["queued", "waiting", "in_progress", "completed"])
def test_every_body_the_payload_schema_allows_is_read(
    env: dict[str, str], lambda_context: Any, action: str
) -> None:
    """Bodies generated from octokit's payload schema (all fields, required only, nulls, each
    alternative) for a private repository and our labels: each is answered 2xx, and each queued
    one is enqueued (a handler that only reads the simulator's shapes would refuse some)."""
    description = github_openapi.load()
    now = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    answers = []
    variants = list(
        description.variants(description.webhook_schema("workflow_job", action), hooks=True)
    )
    for index, (variant, body) in enumerate(variants):
        job = body["workflow_job"]
        # What the sender and our configuration pin down: a job of ours, queued just now.
        job.update(id=1000 + index, labels=["self-hosted", "linux-x64"], created_at=now)
        body["repository"].update(full_name="acme/widgets", private=True, visibility="private")
        response = webhook.handler(proxy_event(json.dumps(body)), lambda_context)
        answers.append((variant, response["statusCode"], json.loads(response["body"])))
    assert len(answers) >= 5
    refused = [a for a in answers if not 200 <= a[1] < 300]
    assert not refused, refused
    if action == "queued":
        assert all(body.get("accepted") for _, _, body in answers), answers
        assert len(drain(env["JOB_QUEUE_URL"])) == len(answers)
