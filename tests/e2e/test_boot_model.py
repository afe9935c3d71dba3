"""The local stack's latency model (devstack/boot_model.py): seeded draws, their shape, and the
agent shim holding an instance's agent offline for the model's delays."""

from __future__ import annotations

import time

import pytest
from botocore.exceptions import ClientError

from devstack.agent import AgentShim
from devstack.boot_model import KINDS, BootModel, Delay
from devstack.inline_agent import InlineAgent
from tests.e2e.conftest import Fleet, until


def test_the_same_seed_and_key_draw_the_same_delay_and_another_seed_others() -> None:
    model = BootModel(seed=5)
    again = BootModel(seed=5)
    other = BootModel(seed=6)
    for kind in KINDS:
        draws = [model.draw(kind, n) for n in range(50)]
        assert draws == [again.draw(kind, n) for n in range(50)]
        assert draws != [other.draw(kind, n) for n in range(50)]
        assert len(set(draws)) == 50  # one per key, not one for all


def test_draws_follow_the_configured_median_and_95th_percentile() -> None:
    model = BootModel(seed=3).with_delays("cold=30:60,stopped=8")
    cold = sorted(model.draw("cold", n) for n in range(4000))
    # Seeded: the same numbers every run; a lognormal's sample quantiles land near its own.
    assert cold[2000] == pytest.approx(30, rel=0.05)
    assert cold[3800] == pytest.approx(60, rel=0.07)
    assert cold[-1] <= model.cold.p50 * (model.cold.p95 / model.cold.p50) ** (3.72 / 1.645)
    assert {model.draw("stopped", n) for n in range(20)} == {8.0}  # one number: fixed
    assert model.connect == BootModel().connect  # untouched kinds keep their defaults


def test_the_scale_maps_emulated_seconds_to_real_ones_and_back() -> None:
    model = BootModel(time_scale=0.25)
    assert model.real(40) == 10
    assert model.emulated(10) == 40


@pytest.mark.parametrize(
    "text", ["cold=1:x", "warm=3", "cold", "stopped=9:3", "connect=0:2", "cold=-1"]
)
def test_bad_delays_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="p50"):
        BootModel().with_delays(text)


def test_a_bad_time_scale_is_refused() -> None:
    with pytest.raises(ValueError, match="time scale"):
        BootModel(time_scale=0)


def test_the_agent_is_online_its_drawn_cold_delay_after_launch() -> None:
    """No sandbox (the inline agent): online once launch + real(draw) has passed, with the draw
    recorded for the benchmark's floor; the moment it came online is that instant."""
    model = BootModel(seed=9, cold=Delay(30, 30), time_scale=0.5)  # 15 s real
    launched: dict[str, float] = {}
    agent = InlineAgent(None, on_event=lambda e: None, launch_time=launched.get, boot_model=model)
    agent.boot("i-young")
    agent.boot("i-old")
    now = time.time()
    launched["i-young"] = now - 5  # 10 s before its agent is online
    launched["i-old"] = now - 25  # online 10 s ago
    assert not agent.online("i-young")
    assert agent.online("i-old")
    assert agent.draws["i-old"]["cold"] == 30
    assert agent.online_at["i-old"] == pytest.approx(launched["i-old"] + 15)
    assert "i-young" not in agent.online_at


def test_without_a_model_the_fixed_boot_s_still_applies() -> None:
    launched = {"i-1": time.time() - 2}
    agent = AgentShim(None, on_event=lambda e: None, launch_time=launched.get, boot_s=60.0)
    agent._agent_started = lambda iid: 0.0  # type: ignore[method-assign]  # no sandbox here
    assert not agent.online("i-1")
    agent.boot_s = 1.0
    assert agent.online("i-1")
    assert agent.connect_delay("i-1") == 0.0


def _refused(fleet: Fleet, iid: str) -> str:
    with pytest.raises(ClientError) as caught:
        fleet.send(iid, "true")
    return str(caught.value.response["Error"]["Code"])


def test_a_stopped_instance_refuses_commands_until_started_and_keeps_its_disk(
    fleet: Fleet,
) -> None:
    """StopInstances (a hooked EC2 client, as the Lambdas' is): the running command dies with
    the instance, SendCommand answers InvalidInstanceId as AWS does, and after StartInstances
    the sandbox boots again over the same disk, its agent online the model's delay later."""
    model = BootModel(seed=4, cold=Delay(0, 0), stopped=Delay(10, 10), time_scale=0.02)
    fleet.agent.boot_model = model
    ec2 = fleet.world.client("ec2")
    fleet.agent.attach_ec2(ec2)
    [iid] = fleet.launch()
    assert until(lambda: fleet.agent.boots.get(iid) == 0 and fleet.agent.online(iid))
    done = fleet.send(iid, "echo kept >/var/lib/devstack/mark")
    assert until(lambda: fleet.agent.invocations[(done, iid)].status == "Success")
    running = fleet.send(iid, "sleep 60")
    invocation = fleet.agent.invocations[(running, iid)]
    assert until(lambda: invocation.process is not None and invocation.process.poll() is None)

    ec2.stop_instances(InstanceIds=[iid])
    assert invocation.status == "Interrupted"
    assert until(lambda: invocation.process is not None and invocation.process.poll() is not None)
    assert _refused(fleet, iid) == "InvalidInstanceId"
    assert until(lambda: not fleet.agent.instances[iid].running())  # PID 1 killed, then reaped

    ec2.start_instances(InstanceIds=[iid])
    assert fleet.agent.draws[iid]["stopped"] == 10
    assert until(lambda: fleet.agent.online(iid))
    started = fleet.agent._started_at[iid]
    assert fleet.agent.online_at[iid] >= started + model.real(10)
    again = fleet.send(iid, "cat /var/lib/devstack/mark")
    assert until(lambda: fleet.agent.invocations[(again, iid)].status == "Success")
    assert fleet.agent.invocations[(again, iid)].output.strip() == "kept"
    assert fleet.agent.counters["stops"] == fleet.agent.counters["starts"] == 1
    # Nothing reported the killed command: no agent was left to report it.
    reported = {e["detail"]["command-id"] for e in fleet.events}
    assert running not in reported
    assert {done, again} <= reported


def test_a_start_of_an_instance_not_stopped_changes_nothing(fleet: Fleet) -> None:
    fleet.agent.attach_ec2(fleet.world.client("ec2"))
    [iid] = fleet.launch()
    fleet.agent.start_instance(iid)
    assert fleet.agent.counters["starts"] == 0
    assert not fleet.agent.stopped(iid)


def test_an_instance_that_finishes_booting_after_the_agent_stopped_is_killed(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from devstack import agent as agent_module

    booting, release = threading.Event(), threading.Event()
    killed: list[str] = []

    class SlowBoot:
        instance_id = "slow"

        def boot(self) -> SlowBoot:
            booting.set()
            release.wait(10)
            return self

        def kill(self) -> None:
            killed.append(self.instance_id)

    monkeypatch.setattr(agent_module.Instance, "create", lambda *a, **k: SlowBoot())
    [iid] = fleet.launch()
    assert booting.wait(10)
    # The agent stops while the instance boots: stop() has nothing of it to kill yet.
    stopper = threading.Thread(target=fleet.agent.stop)
    stopper.start()
    assert until(lambda: fleet.agent._shut_down, 10)
    release.set()
    stopper.join(10)
    assert killed == ["slow"]  # the boot ended, saw the agent stopped, and killed it
    assert iid not in fleet.agent.instances
