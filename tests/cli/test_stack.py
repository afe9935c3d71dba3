"""The CLI against a real local-stack run (devstack, `cloud` on: what `make run ARGS=--serve`
starts): one job runs to the end, then `trace` reads the Lambdas' own log lines for it, `status`
and `webhook test` run against the stack, and `status` renders within 80 columns on a terminal.

A change in the Lambdas' log messages that trace's milestones depend on breaks this test.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devstack.stack import Options, Stack
from jitrunners.models import runner_instance
from tests.cli.conftest import Run
from tests.support.waits import PATIENCE_S

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("stack")
    options = Options(
        jobs=1, job_seconds=0.3, workdir=workdir, cloud=True, timeout_s=PATIENCE_S,
        redrive_every_s=2.0, housekeeper_every_s=2.0,
    )  # fmt: skip
    running = Stack(options, out=(workdir / "progress.txt").open("w"))
    try:
        running.start()
        summary = running.run_demo()
        assert summary["completed"] == 1, running.progress.lines
        yield running
    finally:
        running.stop()


@pytest.fixture
def on_stack(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The process environment `eval` of the `--serve` export lines gives."""
    env = stack.cli_env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    stack.shipper.ship()  # what the shipper's thread would send within half a second
    return env


def test_serve_prints_one_export_line_per_variable_the_cli_needs(stack: Stack) -> None:
    env = stack.cli_env()
    assert set(env) >= {"AWS_ENDPOINT_URL", "AWS_REGION", "JITRUNNERS_PREFIX",
                        "JITRUNNERS_WEBHOOK_URL", "JITRUNNERS_GITHUB_URL"}  # fmt: skip
    assert env["AWS_ENDPOINT_URL"] == stack.world.endpoint_url
    assert env["JITRUNNERS_WEBHOOK_URL"] == stack.apigw.url  # type: ignore[union-attr]


def test_trace_follows_the_job_through_the_lambdas_real_log_lines(
    stack: Stack, on_stack: dict[str, str], cli: Callable[..., Run]
) -> None:
    [job] = list(stack.sim.jobs.values())
    run = cli("trace", str(job.id), "--json")
    assert run.code == 0, run.err
    data = run.json()
    steps = [s["step"] for s in data["steps"]]
    assert steps == ["delivery", "launch", "instance", "start", "runner", "completion",
                     "termination"]  # fmt: skip
    assert data["runner"] == job.runner_name
    assert data["repo"] == job.repo
    times = [s["at"] for s in data["steps"] if s["step"] != "instance"]
    assert times == sorted(times)
    assert data["total_s"] > 0
    termination = data["steps"][-1]
    assert termination["detail"] == f"{runner_instance(job.runner_name)}: command_success"
    screen = cli("trace", str(job.id), "--lines").out.splitlines()
    assert all(len(line) <= 80 for line in screen)
    assert screen[0] == f"job {job.id} {job.repo} (linux-x64), runner {job.runner_name}"


def test_status_and_webhook_test_against_the_stack(
    stack: Stack, on_stack: dict[str, str], cli: Callable[..., Run]
) -> None:
    status = cli("status", "--json")
    assert status.code == 0, status.err
    report = status.json()
    assert report["kill_switch"]["state"] == "off"
    assert report["housekeeper"]["last_run"] is not None
    assert sum(t["total"] for t in report["templates"]) == 0  # the job's instance is gone
    webhook = cli("webhook", "test", "--json")
    assert webhook.code == 0, webhook.err
    answers = webhook.json()
    assert answers["ping"]["body"] == {"msg": "pong"}
    assert answers["workflow_job"]["body"] == {
        "dry_run": True,
        "would": "launch",
        "job_id": 1,
        "template": answers["workflow_job"]["template"],
    }
    assert stack.world.queue_depth(stack.world.job_queue_url) == 0  # a dry run queues nothing
    assert stack.sim.webhook_secret not in webhook.out + webhook.err


def test_webhook_test_reports_a_refused_signature(
    stack: Stack, on_stack: dict[str, str], cli: Callable[..., Run]
) -> None:
    ssm = stack.world.client("ssm")
    name = "/jitrunners/secrets/webhook-secret"
    real = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    ssm.put_parameter(Name=name, Value="x" * 32, Type="SecureString", Overwrite=True)
    try:
        # The webhook keeps the real secret in its 5-minute cache: our new one is refused.
        run = cli("webhook", "test")
    finally:
        ssm.put_parameter(Name=name, Value=real, Type="SecureString", Overwrite=True)
    assert run.code == 1
    assert "401" in run.out
    assert run.err.startswith("jitrunners webhook: ping and workflow_job not answered as expected")


def test_status_fits_80_columns_on_a_terminal(stack: Stack, on_stack: dict[str, str]) -> None:
    import pexpect

    env = {**os.environ, **on_stack, "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "cli"), str(ROOT / "lambdas"), str(ROOT)])}  # fmt: skip
    child = pexpect.spawn(
        sys.executable, ["-m", "jitrunners_cli", "status"], env=env, encoding="utf-8",
        dimensions=(24, 80), timeout=PATIENCE_S,
    )  # fmt: skip
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in child.before.splitlines()]
    assert lines[0].startswith("jitrunners jitrunners in eu-west-1 at ")
    assert any(line.startswith("kill switch  OFF") for line in lines)
    assert max(len(line) for line in lines) <= 80, lines
    assert len(lines) <= 24  # one screen
