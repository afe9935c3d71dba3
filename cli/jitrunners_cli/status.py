"""`jitrunners status`: the deployment's health on one screen (or as JSON).

Each section is read on its own: one that fails (access denied, GitHub down) is shown as
unavailable with its reason, the others still print, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from jitrunners_cli import aws, render
from jitrunners_cli.deployment import Deployment, find, quiet_lambda_logs
from jitrunners_cli.errors import CliError, translate

ONE_LINE = 66  # room for a value after a 13-column label within 80 columns


def register(subparsers: argparse._SubParsersAction, parents: list) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "status",
        parents=parents,
        help="deployment health at a glance",
        description="Kill switch, queues, instances, GitHub runners, the housekeeper's last run "
        "and alarms in ALARM, on one screen.",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    quiet_lambda_logs()
    deployment = find(args.prefix)
    report = collect(deployment, datetime.now(UTC))
    if args.json:
        render.emit_json(report)
    else:
        print("\n".join(screen(report)))
    failed = [name for name, section in report.items() if _failed(section)]
    if failed:
        raise CliError(f"unavailable: {', '.join(failed)} (see above)")
    return 0


def _failed(section: Any) -> bool:
    return isinstance(section, dict) and "error" in section


def _section(read: Callable[[], Any]) -> Any:
    try:
        return read()
    except CliError as exc:
        return {"error": str(exc)}
    except Exception as exc:
        expected = translate(exc)
        if expected is None:
            raise
        return {"error": str(expected)}


def collect(deployment: Deployment, now: datetime) -> dict[str, Any]:
    """Every section of the report, as JSON-ready data."""
    report: dict[str, Any] = {
        "prefix": deployment.prefix,
        "region": _region(),
        "at": render.iso(now),
    }
    report["kill_switch"] = _section(lambda: kill_switch(deployment))
    report["queues"] = _section(lambda: queues(deployment, now))
    instances = _section(lambda: _instances(deployment))
    runners = _section(lambda: github_runners(deployment))
    report["templates"] = _section(lambda: templates(deployment, instances, runners))
    report["runners"] = runners if _failed(runners) else runners["summary"]
    report["housekeeper"] = _section(lambda: housekeeper(deployment, now))
    report["alarms"] = _section(lambda: {"in_alarm": alarms(deployment)})
    return report


def _region() -> str | None:
    import os

    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")


# ------------------------------------------------------------------------------- kill switch
def kill_switch(deployment: Deployment) -> dict[str, Any]:
    """DESIGN 5b: on = webhook and scale-up reserved concurrency 0 AND the SQS mapping
    disabled; off = neither; partial = some of it (a switch half thrown by hand)."""
    names = deployment.names
    webhook = aws.function_environment(names.function("webhook"))
    scale_up = deployment.environment
    if webhook is None or scale_up is None:
        return {"state": "unknown", "detail": "the webhook or scale-up function is missing"}
    reserved = {
        "webhook": aws.reserved_concurrency(names.function("webhook")),
        "scale-up": aws.reserved_concurrency(names.function("scale-up")),
    }
    mappings = [
        m
        for m in aws.event_source_mappings(names.function("scale-up"))
        if m.source_arn == aws.queue_arn(deployment.job_queue_url)
    ]
    mapping = mappings[0].state if mappings else None
    stopped = [key for key, value in reserved.items() if value == 0]
    polling_off = mapping is not None and mapping in ("Disabled", "Disabling")
    if len(stopped) == 2 and polling_off:
        state = "on"
    elif not stopped and mapping in ("Enabled", "Enabling", "Updating", "Creating"):
        state = "off"
    elif mapping is None and not stopped:
        state = "unknown"
    else:
        state = "partial"
    return {
        "state": state,
        "reserved_concurrency": reserved,
        "event_source_mapping": mapping,
    }


def _kill_switch_line(data: dict[str, Any]) -> str:
    if _failed(data):
        return f"unavailable: {data['error']}"
    if data["state"] == "unknown" and "detail" in data:
        return f"unknown ({data['detail']})"
    reserved = data["reserved_concurrency"]

    def show(value: int | None) -> str:
        return "unreserved" if value is None else str(value)

    mapping = data["event_source_mapping"] or "missing"
    detail = (
        f"webhook {show(reserved['webhook'])}, scale-up {show(reserved['scale-up'])}; "
        f"queue polling {mapping.lower()}"
    )
    return f"{data['state'].upper()} ({detail})"


# ------------------------------------------------------------------------------------ queues
def queues(deployment: Deployment, now: datetime) -> dict[str, Any]:
    names = deployment.names
    urls = {
        "jobs": (names.job_queue, deployment.job_queue_url),
        "dlq": (names.dlq, deployment.dlq_url),
        "events_dlq": (names.events_dlq, aws.queue_url(names.events_dlq)),
    }
    present = {key: value for key, value in urls.items() if value[1]}
    ages = aws.oldest_message_age_s([name for name, _ in present.values()], now)
    found: dict[str, Any] = {}
    for key, (name, url) in urls.items():
        if url is None:
            found[key] = {"name": name, "missing": True}
            continue
        counts = aws.queue_counts(url)
        found[key] = {
            "name": name,
            "visible": counts.visible,
            "in_flight": counts.in_flight,
            "delayed": counts.delayed,
            "oldest_age_s": ages.get(name),
        }
    return found


def _queue_line(data: dict[str, Any]) -> str:
    if data.get("missing"):
        return "missing"
    total = data["visible"] + data["in_flight"] + data["delayed"]
    parts = [f"{total} message{'s' if total != 1 else ''}"]
    if total:
        parts.append(
            f"({data['visible']} waiting, {data['in_flight']} in flight, {data['delayed']} delayed)"
        )
    age = data["oldest_age_s"]
    parts.append(f"oldest {render.duration(age)}" if age is not None else "oldest -")
    return " ".join(parts)


# --------------------------------------------------------------------- instances and runners
def _instances(deployment: Deployment) -> list[Any]:
    from jitrunners.aws import fleet

    profile = (deployment.environment or {}).get("RUNNER_INSTANCE_PROFILE_ARN", "")
    states = ("pending", "running", "stopping", "stopped", "shutting-down")
    return fleet.list_instances(deployment.prefix, states, profile_arn=profile)


def github_runners(deployment: Deployment) -> dict[str, Any]:
    """Our GitHub runners (named after an instance), by instance id, in every scope the
    deployment serves."""
    from jitrunners.github.client import GitHubError, RunnerScope
    from jitrunners.models import runner_instance

    settings = deployment.settings
    github = deployment.github()
    scopes: list[tuple[RunnerScope, int | None]] = []
    owners = set(settings.allowed_owners)
    if settings.github_app_id:
        for installation in github.list_installations():
            if installation.account and (not owners or installation.account.casefold() in owners):
                scopes.append((RunnerScope("org", installation.account), installation.id))
    else:
        scopes += [(RunnerScope("org", owner), None) for owner in sorted(owners)]
    if any(t.scope == "repo" for t in deployment.templates()):
        repos = {(repo, None) for repo in settings.allowed_repos}
        repos |= {(i.repo, i.installation_id) for i in _instances(deployment) if i.repo}
        scopes += [
            (RunnerScope("repo", repo.split("/")[0], repo), installation)
            for repo, installation in sorted(repos, key=lambda r: r[0])
        ]
    runners: dict[str, dict[str, Any]] = {}
    skipped: list[str] = []
    for scope, installation in scopes:
        try:
            for runner in github.list_runners(scope, installation):
                instance_id = runner_instance(runner.name)
                if instance_id is not None:
                    runners[instance_id] = {
                        "status": runner.status,
                        "busy": runner.busy,
                        "scope": scope.path,
                    }
        except GitHubError as exc:
            # A user account has no org runners; a repo scope we cannot see: say which.
            skipped.append(f"{scope.path} ({exc.status or 'unavailable'})")
    online = [r for r in runners.values() if r["status"] == "online"]
    summary = {
        "online": len(online),
        "busy": sum(1 for r in runners.values() if r["busy"]),
        "offline": len(runners) - len(online),
        "scopes": [scope.path for scope, _ in scopes],
        "scopes_unreadable": skipped,
    }
    return {"summary": summary, "by_name": runners}


def templates(deployment: Deployment, instances: Any, runners: Any) -> list[dict[str, Any]]:
    """Per template: its instances by state (booting, running a job, idle), limits, drain."""
    if _failed(instances):
        raise CliError(instances["error"])
    known = not _failed(runners)
    by_name = runners["by_name"] if known else {}
    rows: dict[str, Counter[str]] = {t.name: Counter() for t in deployment.templates()}
    for instance in instances:
        counts = rows.setdefault(instance.template or "?", Counter())
        counts[_instance_state(instance, by_name, known)] += 1
    limits = {t.name: t.max_runners for t in deployment.templates()}
    drained = set(_drained(deployment))
    return [
        {
            "template": name,
            "booting": counts["booting"],
            "running_job": counts["running_job"],
            "idle": counts["idle"],
            "started": counts["started"],
            "stopped": counts["stopped"],
            "total": sum(counts.values()),
            "max_runners": limits.get(name),
            "drained": name in drained,
        }
        for name, counts in rows.items()
    ]


def _instance_state(instance: Any, runners: dict[str, Any], known: bool) -> str:
    if instance.state in ("stopping", "stopped", "shutting-down"):
        return "stopped"
    if instance.state == "pending" or not instance.command_id:
        return "booting"
    if not known:
        return "started"  # its runner was started; GitHub could not say whether it works
    runner = runners.get(instance.id)
    if runner is None or runner["status"] != "online":
        return "booting"  # started, not online on GitHub yet
    return "running_job" if runner["busy"] else "idle"


def _drained(deployment: Deployment) -> list[str]:
    from jitrunners_cli.drain import drained_templates

    return drained_templates(deployment)


# ------------------------------------------------------------------------------- housekeeper
def housekeeper(deployment: Deployment, now: datetime) -> dict[str, Any]:
    """The housekeeper's last finished run: its `housekeeping done` line (and the
    `reconciliation` line of the same invocation)."""
    lines = aws.latest_log_lines(deployment.names.log_group("housekeeper"))
    done: dict[str, Any] | None = None
    when: datetime | None = None
    for line in reversed(lines):
        record = _json(line.message)
        if record.get("message") == "housekeeping done":
            done, when = record, line.timestamp
            break
    if done is None:
        return {"last_run": None}
    request = done.get("function_request_id")
    reconciliation = next(
        (
            r
            for r in (_json(line.message) for line in lines)
            if r.get("message") == "reconciliation" and r.get("function_request_id") == request
        ),
        {},
    )
    return {
        "last_run": render.iso(when),
        "ago_s": (now - when).total_seconds() if when else None,
        "actions": done.get("actions"),
        "zombies": done.get("zombies"),
        "dry_run": done.get("dry_run"),
        "reconciliation_launches": reconciliation.get("launches"),
        "queued_jobs_seen": reconciliation.get("queued"),
    }


def _json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def alarms(deployment: Deployment) -> list[dict[str, Any]]:
    return [
        {"name": a.name, "since": render.iso(a.since), "reason": a.reason}
        for a in aws.alarms_in_alarm(deployment.names.alarm_prefix)
    ]


# ---------------------------------------------------------------------------------- the screen
def screen(report: dict[str, Any]) -> list[str]:
    """The report within 80 columns (tests/cli/test_terminal.py holds it to that)."""
    line = render.field_line
    lines = [
        render.clip(
            f"jitrunners {report['prefix']} in {report['region'] or '?'} at {report['at']}",
            render.WIDTH,
        ),
        line("kill switch", _kill_switch_line(report["kill_switch"])),
    ]
    queues_ = report["queues"]
    if _failed(queues_):
        lines.append(line("queues", f"unavailable: {queues_['error']}"))
    else:
        for key, label in (("jobs", "job queue"), ("dlq", "DLQ"), ("events_dlq", "events DLQ")):
            lines.append(line(label, _queue_line(queues_[key])))
    lines += _template_lines(report["templates"])
    lines.append(line("runners", _runners_line(report["runners"])))
    lines.append(line("housekeeper", _housekeeper_line(report["housekeeper"])))
    alarms_ = report["alarms"]
    if _failed(alarms_):
        lines.append(line("alarms", f"unavailable: {alarms_['error']}"))
    elif not alarms_["in_alarm"]:
        lines.append(line("alarms", "none in ALARM"))
    else:
        names = ", ".join(a["name"] for a in alarms_["in_alarm"])
        lines.append(line("alarms", f"{len(alarms_['in_alarm'])} in ALARM: {names}"))
    return lines


def _template_lines(data: Any) -> list[str]:
    if _failed(data):
        return [render.field_line("instances", f"unavailable: {data['error']}")]
    unknown = any(row["started"] for row in data)
    stopped = any(row["stopped"] for row in data)
    header = ["instances".ljust(11), "template", "booting", "job", "idle"]
    header += ["started"] if unknown else []
    header += ["stopped"] if stopped else []
    header += ["total", "max"]
    rows: list[list[Any]] = [header]
    for row in data:
        cells: list[Any] = [
            "",
            render.clip(row["template"], 20),
            row["booting"],
            "?" if unknown else row["running_job"],
            "?" if unknown else row["idle"],
        ]
        cells += [row["started"]] if unknown else []
        cells += [row["stopped"]] if stopped else []
        cells += [row["total"], "drained" if row["drained"] else row["max_runners"]]
        rows.append(cells)
    if not data:
        rows.append(["", "(no templates)"])
    return render.table(rows, right=range(2, len(header)))


def _runners_line(data: Any) -> str:
    if _failed(data):
        return f"unavailable: {data['error']}"
    text = f"{data['online']} online ({data['busy']} busy), {data['offline']} offline"
    if not data["scopes"]:
        return text + "; no scope to list (no installation or owner)"
    text += f" in {', '.join(data['scopes'])}"
    if data["scopes_unreadable"]:
        text += f"; unreadable: {', '.join(data['scopes_unreadable'])}"
    return text


def _housekeeper_line(data: Any) -> str:
    if _failed(data):
        return f"unavailable: {data['error']}"
    if data["last_run"] is None:
        return "no run logged yet"
    text = (
        f"{render.duration(data['ago_s'])} ago: {data['actions']} actions, "
        f"{data['zombies']} zombies"
    )
    if data["reconciliation_launches"] is not None:
        text += f", {data['reconciliation_launches']} reconciliation launches"
    if data["dry_run"]:
        text += " (dry run)"
    return text
