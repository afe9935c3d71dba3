"""A scale-up world: moto EC2/SSM/SQS, a mocked GitHub, SQS events, and captured calls."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
import responses

from jitrunners.aws.clients import client
from jitrunners.models import JobMessage, PoolMessage, WorkflowJob, parse_message
from tests.conftest import _reset_process_caches
from tests.support.ec2 import make_world
from tests.support.github import API, private_key_pem
from tests.support.webhooks import workflow_job_payload

TOKEN = "ghp_test_token_value_0123456789"
INSTALLATION_TOKEN = "ghs_installation_token_value_987"
JIT = "JITCONFIG-base64-secret-blob=="


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)
        self.slept: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += timedelta(seconds=seconds)


@dataclass
class World:
    queue_url: str
    subnets: list[str]
    clock: FakeClock
    github: responses.RequestsMock
    sent: list[tuple[JobMessage, int]] = field(default_factory=list)
    visibility: list[tuple[str, int]] = field(default_factory=list)
    jit_calls: list[dict[str, Any]] = field(default_factory=list)
    # A warm pool's own messages (fill, ready), apart from the job messages in `sent`.
    pool_sent: list[tuple[PoolMessage, int]] = field(default_factory=list)
    # The jobs job_status() answers for, as a workflow run's jobs listing names them (every
    # run lists them: the tests' jobs share the payloads' run).
    jobs: dict[int, dict[str, Any]] = field(default_factory=dict)

    def record_sent(self, body: str, delay: int) -> None:
        message = parse_message(body)
        if isinstance(message, PoolMessage):
            self.pool_sent.append((message, delay))
        else:
            self.sent.append((message, delay))

    def instances(self, states: tuple[str, ...] = ("pending", "running")) -> list[dict[str, Any]]:
        found = boto3.client("ec2").describe_instances(
            Filters=[{"Name": "instance-state-name", "Values": list(states)}]
        )
        return [i for r in found["Reservations"] for i in r["Instances"]]

    def starts(self) -> list[JobMessage]:
        return [m for m, _ in self.sent if m.kind == "start"]


def launch_message(job_id: int = 4242, labels: list[str] | None = None, **kw: Any) -> JobMessage:
    payload = workflow_job_payload(job_id=job_id, labels=labels, **kw)
    template = "linux-arm64" if labels and "arm64" in labels else "linux-x64"
    return JobMessage.launch_for(WorkflowJob.from_payload(payload), template, f"dlv-{job_id}")


def sqs_event(*items: JobMessage | str | tuple[JobMessage, int]) -> dict[str, Any]:
    records = []
    for index, item in enumerate(items):
        message, receives = item if isinstance(item, tuple) else (item, 1)
        body = message if isinstance(message, str) else message.to_json()
        records.append(
            {
                "messageId": f"msg-{index}",
                "receiptHandle": f"receipt-{index}",
                "body": body,
                "attributes": {"ApproximateReceiveCount": str(receives)},
                "messageAttributes": {},
                "md5OfBody": "x",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:jitrunners-jobs",
                "awsRegion": "eu-west-1",
            }
        )
    return {"Records": records}


def failed_ids(response: dict[str, Any]) -> list[str]:
    return [item["itemIdentifier"] for item in response["batchItemFailures"]]


def job_status(world: World, job_id: int, status: str = "queued", code: int = 200) -> None:
    """GitHub answers `status` for the job: asked alone, and in its run's jobs listing (a job
    GitHub cannot answer for, `code` not 200, is not listed: it is asked alone)."""
    world.github.get(
        f"{API}/repos/acme/widgets/actions/jobs/{job_id}",
        json={"id": job_id, "status": status} if code == 200 else {"message": "x"},
        status=code,
    )
    if code == 200:
        world.jobs[job_id] = {"id": job_id, "status": status}
    else:
        world.jobs.pop(job_id, None)


def _run_jobs(world: World) -> Any:
    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        run_id = int(request.path_url.split("/runs/")[1].split("/")[0])
        jobs = [{**job, "run_id": run_id} for job in world.jobs.values()]
        return 200, {}, json.dumps({"total_count": len(jobs), "jobs": jobs})

    return answer


def runner_group(
    world: World,
    group_id: int = 1,
    *,
    visibility: str = "selected",
    allows_public_repositories: bool = False,
    code: int = 200,
) -> None:
    """GitHub's answer for the org's runner group (the world starts with a safe group 1)."""
    world.github.upsert(
        responses.GET,
        f"{API}/orgs/acme/actions/runner-groups/{group_id}",
        json={
            "id": group_id,
            "name": f"group-{group_id}",
            "visibility": visibility,
            "allows_public_repositories": allows_public_repositories,
        },
        status=code,
    )


def jit_endpoint(world: World, path: str = "orgs/acme") -> Any:
    def reply(request: Any) -> tuple[int, dict[str, str], str]:
        sent = json.loads(request.body)
        world.jit_calls.append(sent)
        body = {"runner": {"id": 1000 + len(world.jit_calls), "name": sent["name"]}}
        return 201, {}, json.dumps({**body, "encoded_jit_config": JIT})

    return world.github.add_callback(
        "POST", f"{API}/{path}/actions/runners/generate-jitconfig", callback=reply
    )


@pytest.fixture
def world(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    from jitrunners.github import client as github_client
    from jitrunners.lifecycle import records

    subnets = make_world(("jitrunners-linux-x64", "jitrunners-linux-arm64"))
    boto3.client("ssm").put_parameter(
        Name="/jitrunners/github-token", Value=TOKEN, Type="SecureString"
    )
    for key, value in {
        "GITHUB_TOKEN_PARAM": "/jitrunners/github-token",
        "START_DELAY_S": "0",
        "RUNNER_SUBNET_IDS": ",".join(subnets),
        "SSM_OUTPUT_LOG_GROUP": "/jitrunners/runner-output",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("GITHUB_APP_ID", raising=False)
    _reset_process_caches()
    github_client.get_client.cache_clear()
    clock = FakeClock()
    monkeypatch.setattr(records, "utcnow", clock)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as github:
        state = World(env["JOB_QUEUE_URL"], subnets, clock, github)
        runner_group(state)
        github.add_callback(
            responses.GET,
            re.compile(rf"{re.escape(API)}/repos/[^/]+/[^/]+/actions/runs/\d+/jobs"),
            callback=_run_jobs(state),
        )

        def on_send(params: dict[str, Any], **_: Any) -> None:
            state.record_sent(params["MessageBody"], params.get("DelaySeconds", 0))

        def on_send_batch(params: dict[str, Any], **_: Any) -> None:
            for entry in params["Entries"]:
                state.record_sent(entry["MessageBody"], entry.get("DelaySeconds", 0))

        def on_visibility(params: dict[str, Any], **_: Any) -> None:
            state.visibility.append((params["ReceiptHandle"], params["VisibilityTimeout"]))

        def accept_visibility(**_: Any) -> Any:
            # The events carry made-up receipt handles; answer as SQS would for a real one.
            from botocore.awsrequest import AWSResponse

            return AWSResponse("https://sqs", 200, {}, None), {}

        events = client("sqs").meta.events
        events.register("provide-client-params.sqs.SendMessage", on_send)
        events.register("provide-client-params.sqs.SendMessageBatch", on_send_batch)
        events.register("provide-client-params.sqs.ChangeMessageVisibility", on_visibility)
        events.register("before-call.sqs.ChangeMessageVisibility", accept_visibility)
        yield state
    github_client.get_client.cache_clear()


def use_app_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    from jitrunners.github import client as github_client

    boto3.client("ssm").put_parameter(
        Name="/jitrunners/github-app-key", Value=private_key_pem(), Type="SecureString"
    )
    monkeypatch.setenv("GITHUB_APP_ID", "4321")
    monkeypatch.setenv("GITHUB_APP_KEY_PARAM", "/jitrunners/github-app-key")
    monkeypatch.delenv("GITHUB_TOKEN_PARAM")
    # Not _reset_process_caches(): the world's hooks live on the cached AWS clients.
    from jitrunners import config

    config.get_settings.cache_clear()
    github_client.get_client.cache_clear()
