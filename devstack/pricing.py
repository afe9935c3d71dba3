"""The AWS Price List API for the local stack, which moto does not emulate: GetProducts answers
an on-demand price for an EC2 instance type, made up from its vCPU count (USD 0.05 per vCPU-hour,
not a real price) in the Price List's own document shape. Spot prices are moto's (a flat
USD 0.00001 per hour, DescribeSpotPriceHistory)."""

from __future__ import annotations

import json
from typing import Any

USD_PER_VCPU_HOUR = 0.05


def product(instance_type: str, region: str, usd_per_hour: float) -> str:
    """One PriceList entry as the API returns it (a JSON document, as a string)."""
    return json.dumps(
        {
            "product": {
                "productFamily": "Compute Instance",
                "attributes": {"instanceType": instance_type, "regionCode": region},
            },
            "terms": {
                "OnDemand": {
                    "SKU.JRCC": {
                        "priceDimensions": {
                            "SKU.JRCC.6YS6EN2CT7": {
                                "unit": "Hrs",
                                "pricePerUnit": {"USD": f"{usd_per_hour:.10f}"},
                                "description": "emulated by the local stack",
                            }
                        }
                    }
                }
            },
        }
    )


def get_products(params: dict[str, Any]) -> dict[str, Any]:
    """GetProducts for ServiceCode AmazonEC2 with TERM_MATCH filters on instanceType and
    regionCode; no product for an unknown type."""
    from moto.ec2.models.instance_types import INSTANCE_TYPES

    filters = {f.get("Field"): f.get("Value") for f in params.get("Filters") or []}
    data = INSTANCE_TYPES.get(str(filters.get("instanceType")))
    if params.get("ServiceCode") != "AmazonEC2" or data is None:
        return {"PriceList": [], "FormatVersion": "aws_v1"}
    vcpus = (data.get("VCpuInfo") or {}).get("DefaultVCpus", 1)
    price = product(
        str(filters["instanceType"]), str(filters.get("regionCode")), vcpus * USD_PER_VCPU_HOUR
    )
    return {"PriceList": [price], "FormatVersion": "aws_v1"}


def attach(pricing_client: Any) -> Any:
    """Answer the client's GetProducts calls here (after any IAM hook registered first)."""
    from botocore.awsrequest import AWSResponse

    def answer(params: dict[str, Any], **_: Any) -> Any:
        return AWSResponse("https://pricing", 200, {}, None), {
            **get_products(_request(params)),
            "ResponseMetadata": {"HTTPStatusCode": 200},
        }

    pricing_client.meta.events.register("before-call.pricing.GetProducts", answer)
    return pricing_client


def _request(params: dict[str, Any]) -> dict[str, Any]:
    """The GetProducts request from the serialized call (the JSON protocol's body)."""
    body = params.get("body")
    if isinstance(body, bytes | str):
        try:
            return dict(json.loads(body))
        except ValueError:
            return {}
    return dict(body or {})
