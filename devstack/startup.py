"""Start-up of the local stack: each piece bounded and announced, and less for moto to load.

On a busy machine the stack's start-up is most of a short run: importing moto's EC2 backend,
loading its catalogue of 1,291 default AMIs (each with a volume and a snapshot) and parsing
botocore's service models (EC2's is 8 MB of JSON) again for every session that asks. So:

* `Startup` runs the pieces, independent ones side by side, prints one line as each comes up
  (`EC2 backend ready (12.3 s)`), and stops with the name of the piece that did not come up
  within the start-up bound, instead of leaving the terminal silent.
* `lighten_moto()` turns off what the stack never uses: moto's default AMIs (the stack's launch
  templates name their own AMIs, and moto checks no AMI unless `MOTO_ENABLE_AMI_VALIDATION`).
* `share_botocore_models()` parses each botocore model file once per process instead of once per
  session (moto's region lists, its request parser, each client of the stack and the Lambdas).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

# Start-up is bounded on its own, well above the run's jobs: a loaded laptop or shared CI runner
# has been seen taking two minutes to import and warm moto.
STARTUP_TIMEOUT_S = 600.0
# What a step announces when it is up: a text, or one made from the step's result.
Done = str | Callable[[Any], str]


class StartupError(RuntimeError):
    """A piece of the stack did not come up (in time, or at all); the message names it."""


class Startup:
    """Runs start-up steps under one deadline, saying on `say` what comes up and when."""

    def __init__(self, say: Callable[[str], None], timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        self.say = say
        self.timeout_s = timeout_s
        self.began = time.monotonic()
        self.deadline = self.began + timeout_s
        self.seconds: dict[str, float] = {}  # each step's own duration

    def elapsed(self) -> float:
        return time.monotonic() - self.began

    def step(self, name: str, action: Callable[[], Any], done: Done | None = None) -> Any:
        """One step; `done` (default: "<name> ready") is announced with its duration."""
        return self.parallel({name: action}, {name: done} if done else None)[name]

    def parallel(
        self, steps: Mapping[str, Callable[[], Any]], done: Mapping[str, Done] | None = None
    ) -> dict[str, Any]:
        """Independent steps side by side, each in a thread; announced in the order they finish.

        Threads cannot be killed: a step that misses the deadline is left running (daemon) and
        the StartupError ends the stack's start. A step that raises ends it with its name too.
        """
        finished: queue.Queue[tuple[str, float, Any, BaseException | None]] = queue.Queue()

        def run(name: str, action: Callable[[], Any]) -> None:
            started = time.monotonic()
            try:
                result, error = action(), None
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, named
                result, error = None, exc
            finished.put((name, time.monotonic() - started, result, error))

        for name, action in steps.items():
            threading.Thread(
                target=run, args=(name, action), name=f"startup-{name}", daemon=True
            ).start()
        results: dict[str, Any] = {}
        while len(results) < len(steps):
            try:
                name, seconds, result, error = finished.get(
                    timeout=max(0.0, self.deadline - time.monotonic())
                )
            except queue.Empty:
                late = ", ".join(n for n in steps if n not in results)
                raise StartupError(
                    f"start-up: {late} did not come up within {self.timeout_s:g} s "
                    f"(--startup-timeout); the machine may be overloaded"
                ) from None
            if error is not None:
                raise StartupError(f"start-up: {name} failed: {error}") from error
            results[name] = result
            self.seconds[name] = seconds
            text = (done or {}).get(name) or f"{name} ready"
            self.say(f"{text(result) if callable(text) else text} ({seconds:.1f} s)")
        return results


def lighten_moto() -> None:
    """Moto settings read when its backends are created: nothing the stack does not use."""
    # 1,291 AMIs with a volume and a snapshot each, per EC2 backend (every region, every reset);
    # the stack's launch templates name AMIs of their own and moto does not validate AMI ids.
    os.environ["MOTO_EC2_LOAD_DEFAULT_AMIS"] = "false"


_SHARED: list[bool] = []


def share_botocore_models() -> None:
    """Parse each of botocore's model files once per process, not once per session.

    Every botocore session has its own loader and cache, and moto makes several: its region
    lists call `Session().get_available_regions`, which parses the whole service model, and its
    request parser has its own loader; the stack's clients and the Lambdas' have theirs. Within
    one session botocore already hands the same parsed dict to every client, so sharing it across
    sessions changes no answer. Keyed by the loader's search paths: AWS_DATA_PATH is honoured.
    """
    if _SHARED:
        return
    from botocore import loaders

    cache: dict[tuple[Any, ...], Any] = {}
    locks: dict[tuple[Any, ...], threading.Lock] = {}
    guard = threading.Lock()

    def once(key: tuple[Any, ...], load: Callable[[], Any]) -> Any:
        with guard:
            lock = locks.setdefault(key, threading.Lock())
        # One parse per file even when start-up steps ask for it at the same time.
        with lock:
            if key not in cache:
                cache[key] = load()
            return cache[key]

    load_service_model = loaders.Loader.load_service_model
    load_data_with_path = loaders.Loader.load_data_with_path

    def shared_service_model(
        self: loaders.Loader, service_name: str, type_name: str, api_version: str | None = None
    ) -> Any:
        # Callers name the version or not (moto does not, get_available_regions does): one key.
        version = api_version or self.determine_latest_version(service_name, type_name)
        key = ("model", tuple(self.search_paths), tuple(self.extras_types), service_name, type_name)
        return once(
            (*key, version), lambda: load_service_model(self, service_name, type_name, version)
        )

    def shared_data_with_path(self: loaders.Loader, name: str) -> Any:
        if "/" in name:  # a service's file: read through load_service_model, extras merged once
            return load_data_with_path(self, name)
        # Top-level data: endpoints.json (1.2 MB), partitions, retry rules.
        return once(
            ("data", tuple(self.search_paths), name), lambda: load_data_with_path(self, name)
        )

    loaders.Loader.load_service_model = shared_service_model  # type: ignore[method-assign]
    loaders.Loader.load_data_with_path = shared_data_with_path  # type: ignore[method-assign]
    _SHARED.append(True)
