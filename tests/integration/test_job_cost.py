"""Cost per job: when scale-down ends a runner, its estimated cost (type, market, the price at
launch from EC2's spot price history or the Price List API, runtime) is the job's final log line
and a JobCost metric by template and by template and repository."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from tests.support import world
from tests.support.events import command_event
from tests.support.world import Clock, FakeGitHub

pytestmark = pytest.mark.usefixtures("fast_ec2")


@pytest.fixture
def call(
    scale_down_event: Callable[[dict[str, Any]], str], monkeypatch: pytest.MonkeyPatch
) -> Callable[[dict[str, Any]], str]:
    """The scale-down handler, with the local stack's Price List answers (moto has none)."""
    from devstack import pricing
    from jitrunners.aws import prices
    from jitrunners.aws.clients import PRICING_REGION, client

    monkeypatch.setattr(prices, "_on_demand", {})
    monkeypatch.setattr(prices, "_spot", {})
    pricing.attach(client("pricing", PRICING_REGION))
    return scale_down_event


def _ended(clock: Clock, github: FakeGitHub, *, ran: timedelta, market: str) -> str:
    instance_id = world.launch(
        launched_at=clock() - ran,
        command_id="cmd-1",
        started_at=clock() - ran,
        market=market,
        repo="acme/app",
    )
    github.register("orgs/acme", instance_id, status="offline")
    return instance_id


def _cost_line(log_lines: Any) -> dict[str, Any]:
    [line] = [x for x in log_lines() if x["message"].startswith("runner ended:")]
    return line


def test_an_on_demand_runner_costs_its_list_price_for_its_runtime(
    call: Callable[[dict[str, Any]], str],
    clock: Clock,
    github: FakeGitHub,
    log_lines: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    instance_id = _ended(clock, github, ran=timedelta(minutes=30), market="on-demand")

    call(command_event(instance_id, "cmd-1", "Success", time=clock().isoformat()))

    line = _cost_line(log_lines)
    assert line["message"] == "runner ended: estimated cost"
    # m7i.large: 2 vCPUs at the local stack's emulated USD 0.05 per vCPU-hour, for 30 minutes.
    assert (line["instance_type"], line["market"]) == ("m7i.large", "on-demand")
    assert line["price_per_hour_usd"] == pytest.approx(0.10)
    assert line["cost_usd"] == pytest.approx(0.05, rel=1e-3)
    assert (line["job_id"], line["template"], line["reason"]) == (
        100,
        "linux-x64",
        "command_success",
    )
    out = capsys.readouterr().out
    assert out.count('"JobCost"') >= 2
    assert '"repository":"acme/app"' in out


def test_a_spot_runner_costs_the_spot_price_at_its_launch_and_a_minute_at_least(
    call: Callable[[dict[str, Any]], str], clock: Clock, github: FakeGitHub, log_lines: Any
) -> None:
    instance_id = _ended(clock, github, ran=timedelta(seconds=10), market="spot")

    call(command_event(instance_id, "cmd-1", "Success", time=clock().isoformat()))

    line = _cost_line(log_lines)
    assert line["market"] == "spot"
    assert line["price_per_hour_usd"] == pytest.approx(0.00001)  # moto's spot price history
    assert line["runtime_s"] == 60.0  # EC2 bills at least a minute


def test_an_unknown_price_is_said_and_counts_nothing(
    call: Callable[[dict[str, Any]], str],
    clock: Clock,
    github: FakeGitHub,
    log_lines: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from devstack import pricing

    monkeypatch.setattr(
        pricing, "get_products", lambda _params: {"PriceList": [], "FormatVersion": "aws_v1"}
    )
    instance_id = _ended(clock, github, ran=timedelta(minutes=5), market="on-demand")

    call(command_event(instance_id, "cmd-1", "Success", time=clock().isoformat()))

    assert _cost_line(log_lines)["message"] == "runner ended: cost unknown"
    assert '"JobCost"' not in capsys.readouterr().out
