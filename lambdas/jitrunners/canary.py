"""What a canary rollout of a function watches: Lambda's metrics and ours, for one version.

Every trigger invokes the alias `live` (terraform/functions.tf); `jitrunners rollout` shifts the
alias's weight to a new version in steps and, between steps, reads these metrics of the new version
alone. Lambda publishes its own per executed version (dimensions FunctionName, Resource =
`<function>:live`, ExecutedVersion); ours get the dimensions `function` and `version` beside
`service` (jitrunners.observability.count), from the variables Lambda sets in each version.
"""

from __future__ import annotations

from typing import Final

ALIAS: Final = "live"
LAMBDA_NAMESPACE: Final = "AWS/Lambda"
# Lambda's own failures of the version.
LAMBDA_FAILURES: Final = ("Errors", "Throttles")
# Our failure metrics that say the code failed, by function key: a new version that emits them
# is rolled back. Deliberately few: a metric that also counts other systems' faults (GitHub down,
# no spot capacity) would roll back good releases during those faults.
FAILURE_METRICS: Final[dict[str, tuple[str, ...]]] = {
    "webhook": ("WebhookFailed",),
    "scale-up": ("StartFailed", "LaunchFailed", "MessageRejected"),
    "scale-down": ("CleanupIncomplete",),
    "redrive": (),
    "housekeeper": (),
    "budget-guard": (),
}
VERSIONED_METRICS: Final = frozenset(m for names in FAILURE_METRICS.values() for m in names)


def lambda_dimensions(function: str, version: str) -> dict[str, str]:
    """Dimensions of Lambda's metrics for one version invoked through the alias."""
    return {"FunctionName": function, "Resource": f"{function}:{ALIAS}", "ExecutedVersion": version}


def own_dimensions(service: str, function: str, version: str) -> dict[str, str]:
    """Dimensions of our failure metrics for one version of one function."""
    return {"service": service, "function": function, "version": version}
