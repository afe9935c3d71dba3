"""Per-job sizing end to end: the webhook's refusals, and scale-up's attribute-based launches."""

from __future__ import annotations

import json
from typing import Any

import pytest

from jitrunners.handlers import webhook
from tests.conftest import TEMPLATES, _reset_process_caches, drain
from tests.support.webhooks import proxy_event, workflow_job_payload

SIZED: dict[str, Any] = {
    "name": "sized",
    "labels": ["self-hosted", "linux", "sized"],
    "launch_template": "jitrunners-sized",
    "instance_types": ["m7i.large"],
    "market": "spot-then-on-demand",
    "max_runners": 3,
    "sizing": {"max_cpu": 8, "max_ram_gb": 32, "families": ["m7i", "c7i"], "max_disk_gb": 100},
}


@pytest.fixture
def sized_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("RUNNER_TEMPLATES", json.dumps([*TEMPLATES, SIZED]))
    _reset_process_caches()
    return env


def _deliver(labels: list[str], ctx: Any, job_id: int = 51) -> tuple[int, dict[str, Any]]:
    body = json.dumps(workflow_job_payload(job_id=job_id, labels=labels))
    response = webhook.handler(proxy_event(body, delivery=f"dlv-{job_id}"), ctx)
    return response["statusCode"], json.loads(response["body"])


def test_a_sized_job_is_accepted_with_its_labels(
    sized_env: dict[str, str], lambda_context: Any
) -> None:
    status, answer = _deliver(["self-hosted", "sized", "cpu=4", "ram=16"], lambda_context)
    assert (status, answer) == (202, {"accepted": True, "job_id": 51, "template": "sized"})
    [message] = drain(sized_env["JOB_QUEUE_URL"])
    assert json.loads(message["Body"])["labels"] == ["self-hosted", "sized", "cpu=4", "ram=16"]


@pytest.mark.parametrize(
    ("labels", "reason", "label"),
    [
        (["sized", "cpu=64"], "sizing_outside_policy", "cpu=64"),
        (["sized", "ram=lots"], "sizing_malformed", "ram=lots"),
        (["sized", "spot=false"], "sizing_outside_policy", "spot=false"),
        (["sized", "cpu=2", "cpu=4"], "sizing_repeated", "cpu=4"),
    ],
)
def test_a_refused_sizing_label_is_answered_logged_counted_and_launches_nothing(
    sized_env: dict[str, str],
    lambda_context: Any,
    log_lines: Any,
    capsys: pytest.CaptureFixture[str],
    labels: list[str],
    reason: str,
    label: str,
) -> None:
    status, answer = _deliver(labels, lambda_context)

    assert status == 202
    assert answer["ignored"] == reason
    assert answer["label"] == label
    assert answer["job_id"] == 51
    assert answer["detail"]
    assert drain(sized_env["JOB_QUEUE_URL"]) == []
    [warning] = [line for line in log_lines() if line["level"] == "WARNING"]
    assert warning["job_id"] == 51
    assert warning["label"] == label
    assert warning["reason"] == reason
    out = capsys.readouterr().out
    assert '"SizingRefused"' in out
    assert f'"reason":"{reason}"' in out


def test_sizing_labels_on_a_template_without_sizing_are_refused_as_such(
    sized_env: dict[str, str], lambda_context: Any
) -> None:
    status, answer = _deliver(["self-hosted", "linux-x64", "cpu=4"], lambda_context)
    assert (status, answer["ignored"]) == (202, "sizing_not_enabled")
    assert drain(sized_env["JOB_QUEUE_URL"]) == []
