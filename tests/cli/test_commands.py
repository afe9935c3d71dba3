"""`jitrunners setup github-app`, `redrive`, `drain` and `trace` against moto and the simulator."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests

from jitrunners.models import JobMessage
from jitrunners_cli import trace
from tests.cli.conftest import PREFIX, Deployed, Run
from tests.deploy import tfmodel

pytestmark = pytest.mark.usefixtures("deployed")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------------------- setup github-app
def _setup(cli: Callable[..., Run], *argv: str) -> tuple[threading.Thread, dict[str, Run], int]:
    port = _free_port()
    result: dict[str, Run] = {}
    command = ["setup", "github-app", "--org", "acme", "--port", str(port), "--no-browser"]
    command += ["--timeout", "30", *argv]
    thread = threading.Thread(target=lambda: result.setdefault("run", cli(*command)))
    thread.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/", timeout=2)
            break
        except requests.ConnectionError:
            time.sleep(0.05)
    return thread, result, port


def _browser(port: int) -> tuple[dict[str, Any], str]:
    """What a browser does: load the form, post it where it says, follow GitHub's redirect."""
    page = requests.get(f"http://127.0.0.1:{port}/", timeout=5).text
    action = re.search(r'action="([^"]+)"', page)
    value = re.search(r'name="manifest" value="([^"]+)"', page)
    assert action
    assert value
    import html

    manifest = json.loads(html.unescape(value.group(1)))
    created = requests.post(
        html.unescape(action.group(1)),
        data={"manifest": json.dumps(manifest)},
        allow_redirects=False,
        timeout=5,
    )
    assert created.status_code == 302
    back = requests.get(created.headers["Location"], timeout=5)
    assert back.status_code == 200
    return manifest, created.headers["Location"]


def test_setup_creates_the_app_from_a_manifest_and_stores_its_secrets_in_ssm(
    cli: Callable[..., Run], deployed: Deployed, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = deployed.sim
    monkeypatch.setenv("JITRUNNERS_WEBHOOK_URL", "https://hooks.example/webhook")
    monkeypatch.setenv("JITRUNNERS_GITHUB_URL", sim.url)
    ssm = boto3.client("ssm")
    for name in ("webhook-secret", "github-app-key"):
        ssm.put_parameter(Name=f"/{PREFIX}/secrets/{name}", Value="REPLACE_ME",
                          Type="SecureString", Overwrite=True)  # fmt: skip
    thread, result, port = _setup(cli, "--json")
    manifest, _ = _browser(port)
    thread.join(30)
    run = result["run"]
    assert run.code == 0, run.err
    # Exactly what the deployment's templates use: an org-scope and a repo-scope template, no
    # re-runs of interrupted jobs.
    assert manifest["default_permissions"] == {
        "actions": "read",
        "administration": "write",
        "metadata": "read",
        "organization_self_hosted_runners": "write",
    }
    assert manifest["default_events"] == ["workflow_job"]
    assert manifest["hook_attributes"] == {"url": "https://hooks.example/webhook", "active": True}
    assert sim.apps_created[0]["manifest"] == manifest
    stored = {
        name: ssm.get_parameter(Name=f"/{PREFIX}/secrets/{name}", WithDecryption=True)["Parameter"][
            "Value"
        ]
        for name in ("webhook-secret", "github-app-key")
    }
    assert stored == {"webhook-secret": sim.webhook_secret, "github-app-key": sim.private_key_pem}
    output = run.json()
    assert output["app_id"] == sim.app_id
    assert output["installation_url"].endswith("/apps/jitrunners-acme/installations/new")
    assert output["next"] == []  # the deployment already runs as this App
    for secret in (sim.webhook_secret, sim.private_key_pem, *sim.issued_secrets):
        assert secret not in run.out + run.err


def test_setup_ignores_a_redirect_of_another_state_and_a_used_code_fails(
    cli: Callable[..., Run], deployed: Deployed, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JITRUNNERS_WEBHOOK_URL", "https://hooks.example/webhook")
    monkeypatch.setenv("JITRUNNERS_GITHUB_URL", deployed.sim.url)
    thread, result, port = _setup(cli)
    forged = requests.get(f"http://127.0.0.1:{port}/callback?code=abc&state=forged", timeout=5)
    assert forged.status_code == 400
    page = requests.get(f"http://127.0.0.1:{port}/", timeout=5).text
    action = re.search(r'action="([^"]+)"', page)
    assert action
    state = parse_qs(urlsplit(action.group(1).replace("&amp;", "&")).query)["state"][0]
    requests.get(f"http://127.0.0.1:{port}/callback?code=used&state={state}", timeout=5)
    thread.join(30)
    run = result["run"]
    assert run.code == 1
    assert run.err.splitlines()[-1] == (
        "jitrunners setup: GitHub did not convert the manifest (404: the code is unknown or "
        "already used)"
    )


# ----------------------------------------------------------------------------------- redrive
def _message(job_id: int, **changes: Any) -> str:
    data = {"v": 1, "kind": "launch", "job_id": job_id, "run_id": 1, "run_attempt": 1,
            "repo": "acme/widgets", "owner": "acme", "installation_id": 99, "attempt": 1,
            "labels": ["self-hosted", "linux-x64"], "template": "linux-x64",
            "delivery_id": f"d-{job_id}", "queued_at": datetime.now(UTC).isoformat()}  # fmt: skip
    data.update(changes)
    return JobMessage.from_json(json.dumps(data)).to_json()


def test_redrive_dry_run_changes_nothing_and_redrive_moves_what_github_still_has_queued(
    cli: Callable[..., Run], deployed: Deployed
) -> None:
    sim = deployed.sim
    queued = sim.queue_job("acme/widgets", ["self-hosted", "linux-x64"])
    sqs = boto3.client("sqs")
    for body in (_message(queued.id), _message(987654), _message(queued.id, redrives=3)):
        sqs.send_message(QueueUrl=deployed.dlq_url, MessageBody=body)

    dry = cli("redrive", "--dry-run", "--json")
    assert dry.code == 0, dry.err
    assert dry.json()["outcomes"] == {
        "move": 1,
        "drop:job_not_found": 1,
        "hold:max_redrives": 1,
    }
    attributes = sqs.get_queue_attributes(
        QueueUrl=deployed.dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "3"  # visible again, all of them

    run = cli("redrive")
    assert run.code == 0, run.err
    assert "    1  move to the job queue" in run.out
    moved = sqs.receive_message(QueueUrl=deployed.job_queue_url, MaxNumberOfMessages=10)
    assert [json.loads(m["Body"])["job_id"] for m in moved["Messages"]] == [queued.id]


def test_redrive_of_an_empty_dlq_says_so(cli: Callable[..., Run]) -> None:
    run = cli("redrive", "--dry-run")
    assert run.code == 0
    assert run.out == f"{PREFIX}-jobs-dlq: empty, nothing to redrive\n"


# ------------------------------------------------------------------------------------- drain
def test_drain_sets_max_runners_zero_which_the_lambdas_load_and_undo_restores_it(
    cli: Callable[..., Run],
) -> None:
    from jitrunners.config import parse_templates

    ssm = boto3.client("ssm")
    name = f"/{PREFIX}/config/runner-templates"
    run = cli("drain", "linux-x64")
    assert run.code == 0, run.err
    assert "linux-x64: drained (max_runners 3 -> 0)" in run.out
    drained = parse_templates(ssm.get_parameter(Name=name)["Parameter"]["Value"])
    assert [t.max_runners for t in drained] == [0, 2]
    status = cli("status", "--json").json()
    assert [t["drained"] for t in status["templates"]] == [True, False]
    assert cli("drain", "linux-x64").out.startswith("linux-x64: already drained")

    undo = cli("drain", "linux-x64", "--undo")
    assert undo.code == 0
    restored = parse_templates(ssm.get_parameter(Name=name)["Parameter"]["Value"])
    assert [t.max_runners for t in restored] == [3, 2]
    tags = ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=name)["TagList"]
    assert tags == []


def test_drain_of_an_unknown_template_names_the_known_ones(cli: Callable[..., Run]) -> None:
    run = cli("drain", "gpu")
    assert run.code == 3
    assert run.err == "jitrunners drain: no runner template 'gpu' (known: linux-x64, linux-arm64)\n"


# ------------------------------------------------------------------------------------- trace
def test_the_saved_query_terraform_ships_is_the_file_trace_runs() -> None:
    """One text: observability.tf reads the CLI's query file; trace fills in the job id."""
    query = tfmodel.blocks("resource", "aws_cloudwatch_query_definition")["job"]["query_string"]
    path = re.fullmatch(r'\$\{file\("\$\{path\.module\}/(.+)"\)\}', query)
    assert path
    shipped = (tfmodel.TERRAFORM / path.group(1)).resolve()
    text = trace.query_text(4242)
    assert shipped.read_text().replace('job_id = 0 or job_id = "0"',
                                       'job_id = 4242 or job_id = "4242"') == text  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4242", (4242, None)),
        ("https://github.com/acme/widgets/actions/runs/77/job/4242", (4242, "acme/widgets")),
        ("https://ghe.example/acme/widgets/actions/runs/77/job/9?pr=1", (9, "acme/widgets")),
    ],
)
def test_a_job_is_named_by_id_or_url(text: str, expected: tuple[int, str | None]) -> None:
    assert trace.parse_job(text) == expected


def test_trace_of_an_unknown_job_or_bad_argument_fails_clearly(cli: Callable[..., Run]) -> None:
    run = cli("trace", "https://github.com/acme/widgets/pull/3")
    assert run.code == 2
    assert "not a job id or job URL" in run.err
    run = cli("trace", "5")
    assert run.code == 3
    assert run.err.startswith("jitrunners trace: no log line of job 5 in the last 3d")


def _put(group_key: str, lines: list[tuple[datetime, dict[str, Any]]]) -> None:
    logs = boto3.client("logs")
    group = f"/aws/lambda/{PREFIX}-{group_key}"
    stream = f"s{time.monotonic_ns()}"
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    logs.put_log_events(
        logGroupName=group,
        logStreamName=stream,
        logEvents=[
            {
                "timestamp": int(at.timestamp() * 1000),
                "message": json.dumps({**record, "function_name": f"{PREFIX}-{group_key}"}),
            }
            for at, record in lines
        ],
    )


def test_follow_prints_lines_as_they_arrive_until_the_instance_is_terminated(
    cli: Callable[..., Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    start = datetime.now(UTC) - timedelta(minutes=5)
    job = {"job_id": 77, "repo": "acme/widgets", "template": "linux-x64"}
    _put("webhook", [(start, {**job, "message": "job accepted", "delivery_id": "abc"})])
    _put("scale-up", [(start + timedelta(seconds=1), {**job, "message": "other job",
                                                       "job_id": 78})])  # fmt: skip
    iid = "i-0123456789abcdef0"
    later = [
        ("scale-up", {"message": "runner instance launched", "instance_id": iid}),
        ("webhook", {"message": "job in_progress: taken queued", "runner_name": iid}),
        ("webhook", {"message": "job completed: taken queued", "runner_name": iid}),
        ("scale-down", {"message": "instance terminated", "instance_id": iid,
                        "reason": "command_success"}),
    ]  # fmt: skip
    polls: list[float] = []

    def sleep(seconds: float) -> None:  # each poll, the job moves on one step
        polls.append(seconds)
        key, record = later.pop(0)
        _put(key, [(start + timedelta(seconds=2 + len(polls)), {**job, **record})])

    monkeypatch.setattr(trace.time, "sleep", sleep)
    run = cli("trace", "77", "--follow", "--interval", "0.01", "--timeout", "1")
    assert run.code == 0, run.err
    assert len(polls) == 4
    lines = run.out.splitlines()
    assert [line[14:].split()[0] for line in lines[:5]] == [
        "webhook", "scale-up", "webhook", "webhook", "scale-down",
    ]  # fmt: skip
    assert "other job" not in run.out
    assert "delivery to termination: 6.0 s" in run.out
