"""The sweeping Lambdas wired for real (handler, lifecycle, adapters); `responses` plays GitHub."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
import responses

from jitrunners.handlers import housekeeper, redrive, scale_down
from jitrunners.models import JobMessage
from tests.conftest import _reset_process_caches, drain
from tests.support import world
from tests.support.events import command_event, sqs_batch
from tests.support.github import API, private_key_pem

pytestmark = pytest.mark.usefixtures("fast_ec2")


@pytest.fixture
def gh(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[responses.RequestsMock]:
    """App mode: the private key in an SSM SecureString, read (and cached) by the client."""
    from jitrunners.github.client import get_client

    boto3.client("ssm").put_parameter(
        Name="/jitrunners/github-app-key", Value=private_key_pem(), Type="SecureString"
    )
    monkeypatch.setenv("GITHUB_APP_ID", "12345")
    monkeypatch.setenv("GITHUB_APP_KEY_PARAM", "/jitrunners/github-app-key")
    _reset_process_caches()
    get_client.cache_clear()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        expires = (datetime.now(UTC) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
        rsps.post(
            f"{API}/app/installations/7/access_tokens",
            json={"token": "ghs_installation", "expires_at": expires},
            status=201,
        )
        yield rsps
    get_client.cache_clear()


def _runner(
    runner_id: int, name: str, status: str = "offline", busy: bool = False
) -> dict[str, Any]:
    return {"id": runner_id, "name": name, "status": status, "busy": busy, "labels": []}


def test_scale_down_deletes_the_registration_through_the_github_api(
    gh: responses.RequestsMock, lambda_context: Any
) -> None:
    now = datetime.now(UTC)
    instance_id = world.launch(launched_at=now, command_id=world.command_id("x"))
    world.put_jit_param(instance_id)
    found = gh.get(
        f"{API}/orgs/acme/actions/runners",
        json={"total_count": 1, "runners": [_runner(31, instance_id)]},
    )
    deleted = gh.delete(f"{API}/orgs/acme/actions/runners/31", status=204)

    answer = scale_down.handler(
        sqs_batch(command_event(instance_id, world.command_id("x"), "Failed")), lambda_context
    )

    assert answer == {"batchItemFailures": []}
    assert found.calls[0].request.params == {"name": instance_id}
    assert deleted.call_count == 1
    assert world.state(instance_id) == "terminated"
    assert world.jit_params() == set()
    # The installation token authenticated the calls; it never reaches a log line.
    assert found.calls[0].request.headers["Authorization"] == "Bearer ghs_installation"


def test_housekeeper_pages_through_runners_and_redelivers_through_the_api(
    gh: responses.RequestsMock, lambda_context: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(UTC)
    gone = world.launch(launched_at=now - timedelta(hours=1), command_id=world.command_id("g"))
    world.terminate(gone)
    gh.get(
        f"{API}/repos/acme/app/actions/jobs/100",
        json={"id": 100, "status": "completed", "conclusion": "success", "runner_name": gone},
    )
    page2 = f"{API}/orgs/acme/actions/runners?page=2"
    gh.get(
        page2,
        json={"total_count": 2, "runners": [_runner(41, gone)]},
        match=[responses.matchers.query_param_matcher({"page": "2"})],
    )
    gh.get(
        f"{API}/orgs/acme/actions/runners",
        json={"total_count": 2, "runners": [_runner(40, "i-0notours00000000", "offline")]},
        headers={"Link": f'<{page2}>; rel="next"'},
    )
    deleted = gh.delete(f"{API}/orgs/acme/actions/runners/41", status=204)
    delivered_at = (now - timedelta(minutes=30)).isoformat().replace("+00:00", "Z")
    gh.get(
        f"{API}/app/hook/deliveries",
        json=[
            {
                "id": 9001,
                "guid": "g-1",
                "event": "workflow_job",
                "action": "queued",
                "status_code": 502,
                "delivered_at": delivered_at,
                "redelivery": False,
            }
        ],
    )
    redelivered = gh.post(f"{API}/app/hook/deliveries/9001/attempts", status=202)
    # The reconciliation reads the runs of the repository the instances were launched for.
    runs = gh.get(
        f"{API}/repos/acme/app/actions/runs", json={"total_count": 0, "workflow_runs": []}
    )

    answer = housekeeper.handler({"id": "evt-1"}, lambda_context)

    assert ["delete_runner", f"orgs/acme/{gone}", "instance_gone"] in answer["actions"]
    assert ["redeliver", "g-1", "delivery_failed"] in answer["actions"]
    assert deleted.call_count == 1
    assert redelivered.call_count == 1
    assert sorted(c.request.params["status"] for c in runs.calls) == ["in_progress", "queued"]
    assert all(c.request.headers["Authorization"] == "Bearer ghs_installation" for c in runs.calls)
    out = capsys.readouterr().out
    assert "ghs_installation" not in out
    assert "PRIVATE KEY" not in out


def test_redrive_asks_github_whether_the_job_is_still_queued(
    gh: responses.RequestsMock,
    lambda_context: Any,
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
) -> None:
    dlq = boto3.client("sqs").create_queue(QueueName="jitrunners-dlq")["QueueUrl"]
    monkeypatch.setenv("DLQ_URL", dlq)
    _reset_process_caches()
    for job_id, status in ((1, "queued"), (2, "completed")):
        gh.get(f"{API}/repos/acme/app/actions/jobs/{job_id}", json={"id": job_id, "status": status})
        message = JobMessage(
            kind="launch",
            job_id=job_id,
            run_id=9,
            run_attempt=1,
            repo="acme/app",
            owner="acme",
            installation_id=7,
            labels=("self-hosted",),
            template="linux-x64",
            delivery_id=f"d-{job_id}",
            queued_at="",
        )
        boto3.client("sqs").send_message(QueueUrl=dlq, MessageBody=message.to_json())

    answer = redrive.handler({"id": "evt-2"}, lambda_context)

    assert answer == {"moved": 1, "outcomes": {"move": 1, "drop:job_completed": 1}}
    [moved] = drain(env["JOB_QUEUE_URL"])
    assert json.loads(moved["Body"])["job_id"] == 1
