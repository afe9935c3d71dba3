"""What `make run` shows while it runs: one line per state change, or a table on a terminal.

`Progress` keeps every line (tests and the secret scan read them). On a terminal, unless the
user asked for lines or logs, `JobTable` redraws in place a table with one row per job (state,
attempt, instance, result), the instance counts and the last few events, a few times a second.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any, TextIO

from jitrunners.models import runner_instance

REFRESH_S = 0.25
RECENT_EVENTS = 6
# Terminal control: cursor to the start of the line n lines up, erase to the end of the screen.
_UP = "\x1b[{n}F"
_CLEAR = "\x1b[J"


@dataclass
class _Row:
    name: str
    repo: str
    job_id: int = 0
    attempt: int = 1
    state: str = "queued"
    instance: str = ""
    result: str = ""


class JobTable:
    """The live view: jobs by logical key (re-runs share a row), instances, recent events."""

    def __init__(self, out: TextIO, started: float) -> None:
        self.out = out
        self.started = started
        self._lock = threading.Lock()
        self._rows: dict[str, _Row] = {}
        self._instances: dict[str, str] = {}  # instance id -> state
        self._recent: deque[str] = deque(maxlen=RECENT_EVENTS)
        self._drawn = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ inputs
    def job(self, what: str, job: Any) -> None:
        with self._lock:
            row = self._rows.setdefault(job.key, _Row(job.name, job.repo))
            if job.run_attempt < row.attempt:
                return  # an event of an older attempt arriving late
            row.job_id, row.attempt, row.state = job.id, job.run_attempt, what
            row.instance = runner_instance(job.runner_name) or job.runner_name or row.instance
            row.result = job.conclusion or ""

    def instance(self, instance_id: str, state: str) -> None:
        with self._lock:
            self._instances[instance_id] = state

    def event(self, line: str) -> None:
        with self._lock:
            self._recent.append(line)

    # ------------------------------------------------------------------ drawing
    def render(self) -> list[str]:
        with self._lock:
            rows = list(self._rows.values())
            states = Counter(self._instances.values())
            recent = list(self._recent)
        elapsed = time.monotonic() - self.started
        done = sum(1 for r in rows if r.result == "success")
        lines = [
            f"jitrunners local stack  {elapsed:6.1f}s  jobs {done}/{len(rows)} completed  "
            f"instances: {states['running'] + states['pending']} live, "
            f"{states['terminated']} terminated, {len(self._instances)} launched",
            f"{'job':<22} {'repo':<14} {'try':>3}  {'state':<12} {'instance':<21} result",
        ]
        for row in sorted(rows, key=lambda r: r.name):
            lines.append(
                f"{row.name[:22]:<22} {row.repo[:14]:<14} {row.attempt:>3}  {row.state[:12]:<12} "
                f"{row.instance[:21]:<21} {row.result}"
            )
        lines.append("recent:")
        lines.extend(f"  {line}" for line in recent)
        return lines

    def draw(self) -> None:
        lines = self.render()
        text = (_UP.format(n=self._drawn) if self._drawn else "") + _CLEAR + "\n".join(lines)
        self.out.write(text + "\n")
        self.out.flush()
        self._drawn = len(lines)

    def start(self) -> JobTable:
        self._thread = threading.Thread(target=self._loop, name="progress-table", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.draw()  # the final state stays on screen above the summary

    def _loop(self) -> None:
        while not self._stop.wait(REFRESH_S):
            self.draw()


class Progress:
    """One line per state change. With a table, the lines feed its "recent" panel instead."""

    def __init__(self, out: TextIO, started: float, table: JobTable | None = None) -> None:
        self.out = out
        self.started = started
        self.table = table
        self._lock = threading.Lock()
        self.lines: list[str] = []

    def note(self, text: str, out: TextIO | None = None) -> None:
        """A line printed even where a table will be drawn: start-up, before the table starts."""
        line = f"[{time.monotonic() - self.started:6.1f}s] {text}"
        with self._lock:
            self.lines.append(line)
            print(line, file=out or self.out, flush=True)

    def __call__(self, text: str) -> None:
        line = f"[{time.monotonic() - self.started:6.1f}s] {text}"
        with self._lock:
            self.lines.append(line)
            if self.table is not None:
                self.table.event(line)
            else:
                print(line, file=self.out, flush=True)
