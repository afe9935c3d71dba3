"""The spot price adapter: one DescribeSpotPriceHistory answers every launch of a type in a zone
over a stretch of time, and each launch is priced at the rate in effect when it launched."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jitrunners.aws import prices

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


class FakeEc2:
    """DescribeSpotPriceHistory as AWS answers it: the changes inside the window, plus the last
    change before StartTime (the price in effect then)."""

    def __init__(self, changes: list[tuple[datetime, str]]) -> None:
        self.changes = changes
        self.calls: list[dict[str, Any]] = []

    def describe_spot_price_history(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        start = kwargs["StartTime"]
        before = [c for c in self.changes if c[0] <= start][-1:]
        inside = [c for c in self.changes if c[0] > start]
        return {
            "SpotPriceHistory": [
                {"Timestamp": ts, "SpotPrice": price, "InstanceType": kwargs["InstanceTypes"][0]}
                for ts, price in reversed(before + inside)  # newest first, as AWS lists them
            ]
        }


@pytest.fixture
def ec2(monkeypatch: pytest.MonkeyPatch) -> FakeEc2:
    fake = FakeEc2([(T0 - timedelta(days=2), "0.0300"), (T0 + timedelta(minutes=5), "0.0400")])
    monkeypatch.setattr(prices, "_spot", {})
    monkeypatch.setattr(prices, "client", lambda *_a, **_k: fake)
    return fake


def test_launches_close_in_time_share_one_history_call(ec2: FakeEc2) -> None:
    got = [
        prices.spot_price_at("m7g.large", "eu-west-1a", False, T0 + timedelta(minutes=m))
        for m in (0, 2, 4, 6, 8)
    ]
    assert got == [0.03, 0.03, 0.03, 0.04, 0.04]
    assert len(ec2.calls) == 1


def test_each_type_zone_and_platform_has_its_own_history(ec2: FakeEc2) -> None:
    prices.spot_price_at("m7g.large", "eu-west-1a", False, T0)
    prices.spot_price_at("m7g.large", "eu-west-1b", False, T0)
    prices.spot_price_at("m7g.large", "eu-west-1a", True, T0)
    prices.spot_price_at("c7g.large", "eu-west-1a", False, T0)
    assert len(ec2.calls) == 4
    assert ec2.calls[2]["ProductDescriptions"] == ["Windows"]


def test_a_launch_past_the_reuse_window_asks_again(ec2: FakeEc2) -> None:
    prices.spot_price_at("m7g.large", "eu-west-1a", False, T0)
    later = T0 + prices.SPOT_REUSE + timedelta(seconds=1)
    assert prices.spot_price_at("m7g.large", "eu-west-1a", False, later) == 0.04
    assert len(ec2.calls) == 2


def test_a_launch_before_the_cached_window_asks_again(ec2: FakeEc2) -> None:
    prices.spot_price_at("m7g.large", "eu-west-1a", False, T0)
    earlier = T0 - timedelta(days=3)
    assert prices.spot_price_at("m7g.large", "eu-west-1a", False, earlier) is None
    assert len(ec2.calls) == 2


def test_no_answer_is_not_cached(ec2: FakeEc2, monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.exceptions import EndpointConnectionError

    def down(**_kwargs: Any) -> dict[str, Any]:
        raise EndpointConnectionError(endpoint_url="https://ec2")

    monkeypatch.setattr(ec2, "describe_spot_price_history", down)
    assert prices.spot_price_at("m7g.large", "eu-west-1a", False, T0) is None
    assert prices._spot == {}
