"""Fixes to moto's in-process backends, without which a burst of a thousand instances crawls.

Each keeps what AWS answers; they only change how moto finds it:

* moto looks up one EC2 resource's tags by scanning every tag of the region with a regular
  expression each (`TaggedEC2Resource.get_tags` -> `describe_tags`), so every DescribeInstances
  with a tag filter costs instances x tags: 0.9 s for one instance among a thousand. Here it is a
  dictionary lookup with the same result.
* moto's SendCommand adds every instance of the region to a command that names its `InstanceIds`
  (an empty `Targets` list is read as "no filter"), and records an invocation for each: a thousand
  commands over a thousand instances are a million invocations, and ListCommands for one instance
  lists them all. SSM sends a command to the instances it names, or to its targets.
* DescribeInstances tests each instance against the filters in the order given and translates
  every tag filter's pattern into a regular expression again for each instance: the Lambdas'
  `tag:jitrunners:prefix` + `instance-id` lookup of one instance among a thousand took 30 ms.
  Here attribute filters (instance id, state) go first and each pattern is translated once.
* moto's response serializer works out, for every attribute of every object it writes, which
  names the attribute may have (aliases from the object's class and the API model's shape) anew:
  about 4 ms per instance in DescribeInstances. The names depend only on the class, the key and
  the shape, so they are worked out once per service, class, key and shape; and the per-member
  context and key paths are built only where a response transformer may apply (a quarter of a
  DescribeInstances' time).
* DescribeInstances copies every reservation of the region before filtering them (the filter
  replaces a copy's instance list): here only the reservations that match are copied. And a
  listing by state that leaves out `terminated` (the Lambdas' headcounts, the housekeeper's
  live listing) still walked every reservation moto keeps, ended ones included: each scale-up
  invocation of a 10,000-job burst walked up to 10,000. Here it walks the reservations that had
  an instance not terminated when last looked at, and those made since (terminated is final);
  and a listing with an `instance-id` filter (a describe of named instances in any state) looks
  them up in the index below instead of testing every instance.
* ReceiveMessage checks each message against the queue's retention period by computing every
  attribute of the queue, message counts included (a scan of all its messages): a receive was
  quadratic in the queue's depth. Here the retention period is read as it is.
* TransactWriteItems backs up every table it names, whole (a deep copy per item of the
  transaction), to roll back a cancelled one: with a burst's thousands of claims in the table,
  scale-up's batched launch claims cost more CPU than the rest of the burst. Here the backup is
  the items the transaction touches, restored as they were when it is cancelled.
* (A gap, not speed.) Instances an EC2 Fleet launches from a launch template do not get the
  template's IAM instance profile in moto, nor do instances RunInstances launches from a launch
  template (moto applies only a profile given in the call): EC2 starts them with it, and the IAM
  layer's `ec2:InstanceProfile` conditions and the instances' credentials depend on it. Here both
  associate each instance with its launch template's profile.
* (A gap, not speed.) moto ignores attribute-based instance type selection: a CreateFleet
  override with `InstanceRequirements` and no `InstanceType` fails (it reads the type from the
  override or the launch template), and GetInstanceTypesFromInstanceRequirements is not
  implemented. Here both select from moto's own instance type catalogue (vCPUs, memory, CPU maker,
  architecture, allowed types, generation, burstable, bare metal, GPU count): a fleet override
  becomes one override per matching type (smallest first), as EC2 spreads one request over many
  types. Not emulated: prices and the allocation strategy's choice among them, spot placement
  scores, and an override's `BlockDeviceMappings` (moto launches with the template's volumes).
* (A gap, not speed.) moto does not implement SSM's DescribeInstanceInformation. Here every
  running EC2 instance it names is Online, as moto's SendCommand accepts a command for any
  instance; the local stack's agent shim (devstack/agent.py) answers from its agents' own state.
* (A gap, not speed.) moto keeps an instance's LaunchTime when StartInstances starts it again;
  EC2 reports the time of the most recent start (the age the housekeeper's max-lifetime check and
  a claimed warm-pool member's start timeout read). Here a start sets it.
* Per request, moto's server lists its own package directory (`list_of_moto_modules`, a stat of
  every entry) to match the host to a backend, and inspects the response class for its method
  names: a tenth of the stack's time under a burst. Neither changes while the process runs.
  Nor does the backend a host goes to, which the server finds (twice a request, under the lock
  every request takes) by trying each service's URL patterns in turn: 3 % of a burst's CPU. Here
  each host's is found once.
* moto writes an EC2 response's XML with `xmltodict.unparse`, through SAX events and a name
  check per element: 60 % of a DescribeInstances' serialization, the largest single cost of a
  burst's describes. Here the same document is written by `ec2_xml`, a plain recursive writer
  whose output is byte for byte xmltodict's (tests/e2e/test_moto_fixes.py compares both).
* A terminated instance no longer changes, but moto serializes it anew for every listing: the
  housekeeper's full listings of a 10,000-job burst described every ended instance, most of its
  passes' time. Here what a terminated instance's members serialize to is kept (once it has been
  terminated for a moment) and reused while its tags and state reason stay the same.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import threading
import time
from typing import Any
from xml.sax.saxutils import escape, quoteattr

_APPLIED: list[bool] = []
_REQUIREMENTS_APPLIED: list[bool] = []
_INFORMATION_APPLIED: list[bool] = []
# InstanceRequirements' CpuManufacturers -> the catalogue's ProcessorInfo.Manufacturer.
_MAKERS = {"intel": "Intel", "amd": "AMD", "amazon-web-services": "AWS", "apple": "Apple"}


def apply() -> None:
    """Patch moto's classes once per process (the server runs in this process, in threads)."""
    if _APPLIED:
        return
    apply_instance_requirements()  # before method names are cached below
    apply_instance_information()
    from moto import backends
    from moto.core import responses
    from moto.core.serialize import XFormedAttributePicker
    from moto.ec2 import utils
    from moto.ec2.models.core import TaggedEC2Resource
    from moto.ec2.models.fleets import FleetsBackend
    from moto.ec2.models.instances import InstanceBackend
    from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix
    from moto.sqs.models import SQSBackend
    from moto.ssm.models import Command

    def get_tags(self: Any) -> list[dict[str, str]]:
        resource_id = getattr(self, "id", None)
        if not resource_id:
            return []
        # .get: the backend's tags are a defaultdict; a lookup must not add an entry.
        tags = dict(self.ec2_backend.tags.get(resource_id) or {})
        kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(resource_id), "")
        return [
            {"resource_id": resource_id, "key": key, "value": value, "resource_type": kind}
            for key, value in tags.items()
        ]

    targets_of = Command._get_instance_ids_from_targets

    def instance_ids_from_targets(self: Any) -> list[str]:
        return list(targets_of(self)) if self.targets else []

    passes = utils.passes_filter_dict

    def passes_filter_dict(instance: Any, filter_dict: dict[str, Any]) -> bool:
        # All filters must pass: the cheap, selective attribute ones first.
        ordered = sorted(filter_dict.items(), key=lambda item: utils.is_tag_filter(item[0]))
        return bool(passes(instance, dict(ordered)))

    possible_keys = XFormedAttributePicker.get_possible_keys
    known: dict[tuple[Any, ...], tuple[str, ...]] = {}

    def get_possible_keys(self: Any, context: Any) -> tuple[str, ...]:
        shape = context.shape
        parent = getattr(shape, "parent", None)
        key = (
            getattr(context.service_model, "service_name", None),
            type(context.obj),
            context.key,
            None if shape is None else (shape.name, shape.type_name, str(shape.serialization)),
            None if parent is None else (parent.name, parent.type_name),
        )
        keys = known.get(key)
        if keys is None:
            keys = known[key] = tuple(possible_keys(self, context))
        return keys

    XFormedAttributePicker.get_possible_keys = get_possible_keys  # type: ignore[method-assign]
    _apply_value_picking()

    def all_reservations(self: Any, filters: Any = None) -> list[Any]:
        if filters is None:
            return [copy.copy(r) for r in list(self.reservations.values())]
        # A state filter first, read straight from the instance: the terminated instances moto
        # keeps for ever are most of a long run's, and a listing of live ones skips them here.
        states = filters.get("instance-state-name")
        wanted = set(states) if isinstance(states, list) else None
        live_only = wanted is not None and "terminated" not in wanted
        found = []
        for reservation in _live_reservations(self) if live_only else self.reservations.values():
            instances = [
                i
                for i in reservation.instances
                if (wanted is None or i._state.name in wanted)
                and utils.passes_filter_dict(i, filters)
            ]
            if instances:
                found.append(copy.copy(reservation))
                found[-1].instances = instances
            elif live_only and _ended(reservation):
                self._live_reservations.pop(reservation.id, None)
        return found

    InstanceBackend.all_reservations = all_reservations  # type: ignore[method-assign]
    _apply_instance_index(InstanceBackend)
    _apply_address_release()

    def is_message_valid_based_on_retention_period(self: Any, queue_name: str, message: Any):
        retention_s = int(self.get_queue(queue_name).message_retention_period)
        return bool(retention_s + message.sent_timestamp / 1000 > time.time())

    SQSBackend.is_message_valid_based_on_retention_period = (  # type: ignore[method-assign]
        is_message_valid_based_on_retention_period
    )
    _apply_sqs_clock()
    _apply_ec2_xml()
    _apply_ended_instance_cache()
    _apply_transaction_backup()
    create_fleet = FleetsBackend.create_fleet

    def create_fleet_with_profiles(self: Any, *args: Any, **kwargs: Any) -> Any:
        fleet = create_fleet(self, *args, **kwargs)
        launched = [(r.instance, r.launch_spec) for r in fleet.spot_requests]
        launched += [(i["instance"], i["launch_spec"]) for i in fleet.on_demand_instances]
        for instance, spec in launched:
            profile = getattr(spec, "iam_instance_profile", None) or {}
            while isinstance(profile.get("Arn"), dict):  # a spot request wraps the spec's dict
                profile = profile["Arn"]
            _associate(self, instance.id, profile)
        return fleet

    FleetsBackend.create_fleet = create_fleet_with_profiles  # type: ignore[method-assign]
    run_instances = InstanceBackend.run_instances

    def run_instances_with_profile(self: Any, *args: Any, **kwargs: Any) -> Any:
        reservation = run_instances(self, *args, **kwargs)
        template = kwargs.get("launch_template")
        given = kwargs.get("iam_instance_profile_arn") or kwargs.get("iam_instance_profile_name")
        if template and not given:
            profile = self._get_template_from_args(template).data.get("IamInstanceProfile") or {}
            for instance in reservation.instances:
                _associate(self, instance.id, profile)
        return reservation

    InstanceBackend.run_instances = run_instances_with_profile  # type: ignore[method-assign]
    _apply_backend_for_host()
    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules
    method_names = functools.cache(responses.method_names_from_class)
    responses.method_names_from_class = lambda clazz: list(method_names(clazz))
    # Module globals: moto's own callers in moto.ec2.utils look them up at call time.
    utils.passes_filter_dict = passes_filter_dict
    utils.simple_aws_filter_to_re = functools.lru_cache(maxsize=1024)(utils.simple_aws_filter_to_re)
    TaggedEC2Resource.get_tags = get_tags  # type: ignore[method-assign]
    Command._get_instance_ids_from_targets = instance_ids_from_targets  # type: ignore[method-assign]
    _APPLIED.append(True)


def _apply_backend_for_host() -> None:
    """The server's backend for a host, found once per host (see the module's docstring)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    find = DomainDispatcherApplication.get_backend_for_host

    def get_backend_for_host(self: Any, host: str | None) -> Any:
        known = self.__dict__.setdefault("_backend_for_host", {})
        if host not in known:
            known[host] = find(self, host)
        return known[host]

    DomainDispatcherApplication.get_backend_for_host = get_backend_for_host  # type: ignore[method-assign]


_live_lock = threading.Lock()


def _live_reservations(backend: Any) -> list[Any]:
    """The backend's reservations but those seen ended (every instance terminated): the ones
    an earlier listing found live, and every reservation made since it looked, in the order
    moto made them. moto never removes a reservation (a reset builds a new backend)."""
    with _live_lock:
        live = backend.__dict__.setdefault("_live_reservations", {})
        seen = backend.__dict__.get("_live_scanned", 0)
        if len(backend.reservations) > seen:
            reservations = list(backend.reservations.values())
            for reservation in reservations[seen:]:
                live[reservation.id] = reservation
            backend._live_scanned = len(reservations)
        return list(live.values())


def _ended(reservation: Any) -> bool:
    instances = list(reservation.instances)
    return bool(instances) and all(i._state.name == "terminated" for i in instances)


def _apply_value_picking() -> None:
    """A member's value as moto's serializer picks it, without its per-member overhead.

    For each member of each object it writes (some 140 per EC2 instance), moto built a context
    object and the whole key path (a join of its path), then asked the picker, which made a
    second path string to match against each of the response transformers. When the picker is
    the plain XFormedAttributePicker and no transformer can match the member, the names to try
    depend only on the service, the object's class, the member and its shape (as the cache above
    keys them): they are looked up in that cache, and the first that the object has is taken,
    as moto's picker does."""
    from moto.core.serialize import (
        AttributePickerContext,
        ResponseSerializer,
        XFormedAttributePicker,
    )
    from moto.core.utils import MISSING
    from moto.core.utils import get_value as pick

    original = ResponseSerializer.get_value
    names: dict[tuple[Any, ...], tuple[str, ...]] = {}
    # A transformer's path can match a member's key path (`<path>.<key>`, keys have no dot)
    # only if its last name is the key, or, without a dot, if the key ends with it.
    tails: dict[tuple[int, int], tuple[frozenset[str], tuple[str, ...]]] = {}

    def transformed(transformers: dict[str, Any], key: str) -> bool:
        marker = (id(transformers), len(transformers))  # moto adds to a class's own dict
        known = tails.get(marker)
        if known is None:
            paths = list(transformers)
            known = tails[marker] = (
                frozenset(p.rsplit(".", 1)[-1] for p in paths if "." in p),
                tuple(p for p in paths if "." not in p),
            )
        return key in known[0] or any(key.endswith(p) for p in known[1])

    def get_value(self: Any, value: Any, key: str, shape: Any) -> Any:
        picker = self._value_picker
        if type(picker) is not XFormedAttributePicker or (
            picker.response_transformers and transformed(picker.response_transformers, key)
        ):
            return original(self, value, key, shape)
        service = self.operation_model.service_model
        parent = getattr(shape, "parent", None)
        # The shape and its parent themselves (held, so no id is reused): what the alias
        # providers read of them (names, serialization, the parent's members) is theirs.
        cache_key = (service.service_name, type(value), key, shape, parent)
        keys = names.get(cache_key)
        if keys is None:
            context = AttributePickerContext(
                obj=value,
                key=key,
                shape=shape,
                operation_model=self.operation_model,
                service_model=service,
                key_path=".".join(self.path),
            )
            keys = names[cache_key] = tuple(picker.get_possible_keys(context))
        for name in keys:
            found = pick(value, name, MISSING)
            if found is not MISSING:
                return found
        return None

    get_value.__wrapped__ = original  # type: ignore[attr-defined]
    ResponseSerializer.get_value = get_value  # type: ignore[method-assign]


# Reservations an id not found is looked for in again before the index is rebuilt: the one
# run_instances is filling, and those of launches running beside it in other threads.
NEWEST_RESERVATIONS = 8


def _apply_instance_index(backend_class: Any) -> None:
    """Instances by id through an index instead of a scan of every reservation ever made.

    Moto keeps terminated instances (AWS forgets them after about an hour), and each lookup by
    id (DescribeInstances with InstanceIds, TerminateInstances, a state change) walked and, for
    DescribeInstances, copied every reservation: a burst's batches paid for every instance of
    the burst, again and again. Reservations and their instances are never removed (a reset
    builds a new backend), so the index only grows: reservations added since the last look are
    indexed on the next one. An id not found is looked for in the newest reservations again
    (run_instances appends each instance to a reservation already listed, and looks it up as it
    sets it up: a whole rebuild there cost every instance of the burst per instance launched),
    then in a rebuilt index, before it is said not to exist."""
    import itertools

    from moto.ec2 import utils
    from moto.ec2.exceptions import InvalidInstanceIdError

    def index(
        backend: Any, rebuild: bool = False, newest: int = 0
    ) -> dict[str, tuple[int, Any, Any]]:
        found = backend.__dict__.get("_instance_index")
        if found is not None and newest and not rebuild:
            # The newest reservations again (instances appended since they were indexed).
            reservations = list(backend.reservations.values())
            start = max(0, len(reservations) - newest)
            for position, reservation in enumerate(reservations[start:], start=start):
                for instance in list(reservation.instances):
                    found[instance.id] = (position, reservation, instance)
        seen = 0 if found is None or rebuild else backend.__dict__.get("_instance_indexed", 0)
        if found is None or rebuild:
            found = backend._instance_index = {}
        reservations = backend.reservations
        if seen < len(reservations):
            fresh = itertools.islice(list(reservations.values()), seen, None)
            for position, reservation in enumerate(fresh, start=seen):
                for instance in list(reservation.instances):
                    found[instance.id] = (position, reservation, instance)
            backend._instance_indexed = len(reservations)
        return found

    def lookup(backend: Any, instance_ids: Any) -> tuple[list[tuple[int, Any, Any]], list[str]]:
        found = index(backend)
        if any(i not in found for i in instance_ids):
            found = index(backend, newest=NEWEST_RESERVATIONS)
        if any(i not in found for i in instance_ids):
            found = index(backend, rebuild=True)
        hits = [found[i] for i in instance_ids if i in found]
        return hits, [i for i in instance_ids if i not in found]

    def in_reservations(hits: list[tuple[int, Any, Any]]) -> list[Any]:
        """Found instances in copies of their reservations, in the order moto made them."""
        grouped: dict[int, tuple[Any, set[int]]] = {}
        for position, reservation, instance in hits:
            grouped.setdefault(position, (reservation, set()))[1].add(id(instance))
        found = []
        for position in sorted(grouped):
            reservation, wanted = grouped[position]
            found.append(copy.copy(reservation))
            found[-1].instances = [i for i in reservation.instances if id(i) in wanted]
        return found

    def get_instance(self: Any, instance_id: str) -> Any:
        hits, _ = lookup(self, [instance_id])
        if not hits:
            raise InvalidInstanceIdError(instance_id)
        return hits[0][2]

    def get_instance_by_id(self: Any, instance_id: str) -> Any:
        hits, _ = lookup(self, [instance_id])
        return hits[0][2] if hits else None

    def get_multi_instances_by_id(self: Any, instance_ids: list[str], filters: Any = None):
        hits, missing = lookup(self, instance_ids)
        if missing:
            raise InvalidInstanceIdError(missing)
        return [instance for _, _, instance in hits if instance.applies(filters)]

    def get_reservations_by_instance_ids(self: Any, instance_ids: list[str], filters: Any = None):
        hits, missing = lookup(self, list(dict.fromkeys(instance_ids)))
        if missing:
            raise InvalidInstanceIdError(missing[0])
        reservations = in_reservations(hits)
        if filters is not None:
            reservations = utils.filter_reservations(reservations, filters)
        return reservations

    listed = backend_class.all_reservations

    def all_reservations(self: Any, filters: Any = None) -> list[Any]:
        # An `instance-id` filter (the Lambdas' describes of named instances, whatever their
        # state: an unknown id is no error, as it is with InstanceIds=) names the candidates:
        # found through the index, not by testing every instance moto keeps.
        ids = (filters or {}).get("instance-id")
        if not isinstance(ids, list) or any("*" in i or "?" in i for i in ids):
            return listed(self, filters)
        hits, _ = lookup(self, list(dict.fromkeys(ids)))
        return in_reservations([h for h in hits if utils.passes_filter_dict(h[2], filters)])

    backend_class.all_reservations = all_reservations
    backend_class.get_instance = get_instance
    backend_class.get_instance_by_id = get_instance_by_id
    backend_class.get_multi_instances_by_id = get_multi_instances_by_id
    backend_class.get_reservations_by_instance_ids = get_reservations_by_instance_ids


def _apply_address_release() -> None:
    """A terminated instance gives its private addresses back to its subnet, as in EC2.

    moto frees them only when the instance object is collected, and it keeps terminated
    instances for ever: a /20 subnet ran out after some 4,090 launches of a 10,000-job burst,
    and every CreateFleet after that failed inside moto."""
    from moto.ec2.models.instances import Instance

    terminate = Instance.terminate

    def terminate_and_release(self: Any) -> Any:
        previous = terminate(self)
        subnet_id = self.subnet_id
        if subnet_id and self._private_ips:
            with contextlib.suppress(Exception):  # a subnet deleted meanwhile: nothing to free
                subnet = self.ec2_backend.get_subnet(subnet_id)
                for address in list(self._private_ips):
                    subnet.del_subnet_ip(address)
            self._private_ips.clear()  # so that collecting it frees nothing a new one holds
        return previous

    Instance.terminate = terminate_and_release  # type: ignore[method-assign]


class _CopyWithoutTableBackups:
    """moto's DynamoDB backend module's `copy`: as `copy`, except that a Table is not copied
    (`transact_write_items`' whole-table backup, which `_apply_transaction_backup` replaces)."""

    def __init__(self, table_class: type) -> None:
        self._table_class = table_class

    def deepcopy(self, value: Any, memo: Any = None) -> Any:
        if isinstance(value, self._table_class):
            return value
        return copy.deepcopy(value, memo)

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)


def _apply_transaction_backup() -> None:
    """A cancelled TransactWriteItems leaves every item it named as it was, as in moto, from a
    backup of those items only (see the module)."""
    from moto.dynamodb import models
    from moto.dynamodb.models.table import Table

    backend_class = models.DynamoDBBackend
    transact = backend_class.transact_write_items
    models.copy = _CopyWithoutTableBackups(Table)  # type: ignore[attr-defined]

    def key_of(backend: Any, op: dict[str, Any]) -> dict[str, Any] | None:
        table = backend.tables.get(op.get("TableName"))
        if table is None:
            return None
        if "Key" in op:
            return dict(op["Key"])
        item = op.get("Item") or {}
        names = [table.hash_key_attr, table.range_key_attr]
        return {name: item[name] for name in names if name and name in item}

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        saved: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = []
        for entry in transact_items:
            op = next(iter(entry.values()), None)
            key = key_of(self, op) if isinstance(op, dict) else None
            if not key:
                continue
            try:
                current = self.get_item(op["TableName"], key)
            except Exception:  # noqa: BLE001, S112 - an invalid key: moto refuses the call itself
                continue
            attrs = copy.deepcopy(current.to_json()["Attributes"]) if current else None
            saved.append((op["TableName"], key, attrs))
        try:
            transact(self, transact_items)
        except Exception:
            for table_name, key, attrs in reversed(saved):
                if attrs is None:
                    self.delete_item(table_name, key)
                else:
                    self.put_item(table_name, attrs)
            raise

    backend_class.transact_write_items = transact_write_items  # type: ignore[method-assign]


def ec2_xml(body: Any) -> str:
    """`xmltodict.unparse(body, full_document=True, pretty=False, short_empty_elements=True)`
    for what moto's serializers hand it (string keys; dicts, lists, strings, scalars, None;
    `@` attributes and `#text`), written directly: the same characters, escaped the same way
    (`escape` for text, `quoteattr` for attributes; `true`/`false` for booleans), an element
    with nothing written inside it closed as `<name/>`, empty lists left out. A root that is not
    one dict entry goes to xmltodict itself."""
    import xmltodict

    if not isinstance(body, dict) or len(body) != 1:
        return str(xmltodict.unparse(body, full_document=True, short_empty_elements=True))
    parts = ['<?xml version="1.0" encoding="utf-8"?>\n']
    for key, value in body.items():
        _xml_element(key, value, parts.append)
    return "".join(parts)


def _xml_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def _xml_element(key: str, value: Any, write: Any) -> None:
    if not hasattr(value, "__iter__") or isinstance(
        value, (str, bytes, bytearray, memoryview, dict)
    ):
        value = [value]
    for given in value:
        item = {} if given is None else given
        if not isinstance(item, (dict, str)):
            item = _xml_text(item)
        if isinstance(item, str):
            write(f"<{key}>{escape(item)}</{key}>" if item else f"<{key}/>")
            continue
        attributes: list[str] = []
        inner: list[str] = []
        text = None
        for child, child_value in item.items():
            if child == "#text":
                text = None if child_value is None else _xml_text(child_value)
            elif child.startswith("@"):
                if child == "@xmlns" and isinstance(child_value, dict):
                    for prefix, uri in child_value.items():
                        name = f"xmlns:{prefix}" if prefix else "xmlns"
                        written = "" if uri is None else _xml_text(uri)
                        attributes.append(f" {name}={quoteattr(written)}")
                    continue
                attribute = "" if child_value is None else _xml_text(child_value)
                attributes.append(f" {child[1:]}={quoteattr(attribute)}")
            elif not (isinstance(child_value, list) and not child_value):
                _xml_element(child, child_value, inner.append)
        if text:
            inner.append(escape(text))
        head = f"<{key}{''.join(attributes)}"
        write(f"{head}>{''.join(inner)}</{key}>" if inner else f"{head}/>")


# Seconds an instance has been terminated before its serialized form is kept (a terminate is one
# call: what moto changes on the instance while it runs is done long before).
ENDED_SETTLED_S = 2.0


def _apply_ended_instance_cache() -> None:
    """A terminated instance no longer changes: its serialized members are kept and reused, as
    long as its tags and state reason are the ones they were written from (the stack sets a
    spot reclaim's reason after the terminate)."""
    from moto.core.serialize import ResponseSerializer

    structure = ResponseSerializer._serialize_type_structure
    lock = threading.Lock()
    first_seen: dict[str, float] = {}
    # (id, serializer class, key) -> (instance, state reason, reason, tags, what was written)
    kept: dict[tuple[str, type, str], tuple[Any, Any, str, tuple[Any, ...], dict[str, Any]]] = {}

    def serialize_structure(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
        state = getattr(getattr(value, "_state", None), "name", None)
        if not key or state != "terminated" or getattr(shape, "name", "") != "Instance":
            structure(self, serialized, value, shape, key)
            return
        tags = tuple(sorted((value.ec2_backend.tags.get(value.id) or {}).items()))
        now = time.monotonic()
        cache_key = (value.id, type(self), key)
        with lock:
            settled = now - first_seen.setdefault(value.id, now) >= ENDED_SETTLED_S
            hit = kept.get(cache_key)
        if (
            hit is not None
            and hit[0] is value
            and hit[1] is value.state_reason
            and hit[2] == value._reason
            and hit[3] == tags
        ):
            serialized.update(hit[4])
            return
        written: dict[str, Any] = {}
        structure(self, written, value, shape, key)
        if settled:
            with lock:
                kept[cache_key] = (value, value.state_reason, value._reason, tags, written)
        serialized.update(written)

    ResponseSerializer._serialize_type_structure = serialize_structure  # type: ignore[method-assign]


def _apply_ec2_xml() -> None:
    from moto.core.serialize import EC2Serializer

    unparse = EC2Serializer._serialize_body

    def serialize_body(self: Any, body: Any) -> str:
        return unparse(self, body) if self.pretty_print else ec2_xml(body)

    EC2Serializer._serialize_body = serialize_body  # type: ignore[method-assign]


def _apply_sqs_clock() -> None:
    """Moto's queue reads the clock once per message and test, through two datetimes each
    (`unix_time_millis`): every receive and every queue-depth read scanned the whole queue so.
    With a burst's thousands of delayed and in-flight messages that was the stack's largest
    single cost (a sixth of its CPU at 300 jobs, growing with the square of the burst). Here
    the same tests (visible: now past `visible_at`; delayed: now before `delayed_until`, both
    in epoch milliseconds) read the clock once per scan; a delete scans the queue once; and the
    in-flight message groups are read from a copy of the in-flight set (threads change it)."""
    from moto.sqs.exceptions import ReceiptHandleIsInvalid
    from moto.sqs.models import Message, Queue

    def now_ms() -> float:
        return time.time() * 1000.0

    def messages(self: Any) -> list[Any]:
        now = now_ms()
        return [m for m in self._messages if now > m.visible_at and not now < m.delayed_until]

    def delayed(self: Any) -> int:
        now = now_ms()
        return sum(1 for m in self._messages if now < m.delayed_until)

    def not_visible(self: Any) -> int:
        now = now_ms()
        return sum(1 for m in self._messages if not now > m.visible_at)

    def delete_message(self: Any, receipt_handle: str) -> None:
        # moto's: two scans, each building every message's list of receipt handles.
        if receipt_handle in self.deleted_messages:
            return  # already deleted: deleting again is no error
        kept, found = [], False
        for message in self._messages:
            if (
                message.receipt_handle == receipt_handle
                or receipt_handle in message._old_receipt_handles
            ):
                found = True
                self.pending_messages.discard(message)
                self.deleted_messages.update(message.all_receipt_handles)
            else:
                kept.append(message)
        if not found:
            raise ReceiptHandleIsInvalid()
        self._messages = kept

    def pending_message_groups(self: Any) -> set[str]:
        # moto iterates the set of in-flight messages while other threads' receives and
        # deletes change it ("Set changed size during iteration": a 500 the client retried,
        # with its traceback in the run's output): here a copy, taken at once, is iterated.
        return {m.group_id for m in list(self._pending_messages) if m.group_id is not None}

    Queue.delete_message = delete_message  # type: ignore[method-assign]
    Queue.pending_message_groups = property(pending_message_groups)  # type: ignore[method-assign,assignment]
    Message.visible = property(lambda self: now_ms() > self.visible_at)  # type: ignore[method-assign,assignment]
    Message.delayed = property(lambda self: now_ms() < self.delayed_until)  # type: ignore[method-assign,assignment]
    Queue.messages = property(messages)  # type: ignore[method-assign,assignment]
    Queue.approximate_number_of_messages_delayed = property(delayed)  # type: ignore[method-assign,assignment]
    Queue.approximate_number_of_messages_not_visible = property(not_visible)  # type: ignore[method-assign,assignment]


def _associate(backend: Any, instance_id: str, profile: dict[str, Any]) -> None:
    """Give an instance its launch template's profile, as EC2 does (once; none: nothing)."""
    if instance_id in backend.iam_instance_profile_associations:
        return
    if profile.get("Arn") or profile.get("Name"):
        backend.associate_iam_instance_profile(
            instance_id=instance_id,
            iam_instance_profile_arn=profile.get("Arn"),
            iam_instance_profile_name=profile.get("Name"),
        )


def _within(value: float, bounds: Any) -> bool:
    bounds = bounds or {}
    low, high = bounds.get("Min"), bounds.get("Max")
    return (low is None or value >= float(low)) and (high is None or value <= float(high))


def types_for(requirements: dict[str, Any], architectures: Any = ()) -> list[str]:
    """The instance types of moto's catalogue that meet `requirements` (EC2's
    InstanceRequirements, the attributes jitrunners uses and a few more), smallest first."""
    import fnmatch

    from moto.ec2.models.instance_types import INSTANCE_TYPES

    makers = {_MAKERS.get(m, m) for m in requirements.get("CpuManufacturers") or ()}
    allowed = list(requirements.get("AllowedInstanceTypes") or ())
    excluded = list(requirements.get("ExcludedInstanceTypes") or ())
    generations = set(requirements.get("InstanceGenerations") or ())
    found = []
    for name, data in INSTANCE_TYPES.items():
        vcpus = (data.get("VCpuInfo") or {}).get("DefaultVCpus", 0)
        memory = (data.get("MemoryInfo") or {}).get("SizeInMiB", 0)
        cpu = data.get("ProcessorInfo") or {}
        gpus = sum(g.get("Count", 0) for g in (data.get("GpuInfo") or {}).get("Gpus") or ())
        checks = (
            _within(vcpus, requirements.get("VCpuCount")),
            _within(memory, requirements.get("MemoryMiB")),
            not makers or cpu.get("Manufacturer") in makers,
            not architectures
            or bool(set(architectures) & set(cpu.get("SupportedArchitectures") or ())),
            not allowed or any(fnmatch.fnmatchcase(name, p) for p in allowed),
            not any(fnmatch.fnmatchcase(name, p) for p in excluded),
            not generations
            or ("current" if data.get("CurrentGeneration") else "previous") in generations,
            requirements.get("BurstablePerformance") != "excluded"
            or not data.get("BurstablePerformanceSupported"),
            requirements.get("BareMetal") != "excluded" or not data.get("BareMetal"),
            _within(gpus, requirements.get("AcceleratorCount")),
        )
        if all(checks):
            found.append((vcpus, memory, name))
    return [name for _v, _m, name in sorted(found)]


def apply_instance_information() -> None:
    """SSM DescribeInstanceInformation and the LaunchTime of a restarted instance in moto (see
    the module's docstring); once."""
    if _INFORMATION_APPLIED:
        return
    from moto.core.responses import ActionResult
    from moto.ec2.models import ec2_backends
    from moto.ssm.responses import SimpleSystemManagerResponse

    def describe_instance_information(self: Any) -> Any:
        wanted: list[str] = []
        for item in self._get_param("Filters") or []:
            if item.get("Key") == "InstanceIds":
                wanted.extend(item.get("Values") or [])
        backend = ec2_backends[self.current_account][self.region]
        running = {
            i.id
            for reservation in backend.reservations.values()
            for i in reservation.instances
            if i.state == "running"
        }
        found = [
            {"InstanceId": i, "PingStatus": "Online", "ResourceType": "EC2Instance"}
            for i in dict.fromkeys(wanted or sorted(running))
            if i in running
        ]
        return ActionResult({"InstanceInformationList": found})

    SimpleSystemManagerResponse.describe_instance_information = (  # type: ignore[attr-defined]
        describe_instance_information
    )
    from moto.core.utils import utcnow
    from moto.ec2.models.instances import Instance

    start = Instance.start

    def start_now(self: Any) -> Any:
        previous = start(self)
        if previous.name != "running":
            self.launch_time = utcnow()
        return previous

    Instance.start = start_now  # type: ignore[method-assign]
    _INFORMATION_APPLIED.append(True)


def apply_instance_requirements() -> None:
    """Attribute-based instance type selection in moto (see the module's docstring); once."""
    if _REQUIREMENTS_APPLIED:
        return
    from moto.core.responses import ActionResult
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.models.fleets import FleetsBackend
    from moto.ec2.responses import EC2Response

    create_fleet = FleetsBackend.create_fleet

    def create_fleet_by_requirements(self: Any, *args: Any, **kwargs: Any) -> Any:
        configs = kwargs.get("launch_template_configs") or []
        for config in configs:
            overrides = []
            for override in config.get("Overrides") or []:
                requirements = override.get("InstanceRequirements")
                if not requirements or override.get("InstanceType"):
                    overrides.append(override)
                    continue
                types = types_for(requirements)
                if not types:
                    raise EC2ClientError(
                        "InvalidParameterValue",
                        "InstanceRequirements: no instance type meets these requirements",
                    )
                base = {k: v for k, v in override.items() if k != "InstanceRequirements"}
                overrides.extend(base | {"InstanceType": t} for t in types)
            config["Overrides"] = overrides
        return create_fleet(self, *args, **kwargs)

    def get_instance_types_from_instance_requirements(self: Any) -> Any:
        requirements = self._get_param("InstanceRequirements", {})
        architectures = self._get_param("ArchitectureTypes", [])
        types = types_for(requirements, architectures)
        return ActionResult({"InstanceTypes": [{"InstanceType": t} for t in types]})

    FleetsBackend.create_fleet = create_fleet_by_requirements  # type: ignore[method-assign]
    EC2Response.get_instance_types_from_instance_requirements = (  # type: ignore[attr-defined]
        get_instance_types_from_instance_requirements
    )
    _REQUIREMENTS_APPLIED.append(True)
