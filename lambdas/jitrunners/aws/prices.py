"""Price adapter: an instance type's hourly price, from the pricing sources the AWS API offers:
the spot price in effect at a time (EC2 DescribeSpotPriceHistory) and the on-demand price (the
AWS Price List API, GetProducts). Cached per process; None when AWS does not say."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from jitrunners.aws.clients import PRICING_REGION, client

_on_demand: dict[tuple[str, str, str], float | None] = {}


# One DescribeSpotPriceHistory answers every launch of a type in a zone over a stretch of time:
# it covers SPOT_LOOKBACK before the launch asked about (AWS adds the price in effect at its
# start) and is reused for launches up to SPOT_REUSE after it. Spot prices change a few times a
# day, so a change inside SPOT_REUSE is at worst one estimate priced at the previous rate.
SPOT_LOOKBACK = timedelta(hours=6)
SPOT_REUSE = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class _SpotHistory:
    start: datetime  # prices in effect from here ...
    until: datetime  # ... up to here are answered from `changes`
    changes: tuple[tuple[datetime, float], ...]  # (since, USD per hour), oldest first

    def price_at(self, at: datetime) -> float | None:
        price = None
        for since, value in self.changes:
            if since > at:
                break
            price = value
        return price


_spot: dict[tuple[str, str, str], _SpotHistory] = {}


def spot_price_at(instance_type: str, zone: str, windows: bool, at: datetime) -> float | None:
    """The spot price (USD per hour) of the type in the zone in effect at `at`."""
    product = "Windows" if windows else "Linux/UNIX"
    key = (instance_type, zone, product)
    cached = _spot.get(key)
    if cached is not None and cached.start <= at <= cached.until:
        return cached.price_at(at)
    start = at - SPOT_LOOKBACK
    try:
        response = client("ec2").describe_spot_price_history(
            InstanceTypes=[instance_type],
            AvailabilityZone=zone,
            ProductDescriptions=[product],
            StartTime=start,
            MaxResults=100,
        )
    except (ClientError, BotoCoreError):
        return None  # not cached: AWS may answer next time
    changes: list[tuple[datetime, float]] = []
    for entry in response.get("SpotPriceHistory", []):
        try:
            since = entry["Timestamp"]
            changes.append(
                (since if since.tzinfo else since.replace(tzinfo=UTC), float(entry["SpotPrice"]))
            )
        except (KeyError, ValueError, TypeError, AttributeError):
            continue
    if not changes:
        return None
    changes.sort()
    # The price in effect at `start` may carry an older timestamp: it counts from `start` on.
    history = _SpotHistory(min(start, changes[0][0]), at + SPOT_REUSE, tuple(changes))
    _spot[key] = history
    return history.price_at(at)


def on_demand_price(instance_type: str, windows: bool) -> float | None:
    """The on-demand price (USD per hour) of the type in our region (shared tenancy, no
    pre-installed software, no license included for Linux)."""
    region = str(client("ec2").meta.region_name)
    key = (instance_type, region, "Windows" if windows else "Linux")
    if key in _on_demand:
        return _on_demand[key]
    filters = {
        "instanceType": instance_type,
        "regionCode": region,
        "operatingSystem": key[2],
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "capacitystatus": "Used",
    }
    if not windows:
        filters["licenseModel"] = "No License required"
    try:
        response = client("pricing", PRICING_REGION).get_products(
            ServiceCode="AmazonEC2",
            Filters=[{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in filters.items()],
            MaxResults=10,
        )
    except (ClientError, BotoCoreError):
        return None  # not cached: AWS may answer next time
    price = None
    for product in response.get("PriceList", []):
        price = _usd_per_hour(product)
        if price is not None:
            break
    _on_demand[key] = price
    return price


def _usd_per_hour(product: Any) -> float | None:
    try:
        data = json.loads(product) if isinstance(product, str) else product
        for term in data["terms"]["OnDemand"].values():
            for dimension in term["priceDimensions"].values():
                if dimension.get("unit") in ("Hrs", "Hours"):
                    return float(dimension["pricePerUnit"]["USD"])
    except (KeyError, ValueError, TypeError, AttributeError):
        return None
    return None
