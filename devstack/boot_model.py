"""The local stack's latency model: how long an instance takes to be usable, on a scaled clock.

Three physical delays no control plane can remove, each a distribution in *emulated* seconds:

- `cold`: a fresh launch (RunInstances/CreateFleet) until its SSM agent is online (EC2 places the
  instance, the kernel and cloud-init boot, the user data installs the runner and enables the
  agent, the agent registers with SSM);
- `stopped`: StartInstances of a stopped pool member until its agent is online again (no user
  data: the disk already holds the runner);
- `connect`: the runner process starting with its JIT config until GitHub may hand it a job
  (Runner.Listener starts, opens its session).

Defaults are published measurements (README "Latency model" lists them with their sources):

- cold p50 26 s: brevdev/ec2-coldboot-research measured a cold launch to a usable Linux instance in
  25.8 s (run-instances to SSH); p95 45 s: Depot measured 40 s for a typical EC2 boot before its
  optimisations ("Making EC2 boot time 8x faster", depot.dev, May 2024) and RunsOn quotes < 25 s
  cold queue time with an optimised AMI; the SSM agent registers a few seconds after boot.
- stopped p50 10 s, p95 21 s: RunsOn quotes < 15 s queue time from a stopped pool, runner start
  included (runs-on.com "Warm pools"); brevdev measured stop/start to SSH at 21.2 s on average,
  the slow end of it.
- connect p50 3 s, p95 6 s: an ephemeral runner pod went from "ready" to "Listening for Jobs" in
  5 s (actions/actions-runner-controller#4000); RunsOn quotes < 6 s queue time for a hot runner,
  which has already connected.

Each is a lognormal given by its p50 and p95 (p50 == p95: a fixed delay), drawn from the seed, the
kind and a key (the n-th instance, its n-th start), so a run with the same seed draws the same
delays whatever the threads' order. `time_scale` maps emulated seconds to real ones: the stack
waits `emulated * time_scale`, and latencies are reported as `real / time_scale`. The control
plane (Lambda invocations, moto, SQS delays in whole seconds) is not scaled down with it, so at a
small scale its share reads larger than it is: emulated figures are pessimistic.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from typing import Final

KINDS: Final = ("cold", "stopped", "connect")
Z_95: Final = 1.6448536269514722  # the standard normal's 95th percentile
Z_CAP: Final = 3.719  # draws stop at the 99.99th percentile: one absurd boot skews a small run


@dataclass(frozen=True)
class Delay:
    """A lognormal delay in emulated seconds with median `p50` and 95th percentile `p95`."""

    p50: float
    p95: float

    def __post_init__(self) -> None:
        if not (0 <= self.p50 <= self.p95) or (self.p50 == 0 and self.p95 > 0):
            raise ValueError(f"a delay needs 0 <= p50 <= p95 and p50 > 0 when p95 > 0: {self}")

    @property
    def sigma(self) -> float:
        return 0.0 if self.p50 in (0, self.p95) else math.log(self.p95 / self.p50) / Z_95

    def draw(self, rng: random.Random) -> float:
        z = max(-Z_CAP, min(Z_CAP, rng.gauss(0.0, 1.0)))
        return self.p50 * math.exp(self.sigma * z)

    def quantile(self, q: float) -> float:
        from statistics import NormalDist

        return self.p50 * math.exp(self.sigma * NormalDist().inv_cdf(q))

    @classmethod
    def parse(cls, text: str) -> Delay:
        """`p50:p95` or one number (fixed), emulated seconds."""
        low, sep, high = text.partition(":")
        try:
            p50 = float(low)
            p95 = float(high) if sep else p50
        except ValueError:
            raise ValueError(f"{text!r} is not p50:p95 or a number of seconds") from None
        return cls(p50, p95)

    def __str__(self) -> str:
        return f"{self.p50:g}" if self.p50 == self.p95 else f"{self.p50:g}:{self.p95:g}"


@dataclass(frozen=True)
class BootModel:
    """The three delays, the seed they are drawn from, and the clock's scale (see the module)."""

    cold: Delay = field(default_factory=lambda: Delay(26.0, 45.0))
    stopped: Delay = field(default_factory=lambda: Delay(10.0, 21.0))
    connect: Delay = field(default_factory=lambda: Delay(3.0, 6.0))
    seed: int = 1
    # `make run` and the tests: a 26 s boot takes 0.5 s, as the stack's fixed boot did before.
    time_scale: float = 0.02

    def __post_init__(self) -> None:
        if not 0 < self.time_scale <= 1:
            raise ValueError(f"time scale {self.time_scale} is not in (0, 1]")

    def draw(self, kind: str, key: object) -> float:
        """The `kind` delay of `key` (e.g. the 3rd instance), emulated seconds; deterministic."""
        delay: Delay = getattr(self, kind) if kind in KINDS else None  # type: ignore[assignment]
        if delay is None:
            raise ValueError(f"unknown delay {kind!r}; known: {', '.join(KINDS)}")
        return delay.draw(random.Random(f"{self.seed}/{kind}/{key}"))

    def real(self, emulated_s: float) -> float:
        """Real seconds the stack waits for `emulated_s`."""
        return emulated_s * self.time_scale

    def emulated(self, real_s: float) -> float:
        """Emulated seconds a real duration stands for."""
        return real_s / self.time_scale

    def with_delays(self, text: str) -> BootModel:
        """`cold=26:45,stopped=10:21,connect=3` (any subset) over this model's delays."""
        changes: dict[str, Delay] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            kind, sep, value = part.partition("=")
            if not sep or kind.strip() not in KINDS:
                raise ValueError(f"{part!r}: expected k=p50:p95 with k in {', '.join(KINDS)}")
            changes[kind.strip()] = Delay.parse(value.strip())
        return replace(self, **changes)  # type: ignore[arg-type]

    def describe(self) -> str:
        return (
            f"cold {self.cold} s, stopped {self.stopped} s, connect {self.connect} s "
            f"(p50:p95, emulated), time scale {self.time_scale:g}"
        )
