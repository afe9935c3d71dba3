"""One emulated EC2 instance: a root view of its own over the host's, which is never modified.

`Instance.boot()` starts devstack/instance/init.sh as PID 1 of new mount and PID namespaces
(`unshare --mount --propagation private --pid --fork`; as a non-root user with `--user
--map-root-user` added, see `namespace_flags`). init.sh lays an overlay over /etc, /opt, /var,
/home, /root, /srv and /usr/local whose upper layer is `<sandbox>/upper/<dir>`, so `useradd`,
/opt/jitrunners, /var/log/jitrunners and /etc/jitrunners land in the sandbox, with a private /tmp
and /run. Every process of the instance then enters those namespaces (`nsenter`), as root, with
`PATH` starting at the instance-OS stand-ins of devstack/instance/bin (`shutdown`, `systemctl`,
`iptables`, `curl` for IMDS: what must not touch the host's kernel, network or services) and
devstack/bin (the `aws` CLI against moto). Killing PID 1 ends the instance and all its processes.

What is real: bash, coreutils, useradd, runuser, tar, sha256sum, the user data, bootstrap.sh and
start-runner.sh as written. What is not: the kernel (shared, so `uname -m` is the host's), the
network (loopback of the host: moto, the GitHub simulator, the runner mirror), systemd, the SSM
agent (devstack/agent.py), cloud-init (`run_user_data` does its one relevant step).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
INIT = HERE / "instance" / "init.sh"
INSTANCE_BIN = HERE / "instance" / "bin"
FAKE_BIN = HERE / "bin"
OVERLAID = ("/etc", "/opt", "/var", "/home", "/root", "/srv", "/usr/local")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The instance's own /tmp hides the host's (init.sh), not a temporary file of ours.
INSTANCE_TMP = Path("/tmp")  # noqa: S108
STATE = "var/lib/devstack"  # the stand-ins' records, on the instance's disk
USER_DATA_PATH = "/var/lib/cloud/instance/scripts/part-001"  # where cloud-init puts it

CLOUD_INIT_LOG = "/var/log/cloud-init-output.log"


class SandboxError(RuntimeError):
    """The instance's namespaces could not be set up (message says why)."""


def namespace_flags() -> list[str]:
    """As root: new mount and PID namespaces. Otherwise a user namespace that maps us to root
    too; then only our own uid exists inside, so bootstrap's `useradd` works but its `chown` to
    the runner user and start-runner.sh's `runuser` fail (no second uid is mapped)."""
    flags = ["--mount", "--propagation", "private", "--pid", "--fork", "--kill-child"]
    if os.geteuid() != 0:
        flags = ["--user", "--map-root-user", *flags]
    return flags


def kept_visible() -> list[str]:
    """Host directories the instance must still see under its private /tmp: the checkout (the
    `aws` CLI, the stand-ins) and the Python running the stack, when a clone lives in /tmp."""
    keep = {p for p in (ROOT.resolve(), Path(sys.prefix).resolve()) if INSTANCE_TMP in p.parents}
    return sorted(str(p) for p in keep if not any(k in p.parents for k in keep))


def instance_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """What processes on the instance start with (systemd's PATH, the stand-ins first), plus the
    stack's plumbing: where AWS is (moto) and the Python the fake `aws` CLI and runner use."""
    env = {
        "PATH": f"{INSTANCE_BIN}:{FAKE_BIN}:{SYSTEM_PATH}",
        "LANG": "C.UTF-8",
        "DEVSTACK_PYTHON": sys.executable,
    }
    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        if key in os.environ:
            env[key] = os.environ[key]
    env.update(extra or {})
    return env


@dataclass
class Instance:
    """The sandbox directory of one instance and the PID 1 of its namespaces."""

    root: Path
    instance_id: str
    region: str = "eu-west-1"
    zone: str = ""
    init: subprocess.Popen[str] | None = None
    powered_off: bool = False  # PID 1 ended from inside (shutdown), not by kill()
    # The instance profile EC2 started it with: IMDS then serves its role's credentials.
    instance_profile_arn: str = ""
    role_name: str = ""
    _killed: bool = field(default=False, repr=False)

    @classmethod
    def create(
        cls,
        base: Path,
        instance_id: str,
        *,
        region: str,
        zone: str = "",
        instance_profile_arn: str = "",
        role_name: str = "",
    ) -> Instance:
        root = (base / instance_id).resolve()
        for top in OVERLAID:
            if root == Path(top) or Path(top) in root.parents:
                raise SandboxError(f"the sandbox {root} must not be under {top}: it is overlaid")
        root.mkdir(parents=True, exist_ok=True)
        instance = cls(
            root,
            instance_id,
            region=region,
            zone=zone or f"{region}a",
            instance_profile_arn=instance_profile_arn,
            role_name=role_name,
        )
        instance._write_metadata()
        return instance

    def _write_metadata(self) -> None:
        """The IMDS tree init.sh binds at /run/devstack/imds (IMDSv2: tokens required)."""
        imds = self.root / "imds"
        data = imds / "latest" / "meta-data"
        (data / "placement").mkdir(parents=True, exist_ok=True)
        (imds / "token").write_text(secrets.token_urlsafe(24))
        (imds / "http-tokens-required").write_text("")
        (data / "instance-id").write_text(self.instance_id)
        (data / "placement" / "region").write_text(self.region)
        (data / "placement" / "availability-zone").write_text(self.zone)
        if self.instance_profile_arn and self.role_name:
            # What IMDS serves an instance started with a profile: iam/info and the role's
            # temporary credentials (stand-ins: moto accepts any key; the IAM layer decides).
            iam = data / "iam"
            (iam / "security-credentials").mkdir(parents=True, exist_ok=True)
            (iam / "info").write_text(
                json.dumps({"Code": "Success", "InstanceProfileArn": self.instance_profile_arn})
            )
            (iam / "security-credentials" / self.role_name).write_text(
                json.dumps(
                    {
                        "Code": "Success",
                        "Type": "AWS-HMAC",
                        "AccessKeyId": "ASIADEVSTACK" + self.instance_id[-8:].upper(),
                        "SecretAccessKey": secrets.token_urlsafe(30),
                        "Token": secrets.token_urlsafe(60),
                    }
                )
            )

    # ---- the instance's life
    def boot(self) -> Instance:
        """Start PID 1 (init.sh) and wait for its mounts."""
        self.init = subprocess.Popen(
            ["unshare", *namespace_flags(), "bash", str(INIT), str(self.root), *kept_visible()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self.init.stdout is not None
        line = self.init.stdout.readline().strip()
        if line != "ready":
            self.kill()
            _, err = self.init.communicate()
            raise SandboxError(f"instance {self.instance_id} did not boot: {err.strip()[-2000:]}")
        return self

    def restart(self) -> Instance:
        """Boot again after a stop (kill()): a new PID 1 over the same disk (the upper layers),
        with a fresh /run and /tmp as a reboot gives."""
        self._killed = False
        self.powered_off = False
        shutil.rmtree(self.root / "tmp", ignore_errors=True)
        return self.boot()

    @property
    def pid(self) -> int:
        """The host's pid of `unshare`; PID 1 of the instance is its only child."""
        assert self.init is not None
        return self.init.pid

    def running(self) -> bool:
        return self.init is not None and self.init.poll() is None

    def wait_stopped(self, timeout_s: float | None = None) -> bool:
        """Block until PID 1 ends; True when it ended from inside (shutdown/poweroff)."""
        assert self.init is not None
        self.init.wait(timeout=timeout_s)
        self.powered_off = not self._killed
        return self.powered_off

    def kill(self) -> None:
        """The instance is gone (terminated, reclaimed): every process in it dies at once."""
        self._killed = True
        if self.running():
            assert self.init is not None
            kill_group(self.init)

    def remove(self) -> None:
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    # ---- processes on the instance
    def _child_pid(self) -> int:
        """PID 1 of the instance as the host sees it (nsenter's target)."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        if not children:
            raise SandboxError(f"instance {self.instance_id} is not running")
        return int(children[0])

    def popen(
        self,
        argv: list[str],
        *,
        env: dict[str, str],
        cwd: str = "/",
        stdin: int | None = subprocess.DEVNULL,
    ) -> subprocess.Popen[str]:
        """Start argv on the instance as root (in its own process group on the host side)."""
        flags = ["--mount", "--pid"]
        if os.geteuid() != 0:
            flags = ["--user", "--preserve-credentials", *flags]
        return subprocess.Popen(
            ["nsenter", "--target", str(self._child_pid()), *flags, f"--wd={cwd}", "--", *argv],
            env=env,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def run(
        self, argv: list[str], *, env: dict[str, str] | None = None, timeout_s: float = 120
    ) -> subprocess.CompletedProcess[str]:
        process = self.popen(argv, env=env or instance_env())
        _, output = wait_or_kill(process, timeout_s)
        return subprocess.CompletedProcess(argv, process.returncode, output, "")

    def install_and_run(
        self,
        path: str,
        content: str,
        *,
        env: dict[str, str],
        log: str = "",
    ) -> subprocess.Popen[str]:
        """Write `content` to `path` on the instance and execute it there from its directory,
        stdin /dev/null, output to `log` on the instance if given (else the pipe): how cloud-init
        runs user data and the SSM agent a document's script."""
        script = 'install -D -m 0700 /dev/stdin "$1" && cd "$(dirname "$1")" || exit 1\n'
        if log:
            script += 'install -D -m 0600 /dev/null "$2" && exec "$1" </dev/null >>"$2" 2>&1\n'
        else:
            script += 'exec "$1" </dev/null\n'
        process = self.popen(
            ["/bin/sh", "-c", script, "sh", path, log], env=env, stdin=subprocess.PIPE
        )
        assert process.stdin is not None
        try:
            process.stdin.write(content)
            process.stdin.close()
        except BrokenPipeError:
            # The shell ended before it read the script: the instance ended under it (its
            # processes killed). Its exit status says so to whoever waits for it.
            with contextlib.suppress(OSError):
                process.stdin.close()
        process.stdin = None  # written: communicate() must not touch it again
        return process

    def run_user_data(self, user_data: str, *, env: dict[str, str], timeout_s: float) -> int:
        """cloud-init's part: the user data script, once, as root; output in its log. Returns
        the exit status (-9 if it ran past timeout_s or the instance ended under it)."""
        process = self.install_and_run(USER_DATA_PATH, user_data, env=env, log=CLOUD_INIT_LOG)
        timed_out, _ = wait_or_kill(process, timeout_s)
        return -9 if timed_out else process.returncode

    # ---- the instance's disk, as the host sees the upper layers
    def path(self, instance_path: str) -> Path:
        """Where a file the instance wrote under an overlaid directory is on the host."""
        parts = Path(instance_path).parts[1:]
        for top in sorted(OVERLAID, key=len, reverse=True):
            top_parts = Path(top).parts[1:]
            if tuple(parts[: len(top_parts)]) == top_parts:
                name = "-".join(top_parts)
                return self.root / "upper" / name / Path(*parts[len(top_parts) :])
        if parts and parts[0] == "tmp":
            return self.root / Path(*parts)
        raise ValueError(f"{instance_path} is not on the instance's own disk")

    def read(self, instance_path: str) -> str:
        found = self.path(instance_path)
        return found.read_text(errors="replace") if found.exists() else ""

    def state(self, name: str) -> str:
        """A stand-in's record (devstack/instance/bin), e.g. power.log, iptables.filter.rules."""
        return self.read(f"/{STATE}/{name}")


def wait_or_kill(process: subprocess.Popen[str], timeout_s: float) -> tuple[bool, str]:
    """(timed out, output): the process's output, its whole group killed past `timeout_s`."""
    try:
        output, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill_group(process)
        output, _ = process.communicate()
        return True, output
    return False, output


def kill_group(process: subprocess.Popen[str]) -> None:
    """SIGKILL a process started in a session of its own, with everything it started."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
