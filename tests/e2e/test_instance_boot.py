"""The user data terraform renders, executed as EC2 would: in an instance sandbox, as root.

Rendered by the terraform binary (devstack/tfrender.py) with the runner served from 127.0.0.1
(devstack/runner_dist.py), run in its own mount and PID namespaces (devstack/sandbox.py): the
scripts unpack, bootstrap installs the checked runner, and the host is left as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import deployment, tfrender
from devstack.aws_world import REGION, TEMPLATES_FILE
from devstack.runner_dist import RunnerDist
from devstack.sandbox import Instance, instance_env
from tests.support.waits import PATIENCE_S

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "runner_scripts"
TEMPLATE = "linux-x64"
FIXED = "base64 -d <<'B64' | gunzip >"
# bootstrap.sh's environment for a second run by hand (what the user data passes, preinstalled).
_ENV = {"RUNNER_PREINSTALLED": "true"}

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        shutil.which("terraform") is None or shutil.which("unshare") is None,
        reason="needs terraform (rendering) and unshare (the instance sandbox)",
    ),
    pytest.mark.skipif(os.geteuid() != 0, reason="the runner user needs root's namespaces"),
]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerDist]:
    runner = RunnerDist(tmp_path_factory.mktemp("dist"), job_seconds=0.1).start()
    yield runner
    runner.stop()


def user_data(dist: RunnerDist, module_dir: Path = tfrender.TERRAFORM_DIR) -> str:
    templates = json.loads(TEMPLATES_FILE.read_text())
    documents = deployment.documents(
        templates, prefix="jitrunners", region=REGION, runner=dist.tfvars(), module_dir=module_dir
    )
    return documents.user_data[TEMPLATE]


def module_with_824236b_template(base: Path) -> Path:
    """A copy of the module whose user data template has 824236b's bug: `base64 -d | gunzip >FILE
    <<'B64'` hands the here-document to gunzip, and base64 reads the script's stdin."""
    module = base / "terraform"
    module.mkdir(parents=True)
    for name in tfrender.MODULE_FILES:
        source = tfrender.TERRAFORM_DIR / name
        copy = shutil.copytree if source.is_dir() else shutil.copy
        copy(source, module / name)
    template = module / "templates" / "user-data.sh.tftpl"
    text = template.read_text()
    assert text.count(FIXED) == 2
    for target in ("bootstrap.sh", "start-runner.sh"):
        text = text.replace(
            f"{FIXED}/opt/jitrunners/src/{target}\n",
            f"base64 -d | gunzip >/opt/jitrunners/src/{target} <<'B64'\n",
        )
    template.write_text(text)
    return module


def boot(base: Path, script: str) -> tuple[Instance, int]:
    instance = Instance.create(base, "i-0123456789abcdef0", region=REGION).boot()
    status = instance.run_user_data(script, env=instance_env(), timeout_s=PATIENCE_S)
    return instance, status


def problems(instance: Instance) -> list[str]:
    """What differs from a booted runner instance (empty: all good)."""
    found = []
    for name in ("bootstrap.sh", "start-runner.sh"):
        unpacked = instance.path(f"/opt/jitrunners/src/{name}")
        if not unpacked.exists() or unpacked.read_bytes() != (SCRIPTS / name).read_bytes():
            found.append(f"/opt/jitrunners/src/{name} is not runner_scripts/{name}")
    if not instance.read("/var/log/jitrunners/bootstrap.log").rstrip().endswith("bootstrap: done"):
        found.append("bootstrap did not log done")
    if not os.access(instance.path("/opt/actions-runner/run.sh"), os.X_OK):
        found.append("no runner at /opt/actions-runner/run.sh")
    installed = instance.path("/opt/jitrunners/start-runner.sh")
    if (
        not installed.exists()
        or installed.read_bytes() != (SCRIPTS / "start-runner.sh").read_bytes()
    ):
        found.append("start-runner.sh is not at /opt/jitrunners/start-runner.sh")
    if "enable --now amazon-ssm-agent.service" not in instance.state("systemctl.log"):
        found.append("the SSM agent was not enabled")
    return found


def host_snapshot() -> dict[str, object]:
    return {
        "passwd": hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest(),
        "root_mode": stat.S_IMODE(os.stat("/root").st_mode),
        "opt_jitrunners": Path("/opt/jitrunners").exists(),
        "etc_jitrunners": Path("/etc/jitrunners").exists(),
        "var_log_jitrunners": Path("/var/log/jitrunners").exists(),
        "actions_runner": Path("/opt/actions-runner").exists(),
    }


def test_rendered_user_data_unpacks_the_scripts_and_bootstraps_the_runner(
    dist: RunnerDist, tmp_path: Path
) -> None:
    before = host_snapshot()
    instance, status = boot(tmp_path, user_data(dist))
    try:
        log = instance.read("/var/log/jitrunners/user-data.log")
        assert status == 0, log
        assert problems(instance) == [], log
        assert instance.read("/etc/jitrunners/env") == f"AWS_DEFAULT_REGION={REGION}\n"
        assert "runner:" in instance.read("/etc/passwd")
        # The tarball came from the mirror the module variable names, checked by its SHA-256.
        assert dist.downloads == [
            f"/v{dist.version}/actions-runner-linux-x64-{dist.version}.tar.gz"
        ]
        assert f"checksum verified ({dist.sha256['x64']})" in log
        assert instance.state("power.log") == ""
        # The runner user reaches the stack's Python (under /root, a pyenv) inside the instance.
        probe = instance.run(
            ["runuser", "-u", "runner", "--", instance_env()["DEVSTACK_PYTHON"], "-V"]
        )
        assert probe.returncode == 0, probe.stdout
    finally:
        instance.kill()
    assert host_snapshot() == before  # the host is never modified


def test_user_data_of_824236b_never_runs_bootstrap(dist: RunnerDist, tmp_path: Path) -> None:
    """The executed check above fails on the template before the fix (`bash -n` passed it)."""
    old = user_data(dist, module_with_824236b_template(tmp_path / "module"))
    assert subprocess.run(["bash", "-n"], input=old, text=True, check=False).returncode == 0
    instance, status = boot(tmp_path / "instances", old)
    try:
        assert status != 0
        found = problems(instance)
        assert "/opt/jitrunners/src/bootstrap.sh is not runner_scripts/bootstrap.sh" in found
        assert "bootstrap did not log done" in found
        assert "not in gzip format" in instance.read("/var/log/jitrunners/user-data.log")
    finally:
        instance.kill()


def test_bootstrap_keeps_the_runner_user_off_instance_metadata(
    dist: RunnerDist, tmp_path: Path
) -> None:
    instance, status = boot(tmp_path, user_data(dist))
    try:
        assert status == 0, instance.read("/var/log/jitrunners/user-data.log")
        uid = instance.run(["id", "-u", "runner"]).stdout.strip()
        assert instance.state("iptables.filter.rules").splitlines() == [
            f"-A OUTPUT -d 169.254.169.254 -m owner --uid-owner {uid} -j REJECT"
        ]
        assert instance.state("ip6tables.filter.rules").splitlines() == [
            f"-A OUTPUT -d fd00:ec2::254 -m owner --uid-owner {uid} -j REJECT"
        ]
        token = ["curl", "-fsS", "-X", "PUT", "http://169.254.169.254/latest/api/token"]
        as_root = instance.run(token)
        assert as_root.returncode == 0, as_root.stdout
        as_runner = instance.run(["runuser", "-u", "runner", "--", *token])
        assert as_runner.returncode == 7, as_runner.stdout  # curl: couldn't connect
        v6 = ["curl", "-fsS", "-X", "PUT", "http://[fd00:ec2::254]/latest/api/token"]
        assert instance.run(["runuser", "-u", "runner", "--", *v6]).returncode == 7
        # A second bootstrap (the next boot) adds nothing.
        again = instance.run(["/opt/jitrunners/src/bootstrap.sh"], env=instance_env(_ENV))
        assert again.returncode == 0, again.stdout
        assert len(instance.state("iptables.filter.rules").splitlines()) == 1
    finally:
        instance.kill()


def test_a_script_whose_instance_ended_before_reading_it_returns_the_shell_s_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An instance ended while its user data was being handed over (a cancel during boot): the
    shell is gone, the write meets a closed pipe, and the boot reads the shell's exit status
    instead of its thread dying on BrokenPipeError."""
    instance = Instance(root=tmp_path, instance_id="i-0123456789abcdef0")

    def ended_at_once(argv: list[str], **kwargs: object) -> subprocess.Popen[str]:
        # The shell exits without reading its stdin, as a killed instance's does.
        return subprocess.Popen(
            ["/bin/sh", "-c", "exit 3"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    monkeypatch.setattr(instance, "popen", ended_at_once)
    process = instance.install_and_run("/var/lib/cloud/user-data", "x" * 1_000_000, env={})
    assert process.wait(timeout=PATIENCE_S) == 3
    assert process.stdin is None
