"""AWS Budgets notifications (through SNS) and what the budget guard does about them.

AWS Budgets publishes plain text, not JSON, to the topic: a `Budget Name: ...` line per field
after a letter to the account owner (README "Budget guardrail" shows one). The guard reads those
lines; a message without them is not acted on (a test publish, another service's message on a
shared topic, a future wording): it is logged and counted, never taken as a reason to stop.

Only notifications of this deployment's budgets (`<prefix>-monthly`, `<prefix>-daily`,
terraform/budget.tf) count. A FORECASTED alert is reported, never acted on; an ACTUAL one does what
BUDGET_ACTION says: `notify` (log, metric, the topic's other subscribers), `spot-only` or
`kill-switch` (jitrunners.guardrail). Lifting is left to an operator.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jitrunners import guardrail
from jitrunners.config import Settings
from jitrunners.observability import count, logger

BUDGET_KINDS = ("monthly", "daily")
# "Budget Name: jitrunners-monthly", "ACTUAL Amount: $1.70", "Alert Threshold: > $0.75"
_LINE = re.compile(r"^\s*([A-Za-z][A-Za-z ]{2,40}?)\s*:\s*(.+?)\s*$")
_FIELDS = {
    "budget name": "budget_name",
    "budget type": "budget_type",
    "budgeted amount": "budgeted_amount",
    "alert type": "alert_type",
    "alert threshold": "threshold",
}
ALERT_TYPES = ("ACTUAL", "FORECASTED")


class NotABudgetNotification(ValueError):
    """The SNS message is not an AWS Budgets notification the guard can read."""


@dataclass(frozen=True, slots=True)
class BudgetNotification:
    """The fields of one AWS Budgets notification the guard uses (amounts as Budgets wrote them)."""

    budget_name: str
    budget_type: str
    alert_type: str  # ACTUAL (spent) or FORECASTED
    budgeted_amount: str
    threshold: str
    amount: str  # the "<alert type> Amount" line
    message_id: str = ""
    topic_arn: str = ""

    @classmethod
    def parse(
        cls, message: str, *, message_id: str = "", topic_arn: str = ""
    ) -> BudgetNotification:
        found: dict[str, str] = {}
        amounts: dict[str, str] = {}
        for line in message.splitlines():
            match = _LINE.match(line)
            if not match:
                continue
            key, value = match.group(1).strip().lower(), match.group(2)
            if key in _FIELDS:
                found.setdefault(_FIELDS[key], value)
            elif key.endswith(" amount") and key.split(" ", 1)[0].upper() in ALERT_TYPES:
                amounts[key.split(" ", 1)[0].upper()] = value
        missing = [k for k in ("budget_name", "alert_type") if not found.get(k)]
        if missing:
            raise NotABudgetNotification(f"no {', '.join(missing)} line")
        alert_type = found["alert_type"].upper()
        if alert_type not in ALERT_TYPES:
            raise NotABudgetNotification(f"alert type {found['alert_type']!r} unknown")
        return cls(
            budget_name=found["budget_name"],
            budget_type=found.get("budget_type", ""),
            alert_type=alert_type,
            budgeted_amount=found.get("budgeted_amount", ""),
            threshold=found.get("threshold", ""),
            amount=amounts.get(alert_type, ""),
            message_id=message_id,
            topic_arn=topic_arn,
        )

    @classmethod
    def from_sns_record(cls, record: Mapping[str, Any]) -> BudgetNotification:
        """From one record of the SNS event Lambda receives (`Records[].Sns`)."""
        if not isinstance(record, Mapping) or record.get("EventSource") != "aws:sns":
            raise NotABudgetNotification("not an SNS record")
        sns = record.get("Sns")
        if not isinstance(sns, Mapping):
            raise NotABudgetNotification("not an SNS record")
        message = sns.get("Message")
        if not isinstance(message, str):
            raise NotABudgetNotification("SNS record without a text message")
        return cls.parse(
            message,
            message_id=str(sns.get("MessageId", "")),
            topic_arn=str(sns.get("TopicArn", "")),
        )

    @property
    def summary(self) -> str:
        return (
            f"{self.alert_type} cost of budget {self.budget_name} {self.amount or '?'}"
            f" (threshold {self.threshold or '?'}, budgeted {self.budgeted_amount or '?'})"
        )


def budget_names(prefix: str) -> frozenset[str]:
    """The budgets terraform/budget.tf creates for this deployment."""
    return frozenset(f"{prefix}-{kind}" for kind in BUDGET_KINDS)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the guard did with one record: ignored, notified, spot-only or kill-switch."""

    action: str
    reason: str = ""
    budget: str = ""
    already: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.action, "reason": self.reason, "budget": self.budget,
                "already": self.already}  # fmt: skip


def act(record: Mapping[str, Any], settings: Settings, *, by: str, now: datetime) -> Outcome:
    """Read one SNS record and do what BUDGET_ACTION says. AWS errors propagate (the invocation
    fails; Lambda's asynchronous retries and the events DLQ keep the notification)."""
    try:
        notification = BudgetNotification.from_sns_record(record)
    except NotABudgetNotification as exc:
        count("BudgetNotificationsIgnored", reason="unrecognised")
        logger.warning("not a budget notification: ignored", extra={"detail": str(exc)})
        return Outcome("ignored", "unrecognised")
    extra = {
        "budget": notification.budget_name,
        "alert_type": notification.alert_type,
        "amount": notification.amount,
        "threshold": notification.threshold,
        "budgeted_amount": notification.budgeted_amount,
        "sns_message_id": notification.message_id,
    }
    if notification.budget_name not in budget_names(settings.prefix):
        count("BudgetNotificationsIgnored", reason="other_budget")
        logger.warning("notification of another budget: ignored", extra=extra)
        return Outcome("ignored", "other_budget", notification.budget_name)

    action = settings.budget_action if notification.alert_type == "ACTUAL" else "notify"
    count("BudgetExceeded", alert_type=notification.alert_type, action=action)
    reason = notification.summary
    if action == "notify":
        logger.warning("budget alert: notify only", extra={**extra, "budget_action": action})
        return Outcome("notified", reason, notification.budget_name)

    if action == "spot-only":
        change = guardrail.engage_spot_only(
            settings.prefix, by=by, source="budget", reason=reason, now=now
        )
        if not change.already:
            count("SpotOnlyEngaged", source="budget")
    else:
        change = guardrail.engage_kill_switch(
            settings.prefix, by=by, source="budget", reason=reason, now=now
        )
        if not change.already:
            count("KillSwitchEngaged", source="budget")
    logger.error(
        f"budget guard engaged {action}: lift with `jitrunners {action} off`",
        extra={**extra, "budget_action": action, **guardrail.describe(change)},
    )
    return Outcome(action, reason, notification.budget_name, change.already)
