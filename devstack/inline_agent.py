"""The SSM agent shim without processes: start-runner.sh and the runner's part played in a thread.

`Options(agent="inline")` (the burst benchmark): a thousand real start-runner.sh runs, each with
a fake `aws` CLI process and a simulated runner process, would swamp a small machine and what is
measured, the control plane, would drown in it. Each invocation here does in a thread what the
script and the runner do on the instance, against the same endpoints: read the JIT config from SSM
(moto) with decryption (and leave it to scale-down, as the script does), connect to the simulator
as the runner (its calls served in this thread: devstack/loopback.py), take one job, run it for
`job_seconds`, complete it, and report the command's
status as the EventBridge event SSM sends. The exit codes are the script's (3 parameter missing,
4 idle timeout, 2 usage) and the runner's; the agent's availability (`InvalidInstanceId` until
the boot model's delay after launch or after a start, offline while stopped, `ssm-offline`) and
the runner's connect delay are AgentShim's, without booting anything: no sandbox, no user data.
`make run` and the end-to-end tests boot every instance from its user data and run the real
script.
"""

from __future__ import annotations

import shlex
import threading
import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from devstack import loopback
from devstack.agent import AgentShim, Invocation, Result
from devstack.fake_runner.runner import EXIT_CONFIG, EXIT_REFUSED, Session, parse_config

EXIT_USAGE = 2
EXIT_MISSING_PARAM = 3
EXIT_IDLE = 4
EXIT_KILLED = -9
POLL_S = 0.2


class InlineAgent(AgentShim):
    """AgentShim whose invocations run start-runner.sh's steps in-process (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ssm: Any = None
        self._ssm_lock = threading.Lock()

    def _client(self) -> Any:
        # The instances' own client (the endpoint in AWS_ENDPOINT_URL), never the Lambdas': their
        # calls are what the benchmark counts. One for all: building one takes a good second.
        with self._ssm_lock:
            if self._ssm is None:
                import boto3

                self._ssm = boto3.session.Session().client("ssm", region_name=self.region)
            return self._ssm

    def boot(self, instance_id: str) -> None:
        """Nothing to boot: the agent is online the model's delay after launch."""
        self._key(instance_id)

    def _restart(self, instance_id: str) -> None:
        """Nothing to boot again: the agent is online the model's delay after the start."""

    def _agent_started(self, instance_id: str) -> float | None:
        return 0.0

    def _execute(self, invocation: Invocation, timeout_s: float) -> Result:
        # The script path is the instance's; the arguments are the contract (docs/contracts.md).
        argv = shlex.split((invocation.parameters.get("commands") or [""])[0])[1:]
        lines: list[str] = []
        code = self._start_runner(invocation, argv, time.monotonic() + timeout_s, lines.append)
        return Result(code, "\n".join(lines))

    def _start_runner(
        self, invocation: Invocation, argv: list[str], deadline: float, say: Any
    ) -> int:
        if not argv or len(argv) > 2 or (len(argv) == 2 and not argv[1].isdigit()):
            say("usage: start-runner.sh <param-name> [idle-timeout-s]")
            return EXIT_USAGE
        name, idle_s = argv[0], float(argv[1] if len(argv) == 2 else 300)
        ssm = self._client()
        try:
            encoded = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
        except (ClientError, BotoCoreError) as exc:
            say(f"cannot read parameter {name}: {type(exc).__name__} {_code(exc)}")
            return EXIT_MISSING_PARAM
        return self._runner_session(invocation, encoded, idle_s, deadline, say)

    def _runner_session(
        self, invocation: Invocation, encoded: str, idle_s: float, deadline: float, say: Any
    ) -> int:
        """The runner's part: connect, take one job, run it, complete it (the exit code)."""
        config = parse_config(encoded)
        encoded = ""
        if config is None:
            say("error: the parameter is not a valid JIT config")
            return EXIT_CONFIG
        session = Session(config, send=_in_process)
        # Runner.Listener starting up (the boot model's `connect` delay).
        if invocation.stopped.wait(self.connect_delay(invocation.instance_id)):
            return EXIT_KILLED
        status, _ = session.call("connect")
        if status != 200:
            say(f"error: the registration was refused (HTTP {status})")
            return EXIT_REFUSED
        say(f"Connected to GitHub as {session.name}")
        idle_until = time.monotonic() + idle_s
        while True:
            status, answer = session.call("poll")
            if status == 200 and answer:
                break
            if status not in (200, 204):
                say(f"error: the service refused this runner (HTTP {status})")
                return EXIT_REFUSED
            if time.monotonic() >= idle_until:
                session.call("disconnect")
                say(f"no job assigned within {idle_s:.0f}s; stopping the runner")
                return EXIT_IDLE
            if invocation.stopped.wait(POLL_S) or time.monotonic() >= deadline:
                return EXIT_KILLED
        job = answer["job"]
        say(f"Running job: {job['name']} ({job['id']})")
        if invocation.stopped.wait(min(self.job_seconds, max(0.0, deadline - time.monotonic()))):
            return EXIT_KILLED  # the instance died mid-job: nothing reports, as with SIGKILL
        if time.monotonic() >= deadline:
            return EXIT_KILLED
        status, _ = session.call("complete", job_id=job["id"], conclusion="success")
        say(f"Job {job['name']} completed (HTTP {status})")
        return 0 if status == 200 else EXIT_REFUSED


def _in_process(url: str, body: bytes) -> tuple[int, bytes] | None:
    """The runner's POST served by the simulator in this thread (devstack/loopback.py)."""
    answer = loopback.send(url, "POST", [("Content-Type", "application/json")], body)
    return None if answer is None else (answer.status, answer.body)


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""
