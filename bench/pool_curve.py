"""`bench/latency_bench.py --curve`: a daily job curve through a pool's schedule window.

The Lambdas read the real UTC clock and a pool's schedule windows are HH:MM of the week, so a
real day cannot be compressed. What can be: a short window on the real clock and a daily-shaped
curve of jobs squeezed into it. Each way (no pool, hot pool, stopped pool) is one local stack
whose template `linux-x64` gets a pool whose schedule window opens at the first whole minute
UTC at least `MIN_LEAD_S` after the stack is up (or at the time the parent process chose for
every way, when that is still far enough ahead) and closes `--window-minutes` later. A window
that crosses midnight UTC is split in two, one per day, as the pool's schedule requires.

Jobs follow `daily_curve`: a few before the window opens (the night), a ramp up, a peak and a
ramp down inside the window (the working day), a few after it closes (the evening); the same
seed gives the same curve on every way, in real seconds from the window's opening. Only the
pool differs. Per way: jobs per path and per phase of the curve, queue-to-runner p50/p95 per
path (emulated seconds), the pool's idle cost per job it served, and the drain at the window's
close: how long the free members left then took to reach 0, and how many housekeeper passes
began meanwhile.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import os
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "lambdas"), str(ROOT)]

WAYS: Final = ("cold", "hot", "stopped")  # no pool, a hot pool, a stopped pool
TEMPLATE: Final = "linux-x64"
PRE_S: Final = 30.0  # real seconds before the window opens that hold the early jobs
POST_S: Final = 30.0  # real seconds after it closes that hold the late ones
MIN_LEAD_S: Final = 60.0  # the window opens at least this long after the stack is up
# The curve's shape inside the window, over its fraction u in [0, 1): jobs per unit of time
# rise from LOW to 1 until RAMP_UP, stay at 1 until PEAK_END, fall back to LOW at the close.
LOW: Final = 0.2
RAMP_UP: Final = 0.3
PEAK_END: Final = 0.65
SAMPLE_S: Final = 0.25  # how often the pool's free members are counted


@dataclass(frozen=True)
class CurveJob:
    """One job of the curve: `at_s` real seconds from the window's opening (negative: before)."""

    at_s: float
    phase: str  # before, ramp_up, peak, ramp_down, after


def rate(u: float) -> float:
    """Relative jobs per unit of time at fraction `u` of the window (the working day's shape)."""
    if u < RAMP_UP:
        return LOW + (1 - LOW) * u / RAMP_UP
    if u < PEAK_END:
        return 1.0
    return 1 - (1 - LOW) * (u - PEAK_END) / (1 - PEAK_END)


def phase_of(u: float) -> str:
    if u < 0:
        return "before"
    if u >= 1:
        return "after"
    return "ramp_up" if u < RAMP_UP else "peak" if u < PEAK_END else "ramp_down"


def _inverse_cdf(steps: int = 2000) -> tuple[list[float], list[float]]:
    """The cumulative share of the window's jobs at each grid point of u (trapezoid rule)."""
    grid = [i / steps for i in range(steps + 1)]
    cdf = [0.0]
    for a, b in itertools.pairwise(grid):
        cdf.append(cdf[-1] + (rate(a) + rate(b)) / 2 * (b - a))
    total = cdf[-1]
    return grid, [c / total for c in cdf]


def daily_curve(
    jobs: int,
    shoulder_jobs: int,
    window_s: float,
    seed: int,
    pre_s: float = PRE_S,
    post_s: float = POST_S,
) -> list[CurveJob]:
    """`jobs` inside the window, spread by `rate` (stratified: the k-th job falls in the k-th
    n-quantile of the curve, at a seeded place within it), and `shoulder_jobs` in each shoulder
    (uniform, stratified the same way), sorted by time. Same arguments, same curve."""
    if jobs < 0 or shoulder_jobs < 0 or window_s <= 0 or pre_s <= 0 or post_s <= 0:
        raise ValueError("jobs and shoulder jobs >= 0, window and shoulders > 0")
    rng = random.Random(f"{seed}/curve")
    grid, cdf = _inverse_cdf()
    found = []
    for k in range(jobs):
        q = (k + rng.random()) / jobs
        i = min(len(cdf) - 1, max(1, bisect.bisect_left(cdf, q)))
        lo, hi = cdf[i - 1], cdf[i]
        u = grid[i - 1] + (grid[i] - grid[i - 1]) * ((q - lo) / (hi - lo) if hi > lo else 0.0)
        found.append(CurveJob(round(u * window_s, 3), phase_of(u)))
    for k in range(shoulder_jobs):
        before = -pre_s + pre_s * (k + rng.random()) / shoulder_jobs
        after = window_s + post_s * (k + rng.random()) / shoulder_jobs
        found.append(CurveJob(round(before, 3), "before"))
        found.append(CurveJob(round(after, 3), "after"))
    return sorted(found, key=lambda job: job.at_s)


def next_open(now: datetime, lead_s: float = MIN_LEAD_S) -> datetime:
    """The first whole minute (UTC) at least `lead_s` after `now` (an aware datetime)."""
    earliest = now.astimezone(UTC) + timedelta(seconds=lead_s)
    floor = earliest.replace(second=0, microsecond=0)
    return floor if floor == earliest else floor + timedelta(minutes=1)


DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # jitrunners.pools.DAYS


def window_spec(open_at: datetime, minutes: int) -> list[dict[str, Any]]:
    """The pool's `schedule.windows` (time zone UTC) on from `open_at` (a whole minute) for
    `minutes`: one window, or two when it crosses midnight UTC (a window cannot: the first ends
    at 24:00, the second starts at 00:00 of the next day)."""
    start = open_at.astimezone(UTC)
    if start.second or start.microsecond:
        raise ValueError(f"{start.isoformat()} is not a whole minute")
    if not 1 <= minutes < 24 * 60:
        raise ValueError("a window of 1 minute to 23:59")
    end = start + timedelta(minutes=minutes)
    midnight = (start + timedelta(days=1)).replace(hour=0, minute=0)
    day = DAYS[start.weekday()]
    if end <= midnight:
        close = "24:00" if end == midnight else f"{end:%H:%M}"
        return [{"days": [day], "start": f"{start:%H:%M}", "end": close}]
    return [
        {"days": [day], "start": f"{start:%H:%M}", "end": "24:00"},
        {"days": [DAYS[end.weekday()]], "start": "00:00", "end": f"{end:%H:%M}"},
    ]


# ---------------------------------------------------------------------------------- one way
def _write_pool(stack: Any, pool: dict[str, Any] | None) -> None:
    """The run's template's `pool` in the runner-template parameter (validated as the Lambdas
    load it), and the Lambdas' cached copy dropped, as `jitrunners` edits and a redeploy do."""
    from aws_lambda_powertools.utilities import parameters

    from jitrunners.config import parse_templates

    ssm = stack.world.client("ssm")
    name = stack.world.names.templates_param
    document = json.loads(ssm.get_parameter(Name=name)["Parameter"]["Value"])
    for entry in document:
        if entry.get("name") == TEMPLATE:
            entry["pool"] = pool
    text = json.dumps(document, separators=(",", ":"))
    parse_templates(text)
    tier = "Advanced" if len(text) > 4096 else "Standard"
    ssm.put_parameter(Name=name, Value=text, Type="String", Overwrite=True, Tier=tier)
    parameters.clear_caches()


def _free_members(stack: Any) -> tuple[int, int]:
    """(free members, all members) up, as the stack's watcher last saw them."""
    from devstack.stack import LIVE_STATES

    free = every = 0
    for seen in list(stack.seen_instances.values()):
        if seen.get("pool") and seen["state"] in LIVE_STATES:
            every += 1
            free += not seen.get("job")
    return free, every


class _Sampler(threading.Thread):
    """Counts the pool's members every SAMPLE_S: (time, free, all)."""

    def __init__(self, stack: Any) -> None:
        super().__init__(name="pool-sampler", daemon=True)
        self.stack = stack
        self.samples: list[tuple[float, int, int]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(SAMPLE_S):
            self.samples.append((time.time(), *_free_members(self.stack)))


def drain(
    samples: list[tuple[float, int, int]], close: float, passes: list[float], scale: float
) -> dict[str, Any]:
    """Free members at the window's close (the last sample before it), and when the last of
    them had gone (the first sample without any after the last with some): emulated seconds
    after the close, and housekeeper passes begun from the close until then. None: not seen."""
    found: dict[str, Any] = dict.fromkeys(
        ("free_at_close", "members_at_close", "free_zero_after_s", "housekeeper_passes")
    )
    found["all_members_gone_after_s"] = None
    after = [s for s in samples if s[0] >= close]
    at_close = next((s for s in reversed(samples) if s[0] < close), after[0] if after else None)
    if at_close is None:
        return found
    found["free_at_close"], found["members_at_close"] = at_close[1], at_close[2]
    last_free = max((t for t, free, _ in after if free), default=None)
    gone = close if last_free is None else next((t for t, _, _ in after if t > last_free), None)
    if gone is None:  # a free member was still up at the last sample
        return found
    all_gone = next((t for t, _, every in after if every == 0 and t >= gone), None)
    found["free_zero_after_s"] = round((gone - close) / scale, 1)
    found["housekeeper_passes"] = sum(1 for t in passes if close <= t <= gone)
    if all_gone is not None:
        found["all_members_gone_after_s"] = round((all_gone - close) / scale, 1)
    return found


def run_way(way: str, args: argparse.Namespace, open_at: datetime | None) -> dict[str, Any]:
    """One stack: the way's pool on a schedule window, the curve's jobs, everything measured."""
    from bench.latency_bench import floor, member_seconds
    from devstack.boot_model import BootModel
    from devstack.stack import REPOS, Options, Stack, latency_stats

    model = BootModel(seed=args.seed, time_scale=args.time_scale).with_delays(args.boot_model)
    scale = model.time_scale
    window_s = 60.0 * args.window_minutes
    curve = daily_curve(args.curve_jobs, args.shoulder_jobs, window_s, args.seed)
    options = Options(
        jobs=len(curve),
        templates=[TEMPLATE],
        seed=args.seed,
        job_seconds=args.job_seconds,
        workdir=ROOT / ".devstack" / "bench" / f"curve-{way}",
        agent=args.agent,
        boot_model=model,
        template_overrides={
            # Room for every job and the pool at once, and the module's default timeouts on
            # the scaled clock, as the latency runs have.
            "max_runners": len(curve) + args.pool,
            "start_timeout_s": round(max(60, 600 * scale)),
            "idle_timeout_s": round(max(20, 300 * scale)),
            "max_lifetime_s": 86_400,
        },
        iam=args.iam == "on",
    )
    stack = Stack(options, out=sys.stderr)
    started = time.monotonic()
    sampler = _Sampler(stack)
    try:
        stack.start()
        up = datetime.now(UTC)
        if open_at is None or (open_at - up).total_seconds() < PRE_S + 5:
            open_at = next_open(up)
        spec = window_spec(open_at, args.window_minutes)
        opens, closes = open_at.timestamp(), open_at.timestamp() + window_s
        if way != "cold":
            _write_pool(
                stack,
                {way: args.pool, "owner": REPOS[0].split("/")[0], "schedule": {"windows": spec}},
            )
        stack.progress(
            f"pool {way if way != 'cold' else 'none'}: window {json.dumps(spec)} UTC "
            f"({(opens - up.timestamp()):.0f} s from now); {len(curve)} jobs on the curve"
        )
        sampler.start()
        labels = next(t["labels"] for t in stack.world.tf_templates if t["name"] == TEMPLATE)
        phases: dict[int, str] = {}
        for index, job in enumerate(curve):
            time.sleep(max(0.0, opens + job.at_s - time.time()))
            queued = stack.sim.queue_job(
                REPOS[index % len(REPOS)], list(labels), name=f"{TEMPLATE}-{index + 1}"
            )
            phases[queued.id] = job.phase
        deadline = time.monotonic() + 120 + 20 * args.job_seconds
        while time.monotonic() < deadline and stack.finished() < len(curve):
            time.sleep(0.3)
        time.sleep(max(0.0, closes + 1 - time.time()))
        # Nothing drains the pool but its schedule: the window closed. Then, as run_demo, the
        # housekeeper until nothing is left.
        settle_until = time.monotonic() + 90
        summary = stack.summary()
        while time.monotonic() < settle_until and stack.unsettled(summary):
            if stack.bus and stack.bus.idle():
                stack.scheduler.fire(stack.functions["housekeeper"])
            time.sleep(1.0)
            summary = stack.summary()
        sampler.done.set()
        records = stack.job_latencies()
        assert stack.agent is not None
        draws = {iid: dict(d) for iid, d in stack.agent.draws.items()}
        passes = [began for began, _ in stack.functions["housekeeper"].runs]
        members, running, stopped = member_seconds(stack, records)
    finally:
        sampler.done.set()
        stack.stop()
    by_path: dict[str, list[float]] = {}
    by_phase: dict[str, dict[str, int]] = {}
    floors: dict[str, list[float]] = {}
    for record in records:
        by_path.setdefault(record["path"], []).append(record["seconds"])
        phase = by_phase.setdefault(phases.get(record["job_id"], "?"), {})
        phase[record["path"]] = phase.get(record["path"], 0) + 1
        drawn = floor(record["path"], draws.get(record["instance_id"], {}))
        if drawn is not None:
            floors.setdefault(record["path"], []).append(drawn)
    served = sum(1 for r in records if r["path"] != "cold")
    per = max(1, served)
    idle, parked = model.emulated(running), model.emulated(stopped)
    cost = {
        "members": members,
        "jobs_served": served,
        "idle_running_s": round(idle, 1),
        "stopped_s": round(parked, 1),
        "idle_running_s_per_job": round(idle / per, 1),
        "stopped_s_per_job": round(parked / per, 1),
        # instance-hours per 1,000 jobs the pool served
        "idle_running_h_per_1000_jobs": round(idle / per * 1000 / 3600, 1),
        "stopped_h_per_1000_jobs": round(parked / per * 1000 / 3600, 1),
    }
    wall = time.monotonic() - started
    print(f"curve {way}: {wall:.0f} s of wall time", file=sys.stderr)
    return {
        "window": {"utc": spec, "open": open_at.isoformat(), "minutes": args.window_minutes},
        "jobs": len(curve),
        "completed": summary["completed"],
        "paths": {
            path: {**latency_stats(values), "floor_p50": latency_stats(floors.get(path, []))["p50"]}
            for path, values in sorted(by_path.items())
        },
        "by_phase": by_phase,
        "pool_cost": cost if way != "cold" else None,
        "drain": drain(sampler.samples, closes, passes, scale) if way != "cold" else None,
        "left": {k: summary[k] for k in summary if k.endswith("_left")},
        "wall_s": round(wall),
    }


# ---------------------------------------------------------------------------------- all ways
# The flags a way's process is given as they were given to the parent.
PASSED_ON: Final = [
    "pool",
    "time_scale",
    "seed",
    "job_seconds",
    "agent",
    "iam",
    "curve_jobs",
    "shoulder_jobs",
    "window_minutes",
    "boot_model",
]


def _child(way: str, args: argparse.Namespace, open_at: datetime) -> subprocess.Popen[str]:
    """One way in its own process (a stack is bound by one interpreter lock); its progress to a
    log file beside its stack's."""
    workdir = ROOT / ".devstack" / "bench" / f"curve-{way}"
    workdir.mkdir(parents=True, exist_ok=True)
    values = {
        "only-way": way,
        "open-at": open_at.isoformat(),
        **{name.replace("_", "-"): getattr(args, name) for name in PASSED_ON},
    }
    flags = ["--curve", *(x for k, v in values.items() for x in (f"--{k}", str(v)))]
    with (workdir / "bench.log").open("w", encoding="utf-8") as log:
        return subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "latency_bench.py"), *flags],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )


def _collect(way: str, child: subprocess.Popen[str]) -> dict[str, Any]:
    output, _ = child.communicate()
    lines = [line for line in output.splitlines() if line.startswith("{")]
    if child.returncode or not lines:
        log = ROOT / ".devstack" / "bench" / f"curve-{way}" / "bench.log"
        raise RuntimeError(f"the {way} way failed (exit {child.returncode}); see {log}")
    return dict(json.loads(lines[-1]))


def run_ways(args: argparse.Namespace, ways: list[str]) -> dict[str, dict[str, Any]]:
    if args.only_way:
        open_at = datetime.fromisoformat(args.open_at) if args.open_at else None
        return {args.only_way: run_way(args.only_way, args, open_at)}
    if args.serial or (os.cpu_count() or 1) < 2:
        return {way: run_way(way, args, None) for way in ways}
    # At once, one process each, on one window: a minute or two after the stacks are up.
    open_at = next_open(datetime.now(UTC), MIN_LEAD_S + 20)
    logs = ROOT / ".devstack" / "bench" / "curve-<way>" / "bench.log"
    print(
        f"ways {', '.join(ways)} at once, window from {open_at:%H:%M} UTC; logs: {logs}",
        file=sys.stderr,
    )
    children = {way: _child(way, args, open_at) for way in ways}
    return {way: _collect(way, child) for way, child in children.items()}


def table(results: dict[str, dict[str, Any]]) -> str:
    def cell(value: Any) -> str:
        return "-" if value is None else f"{value:g}"

    lines = ["queue-to-runner, emulated s     n    p50    p95    max | floor p50"]
    for way, result in results.items():
        for path, data in result["paths"].items():
            lines.append(
                f"{way + ' way, ' + path + ' path':<30}{data['n']:>4} {cell(data['p50']):>6} "
                f"{cell(data['p95']):>6} {cell(data['max']):>6} | {cell(data['floor_p50']):>9}"
            )
    lines += ["", "jobs per phase and path (before | ramp up | peak | ramp down | after)"]
    for way, result in results.items():
        cells = []
        for phase in ("before", "ramp_up", "peak", "ramp_down", "after"):
            counts = result["by_phase"].get(phase, {})
            cells.append(" ".join(f"{p} {n}" for p, n in sorted(counts.items())) or "-")
        lines.append(f"{way:<8} " + " | ".join(cells))
    lines += [
        "",
        "pool cost per job the pool served (emulated s; instance-h per 1,000 jobs)"
        " | drain at close",
    ]
    for way, result in results.items():
        cost, out = result["pool_cost"], result["drain"]
        if not cost:
            continue
        lines.append(
            f"{way:<8} {cost['members']} members, {cost['jobs_served']} jobs served: "
            f"{cost['idle_running_s_per_job']} s running idle "
            f"({cost['idle_running_h_per_1000_jobs']} h), {cost['stopped_s_per_job']} s stopped "
            f"({cost['stopped_h_per_1000_jobs']} h) | "
            f"{out['free_at_close']} free at close, 0 after {cell(out['free_zero_after_s'])} s, "
            f"{cell(out['housekeeper_passes'])} passes"
        )
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    ways = [w for w in WAYS if w in {x.strip() for x in args.runs.split(",")}]
    started = time.monotonic()
    results = run_ways(args, ways)
    if args.only_way:
        print(json.dumps(results[args.only_way], separators=(",", ":")), flush=True)
        return 0
    print(f"curve, all ways: {time.monotonic() - started:.0f} s of wall time", file=sys.stderr)
    print(table(results))
    complete = all(r["completed"] == r["jobs"] for r in results.values())
    clean = all(not any(r["left"].values()) for r in results.values())
    drained = all(
        r["drain"] is None
        or (r["drain"]["housekeeper_passes"] is not None and r["drain"]["housekeeper_passes"] <= 2)
        for r in results.values()
    )
    out = {
        "curve": True,
        "iam": args.iam,
        "pool": args.pool,
        "time_scale": args.time_scale,
        "window_minutes": args.window_minutes,
        "curve_jobs": args.curve_jobs,
        "shoulder_jobs": args.shoulder_jobs,
        "seed": args.seed,
        "ways": results,
        "complete": complete,
        "clean": clean,
        "drained_within_two_passes": drained,
    }
    print(json.dumps(out, separators=(",", ":")), flush=True)
    return 0 if complete and clean and drained else 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--curve",
        action="store_true",
        help="a daily job curve through a pool's schedule window, three ways (no pool, hot, "
        "stopped); --pool, --time-scale, --seed, --job-seconds, --agent, --iam, --runs apply",
    )
    parser.add_argument("--curve-jobs", type=int, default=30, help="jobs inside the window")
    parser.add_argument(
        "--shoulder-jobs", type=int, default=3, help="jobs before it opens and after it closes"
    )
    parser.add_argument(
        "--window-minutes", type=int, default=3, help="the window's length, real minutes"
    )
    parser.add_argument(
        "--serial", action="store_true", help="the ways one after the other (default: at once)"
    )
    parser.add_argument("--only-way", choices=WAYS, help=argparse.SUPPRESS)
    parser.add_argument("--open-at", help=argparse.SUPPRESS)
