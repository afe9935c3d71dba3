"""Price adapter: an instance type's hourly price, from the pricing sources the AWS API offers:
the spot price in effect at a time (EC2 DescribeSpotPriceHistory) and the on-demand price (the
AWS Price List API, GetProducts). Cached per process; None when AWS does not say."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from jitrunners.aws.clients import PRICING_REGION, client

_on_demand: dict[tuple[str, str, str], float | None] = {}


def spot_price_at(instance_type: str, zone: str, windows: bool, at: datetime) -> float | None:
    """The spot price (USD per hour) of the type in the zone in effect at `at`."""
    try:
        response = client("ec2").describe_spot_price_history(
            InstanceTypes=[instance_type],
            AvailabilityZone=zone,
            ProductDescriptions=["Windows" if windows else "Linux/UNIX"],
            StartTime=at,
            EndTime=at,
            MaxResults=10,
        )
    except (ClientError, BotoCoreError):
        return None
    for entry in response.get("SpotPriceHistory", []):
        try:
            return float(entry["SpotPrice"])
        except (KeyError, ValueError):
            continue
    return None


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
