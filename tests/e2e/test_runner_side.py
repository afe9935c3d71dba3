"""The instance side: an instance booted from its user data runs the RunCommand of
docs/contracts.md: the real start-runner.sh, the fake `aws` CLI (moto), the installed simulated
runner as the unprivileged `runner` user."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from devstack import deployment
from devstack.aws_world import ACCOUNT, REGION, AwsWorld, load_tf_templates
from devstack.github_sim import GitHubSim
from devstack.sandbox import instance_env
from jitrunners.config import parse_templates
from tests.e2e.conftest import Fleet, until

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
INSTANCE_ARN = f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance"


def _jit(sim: GitHubSim, name: str, labels: list[str]) -> str:
    return sim.generate_jitconfig(
        "orgs/acme", {"name": name, "labels": labels, "runner_group_id": 1}
    )["encoded_jit_config"]


def test_fake_aws_cli_reads_deletes_and_fails_like_the_cli(world: AwsWorld, tmp_path: Path) -> None:
    world.client("ssm").put_parameter(Name="/jitrunners/jit/i-x", Type="SecureString", Value="v1")
    env = instance_env({"AWS_DEFAULT_REGION": REGION})
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


def _put_jit(fleet: Fleet, iid: str, value: str) -> str:
    """A JIT parameter as scale-up writes it (aws/ssm.py put_jit_config): SecureString under the
    module's key, tagged with the instance's ARN, which the runner role's policy matches."""
    name = f"/jitrunners/jit/{iid}"
    fleet.world.client("ssm").put_parameter(
        Name=name,
        Type="SecureString",
        Value=value,
        KeyId=fleet.world.kms_key_arn,
        Tags=[
            {"Key": "jitrunners:prefix", "Value": "jitrunners"},
            {
                "Key": "jitrunners:instance-arn",
                "Value": f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{iid}",
            },
        ],
    )
    return name


def _booted(fleet: Fleet) -> str:
    [iid] = fleet.launch()
    assert until(lambda: fleet.agent.online(iid)), fleet.agent.boots
    return iid


def _finished(fleet: Fleet, command_id: str, iid: str) -> tuple[str, int | None, str]:
    assert until(lambda: any(e["detail"]["command-id"] == command_id for e in fleet.events))
    invocation = fleet.agent.invocations[(command_id, iid)]
    return invocation.status, invocation.returncode, invocation.output


def test_start_runner_runs_one_job_as_the_runner_user_and_only_reads_its_parameter(
    sim: GitHubSim, fleet: Fleet
) -> None:
    iid = _booted(fleet)
    job = sim.queue_job("acme/widgets", ["self-hosted", "linux"])
    name = _put_jit(fleet, iid, _jit(sim, iid, ["self-hosted", "linux"]))

    command_id = fleet.send(iid, f"/opt/jitrunners/start-runner.sh {name} 20")

    status, code, output = _finished(fleet, command_id, iid)
    assert (status, code) == ("Success", 0), output
    assert sim.jobs[job.id].conclusion == "success"
    assert sim.jobs[job.id].runner_name == iid
    # Left for scale-down's batch delete: the runner's role may only read it.
    assert fleet.world.jit_params() == [name]
    instance = fleet.agent.instances[iid]
    [worker_log] = instance.path("/opt/actions-runner/_diag").glob("Worker_*.log")
    assert worker_log.stat().st_uid != 0  # written by the runner, not root
    for secret in sim.issued_secrets:
        assert secret not in output


def test_start_runner_idle_timeout_and_missing_parameter(sim: GitHubSim, fleet: Fleet) -> None:
    iid = _booted(fleet)
    name = _put_jit(fleet, iid, _jit(sim, iid, ["self-hosted", "gpu"]))
    idle = _finished(fleet, fleet.send(iid, f"/opt/jitrunners/start-runner.sh {name} 1"), iid)
    assert idle[:2] == ("Failed", 4), idle[2]
    fleet.world.client("ssm").delete_parameter(Name=name)  # as scale-down's cleanup does
    again = _finished(fleet, fleet.send(iid, f"/opt/jitrunners/start-runner.sh {name} 1"), iid)
    assert again[:2] == ("Failed", 3), again[2]


def test_an_instance_reads_its_own_jit_parameter_and_nothing_else(fleet: Fleet) -> None:
    """The instance's credentials (its profile's role, from IMDS) are held to the runner role's
    policies as the module deploys them: its own JIT config only, no other instance's, no secret,
    and it may not delete even its own (scale-down does)."""
    mine, other = _booted(fleet), _booted(fleet)
    _put_jit(fleet, mine, "mine")
    _put_jit(fleet, other, "not-mine")
    get = "aws ssm get-parameter --with-decryption --query Parameter.Value --output text --name"
    for name, expected in (
        (f"/jitrunners/jit/{mine}", "Success"),
        (f"/jitrunners/jit/{other}", "AccessDeniedException"),
        ("/jitrunners/secrets/webhook-secret", "AccessDeniedException"),
    ):
        status, code, output = _finished(fleet, fleet.send(mine, f"{get} {name}"), mine)
        if expected == "Success":
            assert (status, code, output.strip()) == ("Success", 0, "mine")
        else:
            assert (status, code) == ("Failed", 254), output
            assert expected in output
            assert "is not authorized to perform" in output
            assert f"assumed-role/jitrunners-runner/{mine}" in output
    delete = f"aws ssm delete-parameter --name /jitrunners/jit/{mine}"
    status, code, output = _finished(fleet, fleet.send(mine, delete), mine)
    assert (status, code) == ("Failed", 254), output
    assert "AccessDeniedException" in output
    assert "ssm:DeleteParameter" in output
    assert f"/jitrunners/jit/{mine}" in fleet.world.jit_params()


def test_run_shell_script_runs_every_command_as_root_with_ssms_environment(
    fleet: Fleet,
) -> None:
    iid = _booted(fleet)
    lines = ["set -e", "id -u", 'echo "$AWS_SSM_INSTANCE_ID $AWS_SSM_REGION_NAME"', "pwd", "exit 7"]
    status, code, output = _finished(fleet, fleet.send(iid, "\n".join(lines)), iid)
    assert (status, code) == ("Failed", 7)
    uid, identity, cwd = output.splitlines()
    assert uid == "0"
    assert identity == f"{iid} {REGION}"
    assert cwd.startswith(f"/var/lib/amazon/ssm/{iid}/document/orchestration/")


def test_execution_timeout_ends_the_command_as_timed_out(fleet: Fleet) -> None:
    iid = _booted(fleet)
    status, code, _ = _finished(fleet, fleet.send(iid, "sleep 30", timeout_s=1), iid)
    assert (status, code) == ("TimedOut", -9)


def test_templates_document_terraform_renders_is_valid() -> None:
    document = deployment.documents(
        load_tf_templates(), prefix="demo", region=REGION, runner={}
    ).templates_document
    templates = parse_templates(json.dumps(document))
    assert [t.launch_template for t in templates] == [f"demo-{t.name}" for t in templates]
    assert len({t.scope for t in templates}) == 2  # org and repo registrations both exercised
