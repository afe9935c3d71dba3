"""Start-up of the local stack: every piece announced, and one that does not come up named."""

from __future__ import annotations

import threading

import pytest

from devstack.startup import Startup, StartupError

pytestmark = pytest.mark.e2e


def test_steps_side_by_side_are_announced_with_their_results() -> None:
    said: list[str] = []
    startup = Startup(said.append)
    results = startup.parallel(
        {"moto": lambda: "127.0.0.1:1", "GitHub simulator": lambda: "127.0.0.1:2"},
        {"moto": lambda url: f"moto on {url}"},
    )
    assert results == {"moto": "127.0.0.1:1", "GitHub simulator": "127.0.0.1:2"}
    assert sorted(line.split(" (")[0] for line in said) == [
        "GitHub simulator ready",
        "moto on 127.0.0.1:1",
    ]
    assert set(startup.seconds) == {"moto", "GitHub simulator"}


def test_a_piece_that_does_not_come_up_is_named() -> None:
    never = threading.Event()  # the step waits for it; it is set only after the assertion
    try:
        with pytest.raises(StartupError, match="EC2 backend did not come up within"):
            # The bound is the point of this test; the step never finishes, whatever the load.
            Startup(lambda line: None, timeout_s=0.2).parallel({"EC2 backend": never.wait})
    finally:
        never.set()


def test_a_piece_that_fails_is_named_with_its_error() -> None:
    def refuse() -> None:
        raise OSError("address already in use")

    with pytest.raises(StartupError, match="moto failed: address already in use"):
        Startup(lambda line: None).step("moto", refuse)
