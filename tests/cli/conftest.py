"""A deployment of the module in moto (queues, parameters, functions, mapping, log groups, as
terraform apply makes them) with the GitHub simulator as its GitHub, and the CLI run in-process."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from devstack import cloud
from devstack.github_sim import GitHubSim
from jitrunners_cli import main as cli_main
from tests.conftest import TEMPLATES

PREFIX = "jitrunners"


@dataclass
class Deployed:
    sim: GitHubSim
    job_queue_url: str
    dlq_url: str
    env: dict[str, str]
    prefix: str = PREFIX

    def client(self, service: str) -> Any:
        return boto3.client(service)


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        # In a test beside an in-process local stack, its Lambdas' EMF metric lines (printed on
        # stdout, as in AWS) land in the same captured stdout: not the CLI's.
        ours = [line for line in self.out.splitlines() if not line.startswith('{"_aws"')]
        return json.loads("\n".join(ours))


@pytest.fixture
def sim() -> Iterator[GitHubSim]:
    simulator = GitHubSim(seed=5).start()
    yield simulator
    simulator.stop()


@pytest.fixture(autouse=True)
def _lambda_logging_restored(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The CLI quiets the Lambdas' logger and metrics for its process: put them back."""
    from jitrunners.observability import logger

    monkeypatch.setenv(
        "POWERTOOLS_METRICS_DISABLED", os.environ.get("POWERTOOLS_METRICS_DISABLED", "false")
    )
    handler = logger.registered_handler
    stream, level = handler.stream, logger.log_level  # type: ignore[attr-defined]
    yield
    handler.setStream(stream)  # type: ignore[attr-defined]
    logger.setLevel(level)


def create(sim: GitHubSim, *, app_mode: bool = True) -> Deployed:
    """What terraform apply creates that the CLI reads, in the current moto account."""
    sqs, ssm = boto3.client("sqs"), boto3.client("ssm")
    dlq = sqs.create_queue(QueueName=f"{PREFIX}-jobs-dlq")["QueueUrl"]
    jobs = sqs.create_queue(QueueName=f"{PREFIX}-jobs")["QueueUrl"]
    ssm.put_parameter(
        Name=f"/{PREFIX}/config/runner-templates", Type="String", Value=json.dumps(TEMPLATES)
    )
    ssm.put_parameter(
        Name=f"/{PREFIX}/secrets/webhook-secret", Type="SecureString", Value=sim.webhook_secret
    )
    key = f"/{PREFIX}/secrets/github-app-key"
    ssm.put_parameter(Name=key, Type="SecureString", Value=sim.private_key_pem, Tier="Advanced")
    env = {
        "JITRUNNERS_PREFIX": PREFIX,
        "JOB_QUEUE_URL": jobs,
        "DLQ_URL": dlq,
        "RUNNER_TEMPLATES_PARAM": f"/{PREFIX}/config/runner-templates",
        "WEBHOOK_SECRET_PARAM": f"/{PREFIX}/secrets/webhook-secret",
        "GITHUB_API_URL": sim.url,
        "GITHUB_APP_ID": str(sim.app_id) if app_mode else "",
        "GITHUB_APP_KEY_PARAM": key if app_mode else "",
        "ALLOWED_OWNERS": "acme",
        "MAX_REDRIVES": "3",
        "CHECK_JOB_QUEUED": "true",
    }
    deployed = Deployed(sim, jobs, dlq, env)
    cloud.register(deployed, env)  # type: ignore[arg-type]
    return deployed


@pytest.fixture
def deployed(aws: None, sim: GitHubSim, monkeypatch: pytest.MonkeyPatch) -> Deployed:
    monkeypatch.setenv("JITRUNNERS_PREFIX", PREFIX)
    for key in ("JITRUNNERS_WEBHOOK_URL", "JITRUNNERS_GITHUB_URL", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    return create(sim)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    """`jitrunners ARGS...` in this process: exit code, stdout, stderr."""

    def run(*argv: str) -> Run:
        from jitrunners.aws import clients

        clients.reset()
        capsys.readouterr()
        code = cli_main.main(list(argv))
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run
