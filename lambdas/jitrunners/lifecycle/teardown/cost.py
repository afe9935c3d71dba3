"""A runner's estimated cost when it ends: instance type, market, the hourly price at launch
(spot: the spot price in effect then; on-demand: the list price) and its runtime. Compute only:
no EBS volume, data transfer or the Lambdas' own cost."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jitrunners.aws import prices
from jitrunners.observability import MetricUnit, logger, observe

# EC2 bills Linux and Windows per second, with a minimum of one minute.
MIN_BILLED_S = 60


@dataclass(frozen=True, slots=True)
class JobCost:
    usd: float
    price_per_hour: float
    runtime_s: float
    instance_type: str
    market: str


def estimate(instance: Any, ended: datetime) -> JobCost | None:
    """The instance's estimated cost, or None when its type, launch time or price is unknown."""
    launched = getattr(instance, "launch_time", None)
    instance_type = str(getattr(instance, "instance_type", "") or "")
    if not isinstance(launched, datetime) or not instance_type:
        return None
    market = "spot" if getattr(instance, "lifecycle", "") == "spot" else "on-demand"
    windows = getattr(instance, "platform", "") == "windows"
    if market == "spot":
        price = prices.spot_price_at(instance_type, instance.zone, windows, launched)
    else:
        price = prices.on_demand_price(instance_type, windows)
    if price is None:
        return None
    runtime = max(float(MIN_BILLED_S), (ended - launched).total_seconds())
    return JobCost(round(price * runtime / 3600, 6), price, runtime, instance_type, market)


def report(instance: Any, ended: datetime, reason: str) -> JobCost | None:
    """The job's final log line, with its estimated cost, and the JobCost metric (USD) by
    template and by template and repository. Best effort: never raises."""
    template = str(getattr(instance, "template", "") or "none")
    repository = str(getattr(instance, "repo", "") or "none")
    try:
        cost = estimate(instance, ended)
    except Exception as exc:  # noqa: BLE001 - a cost estimate must never fail a cleanup
        logger.warning("cannot estimate the job's cost", extra={"detail": str(exc)})
        cost = None
    if cost is None:
        logger.info(
            "runner ended: cost unknown",
            extra={"reason": reason, "instance_type": getattr(instance, "instance_type", None)},
        )
        return None
    observe("JobCost", cost.usd, MetricUnit.NoUnit, template=template)
    observe("JobCost", cost.usd, MetricUnit.NoUnit, template=template, repository=repository)
    logger.info(
        "runner ended: estimated cost",
        extra={
            "reason": reason,
            "cost_usd": cost.usd,
            "price_per_hour_usd": cost.price_per_hour,
            "runtime_s": round(cost.runtime_s, 1),
            "instance_type": cost.instance_type,
            "market": cost.market,
        },
    )
    return cost
