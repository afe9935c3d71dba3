"""Fixtures of the local stack: a GitHub simulator and a moto server world, torn down after use."""

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


@pytest.fixture
def sim() -> Iterator[GitHubSim]:
    simulator = GitHubSim(seed=7).start()
    yield simulator
    simulator.stop()


@pytest.fixture
def world(sim: GitHubSim) -> Iterator[AwsWorld]:
    """Moto on a random loopback port with the module's resources; the process env is restored."""
    saved = {key: os.environ.get(key) for key in _AWS_KEYS}
    aws = AwsWorld().start()
    aws.create(webhook_secret=sim.webhook_secret, github_app_key=sim.private_key_pem)
    yield aws
    aws.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
