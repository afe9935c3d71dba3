"""Fixtures the integration tests share: an emulated clock, the fake GitHub, EC2 without waits."""

from __future__ import annotations

import pytest

from tests.support import world
from tests.support.world import Clock, FakeGitHub


@pytest.fixture
def fast_ec2(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's EC2 without the adapters' real-time waits (`pytestmark = usefixtures(...)`)."""
    world.fast_ec2(monkeypatch)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def github() -> FakeGitHub:
    return FakeGitHub()
