"""The instance side: the real start-runner.sh, the fake `aws` CLI (moto), the simulated runner."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from devstack.agent import Sandbox
from devstack.aws_world import AwsWorld, lambda_document, load_tf_templates
from devstack.github_sim import GitHubSim
from jitrunners.config import parse_templates
from tests.support.waits import PATIENCE_S

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def _jit(sim: GitHubSim, name: str, labels: list[str]) -> str:
    return sim.generate_jitconfig(
        "orgs/acme", {"name": name, "labels": labels, "runner_group_id": 1}
    )["encoded_jit_config"]


def test_fake_aws_cli_reads_deletes_and_fails_like_the_cli(world: AwsWorld, tmp_path: Path) -> None:
    world.client("ssm").put_parameter(Name="/jitrunners/jit/i-x", Type="SecureString", Value="v1")
    env = Sandbox.base_env()
    aws = [str(REPO / "devstack/bin/aws"), "ssm"]
    got = subprocess.run(
        [
            *aws,
            "get-parameter",
            "--name",
            "/jitrunners/jit/i-x",
            "--with-decryption",
            "--query",
            "Parameter.Value",
            "--output",
            "text",
            "--region",
            "eu-west-1",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (got.returncode, got.stdout) == (0, "v1\n")
    gone = subprocess.run(
        [*aws, "delete-parameter", "--name", "/jitrunners/jit/i-x"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (gone.returncode, gone.stdout) == (0, "")
    missing = subprocess.run(
        [*aws, "get-parameter", "--name", "/jitrunners/jit/i-x", "--with-decryption"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 254
    assert "ParameterNotFound" in missing.stderr
    assert "GetParameter" in missing.stderr


def test_start_runner_runs_one_job_and_deletes_its_parameter(
    sim: GitHubSim, world: AwsWorld, tmp_path: Path
) -> None:
    job = sim.queue_job("acme/widgets", ["self-hosted", "linux"])
    name = "/jitrunners/jit/i-0abc"
    world.client("ssm").put_parameter(
        Name=name, Type="SecureString", Value=_jit(sim, "i-0abc", ["self-hosted", "linux"])
    )
    sandbox = Sandbox.create(tmp_path, "i-0abc", job_seconds=0.2)

    result = sandbox.run([name, "20"], timeout_s=PATIENCE_S)

    assert result.returncode == 0, result.output
    assert sim.jobs[job.id].conclusion == "success"
    assert sim.jobs[job.id].runner_name == "i-0abc"
    assert world.jit_params() == []
    assert list((sandbox.runner_dir / "_diag").glob("Worker_*.log"))
    for secret in sim.issued_secrets:
        assert secret not in result.output


def test_start_runner_idle_timeout_and_missing_parameter(
    sim: GitHubSim, world: AwsWorld, tmp_path: Path
) -> None:
    name = "/jitrunners/jit/i-idle"
    world.client("ssm").put_parameter(
        Name=name, Type="SecureString", Value=_jit(sim, "i-idle", ["self-hosted", "gpu"])
    )
    idle = Sandbox.create(tmp_path, "i-idle", job_seconds=0.2).run(
        [name, "1"], timeout_s=PATIENCE_S
    )
    assert idle.returncode == 4, idle.output
    again = Sandbox.create(tmp_path / "2", "i-idle", job_seconds=0.2).run(
        [name, "1"], timeout_s=PATIENCE_S
    )
    assert again.returncode == 3, again.output


def test_templates_document_is_derived_like_terraform_and_valid() -> None:
    document = lambda_document(load_tf_templates(), "demo")
    templates = parse_templates(json.dumps(document))
    assert [t.launch_template for t in templates] == [f"demo-{t.name}" for t in templates]
    assert len({t.scope for t in templates}) == 2  # org and repo registrations both exercised
