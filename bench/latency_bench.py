"""Queue-to-runner latency per path (cold, stopped pool, hot pool) beside the modeled floor.

Run with `make bench` (or `python bench/latency_bench.py`). Three local stacks one after the other,
the same seed, template and jobs; only the warm pool differs:

* cold: no pool, every job launches an instance;
* stopped: `pool.stopped = N` (filled before the first job);
* hot: `pool.hot = N` (filled before the first job).

Jobs are queued one at a time, `--spacing` emulated seconds apart, so a pool refills between them
as it would under a steady trickle of jobs. Each job's queue-to-runner time is the simulator's own:
queued until a runner took it, in emulated seconds of the boot model (devstack/boot_model.py), and
grouped by the path its runner's name says (jitrunners.models.runner_path).

The floor is what the boot model drew for the instance that ran the job, without the control
plane: cold boot + runner connect (cold), start + connect (stopped); a hot runner is connected and
idle when the job comes, so the model's floor is 0 there (GitHub's own assignment is not modeled)
and no ratio is shown. The ratio is latency / floor at p50 and p95.

Pool cost: for every pool member of a run, the seconds it ran without a job (launch to its job or
its end, minus the time it was stopped) and the seconds it sat stopped (EBS only), per job the
pool served; emulated seconds.

At the end of each run the pool is drained (targets 0, housekeeper passes) and the run must leave
nothing behind (`pool_left` 0 with the other `*_left`). Latencies are emulated seconds: real time
divided by the time scale; the control plane (Lambda invocations, moto, whole-second SQS delays)
is not scaled down, so at a small scale its share is overstated (README "Latency model").
The LAST line printed is one JSON object with every number; the table above it is for people.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "lambdas"), str(ROOT)]

RUNS = ("cold", "stopped", "hot")
TEMPLATE = "linux-x64"  # market spot-then-on-demand: stopped members may launch (on-demand)
# Targets of issue 13, emulated seconds: hot p50, stopped p50; cold p50 <= floor p50 + 2 s; and
# latency <= 1.1x floor on every path.
TARGETS = {"hot_p50": 3.0, "stopped_p50": 12.0, "cold_over_floor_p50": 2.0, "ratio": 1.1}


def _pool(run: str, size: int) -> dict[str, int] | None:
    return None if run == "cold" else {run: size}


def run_one(run: str, args: argparse.Namespace) -> dict[str, Any]:
    """One stack: the run's pool, the jobs spaced out, everything measured, nothing left."""
    from devstack.boot_model import BootModel
    from devstack.stack import Options, Stack

    model = BootModel(seed=args.seed, time_scale=args.time_scale).with_delays(args.boot_model)
    scale = model.time_scale
    options = Options(
        jobs=args.jobs,
        templates=[TEMPLATE],
        seed=args.seed,
        job_seconds=args.job_seconds,
        workdir=ROOT / ".devstack" / "bench" / f"latency-{run}",
        agent=args.agent,
        boot_model=model,
        pool=_pool(run, args.pool),
        job_spacing_s=model.real(args.spacing),
        # The same room on every run (pool members count against max_runners), and the module's
        # default timeouts on the scaled clock (the devstack's own are for 0.5 s boots).
        template_overrides={
            "max_runners": args.jobs + args.pool,
            "start_timeout_s": round(max(60, 600 * scale)),
            "idle_timeout_s": round(max(20, 300 * scale)),
            "max_lifetime_s": 86_400,
        },
        timeout_s=120 + model.real(args.spacing) * args.jobs + 20 * args.jobs * args.job_seconds,
        iam=args.iam == "on",
    )
    stack = Stack(options, out=sys.stderr)
    started = time.monotonic()
    try:
        stack.start()
        summary = stack.run_demo()
        records = stack.job_latencies()
        assert stack.agent is not None
        draws = {iid: dict(d) for iid, d in stack.agent.draws.items()}
        gaps = dict(stack.agent.command_gap_s)
        cost = pool_cost(stack, records)
    finally:
        stack.stop()
    for record in records:
        record["floor"] = floor(record["path"], draws.get(record["instance_id"], {}))
        gap = gaps.get(record["instance_id"])
        record["command_gap"] = None if gap is None else model.emulated(gap)
    print(f"{run}: {time.monotonic() - started:.0f} s of wall time", file=sys.stderr)
    return {"summary": summary, "records": records, "pool_cost": cost, "model": model.describe()}


def floor(path: str, drawn: dict[str, float]) -> float | None:
    """The model's delays for the job's instance on its path (emulated seconds); None: unknown."""
    if path == "hot":
        return 0.0
    boot = drawn.get("cold" if path == "cold" else "stopped")
    if boot is None or "connect" not in drawn:
        return None
    return boot + drawn["connect"]


def pool_cost(stack: Any, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Idle running and stopped seconds of the run's pool members, per job a pool served."""
    model = stack.boot_model
    members, running, stopped = member_seconds(stack, records)
    served = sum(1 for r in records if r["path"] != "cold")
    per = max(1, served)
    return {
        "members": members,
        "jobs_served": served,
        "idle_running_s_per_job": round(model.emulated(running) / per, 1),
        "stopped_s_per_job": round(model.emulated(stopped) / per, 1),
    }


def member_seconds(stack: Any, records: list[dict[str, Any]]) -> tuple[int, float, float]:
    """The run's pool members, and the real seconds they ran without a job (launch to their job,
    or to their end, minus the time stopped) and sat stopped, summed."""
    agent = stack.agent
    took = {r["instance_id"]: r["started_ts"] for r in records}
    end = time.time()
    running = stopped = 0.0
    members = 0
    for iid, seen in list(stack.seen_instances.items()):
        if not seen.get("pool") or iid not in stack.launch_times:
            continue
        members += 1
        launched = stack.launch_times[iid]
        until = took.get(iid) or stack.terminate_times.get(iid) or end
        down = 0.0
        since: float | None = None
        for what, at in agent.power_log.get(iid, []):
            if what == "stop":
                since = at
            elif since is not None:
                down += max(0.0, min(at, until) - since)
                since = None
        if since is not None:
            down += max(0.0, until - since)
        running += max(0.0, until - launched - down)
        stopped += down
    return members, running, stopped


def _stats(values: list[float]) -> dict[str, Any]:
    from devstack.stack import latency_stats

    return latency_stats(values)


def report(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per run and path: latency, floor, ratio, agent-online-to-command gap; pool cost."""
    rows: dict[str, Any] = {}
    for run, result in results.items():
        by_path: dict[str, list[dict[str, Any]]] = {}
        for record in result["records"]:
            by_path.setdefault(record["path"], []).append(record)
        paths = {}
        for path, records in sorted(by_path.items()):
            latency = _stats([r["seconds"] for r in records])
            floors = _stats([r["floor"] for r in records if r["floor"] is not None])
            gaps = _stats([r["command_gap"] for r in records if r["command_gap"] is not None])
            paths[path] = {
                "latency": latency,
                "floor": floors,
                "ratio_p50": _ratio(latency["p50"], floors["p50"]),
                "ratio_p95": _ratio(latency["p95"], floors["p95"]),
                "online_to_command": gaps,
            }
        summary = result["summary"]
        left = {k: summary[k] for k in summary if k.endswith("_left")}
        rows[run] = {"paths": paths, "pool_cost": result["pool_cost"], "left": left}
    return rows


def _ratio(value: float | None, base: float | None) -> float | None:
    return None if value is None or not base else round(value / base, 2)


def table(rows: dict[str, Any]) -> str:
    def cell(value: Any) -> str:
        return "-" if value is None else f"{value:g}"

    lines = [
        "queue-to-runner, emulated s   n    p50    p95    max | floor p50  p95 | ratio p50  p95"
        " | online->cmd p50",
    ]
    for run, row in rows.items():
        for path, data in row["paths"].items():
            lat, flo = data["latency"], data["floor"]
            lines.append(
                f"{run + ' run, ' + path + ' path':<28}{lat['n']:>4} {cell(lat['p50']):>6} "
                f"{cell(lat['p95']):>6} {cell(lat['max']):>6} | {cell(flo['p50']):>9} "
                f"{cell(flo['p95']):>4} | {cell(data['ratio_p50']):>9} "
                f"{cell(data['ratio_p95']):>4} | {cell(data['online_to_command']['p50']):>15}"
            )
    lines.append("")
    lines.append("pool cost (emulated s per job the pool served): idle running, stopped")
    for run, row in rows.items():
        cost = row["pool_cost"]
        if cost["members"]:
            lines.append(
                f"{run:<8} {cost['members']} members, {cost['jobs_served']} jobs served: "
                f"{cost['idle_running_s_per_job']} s running idle, {cost['stopped_s_per_job']} s "
                "stopped"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=6, help="jobs per run (default 6)")
    parser.add_argument("--pool", type=int, default=3, help="pool members (default 3)")
    parser.add_argument(
        "--spacing",
        type=float,
        default=40.0,
        help="emulated seconds between two jobs (default 40: a pool of 3 keeps up)",
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=0.25,
        help="real seconds per emulated second (default 0.25: the Lambdas' start delay and "
        "back-offs at a quarter of their AWS values, in whole seconds)",
    )
    parser.add_argument("--boot-model", default="", help="e.g. cold=26:45,stopped=10:21,connect=3")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--job-seconds", type=float, default=1.0, help="real seconds per job")
    parser.add_argument(
        "--agent",
        choices=("inline", "script"),
        default="inline",
        help="inline: the runner's steps in a thread (default); script: every instance booted "
        "from its user data in a sandbox, start-runner.sh and the fake runner",
    )
    parser.add_argument("--runs", default=",".join(RUNS), help="a subset: cold,stopped,hot")
    parser.add_argument(
        "--iam",
        choices=("on", "off"),
        default="on",
        help="every Lambda call authorized against the module's policies (default on)",
    )
    from bench import pool_curve

    pool_curve.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.curve:
        return pool_curve.main(args)
    runs = [r for r in RUNS if r in {x.strip() for x in args.runs.split(",")}]
    results = {run: run_one(run, args) for run in runs}
    rows = report(results)
    print(next(iter(results.values()))["model"] if results else "", file=sys.stderr)
    print(table(rows))
    clean = all(not any(row["left"].values()) for row in rows.values())
    complete = all(
        r["summary"]["completed"] + r["summary"]["cancelled"] == r["summary"]["jobs"]
        for r in results.values()
    )
    out = {
        "iam": args.iam,
        "jobs": args.jobs,
        "pool": args.pool,
        "time_scale": args.time_scale,
        "spacing_s": args.spacing,
        "targets": TARGETS,
        "runs": rows,
    }
    print(json.dumps(out, separators=(",", ":")), flush=True)
    return 0 if clean and complete else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
