"""`python -m devstack` (`make run`): the pipeline offline; the last line is a JSON summary."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shlex
import shutil
import signal
import sys
import time
from pathlib import Path

from devstack.faults import FAULTS, parse_faults

ROOT = Path(__file__).resolve().parents[1]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="make run ARGS=...",
        description="Run jitrunners locally and offline: moto for AWS, a GitHub simulator, the "
        "real handlers and runner scripts. The last line printed is a JSON summary; exit 0 "
        "exactly when every job completed or was cancelled by a user and nothing is left.",
    )
    parser.add_argument("--jobs", type=int, default=6, help="jobs to queue (default 6)")
    parser.add_argument("--templates", default="", help="templates to spread jobs over: a,b")
    parser.add_argument("--seed", type=int, default=1, help="seed of every random choice")
    parser.add_argument(
        "--sizing",
        action="store_true",
        help="also 2 jobs with sizing labels the sized template admits and 2 it refuses",
    )
    parser.add_argument("--job-seconds", type=float, default=1.0, help="how long a job runs")
    parser.add_argument("--faults", default="", help=f"k=v,... with k in: {', '.join(FAULTS)}")
    parser.add_argument(
        "--pool",
        default="",
        help="a warm pool for every template of the run, e.g. hot=3,stopped=3: filled before the "
        'jobs are queued, drained after (README "Warm pools in the local stack")',
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=None,
        help="real seconds per emulated second of the boot model (default 0.02: a 26 s boot "
        "takes 0.5 s); latencies are reported in emulated seconds",
    )
    parser.add_argument(
        "--boot-model",
        default="",
        help="the model's delays in emulated seconds, p50:p95 or one number, e.g. "
        'cold=26:45,stopped=10:21,connect=3:6 (README "Latency model")',
    )
    parser.add_argument("--verbose", action="store_true", help="Lambda logs and agent output")
    parser.add_argument("--serve", action="store_true", help="keep the stack up for curl / gh")
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="give up on the jobs this many s after the stack is up (default: 120 + 10 per job)",
    )
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=600.0,
        help="give up if the stack is not up after this many s (default 600)",
    )
    parser.add_argument(
        "--view",
        choices=("auto", "table", "lines"),
        default="auto",
        help="progress as a table redrawn in place, or one line per change (auto: a table on a "
        "terminal, lines otherwise and with --verbose)",
    )
    return parser


def _view(args: argparse.Namespace) -> str:
    if args.view != "auto":
        return str(args.view)
    return "table" if sys.stdout.isatty() and not args.verbose and not args.serve else "lines"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        faults = parse_faults(args.faults)
    except ValueError as exc:
        print(f"--faults: {exc}", file=sys.stderr)
        return 2
    if args.jobs < 0:
        print("--jobs: must be 0 or more", file=sys.stderr)
        return 2
    try:
        pool = parse_pool_arg(args.pool)
    except ValueError as exc:
        print(f"--pool: {exc}", file=sys.stderr)
        return 2
    from devstack.boot_model import BootModel

    try:
        model = BootModel(seed=args.seed).with_delays(args.boot_model)
        if args.time_scale is not None:
            model = dataclasses.replace(model, time_scale=args.time_scale)
    except ValueError as exc:
        print(f"--boot-model/--time-scale: {exc}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT / "lambdas"))
    workdir = ROOT / ".devstack" / "run"
    shutil.rmtree(workdir, ignore_errors=True)  # each run starts from an empty sandbox
    # Importing the stack takes seconds on a busy machine: say something first.
    status = sys.stderr if args.serve else sys.stdout
    print("make run: starting the local stack ...", file=status, flush=True)
    from devstack.stack import Options, Stack
    from devstack.startup import StartupError

    options = Options(
        jobs=0 if args.serve else args.jobs,
        templates=[t.strip() for t in args.templates.split(",") if t.strip()] or None,
        seed=args.seed,
        job_seconds=args.job_seconds,
        faults=faults,
        verbose=args.verbose,
        timeout_s=args.timeout,
        startup_timeout_s=args.startup_timeout,
        workdir=workdir,
        view=_view(args),
        cloud=args.serve,
        sized_jobs=0 if args.serve or not args.sizing else 2,
        refused_sized_jobs=0 if args.serve or not args.sizing else 2,
        boot_model=model,
        pool=pool,
    )
    stack = Stack(options, status_out=status)
    stdout = sys.stdout
    try:
        try:
            stack.start()
        except StartupError as exc:
            print(str(exc), file=sys.stderr, flush=True)
            # Still one JSON line last, naming what did not come up.
            print(
                json.dumps(
                    {
                        "jobs": options.jobs,
                        "completed": 0,
                        "cancelled": 0,
                        "startup_error": str(exc),
                    }
                )
            )
            return 1
        if args.serve:
            # SIGTERM ends it as Ctrl-C does, armed before the JSON line a caller may answer at
            # once. Python runs signal handlers on the main thread only, and the kernel may hand
            # the signal to any of the stack's threads: a main thread blocked for good (an Event
            # with no timeout, pause()) may never run it. Waking twice a second, it always does.
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            with contextlib.suppress(KeyboardInterrupt):
                # sys.stdout now feeds the Lambdas' log (their EMF metrics go there): the
                # terminal's. First what `eval` needs for the jitrunners CLI, then the JSON.
                for name, value in stack.cli_env().items():
                    print(f"export {name}={shlex.quote(value)}", file=stdout)
                print(json.dumps(stack.serve_info()), file=stdout, flush=True)
                while True:
                    time.sleep(0.5)
            return 0
        try:
            summary = stack.run_demo()
        except ValueError as exc:
            print(f"--templates: {exc}", file=sys.stderr)
            return 2
    finally:
        stack.stop()
    print(json.dumps(summary), flush=True)
    from devstack.stack import LEFT_KEYS

    ok = summary["completed"] + summary.get("cancelled", 0) == summary["jobs"] and not any(
        summary.get(k) for k in LEFT_KEYS
    )
    return 0 if ok else 1


def parse_pool_arg(text: str) -> dict[str, int] | None:
    """`hot=3,stopped=3` (either or both) -> {"hot": 3, "stopped": 3}; "" -> None."""
    pool: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        kind, sep, value = part.partition("=")
        if kind.strip() not in ("hot", "stopped") or not sep or not value.strip().isdigit():
            raise ValueError(f"{part!r}: expected hot=N and/or stopped=N")
        pool[kind.strip()] = int(value)
    return pool or None


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # The stack is stopped and its files closed: skip the interpreter's teardown of moto's and
    # botocore's millions of objects, a second on an idle machine and ten on a busy one, all of
    # it after the summary line.
    os._exit(code)
