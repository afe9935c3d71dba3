"""The spot circuit breaker: after a template's spot runners were interrupted, or spot capacity
refused, often enough, launch on-demand for a while, then try spot again (README "Spot circuit
breaker"). Its state is shared through DynamoDB (aws/breaker.py); scale-down records
interruptions, scale-up records capacity refusals and asks which market to launch in."""

from __future__ import annotations

from datetime import UTC, datetime

from jitrunners.aws import breaker
from jitrunners.config import RunnerTemplate, Settings
from jitrunners.observability import count, logger

# Only this market has an on-demand to fall back to; `spot` templates (and `spot=true` jobs)
# keep to spot, `on-demand` ones never use it.
SWITCHABLE = "spot-then-on-demand"


def _enabled(template: RunnerTemplate, settings: Settings) -> bool:
    return template.spot_breaker_threshold > 0 and bool(settings.deliveries_table)


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def market_for(template: RunnerTemplate, market: str, settings: Settings, now: datetime) -> str:
    """The market to launch in: `market`, or on-demand while the template's breaker is open and
    `market` allows on-demand. An unreadable breaker leaves the market as it is."""
    if market != SWITCHABLE or not _enabled(template, settings):
        return market
    try:
        until = breaker.spot_breaker_open_until(settings.deliveries_table, template.name)
    except breaker.BreakerStoreError as exc:
        logger.warning("cannot read the spot breaker: market unchanged", extra={"detail": str(exc)})
        return market
    if until <= int(now.timestamp()):
        return market
    count("SpotBreakerOnDemandLaunches", template=template.name)
    logger.info("spot breaker open: launching on-demand", extra={"breaker_open_until": _iso(until)})
    return "on-demand"


def record(
    template: RunnerTemplate, event_id: str, kind: str, settings: Settings, now: datetime
) -> None:
    """Count one spot event (`interruption` or `capacity`) toward the template's breaker, and
    open it when it reaches the threshold. Best effort: a failure is logged, never raised."""
    if not _enabled(template, settings):
        return
    count("SpotBreakerEvents", template=template.name, kind=kind)
    try:
        state = breaker.record_spot_event(
            settings.deliveries_table,
            template.name,
            event_id,
            now=int(now.timestamp()),
            threshold=template.spot_breaker_threshold,
            window_s=template.spot_breaker_window_s,
            open_s=template.spot_breaker_open_s,
        )
    except breaker.BreakerStoreError as exc:
        logger.warning("cannot record the spot event", extra={"detail": str(exc), "kind": kind})
        return
    if state.opened_now:
        count("SpotBreakerOpened", template=template.name)
        logger.warning(
            "spot breaker opened: launching on-demand until it closes",
            extra={
                "template": template.name,
                "kind": kind,
                "spot_events": state.recent,
                "window_s": template.spot_breaker_window_s,
                "breaker_open_until": _iso(state.open_until),
            },
        )
    else:
        logger.info(
            "spot event recorded for the breaker",
            extra={"template": template.name, "kind": kind, "spot_events": state.recent},
        )
