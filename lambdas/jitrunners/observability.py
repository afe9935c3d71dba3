"""The one Logger and Metrics setup every handler and module shares (DESIGN §5)."""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from jitrunners.canary import VERSIONED_METRICS

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "jitrunners")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "jitrunners")

# Powertools loggers with the same service name share handlers and appended keys, so modules may
# `from jitrunners.observability import logger` and every line carries the correlation keys.
logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)

__all__ = ["MetricUnit", "count", "logger", "metrics", "observe"]


def count(name: str, value: float = 1, **dimensions: str) -> None:
    """Add a count metric.

    The total always goes into the invocation's metrics (dimension `service` only: what the
    Terraform alarms watch). With dimensions (e.g. reason=...) a second, dimensioned line goes out
    on its own EMF document, so the dimension does not spill onto the invocation's other metrics.
    A failure a canary watches (jitrunners.canary) goes out a third time with the function and
    the version Lambda runs (its AWS_LAMBDA_FUNCTION_* variables), so a rollout reads the new
    version's failures apart from the old one's.
    """
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    if dimensions:
        observe(name, value, MetricUnit.Count, **dimensions)
    # Failures a canary rollout watches also go out per function version (jitrunners.canary).
    version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "")
    if name in VERSIONED_METRICS and version:
        function = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        observe(name, value, MetricUnit.Count, function=function, version=version)


def observe(name: str, value: float, unit: MetricUnit, **dimensions: str) -> None:
    """Emit one metric with its own dimensions right away."""
    with single_metric(name=name, unit=unit, value=value, namespace=NAMESPACE) as metric:
        metric.add_dimension(name="service", value=SERVICE)
        for key, dim in dimensions.items():
            metric.add_dimension(name=key, value=str(dim)[:250] or "none")
