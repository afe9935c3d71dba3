"""The SSM agent shim: runs the real runner_scripts/start-runner.sh for each RunCommand invocation.

Moto records `send_command` but runs nothing, and lists every instance of the region as a target.
The shim hooks the SendCommand calls of a boto3 client (the Lambdas' `ssm` client): before the call
it plays the agent's availability (`InvalidInstanceId` until an instance has booted; the
`ssm-offline` fault makes some instances come online late), after the call it takes the command's
own `InstanceIds` and runs start-runner.sh for each in a sandbox directory (a copy of the simulated
runner as `RUNNER_DIR`, the fake `aws` first on `PATH`). The exit status becomes the command's
status, reported as the EventBridge event SSM sends.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

ROOT = Path(__file__).resolve().parents[1]
START_RUNNER = ROOT / "runner_scripts" / "start-runner.sh"
FAKE_RUNNER = Path(__file__).with_name("fake_runner")
FAKE_BIN = Path(__file__).with_name("bin")
ACCOUNT = "123456789012"


@dataclass
class _Http:
    status_code: int
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Result:
    returncode: int
    output: str


@dataclass
class Sandbox:
    """One instance's disk: a runner directory with the simulated runner; start-runner.sh's env."""

    root: Path
    instance_id: str
    process: subprocess.Popen[str] | None = None

    @property
    def runner_dir(self) -> Path:
        return self.root / "actions-runner"

    @classmethod
    def create(cls, base: Path, instance_id: str, *, job_seconds: float) -> Sandbox:
        root = base / instance_id
        shutil.copytree(FAKE_RUNNER, root / "actions-runner", dirs_exist_ok=True)
        settings = {"job_seconds": job_seconds, "poll_s": 0.2}
        (root / "actions-runner" / ".runner-sim.json").write_text(json.dumps(settings))
        return cls(root, instance_id)

    @staticmethod
    def base_env() -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            PATH=f"{FAKE_BIN}{os.pathsep}{env.get('PATH', '')}",
            DEVSTACK_PYTHON=sys.executable,
            PYTHONPATH=str(ROOT),
            # RunCommand runs as root and the script drops to RUNNER_USER; here: whoever we are.
            RUNNER_USER=getpass.getuser(),
            JITRUNNERS_POLL_S="0.2",
            JITRUNNERS_STOP_GRACE_S="2",
            JITRUNNERS_ENV_FILE=os.devnull,
        )
        return env

    def start(self, args: list[str]) -> subprocess.Popen[str]:
        env = self.base_env()
        env["RUNNER_DIR"] = str(self.runner_dir)
        env["TMPDIR"] = str(self.root)
        self.process = subprocess.Popen(
            ["bash", str(START_RUNNER), *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: an interruption kills it all
        )
        return self.process

    def run(self, args: list[str], *, timeout_s: float) -> Result:
        process = self.start(args)
        try:
            output, _ = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            output, _ = process.communicate()
            return Result(-9, output)
        return Result(process.returncode, output)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)


def command_event(instance_id: str, command_id: str, status: str, region: str) -> dict[str, Any]:
    """`EC2 Command Invocation Status-change Notification`, as SSM sends it to EventBridge."""
    now = datetime.now(UTC)
    return {
        "version": "0",
        "id": f"devstack-{command_id[:8]}-{instance_id}",
        "detail-type": "EC2 Command Invocation Status-change Notification",
        "source": "aws.ssm",
        "account": ACCOUNT,
        "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:ec2:{region}:{ACCOUNT}:instance/{instance_id}"],
        "detail": {
            "command-id": command_id,
            "document-name": "AWS-RunShellScript",
            "instance-id": instance_id,
            "requested-date-time": now.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "status": status,
        },
    }


@dataclass
class Invocation:
    command_id: str
    instance_id: str
    sandbox: Sandbox | None  # None for the in-process agent (devstack/inline_agent.py)
    status: str = "InProgress"
    returncode: int | None = None
    output: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    stopped: threading.Event = field(default_factory=threading.Event)  # the instance is gone

    def end(self) -> None:
        """The instance died with the command running: no agent is left to report it."""
        self.status = "Interrupted"
        self.stopped.set()
        if self.sandbox is not None:
            self.sandbox.kill()


class AgentShim:
    """Plays the SSM agent of every instance for the SendCommand calls of hooked clients."""

    def __init__(
        self,
        base_dir: Path,
        *,
        on_event: Callable[[dict[str, Any]], None],
        launch_time: Callable[[str], float | None],
        job_seconds: float = 1.0,
        boot_s: float = 0.5,
        ssm_offline: float = 0.0,
        offline_s: float = 4.0,
        seed: int = 0,
        region: str = "eu-west-1",
        log: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.base_dir = base_dir
        self.on_event = on_event
        self.launch_time = launch_time
        self.job_seconds = job_seconds
        self.boot_s = boot_s
        self.ssm_offline = ssm_offline
        self.offline_s = offline_s
        self.region = region
        self.log = log
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._late: dict[str, bool] = {}
        self.invocations: dict[tuple[str, str], Invocation] = {}
        self.commands: list[dict[str, Any]] = []  # every command's parameters (secrets scan)
        self.counters: dict[str, int] = {"agent_not_ready": 0, "invocations": 0}
        self._threads: list[threading.Thread] = []

    def attach(self, ssm_client: Any) -> None:
        events = ssm_client.meta.events
        events.register("before-parameter-build.ssm.SendCommand", self._before_send)
        events.register("after-call.ssm.SendCommand", self._after_send)
        events.register("before-call.ssm.GetCommandInvocation", self._invocation_status)

    # ---- the agent comes online some time after boot
    def online(self, instance_id: str) -> bool:
        launched = self.launch_time(instance_id)
        if launched is None:
            return False
        with self._lock:
            late = self._late.setdefault(instance_id, self._rng.random() < self.ssm_offline)
        ready_at = launched + self.boot_s + (self.offline_s if late else 0.0)
        return time.time() >= ready_at

    def _before_send(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        ids = list(params.get("InstanceIds") or [])
        offline = [i for i in ids if not self.online(i)]
        if offline:
            with self._lock:
                self.counters["agent_not_ready"] += 1
            raise ClientError(
                {
                    "Error": {
                        "Code": "InvalidInstanceId",
                        "Message": f"Instances [[{', '.join(offline)}]] not in a valid state "
                        "for account 123456789012",
                    }
                },
                "SendCommand",
            )
        context["devstack_targets"] = ids
        context["devstack_parameters"] = dict(params.get("Parameters") or {})

    def _after_send(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        command = parsed.get("Command") or {}
        command_id = command.get("CommandId")
        if not command_id:
            return
        parameters = context.get("devstack_parameters", {})
        with self._lock:
            self.commands.append({"CommandId": command_id, "Parameters": parameters})
        for instance_id in context.get("devstack_targets", []):
            self.run_invocation(command_id, instance_id, parameters)

    def _invocation_status(self, params: dict[str, Any], **_: Any) -> Any:
        """GetCommandInvocation from the agent's own state (moto says Success at once).

        An invocation whose instance died has no agent left to report: it stays InProgress (SSM
        would call it TimedOut once its execution timeout passed).
        """
        body = params.get("body") or {}
        if isinstance(body, bytes):
            body = json.loads(body or b"{}")
        key = (body.get("CommandId", ""), body.get("InstanceId", ""))
        with self._lock:
            invocation = self.invocations.get(key)
        if invocation is None:
            error = {"Code": "InvocationDoesNotExist", "Message": ""}
            return _Http(400), {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}
        status = "InProgress" if invocation.status == "Interrupted" else invocation.status
        return _Http(200), {
            "CommandId": key[0],
            "InstanceId": key[1],
            "DocumentName": "AWS-RunShellScript",
            "Status": status,
            "StatusDetails": status,
            "ResponseCode": -1 if invocation.returncode is None else invocation.returncode,
            "ResponseMetadata": {"HTTPStatusCode": 200},
        }

    # ---- one invocation: start-runner.sh in the instance's sandbox
    def run_invocation(self, command_id: str, instance_id: str, parameters: dict[str, Any]) -> None:
        line = (parameters.get("commands") or [""])[0]
        argv = shlex.split(line)[1:]  # the script path is the instance's; the args are the contract
        timeout_s = float((parameters.get("executionTimeout") or ["3600"])[0])
        sandbox = self._sandbox(instance_id)
        invocation = Invocation(command_id, instance_id, sandbox, parameters=parameters)
        with self._lock:
            self.invocations[(command_id, instance_id)] = invocation
            self.counters["invocations"] += 1
        thread = threading.Thread(target=self._run, args=(invocation, argv, timeout_s), daemon=True)
        self._threads.append(thread)
        thread.start()

    def _sandbox(self, instance_id: str) -> Sandbox | None:
        return Sandbox.create(self.base_dir, instance_id, job_seconds=self.job_seconds)

    def _execute(self, invocation: Invocation, argv: list[str], timeout_s: float) -> Result:
        assert invocation.sandbox is not None
        return invocation.sandbox.run(argv, timeout_s=timeout_s)

    def _run(self, invocation: Invocation, argv: list[str], timeout_s: float) -> None:
        self.log(f"agent {invocation.instance_id}: start-runner.sh {' '.join(argv)}")
        result = self._execute(invocation, argv, timeout_s)
        invocation.returncode, invocation.output = result.returncode, result.output
        if invocation.status == "Interrupted":
            return  # the instance died: no agent is left to report anything
        invocation.status = {0: "Success", -9: "TimedOut"}.get(result.returncode, "Failed")
        self.log(f"agent {invocation.instance_id}: exit {result.returncode} -> {invocation.status}")
        self.on_event(
            command_event(
                invocation.instance_id, invocation.command_id, invocation.status, self.region
            )
        )

    def kill_instance(self, instance_id: str) -> bool:
        """The instance is gone (terminated or interrupted): its processes die with it."""
        killed = False
        with self._lock:
            running = [i for i in self.invocations.values() if i.instance_id == instance_id]
        for invocation in running:
            if invocation.status == "InProgress":
                invocation.end()
                killed = True
        return killed

    def busy(self) -> bool:
        with self._lock:
            return any(i.status == "InProgress" for i in self.invocations.values())

    def outputs(self) -> list[str]:
        with self._lock:
            return [i.output for i in self.invocations.values()]

    def stop(self) -> None:
        with self._lock:
            running = list(self.invocations.values())
        for invocation in running:
            if invocation.status == "InProgress":
                invocation.end()
        for thread in self._threads:
            thread.join(timeout=5)
