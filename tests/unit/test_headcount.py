"""The headcount's kept list (lifecycle/provisioning/headcount.py), on its own clock."""

from __future__ import annotations

import json

import pytest

from jitrunners.aws import fleet
from jitrunners.config import parse_templates
from jitrunners.lifecycle.provisioning.headcount import Headcount, needs_fresh
from jitrunners.lifecycle.provisioning.headcount import room as headcount_room
from tests.conftest import TEMPLATES


def instance(instance_id: str, template: str = "linux") -> fleet.Instance:
    launched = fleet.Launched(id=instance_id, market="spot", instance_type="m7i.large")
    return fleet.launched_instance(launched, {fleet.TAG_TEMPLATE: template})


class Describe:
    def __init__(self, *found: fleet.Instance) -> None:
        self.found = list(found)
        self.calls = 0

    def __call__(self) -> list[fleet.Instance]:
        self.calls += 1
        return list(self.found)


def test_a_list_is_kept_for_its_age_with_the_containers_launches_and_tags() -> None:
    now = [0.0]
    count = Headcount(clock=lambda: now[0])
    describe = Describe(instance("i-1"))
    assert [i.id for i in count.listing(describe, 5)[0]] == ["i-1"]
    count.launched([instance("i-2")])
    count.retagged("i-2", {fleet.TAG_JOB_ID: "42", fleet.TAG_RUN_ATTEMPT: "1"})
    now[0] = 4.99
    listed, fresh = count.listing(describe, 5)
    assert not fresh
    assert [(i.id, i.job_id) for i in listed] == [("i-1", None), ("i-2", 42)]
    assert describe.calls == 1
    now[0] = 5.0
    assert count.listing(describe, 5) == ([instance("i-1")], True)
    assert count.listing(describe, 5, fresh=True)[1]
    assert count.listing(describe, 0)[1]  # age 0: a list every time
    count.forget()
    assert count.listing(describe, 5)[1]
    assert describe.calls == 5


def test_a_failed_describe_keeps_nothing() -> None:
    count = Headcount(clock=lambda: 0.0)
    count.listing(Describe(instance("i-1")), 5)

    def broken() -> list[fleet.Instance]:
        raise RuntimeError("throttled")

    with pytest.raises(RuntimeError):
        count.listing(broken, 5, fresh=True)
    count.launched([instance("i-2")])  # not counted on a list that is gone
    assert count.listing(Describe(), 5) == ([], True)


@pytest.mark.parametrize(
    ("jobs", "pooled", "wanted", "room", "fresh"),
    [
        ([(1, 1)], False, {"linux": 1}, 1, False),
        ([(7, 1)], False, {"linux": 1}, 1, True),  # job 7 has an instance on the list
        ([(7, 2)], False, {"linux": 1}, 1, False),  # another attempt of it has not
        ([(1, 1)], True, {"linux": 1}, 1, True),  # a warm pool decides on a fresh list
        ([(1, 1), (2, 1)], False, {"linux": 2}, 1, True),  # one would defer
        ([(1, 1)], False, {"linux": 1}, 0, True),
    ],
)
def test_what_needs_a_fresh_list(
    jobs: list[tuple[int, int]], pooled: bool, wanted: dict[str, int], room: int, fresh: bool
) -> None:
    assert needs_fresh(jobs, [(7, 1)], pooled, wanted, lambda _: room, 100) is fresh


def test_launches_beyond_the_global_room_need_a_fresh_list() -> None:
    """Each template fits its own room, the batch's launches together not MAX_RUNNERS's."""
    wanted = {"linux": 2, "arm64": 2}
    assert not needs_fresh([(1, 1)], [], False, wanted, lambda _: 2, 4)
    assert needs_fresh([(1, 1)], [], False, wanted, lambda _: 2, 3)


@pytest.mark.parametrize(("mine", "total", "room"), [(0, 0, 3), (2, 2, 1), (1, 9, 1), (3, 5, 0)])
def test_room_is_the_tighter_of_the_template_and_global_limits(
    mine: int, total: int, room: int
) -> None:
    [template] = parse_templates(json.dumps([{**TEMPLATES[0], "max_runners": 3}]))
    assert headcount_room(template, mine, total, 10) == room
