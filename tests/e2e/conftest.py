"""Fixtures of the local stack: a GitHub simulator, a moto server world whose launch templates
carry the user data terraform renders, the runner mirror, and an SSM agent shim that boots
instances; torn down after use.

Moto's server is started once per worker (pytest-xdist) and emptied for each test: importing and
warming moto takes seconds, tens of them on a busy machine, and its backends are process-wide
anyway. Each test still gets an empty AWS account (`AwsWorld.attach` resets moto).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devstack.agent import AgentShim
from devstack.aws_world import REGION, AwsWorld
from devstack.github_sim import GitHubSim
from devstack.runner_dist import RunnerDist
from tests.support.waits import PATIENCE_S

_AWS_KEYS = (
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
)


class _SavedAwsEnv:
    """The AWS variables of the process environment, put back as they were."""

    def __init__(self) -> None:
        self.saved = {key: os.environ.get(key) for key in _AWS_KEYS}

    def restore(self) -> None:
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def sim() -> Iterator[GitHubSim]:
    simulator = GitHubSim(seed=7).start()
    yield simulator
    simulator.stop()


@pytest.fixture(scope="session")
def runner_dist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerDist]:
    """The simulated runner's release files on a loopback mirror (jobs of 0.1 s)."""
    dist = RunnerDist(tmp_path_factory.mktemp("runner-dist"), job_seconds=0.1).start()
    yield dist
    dist.stop()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """The endpoint of this worker's moto server, started once."""
    saved = _SavedAwsEnv()
    server = AwsWorld().start()
    saved.restore()
    yield server.endpoint_url
    server.stop()


@pytest.fixture
def world(sim: GitHubSim, moto_server: str, runner_dist: RunnerDist) -> Iterator[AwsWorld]:
    """An empty moto account with the module's resources; the process env is restored."""
    saved = _SavedAwsEnv()
    aws = AwsWorld().attach(moto_server)
    aws.create(
        webhook_secret=sim.webhook_secret,
        github_app_key=sim.private_key_pem,
        runner=runner_dist.tfvars(),
    )
    yield aws
    saved.restore()


def until(predicate: Callable[[], object], timeout_s: float = PATIENCE_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@dataclass
class Fleet:
    """Instances launched from the world's launch templates, booted by an agent shim."""

    world: AwsWorld
    agent: AgentShim
    events: list[dict[str, Any]] = field(default_factory=list)
    launched: dict[str, float] = field(default_factory=dict)

    def launch(self, count: int = 1, template: str = "linux-x64") -> list[str]:
        tags = [
            {"Key": "jitrunners:prefix", "Value": self.world.prefix},
            {"Key": "jitrunners:template", "Value": template},
        ]
        ids = [
            i["InstanceId"]
            for i in self.world.client("ec2").run_instances(
                LaunchTemplate={"LaunchTemplateName": f"{self.world.prefix}-{template}"},
                MinCount=count,
                MaxCount=count,
                TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
            )["Instances"]
        ]
        for iid in ids:
            self.launched[iid] = time.time()
            self.agent.boot(iid)
        return ids

    def send(self, iid: str, line: str, timeout_s: int = 120) -> str:
        return str(
            self.world.client("ssm").send_command(
                InstanceIds=[iid],
                DocumentName="AWS-RunShellScript",
                Parameters={"commands": [line], "executionTimeout": [str(timeout_s)]},
            )["Command"]["CommandId"]
        )


@pytest.fixture
def fleet(world: AwsWorld, tmp_path: Path) -> Iterator[Fleet]:
    events: list[dict[str, Any]] = []
    launched: dict[str, float] = {}
    agent = AgentShim(
        tmp_path / "instances",
        on_event=events.append,
        launch_time=launched.get,
        job_seconds=0.1,
        boot_s=0.0,
        ec2=world.client("ec2"),
        prefix=world.prefix,
        region=REGION,
    )
    agent.attach(world.client("ssm"))
    yield Fleet(world, agent, events, launched)
    agent.stop()
