"""QueueToRunnerLatency: the webhook measures how long a job waited for one of our runners.

Signed deliveries go through the real webhook handler (moto SQS and DynamoDB); the metric is read
back from the EMF documents Powertools prints, as CloudWatch would ingest them.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime
from typing import Any

import boto3
import pytest

from jitrunners.handlers import webhook
from tests.conftest import _reset_process_caches, drain
from tests.support import github_openapi
from tests.support.webhooks import proxy_event, workflow_job_payload

INSTANCE = "i-0123456789abcdef0"
METRIC = "QueueToRunnerLatency"


def _emf(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]


def _latencies(out: str) -> list[dict[str, Any]]:
    """Each QueueToRunnerLatency datum: its value, unit and dimensions."""
    found = []
    for doc in _emf(out):
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                if metric["Name"] == METRIC:
                    [dimensions] = directive["Dimensions"]
                    values = doc[METRIC] if isinstance(doc[METRIC], list) else [doc[METRIC]]
                    found.extend(
                        {
                            "value": value,
                            "unit": metric["Unit"],
                            "dimensions": {d: doc[d] for d in dimensions},
                        }
                        for value in values
                    )
    return found


def _in_progress(
    runner: str, *, created: str | None, started: str | None, job_id: int = 4242
) -> dict[str, Any]:
    payload = workflow_job_payload(action="in_progress", job_id=job_id, runner_name=runner)
    job = payload["workflow_job"]
    for key, value in (("created_at", created), ("started_at", started)):
        if value is None:
            job.pop(key, None)
        else:
            job[key] = value
    return payload


def _deliver(payload: dict[str, Any], ctx: Any, delivery: str | None = None) -> dict[str, Any]:
    response = webhook.handler(proxy_event(json.dumps(payload), delivery=delivery), ctx)
    assert 200 <= response["statusCode"] < 300, response
    return json.loads(response["body"])


@pytest.mark.parametrize(
    ("runner", "path"),
    [
        (f"{INSTANCE}-4242-1", "cold"),  # the instance launched for this job
        (f"{INSTANCE}-4242-1-stopped", "stopped"),  # a stopped member started for it
        (f"{INSTANCE}-hot", "hot"),  # a hot member GitHub handed it to (booked: a swap)
    ],
)
def test_in_progress_on_our_runner_emits_the_wait_by_template_and_path(
    env: dict[str, str],
    lambda_context: Any,
    capfd: pytest.CaptureFixture[str],
    runner: str,
    path: str,
) -> None:
    payload = _in_progress(runner, created="2026-03-02T08:00:00Z", started="2026-03-02T08:00:37Z")

    _deliver(payload, lambda_context)

    assert _latencies(capfd.readouterr().out) == [
        {
            "value": 37.0,
            "unit": "Seconds",
            "dimensions": {"service": "jitrunners", "template": "linux-x64", "path": path},
        }
    ]


def test_githubs_own_in_progress_example_is_measured_from_its_timestamps(
    env: dict[str, str], lambda_context: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    """The field names and formats are GitHub's (octokit's example delivery), not ours."""
    examples = github_openapi.load().examples["workflow_job"]
    # The one whose runner took the job after it was queued (the others carry no created_at,
    # or GitHub's older payloads' started_at equal to created_at).
    [example] = [
        e
        for e in examples
        if e["action"] == "in_progress"
        and e["workflow_job"].get("created_at")
        and e["workflow_job"]["created_at"] != e["workflow_job"]["started_at"]
    ]
    example = copy.deepcopy(example)
    job = example["workflow_job"]
    job.update(labels=["self-hosted", "linux-x64"], runner_name=f"{INSTANCE}-hot")
    example["repository"].update(private=True, visibility="private")
    expected = (
        datetime.fromisoformat(job["started_at"]) - datetime.fromisoformat(job["created_at"])
    ).total_seconds()
    assert expected > 0

    assert _deliver(example, lambda_context)["recorded"] == "taken"

    [datum] = _latencies(capfd.readouterr().out)
    assert datum["value"] == expected
    assert datum["dimensions"]["path"] == "hot"


@pytest.mark.parametrize(
    ("action", "runner"),
    [
        ("in_progress", "GitHub Actions 5"),  # a runner not of ours
        ("in_progress", "my-runner"),
        ("completed", f"{INSTANCE}-4242-1"),  # the job ran on ours; its wait was measured before
        ("queued", None),
    ],
)
def test_no_latency_for_foreign_runners_or_other_actions(
    env: dict[str, str],
    lambda_context: Any,
    capfd: pytest.CaptureFixture[str],
    action: str,
    runner: str | None,
) -> None:
    payload = workflow_job_payload(
        action=action,
        runner_name=runner,
        conclusion="success" if action == "completed" else None,
    )
    payload["workflow_job"]["started_at"] = payload["workflow_job"]["created_at"]

    _deliver(payload, lambda_context)

    out = capfd.readouterr().out
    assert '"WebhookReceived"' in out  # the EMF output was captured at all
    assert _latencies(out) == []


@pytest.mark.parametrize(
    ("created", "started"),
    [
        (None, "2026-03-02T08:00:09Z"),
        ("2026-03-02T08:00:09Z", None),
        ("2026-03-02T08:00:09Z", "2026-03-02T08:00:00Z"),  # started before it was queued
        ("yesterday", "2026-03-02T08:00:00Z"),
    ],
)
def test_missing_or_inconsistent_timestamps_emit_nothing_and_the_delivery_is_still_booked(
    env: dict[str, str],
    lambda_context: Any,
    capfd: pytest.CaptureFixture[str],
    created: str | None,
    started: str | None,
) -> None:
    payload = _in_progress(f"{INSTANCE}-hot", created=created, started=started)

    assert _deliver(payload, lambda_context) == {"recorded": "taken", "job_id": 4242}

    assert _latencies(capfd.readouterr().out) == []
    [message] = drain(env["JOB_QUEUE_URL"])
    assert json.loads(message["Body"])["kind"] == "taken"


def test_a_duplicate_delivery_is_measured_once(
    env: dict[str, str],
    lambda_context: Any,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """GitHub may deliver twice; the claim refuses the second, which is not measured again."""
    boto3.client("dynamodb").create_table(
        TableName="jitrunners-deliveries",
        KeySchema=[{"AttributeName": "delivery_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "delivery_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    monkeypatch.setenv("DELIVERIES_TABLE", "jitrunners-deliveries")
    _reset_process_caches()
    payload = _in_progress(
        f"{INSTANCE}-hot", created="2026-03-02T08:00:00Z", started="2026-03-02T08:00:02Z"
    )

    first = _deliver(payload, lambda_context, delivery="dlv-hot-1")
    again = _deliver(payload, lambda_context, delivery="dlv-hot-1")

    assert (first["recorded"], again["ignored"]) == ("taken", "duplicate")
    assert [d["value"] for d in _latencies(capfd.readouterr().out)] == [2.0]
