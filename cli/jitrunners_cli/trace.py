"""`jitrunners trace JOB_ID|JOB_URL [--follow]`: one job's life from the Lambdas' logs.

The lines come from the module's saved Logs Insights query (`<prefix>/one-job-end-to-end`,
terraform/observability.tf), whose text is this package's queries/one-job-end-to-end.logsinsights:
one source for both. Each line is filtered again here by its `job_id`, so a query engine that
ignores the filter (moto's) gives the same trace. The milestones are known log messages of the
Lambdas: tests/cli/test_stack.py traces a real local-stack run, so renaming one breaks that test.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any, Final

from jitrunners_cli import aws, render
from jitrunners_cli.deployment import FUNCTION_KEYS, Deployment, find
from jitrunners_cli.errors import EXIT_NOT_FOUND, EXIT_USAGE, CliError

QUERY_FILE: Final = "one-job-end-to-end.logsinsights"
# The filter line's placeholder: the query ships with job id 0 (terraform/observability.tf).
_PLACEHOLDER = re.compile(r'job_id = (?:0\b|"0")')
_JOB_URL = re.compile(r"^https?://[^/]+/(?:[^/]+/)*?([^/]+/[^/]+)/actions/runs/\d+/job/(\d+)")
_SINCE = re.compile(r"^(\d+)\s*([mhd])$")


@dataclass(frozen=True)
class Step:
    """A milestone: the first line from `source` whose message starts with `message`."""

    name: str
    source: str | None  # function key; None: any
    message: str


# In the order of a job's life (DESIGN 1). `instance` is EC2's record of the launched instance.
STEPS: Final = (
    Step("delivery", "webhook", "job accepted"),
    Step("launch", "scale-up", "runner instance launched"),
    Step("instance", None, ""),
    Step("start", "scale-up", "runner started"),
    Step("runner", "webhook", "job in_progress"),
    Step("completion", "webhook", "job completed"),
    Step("termination", None, "instance terminated"),
)


@dataclass
class Line:
    at: datetime
    source: str  # webhook, scale-up, ... or runner-commands
    record: dict[str, Any]

    @property
    def message(self) -> str:
        return str(self.record.get("message", ""))


@dataclass
class Milestone:
    step: str
    at: datetime | None
    source: str
    detail: str
    record: dict[str, Any] = field(default_factory=dict)


def register(subparsers: argparse._SubParsersAction, parents: list) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "trace",
        parents=parents,
        help="a job's life from the logs, step by step",
        description="Delivery, launch, instance, start, runner, completion and termination of "
        "one workflow job, with times and the durations between steps, from the module's saved "
        "Logs Insights query.",
    )
    parser.add_argument("job", help="workflow job id, or the job's URL on GitHub")
    parser.add_argument(
        "--since", default="3d", help="how far back to search: 90m, 6h, 3d (default 3d)"
    )
    parser.add_argument("--follow", action="store_true", help="keep tailing a job in flight")
    parser.add_argument(
        "--interval", type=float, default=5.0, help="--follow: seconds between polls (5)"
    )
    parser.add_argument(
        "--timeout", type=float, default=None, help="--follow: give up after this many seconds"
    )
    parser.add_argument("--lines", action="store_true", help="also list every log line")
    parser.set_defaults(func=run)


def parse_job(text: str) -> tuple[int, str | None]:
    """(job id, owner/repo or None) from an id or a GitHub job URL."""
    text = text.strip()
    if text.isdigit() and int(text) > 0:
        return int(text), None
    match = _JOB_URL.match(text)
    if match:
        return int(match.group(2)), match.group(1)
    raise CliError(
        f"not a job id or job URL: {text!r} (e.g. 123456 or "
        "https://github.com/OWNER/REPO/actions/runs/RUN/job/123456)",
        EXIT_USAGE,
    )


def parse_since(text: str) -> timedelta:
    match = _SINCE.match(text.strip())
    if not match:
        raise CliError(
            f"--since {text!r}: use minutes, hours or days, e.g. 90m, 6h, 3d", EXIT_USAGE
        )
    amount, unit = int(match.group(1)), match.group(2)
    return timedelta(**{{"m": "minutes", "h": "hours", "d": "days"}[unit]: amount})


def query_text(job_id: int) -> str:
    """The saved query's text (the file Terraform ships) for one job."""
    template = resources.files("jitrunners_cli").joinpath("queries", QUERY_FILE).read_text()
    text, replaced = _PLACEHOLDER.subn(
        lambda m: f'job_id = "{job_id}"' if '"' in m.group(0) else f"job_id = {job_id}", template
    )
    if not replaced:
        raise CliError(f"{QUERY_FILE} has no `job_id = 0` filter to fill in")
    return text


def log_groups(deployment: Deployment) -> list[str]:
    names = deployment.names
    wanted = [names.log_group(key) for key in FUNCTION_KEYS] + [names.runner_commands_log_group]
    return aws.existing_log_groups(wanted)


def fetch(
    deployment: Deployment,
    job_id: int,
    start: datetime,
    end: datetime,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Line]:
    """The job's log lines, oldest first."""
    groups = log_groups(deployment)
    if not groups:
        raise CliError(
            f"no log group of the deployment {deployment.prefix!r} exists", EXIT_NOT_FOUND
        )
    rows = aws.run_query(groups, query_text(job_id), start, end, sleep=sleep)
    lines: list[Line] = []
    for row in rows:
        record = _record(row.get("@message", ""))
        if str(record.get("job_id", "")) != str(job_id):
            continue  # what the query's filter keeps; an engine that ignores it, we filter
        at = aws.insights_time(row.get("@timestamp", "")) or _line_time(record)
        if at is None:
            continue
        lines.append(Line(at, _source(row.get("@log", ""), record, deployment), record))
    lines.sort(key=lambda line: line.at)
    return lines


def _record(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {"message": text}
    return value if isinstance(value, dict) else {"message": text}


def _line_time(record: dict[str, Any]) -> datetime | None:
    # Powertools: "2026-11-30 13:25:46,264+0000"
    text = str(record.get("timestamp", ""))
    try:
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f%z")
    except ValueError:
        return None


def _source(group: str, record: dict[str, Any], deployment: Deployment) -> str:
    function = str(record.get("function_name", ""))
    prefix = f"{deployment.prefix}-"
    if function.startswith(prefix):
        return function[len(prefix) :]
    # "@log" is "<account>:<group>" in AWS, the group's name in moto.
    group = group.split(":", 1)[-1]
    for key in FUNCTION_KEYS:
        if group == deployment.names.log_group(key):
            return key
    return "runner-commands" if group.endswith("/runner-commands") else group


def milestones(lines: Sequence[Line], instance_facts: Callable[[str], Any]) -> list[Milestone]:
    """The steps found, in STEPS order; `instance_facts(id)` -> (launch time, state) or None."""
    found: dict[str, Milestone] = {}
    for line in lines:
        for step in STEPS:
            if not step.message or step.name in found:
                continue
            if step.source not in (None, line.source) or not line.message.startswith(step.message):
                continue
            if step.name == "termination":
                continue  # below: the instance that ran the job, when known
            found[step.name] = Milestone(
                step.name, line.at, line.source, _detail(step.name, line.record), line.record
            )
    from jitrunners.models import runner_instance

    name = str(found["runner"].record.get("runner_name") or "") if "runner" in found else ""
    runner = runner_instance(name) or name  # the instance its runner ran on
    launched = [
        str(line.record.get("instance_id"))
        for line in lines
        if line.message.startswith("runner instance launched")
    ]
    ends = [line for line in lines if line.message.startswith("instance terminated")]
    end = next((line for line in ends if line.record.get("instance_id") == runner), None)
    if end is None and ends:
        end = ends[-1]
    if end is not None:
        found["termination"] = Milestone(
            "termination", end.at, end.source, _detail("termination", end.record), end.record
        )
    instance_id = runner or (launched[0] if launched else "")
    if instance_id:
        facts = instance_facts(instance_id)
        if facts is not None:
            launch_time, state = facts
            found["instance"] = Milestone(
                "instance", launch_time, "ec2", f"{instance_id} launched, {state} now"
            )
        elif "launch" in found:
            found["instance"] = Milestone(
                "instance", None, "ec2", f"{instance_id}: EC2 no longer lists it"
            )
    return [found[step.name] for step in STEPS if step.name in found]


def _detail(step: str, record: dict[str, Any]) -> str:
    get = record.get
    if step == "delivery":
        return f"delivery {str(get('delivery_id', '?'))[:8]}, {get('repo', '?')}"
    if step == "launch":
        return f"{get('instance_id', '?')} {get('market', '')} {get('instance_type', '')}".strip()
    if step == "start":
        return f"command {str(get('command_id', '?'))[:8]} on {get('instance_id', '?')}"
    if step in ("runner", "completion"):
        return f"on {get('runner_name') or '?'}"
    if step == "termination":
        return f"{get('instance_id', '?')}: {get('reason', '?')}"
    return ""


def summary(job_id: int, repo: str | None, lines: Sequence[Line], steps: Sequence[Milestone]):
    record = next((line.record for line in lines if line.record.get("repo")), {})
    runner = next((s.record.get("runner_name") for s in steps if s.step == "runner"), None)
    rows = []
    previous: datetime | None = None
    for step in steps:
        since = (step.at - previous).total_seconds() if step.at and previous else None
        rows.append(
            {
                "step": step.step,
                "at": render.iso(step.at),
                "since_previous_s": None if since is None else round(since, 3),
                "source": step.source,
                "detail": step.detail,
            }
        )
        if step.at is not None and step.step != "instance":
            previous = step.at
    timed = [s.at for s in steps if s.at is not None and s.step != "instance"]
    return {
        "job_id": job_id,
        "repo": record.get("repo") or repo,
        "template": record.get("template"),
        "runner": runner,
        "steps": rows,
        "total_s": round((timed[-1] - timed[0]).total_seconds(), 3) if len(timed) > 1 else None,
        "done": any(s.step == "termination" for s in steps),
        "lines": [
            {"at": render.iso(line.at), "source": line.source, "message": line.message}
            for line in lines
        ],
    }


def screen(data: dict[str, Any], *, with_lines: bool) -> list[str]:
    head = f"job {data['job_id']}"
    head += f" {data['repo']}" if data["repo"] else ""
    head += f" ({data['template']})" if data["template"] else ""
    head += f", runner {data['runner']}" if data["runner"] else ""
    out = [render.clip(head, render.WIDTH)]
    rows: list[list[str]] = [["step", "at (UTC)", "+prev", "detail"]]
    for step in data["steps"]:
        at = datetime.fromisoformat(step["at"].replace("Z", "+00:00")) if step["at"] else None
        since = step["since_previous_s"]
        rows.append(
            [
                step["step"],
                render.clock(at),
                render.duration(since) if since is not None and step["step"] != "instance" else "",
                step["detail"],
            ]
        )
    out += render.table(rows, right=(2,))
    missing = [s.name for s in STEPS if s.name not in {r["step"] for r in data["steps"]}]
    if data["total_s"] is not None:
        first, last = data["steps"][0]["step"], _last_timed(data)
        out.append(f"{first} to {last}: {render.duration(data['total_s'])}")
    if missing:
        out.append(render.clip(f"not (yet) in the logs: {', '.join(missing)}", render.WIDTH))
    if with_lines:
        out.append(f"log lines ({len(data['lines'])})")
        for line in data["lines"]:
            at = datetime.fromisoformat(line["at"].replace("Z", "+00:00"))
            out.append(
                render.clip(f"{render.clock(at)}  {line['source']:<12} {line['message']}", 80)
            )
    return out


def _last_timed(data: dict[str, Any]) -> str:
    timed = [s["step"] for s in data["steps"] if s["at"] and s["step"] != "instance"]
    return timed[-1]


def trace(
    deployment: Deployment,
    job_id: int,
    repo: str | None,
    since: timedelta,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    end = now()
    lines = fetch(deployment, job_id, end - since, end, sleep=sleep)
    steps = milestones(lines, aws.instance_launch)
    return summary(job_id, repo, lines, steps)


def run(args: argparse.Namespace) -> int:
    job_id, repo = parse_job(args.job)
    since = parse_since(args.since)
    deployment = find(args.prefix)
    if args.follow:
        return follow(deployment, job_id, repo, since, args)
    data = trace(deployment, job_id, repo, since)
    if not data["lines"]:
        raise CliError(
            f"no log line of job {job_id} in the last {args.since} (is it one of ours? "
            "--since searches further back)",
            EXIT_NOT_FOUND,
        )
    if args.json:
        render.emit_json(data)
    else:
        print("\n".join(screen(data, with_lines=args.lines)))
    return 0


def follow(
    deployment: Deployment,
    job_id: int,
    repo: str | None,
    since: timedelta,
    args: argparse.Namespace,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Callable[[float], None] | None = None,
) -> int:
    """Print the job's lines as they arrive until its instance is terminated (or --timeout)."""
    sleep = sleep or time.sleep
    seen = 0
    waited = 0.0
    while True:
        data = trace(deployment, job_id, repo, since, now=now, sleep=sleep)
        for line in data["lines"][seen:]:
            if args.json:
                print(json.dumps(line), flush=True)
            else:
                at = datetime.fromisoformat(line["at"].replace("Z", "+00:00"))
                text = f"{render.clock(at)}  {line['source']:<12} {line['message']}"
                print(render.clip(text, render.WIDTH), flush=True)
        seen = len(data["lines"])
        if data["done"]:
            break
        if args.timeout is not None and waited >= args.timeout:
            raise CliError(f"job {job_id} not finished after {args.timeout:.0f} s (--timeout)")
        sleep(args.interval)
        waited += args.interval
    if args.json:
        render.emit_json({k: v for k, v in data.items() if k != "lines"})
    else:
        print("\n".join(screen(data, with_lines=False)))
    return 0
