"""Fixtures of the local stack: a GitHub simulator and a moto server world, torn down after use.

Moto's server is started once per worker (pytest-xdist) and emptied for each test: importing and
warming moto takes seconds, tens of them on a busy machine, and its backends are process-wide
anyway. Each test still gets an empty AWS account (`AwsWorld.attach` resets moto).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from devstack.aws_world import AwsWorld
from devstack.github_sim import GitHubSim

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
def moto_server() -> Iterator[str]:
    """The endpoint of this worker's moto server, started once."""
    saved = _SavedAwsEnv()
    server = AwsWorld().start()
    saved.restore()
    yield server.endpoint_url
    server.stop()


@pytest.fixture
def world(sim: GitHubSim, moto_server: str) -> Iterator[AwsWorld]:
    """An empty moto account with the module's resources; the process env is restored."""
    saved = _SavedAwsEnv()
    aws = AwsWorld().attach(moto_server)
    aws.create(webhook_secret=sim.webhook_secret, github_app_key=sim.private_key_pem)
    yield aws
    saved.restore()
