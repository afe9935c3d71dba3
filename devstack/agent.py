"""The SSM agent shim: boots each instance from its user data and runs RunCommand documents on it.

Moto records launches and `send_command` but runs nothing, and lists every instance of the region
as a command target. The shim does what EC2 and the SSM agent would:

* boot (`boot`, when the stack first sees an instance): an instance sandbox (devstack/sandbox.py:
  its own root view over the host, which is never modified), the user data of the instance's launch
  template read back from moto (DescribeLaunchTemplateVersions, base64) and run as cloud-init runs
  it; bootstrap.sh downloads and checks the runner and enables the SSM agent unit. The agent is
  online once that unit was started and the boot model's `cold` delay after launch
  (devstack/boot_model.py, drawn per instance; without a model, `boot_s`); the `ssm-offline`
  fault makes some come online `offline_s` later, and `slow-boot` some just before and some just
  after their template's start timeout; until then SendCommand answers `InvalidInstanceId`. An
  instance that powers itself off (a failing bootstrap's `shutdown -h now`) is reported to
  `on_poweroff`;
* stop and start (the StopInstances and StartInstances calls of a hooked EC2 client, `attach_ec2`;
  moto only flips the state): a stopped instance's processes die with it (its running invocation
  ends unreported, the sandbox's PID 1 is killed, its disk kept) and its agent is offline, so
  SendCommand answers `InvalidInstanceId` as AWS does. StartInstances boots the sandbox again (no
  user data: cloud-init runs it once per instance) and the agent is online the model's `stopped`
  delay later;
* RunCommand (the SendCommand calls of a hooked boto3 client, the Lambdas' `ssm`): for each of the
  command's own `InstanceIds`, the AWS-RunShellScript `commands` joined into one script, run as
  root on the instance from its orchestration directory with the agent's environment
  (`AWS_SSM_INSTANCE_ID`, `AWS_SSM_REGION_NAME`), killed after `executionTimeout`. The exit status
  becomes the command's status (Success, Failed, TimedOut), reported as the EventBridge event SSM
  sends. The runner it starts connects the model's `connect` delay later (the fake runner sleeps
  `DEVSTACK_RUNNER_CONNECT_S` first).

Per instance it records what the latency benchmark reads: `online_at` (when the agent last came
online: the moment its delay ended), `first_command_at`, `command_gap_s` (that first command's
time after the agent came online) and `draws` (the model's emulated delays for it).
"""

from __future__ import annotations

import base64
import json
import random
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from devstack.boot_model import BootModel
from devstack.sandbox import Instance, SandboxError, instance_env, kill_group, wait_or_kill

ACCOUNT = "123456789012"
DOCUMENT = "AWS-RunShellScript"
# The agent unit's environment on the stack's instances (a systemd drop-in on a real one would set
# it): start-runner.sh polls its runner every 0.2 s instead of 5 s, as jobs here last a second.
AGENT_UNIT_ENV = {"JITRUNNERS_POLL_S": "0.2", "JITRUNNERS_STOP_GRACE_S": "2"}
USER_DATA_TIMEOUT_S = 300


@dataclass
class _Http:
    status_code: int
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Result:
    returncode: int
    output: str


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
            "document-name": DOCUMENT,
            "instance-id": instance_id,
            "requested-date-time": now.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "status": status,
        },
    }


@dataclass
class Invocation:
    command_id: str
    instance_id: str
    instance: Instance | None  # None for the in-process agent (devstack/inline_agent.py)
    status: str = "InProgress"
    returncode: int | None = None
    output: str = ""
    ended_at: float | None = None  # time.time() when the command ended, as SSM reports it
    parameters: dict[str, Any] = field(default_factory=dict)
    stopped: threading.Event = field(default_factory=threading.Event)  # the instance is gone
    process: subprocess.Popen[str] | None = None

    def end(self) -> None:
        """The instance died with the command running: no agent is left to report it."""
        self.status = "Interrupted"
        self.stopped.set()
        if self.process is not None and self.process.poll() is None:
            kill_group(self.process)


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
        ec2: Any = None,
        prefix: str = "jitrunners",
        on_poweroff: Callable[[str], None] = lambda instance_id: None,
        slow_boot: float = 0.0,
        start_timeout: Callable[[str], float | None] = lambda instance_id: None,
        boot_model: BootModel | None = None,
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
        self.ec2 = ec2  # where launch templates are read (moto)
        self.prefix = prefix
        self.on_poweroff = on_poweroff
        self.slow_boot = slow_boot
        self.start_timeout = start_timeout  # the instance's template's start_timeout_s
        self.boot_model = boot_model  # None: online `boot_s` after launch, the runner at once
        self._slow_rng = random.Random(f"{seed}/slow-boot")
        self._slow: dict[str, float] = {}  # instance id -> seconds after launch it is online
        self._iam: Any = None  # read once a booted instance has a profile
        self.instances: dict[str, Instance] = {}
        self.boots: dict[str, int | None] = {}  # user data exit status (None: still running)
        self.boot_seconds: dict[str, float] = {}  # launch seen -> SSM agent unit started
        self.first_command_at: dict[str, float] = {}  # instance id -> its first command (time())
        self.online_at: dict[str, float] = {}  # instance id -> its agent last came online
        self.command_gap_s: dict[str, float] = {}  # first command's time after online_at
        self.draws: dict[str, dict[str, float]] = {}  # instance id -> the model's delays (emulated)
        self._ordinal: dict[str, int] = {}  # instance id -> n-th instance seen (the draws' key)
        self._commands_seen: dict[str, int] = {}  # instance id -> commands received
        self._stopped: set[str] = set()  # stopped by StopInstances, not started since
        self._started_at: dict[str, float] = {}  # instance id -> its last StartInstances
        self._starts: dict[str, int] = {}  # instance id -> StartInstances seen
        self.power_log: dict[str, list[tuple[str, float]]] = {}  # ("stop"|"start", time())
        self._start_delay: dict[str, float] = {}  # ... and the real seconds its agent then takes
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._late: dict[str, bool] = {}
        self.invocations: dict[tuple[str, str], Invocation] = {}
        # The same, by instance: what kill_instance ends (a scan of every invocation of a burst
        # per instance ended grew with the square of the burst).
        self._invocations_of: defaultdict[str, list[Invocation]] = defaultdict(list)
        self.commands: list[dict[str, Any]] = []  # every command's parameters (secrets scan)
        self.counters: dict[str, int] = {
            "agent_not_ready": 0,
            "invocations": 0,
            "slow_boot_before": 0,
            "slow_boot_after": 0,
            "stops": 0,
            "starts": 0,
        }
        self._threads: list[threading.Thread] = []
        self._shut_down = False  # stop() ran: an instance that finishes booting is killed at once

    def attach(self, ssm_client: Any) -> None:
        events = ssm_client.meta.events
        events.register("before-parameter-build.ssm.SendCommand", self._before_send)
        events.register("after-call.ssm.SendCommand", self._after_send)
        events.register("before-call.ssm.GetCommandInvocation", self._invocation_status)
        events.register("before-call.ssm.DescribeInstanceInformation", self._instance_information)

    def attach_ec2(self, ec2_client: Any) -> None:
        """Stop and start the instances a hooked client's StopInstances/StartInstances name."""
        events = ec2_client.meta.events
        events.register("after-call.ec2.StopInstances", self._after_stop)
        events.register("after-call.ec2.StartInstances", self._after_start)

    def _after_stop(self, parsed: dict[str, Any], **_: Any) -> None:
        for item in parsed.get("StoppingInstances") or []:
            self.stop_instance(item["InstanceId"])

    def _after_start(self, parsed: dict[str, Any], **_: Any) -> None:
        for item in parsed.get("StartingInstances") or []:
            self.start_instance(item["InstanceId"])

    # ---- the model's delays, drawn per instance in the order the stack saw them
    def _key(self, instance_id: str) -> int:
        with self._lock:
            return self._ordinal.setdefault(instance_id, len(self._ordinal) + 1)

    def _cold_delay(self, instance_id: str) -> float:
        """Real seconds from launch to the agent online, at the earliest."""
        if self.boot_model is None:
            return self.boot_s
        with self._lock:
            drawn = self.draws.get(instance_id, {}).get("cold")
        if drawn is None:
            drawn = self.boot_model.draw("cold", self._key(instance_id))
            with self._lock:
                self.draws.setdefault(instance_id, {})["cold"] = drawn
        return self.boot_model.real(drawn)

    def connect_delay(self, instance_id: str) -> float:
        """Real seconds the runner of the instance's next command takes to connect."""
        if self.boot_model is None:
            return 0.0
        key = self._key(instance_id)
        with self._lock:
            n = self._commands_seen[instance_id] = self._commands_seen.get(instance_id, 0) + 1
        drawn = self.boot_model.draw("connect", f"{key}/{n}")
        with self._lock:
            self.draws.setdefault(instance_id, {}).setdefault("connect", drawn)
        return self.boot_model.real(drawn)

    # ---- stop and start
    def stop_instance(self, instance_id: str) -> None:
        """EC2 stops the instance: its processes die and its agent goes offline."""
        with self._lock:
            if instance_id in self._stopped:
                return
            self._stopped.add(instance_id)
            self._started_at.pop(instance_id, None)
            self.counters["stops"] += 1
            self.power_log.setdefault(instance_id, []).append(("stop", time.time()))
        self.log(f"agent {instance_id}: stopped")
        self.kill_instance(instance_id)

    def start_instance(self, instance_id: str) -> None:
        """EC2 starts a stopped instance: it boots again (no user data) and its agent is
        online the model's `stopped` delay later."""
        key = self._key(instance_id)
        with self._lock:
            if instance_id not in self._stopped:
                return
            self._stopped.discard(instance_id)
            self.counters["starts"] += 1
            n = self._starts[instance_id] = self._starts.get(instance_id, 0) + 1
        drawn = self.boot_model.draw("stopped", f"{key}/{n}") if self.boot_model else None
        with self._lock:
            if drawn is not None:
                self.draws.setdefault(instance_id, {})["stopped"] = drawn
            self._start_delay[instance_id] = (
                self.boot_s
                if drawn is None or self.boot_model is None
                else self.boot_model.real(drawn)
            )
            self._started_at[instance_id] = time.time()
            self.power_log.setdefault(instance_id, []).append(("start", time.time()))
        self.log(f"agent {instance_id}: started")
        self._restart(instance_id)

    def _restart(self, instance_id: str) -> None:
        """Boot the stopped sandbox again, its disk as it was."""
        with self._lock:
            instance = self.instances.get(instance_id)
        if instance is None:
            return
        try:
            instance.restart()
        except (SandboxError, OSError) as exc:
            self.log(f"agent {instance_id}: cannot start again: {exc}")
            return
        watcher = threading.Thread(
            target=self._watch_power, args=(instance,), name=f"power-{instance_id}", daemon=True
        )
        self._threads.append(watcher)
        watcher.start()

    def stopped(self, instance_id: str) -> bool:
        with self._lock:
            return instance_id in self._stopped

    # ---- boot: the user data of the instance's launch template, run in its sandbox
    def boot(self, instance_id: str) -> None:
        """EC2 starts the instance: boot it in the background (the stack calls this once)."""
        self._key(instance_id)
        with self._lock:
            if instance_id in self.boots:
                return
            self.boots[instance_id] = None
        thread = threading.Thread(
            target=self._boot, args=(instance_id,), name=f"boot-{instance_id}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def user_data(self, instance: dict[str, Any]) -> str:
        """The user data EC2 hands the instance (as DescribeInstances lists it): its launch
        template's default version's (the module's name for the template in the tag scale-up
        sets), or the instance's own."""
        tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
        encoded = ""
        if "jitrunners:template" in tags:
            versions = self.ec2.describe_launch_template_versions(
                LaunchTemplateName=f"{self.prefix}-{tags['jitrunners:template']}",
                Versions=["$Default"],
            )["LaunchTemplateVersions"]
            encoded = versions[0]["LaunchTemplateData"].get("UserData", "")
        else:
            attribute = self.ec2.describe_instance_attribute(
                InstanceId=instance["InstanceId"], Attribute="userData"
            )
            encoded = attribute.get("UserData", {}).get("Value", "")
        return base64.b64decode(encoded).decode() if encoded else ""

    def instance_profile(self, instance: dict[str, Any]) -> tuple[str, str]:
        """The instance profile EC2 started the instance with, and its role's name."""
        arn = (instance.get("IamInstanceProfile") or {}).get("Arn", "")
        if not arn:
            return "", ""
        with self._lock:
            if self._iam is None:
                import boto3

                self._iam = boto3.session.Session().client(
                    "iam", endpoint_url=self.ec2.meta.endpoint_url, region_name=self.region
                )
        profile = self._iam.get_instance_profile(InstanceProfileName=arn.rsplit("/", 1)[-1])
        roles = profile["InstanceProfile"].get("Roles") or []
        return arn, (roles[0]["RoleName"] if roles else "")

    def _boot(self, instance_id: str) -> None:
        started = time.time()
        try:
            [reservation] = self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
            described = reservation["Instances"][0]
            script = self.user_data(described)
            profile_arn, role_name = self.instance_profile(described)
            instance = Instance.create(
                self.base_dir,
                instance_id,
                region=self.region,
                instance_profile_arn=profile_arn,
                role_name=role_name,
            ).boot()
        except (ClientError, BotoCoreError, SandboxError, OSError) as exc:
            self.log(f"agent {instance_id}: cannot boot: {exc}")
            with self._lock:
                self.boots[instance_id] = -1
            return
        with self._lock:
            stopped = self._shut_down
            if not stopped:
                self.instances[instance_id] = instance
        if stopped:
            # stop() took its list of instances to kill while this one booted: its sandbox
            # would outlive the agent (seen: one alive an hour after a test run).
            instance.kill()
            return
        watcher = threading.Thread(
            target=self._watch_power, args=(instance,), name=f"power-{instance_id}", daemon=True
        )
        self._threads.append(watcher)
        watcher.start()
        status = instance.run_user_data(script, env=instance_env(), timeout_s=USER_DATA_TIMEOUT_S)
        with self._lock:
            self.boots[instance_id] = status
        agent_started = self._agent_started(instance_id)
        if agent_started is not None:
            self.boot_seconds[instance_id] = agent_started - started
        self.log(f"agent {instance_id}: user data exit {status}")

    def _watch_power(self, instance: Instance) -> None:
        if instance.wait_stopped():
            self.log(f"agent {instance.instance_id}: powered off")
            self.kill_instance(instance.instance_id)
            self.on_poweroff(instance.instance_id)

    def _agent_started(self, instance_id: str) -> float | None:
        """When the instance's SSM agent unit was started (its systemctl stand-in's record)."""
        with self._lock:
            instance = self.instances.get(instance_id)
        if instance is None or not instance.running():
            return None
        stamp = instance.state("ssm-agent.started").strip()
        return float(stamp) if stamp else None

    # ---- the agent comes online once booted, some time after launch (or after a start)
    def online(self, instance_id: str) -> bool:
        moment = self._online_moment(instance_id)
        if moment is None or time.time() < moment:
            return False
        with self._lock:
            self.online_at[instance_id] = moment
        return True

    def _online_moment(self, instance_id: str) -> float | None:
        """When the instance's agent is (or was) online in its current boot; None: not yet
        known (still booting, or stopped)."""
        with self._lock:
            if instance_id in self._stopped:
                return None
            started = self._started_at.get(instance_id)
            delay = self._start_delay.get(instance_id, 0.0)
        agent_started = self._agent_started(instance_id)
        if agent_started is None:
            return None
        if started is not None:  # started again after a stop: the unit starts at boot
            return max(started + delay, agent_started)
        launched = self.launch_time(instance_id)
        if launched is None:
            return None
        cold = self._cold_delay(instance_id)
        with self._lock:
            late = self._late.setdefault(instance_id, self._rng.random() < self.ssm_offline)
            slow = self._slow.get(instance_id)
            if slow is None:
                slow = self._slow[instance_id] = self._draw_slow_boot(instance_id)
        ready_at = max(launched + cold, agent_started) + (self.offline_s if late else 0.0)
        return max(ready_at, launched + slow)

    def _draw_slow_boot(self, instance_id: str) -> float:
        """`slow-boot`: seconds after launch the agent comes online at the earliest (0: not
        slow). Half of the slow ones just before the start timeout (the start still succeeds if
        it is retried in time), half just after (the start gives up on the instance)."""
        slow, after = self._slow_rng.random(), self._slow_rng.random()
        timeout = self.start_timeout(instance_id)
        if timeout is None or slow >= self.slow_boot:
            return 0.0
        key = "slow_boot_after" if after < 0.5 else "slow_boot_before"
        self.counters[key] += 1
        return timeout + max(2.0, 0.2 * timeout) if after < 0.5 else 0.75 * timeout

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
        # SSM's ISO 8601 text with milliseconds, "" while the command runs.
        ended = "" if status == "InProgress" or invocation.ended_at is None else (
            datetime.fromtimestamp(invocation.ended_at, UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        )  # fmt: skip
        return _Http(200), {
            "CommandId": key[0],
            "InstanceId": key[1],
            "DocumentName": DOCUMENT,
            "Status": status,
            "StatusDetails": status,
            "ResponseCode": -1 if invocation.returncode is None else invocation.returncode,
            "ExecutionEndDateTime": ended,
            "ResponseMetadata": {"HTTPStatusCode": 200},
        }

    def _instance_information(self, params: dict[str, Any], **_: Any) -> Any:
        """DescribeInstanceInformation from the agents' own state (moto knows no agent): the
        instances its InstanceIds filter names whose agent is online, PingStatus Online."""
        body = params.get("body") or {}
        if isinstance(body, bytes):
            body = json.loads(body or b"{}")
        wanted: list[str] = []
        for item in body.get("Filters") or []:
            if item.get("Key") == "InstanceIds":
                wanted.extend(item.get("Values") or [])
        online = {i: self.online(i) for i in dict.fromkeys(wanted)}
        if not all(online.values()):
            with self._lock:
                self.counters["agent_not_ready"] += 1  # as for a refused SendCommand
        found = [
            {"InstanceId": i, "PingStatus": "Online", "ResourceType": "EC2Instance"}
            for i, up in online.items()
            if up
        ]
        return _Http(200), {
            "InstanceInformationList": found,
            "ResponseMetadata": {"HTTPStatusCode": 200},
        }

    # ---- one invocation: the document's commands as one script on the instance
    def run_invocation(self, command_id: str, instance_id: str, parameters: dict[str, Any]) -> None:
        timeout_s = float((parameters.get("executionTimeout") or ["3600"])[0])
        with self._lock:
            instance = self.instances.get(instance_id)
        invocation = Invocation(command_id, instance_id, instance, parameters=parameters)
        now = time.time()
        with self._lock:
            self.invocations[(command_id, instance_id)] = invocation
            self._invocations_of[instance_id].append(invocation)
            self.counters["invocations"] += 1
            if instance_id not in self.first_command_at:
                self.first_command_at[instance_id] = now
                if instance_id in self.online_at:
                    self.command_gap_s[instance_id] = now - self.online_at[instance_id]
        thread = threading.Thread(target=self._run, args=(invocation, timeout_s), daemon=True)
        self._threads.append(thread)
        thread.start()

    def _execute(self, invocation: Invocation, timeout_s: float) -> Result:
        """As the agent runs aws:runShellScript: `_script.sh` in the command's orchestration
        directory, as root, stdout and stderr captured; killed (-9) past the execution timeout."""
        instance = invocation.instance
        if instance is None or not instance.running():
            return Result(-9, "the instance is not running")
        iid = invocation.instance_id
        folder = f"/var/lib/amazon/ssm/{iid}/document/orchestration/{invocation.command_id}"
        script = "\n".join(invocation.parameters.get("commands") or []) + "\n"
        env = instance_env(
            {
                "AWS_SSM_INSTANCE_ID": iid,
                "AWS_SSM_REGION_NAME": self.region,
                **AGENT_UNIT_ENV,
                # Not on a real instance: how long the fake runner takes to connect (the model).
                "DEVSTACK_RUNNER_CONNECT_S": f"{self.connect_delay(iid):.3f}",
            }
        )
        process = instance.install_and_run(
            f"{folder}/awsrunShellScript/0.awsrunShellScript/_script.sh", script, env=env
        )
        invocation.process = process
        timed_out, output = wait_or_kill(process, timeout_s)
        return Result(-9 if timed_out else process.returncode, output)

    def _run(self, invocation: Invocation, timeout_s: float) -> None:
        commands = invocation.parameters.get("commands") or []
        self.log(f"agent {invocation.instance_id}: {DOCUMENT} {' && '.join(commands)}")
        try:
            result = self._execute(invocation, timeout_s)
        except Exception as exc:  # noqa: BLE001 - a crashed process is a failed command, as in SSM
            result = Result(1, f"the command's process failed: {exc!r}")
        invocation.returncode, invocation.output = result.returncode, result.output
        if invocation.status == "Interrupted":
            return  # the instance died: no agent is left to report anything
        invocation.ended_at = time.time()
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
            running = list(self._invocations_of.get(instance_id, ()))
            instance = self.instances.get(instance_id)
        for invocation in running:
            if invocation.status == "InProgress":
                invocation.end()
                killed = True
        if instance is not None:
            instance.kill()
        return killed

    def busy(self) -> bool:
        with self._lock:
            return any(i.status == "InProgress" for i in self.invocations.values())

    def outputs(self) -> list[str]:
        with self._lock:
            return [i.output for i in self.invocations.values()]

    def stop(self) -> None:
        with self._lock:
            self._shut_down = True
            running = list(self.invocations.values())
        for invocation in running:
            if invocation.status == "InProgress":
                invocation.end()
        with self._lock:
            instances = list(self.instances.values())
        for instance in instances:
            instance.kill()
        for thread in self._threads:
            thread.join(timeout=5)
