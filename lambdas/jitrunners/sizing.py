"""Per-job sizing: a job's `key=value` sizing labels, checked against its template's policy, and
the EC2 instance requirements (attribute-based instance type selection) they become."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from jitrunners.config import RunnerTemplate

# The sizing label keys, each `key=value` (a valid `runs-on` label).
CPU: Final = "cpu"  # vCPUs, exactly
RAM: Final = "ram"  # memory in GiB, exactly
FAMILY: Final = "family"  # instance families, `+`-separated: family=m7i+m7a
ARCH: Final = "arch"  # x64 | arm64
SPOT: Final = "spot"  # true | false
DISK: Final = "disk"  # root volume in GB
GPU: Final = "gpu"  # GPUs, exactly
KEYS: Final = (CPU, RAM, FAMILY, ARCH, SPOT, DISK, GPU)
ARCHITECTURES: Final = ("x64", "arm64")
# EC2's names: GetInstanceTypesFromInstanceRequirements' ArchitectureTypes, and the CPU makers
# whose types boot an AMI of that architecture (an x64 AMI never lands on a Graviton, and back).
EC2_ARCHITECTURE: Final = {"x64": "x86_64", "arm64": "arm64"}
CPU_MANUFACTURERS: Final = {"x64": ("intel", "amd"), "arm64": ("amazon-web-services",)}
MIN_DISK_GB: Final = 8
_FAMILY_RE = re.compile(r"^[a-z][a-z0-9-]{0,15}$")
_NUMBER_RE = re.compile(r"^[1-9][0-9]{0,5}$")
_LABEL_RE = re.compile(r"^([A-Za-z]+)=(.*)$")


@dataclass(frozen=True, slots=True)
class SizingPolicy:
    """What a template lets its jobs ask for (the template's `sizing` field)."""

    max_cpu: int
    max_ram_gb: int
    families: tuple[str, ...]
    arch: str = "x64"  # the architecture of the launch template's AMI
    on_demand: bool = False  # may a job ask for `spot=false`
    max_disk_gb: int = 0  # 0: the `disk` label is refused
    max_gpu: int = 0  # 0: the `gpu` label is refused
    root_device: str = "/dev/xvda"  # the AMI's root device, for the `disk` override


@dataclass(frozen=True, slots=True)
class Sizing:
    """What one job asked for, within its template's policy."""

    labels: tuple[str, ...]  # the job's sizing labels, as the job wrote them
    cpu: int | None = None
    ram_gb: int | None = None
    families: tuple[str, ...] = ()
    arch: str = "x64"
    spot: bool | None = None  # None: the template's market
    disk_gb: int | None = None
    gpu: int = 0

    @property
    def key(self) -> str:
        """A canonical text for this request: launches sharing it share one fleet request, and
        it is the instance's `jitrunners:sizing` tag."""
        parts = []
        for name, value in (
            (CPU, self.cpu),
            (RAM, self.ram_gb),
            (FAMILY, "+".join(self.families) if self.families else None),
            (ARCH, self.arch),
            (SPOT, None if self.spot is None else str(self.spot).lower()),
            (DISK, self.disk_gb),
            (GPU, self.gpu or None),
        ):
            if value is not None:
                parts.append(f"{name}={value}")
        return "/".join(parts)

    def market(self, template_market: str) -> str:
        """The market this job launches in: `spot=false` on-demand, `spot=true` spot only."""
        if self.spot is None:
            return template_market
        return "spot" if self.spot else "on-demand"

    def instance_requirements(self, policy: SizingPolicy) -> dict[str, Any]:
        """EC2's InstanceRequirements: bounded on every axis by the job's request or, where it
        asked nothing, by the policy's maximum; never burstable, bare metal or a previous
        generation; GPUs only when asked for."""
        vcpu = {"Min": self.cpu, "Max": self.cpu} if self.cpu else {"Min": 1, "Max": policy.max_cpu}
        ram = self.ram_gb * 1024 if self.ram_gb else None
        memory = {"Min": ram, "Max": ram} if ram else {"Min": 0, "Max": policy.max_ram_gb * 1024}
        families = self.families or policy.families
        requirements: dict[str, Any] = {
            "VCpuCount": vcpu,
            "MemoryMiB": memory,
            "CpuManufacturers": list(CPU_MANUFACTURERS[self.arch]),
            "AllowedInstanceTypes": [f"{family}.*" for family in families],
            "InstanceGenerations": ["current"],
            "BurstablePerformance": "excluded",
            "BareMetal": "excluded",
            "AcceleratorCount": {"Min": self.gpu, "Max": self.gpu} if self.gpu else {"Max": 0},
        }
        if self.gpu:
            requirements["AcceleratorTypes"] = ["gpu"]
        return requirements


class SizingRefused(ValueError):
    """A job's sizing label is malformed, repeated or outside its template's policy."""

    def __init__(self, reason: str, label: str, detail: str) -> None:
        super().__init__(f"{label}: {detail}")
        self.reason = reason
        self.label = label
        self.detail = detail


def split_key(label: str) -> str | None:
    """The sizing key of a label (`cpu=4` -> `cpu`), or None when it is not a sizing label."""
    match = _LABEL_RE.match(label)
    if match is None:
        return None
    key = match.group(1).casefold()
    return key if key in KEYS else None


def sizing_labels(labels: Iterable[str], fixed: frozenset[str]) -> tuple[str, ...]:
    """The labels of a job that are sizing labels for a template with these (folded) fixed
    labels: `key=value` with a sizing key, and not one of the template's own labels."""
    return tuple(lbl for lbl in labels if split_key(lbl) and lbl.casefold() not in fixed)


def _number(label: str, value: str, most: int, what: str, *, least: int = 1) -> int:
    if not _NUMBER_RE.match(value):
        raise SizingRefused("sizing_malformed", label, f"{what} must be a positive whole number")
    number = int(value)
    if most < least:
        raise SizingRefused("sizing_not_allowed", label, f"this template does not allow {what}")
    if not least <= number <= most:
        raise SizingRefused(
            "sizing_outside_policy", label, f"{what} must be between {least} and {most}"
        )
    return number


def parse(labels: Iterable[str], policy: SizingPolicy, template_market: str) -> Sizing:
    """The job's sizing request from its sizing labels; SizingRefused names the first label at
    fault. Never widens a request: a label outside the policy is refused, not clamped."""
    seen: dict[str, str] = {}
    values: dict[str, Any] = {"arch": policy.arch}
    kept: list[str] = []
    for label in labels:
        key = split_key(label)
        if key is None:
            continue
        value = label.split("=", 1)[1].strip().casefold()
        if key in seen:
            raise SizingRefused("sizing_repeated", label, f"{key} is already given ({seen[key]})")
        seen[key] = label
        kept.append(label)
        if key == CPU:
            values["cpu"] = _number(label, value, policy.max_cpu, "vCPUs")
        elif key == RAM:
            values["ram_gb"] = _number(label, value, policy.max_ram_gb, "memory (GiB)")
        elif key == DISK:
            values["disk_gb"] = _number(
                label, value, policy.max_disk_gb, "disk (GB)", least=MIN_DISK_GB
            )
        elif key == GPU:
            values["gpu"] = _number(label, value, policy.max_gpu, "GPUs")
        elif key == FAMILY:
            values["families"] = _families(label, value, policy)
        elif key == ARCH:
            if value not in ARCHITECTURES:
                raise SizingRefused("sizing_malformed", label, "arch must be x64 or arm64")
            if value != policy.arch:
                raise SizingRefused(
                    "sizing_outside_policy", label, f"this template's runners are {policy.arch}"
                )
        elif key == SPOT:
            values["spot"] = _spot(label, value, policy, template_market)
    return Sizing(labels=tuple(kept), **values)


def _families(label: str, value: str, policy: SizingPolicy) -> tuple[str, ...]:
    families = tuple(part.strip() for part in value.split("+"))
    if not all(_FAMILY_RE.match(f) for f in families):
        raise SizingRefused("sizing_malformed", label, "family must be names joined by '+'")
    if len(set(families)) != len(families):
        raise SizingRefused("sizing_malformed", label, "family repeats a name")
    outside = [f for f in families if f not in policy.families]
    if outside:
        allowed = "+".join(policy.families)
        raise SizingRefused("sizing_outside_policy", label, f"{outside[0]} is not one of {allowed}")
    return tuple(sorted(families))


def _spot(label: str, value: str, policy: SizingPolicy, template_market: str) -> bool:
    if value not in ("true", "false"):
        raise SizingRefused("sizing_malformed", label, "spot must be true or false")
    if value == "false" and not policy.on_demand:
        raise SizingRefused(
            "sizing_outside_policy", label, "this template does not allow on-demand requests"
        )
    if value == "true" and template_market == "on-demand":
        raise SizingRefused("sizing_outside_policy", label, "this template launches on-demand")
    return value == "true"


def parse_policy(raw: Any) -> SizingPolicy | None:
    """The template's `sizing` object (null: no sizing); ValueError names the field at fault."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ValueError("must be an object")
    fields = {
        "max_cpu",
        "max_ram_gb",
        "families",
        "arch",
        "on_demand",
        "max_disk_gb",
        "max_gpu",
        "root_device",
    }
    unknown = sorted(set(raw) - fields)
    if unknown:
        raise ValueError(f"has unknown field(s) {', '.join(map(repr, unknown))}")
    for name in ("max_cpu", "max_ram_gb"):
        if name not in raw:
            raise ValueError(f"needs {name!r}")
    values: dict[str, Any] = {}
    for name, least in (("max_cpu", 1), ("max_ram_gb", 1), ("max_disk_gb", 0), ("max_gpu", 0)):
        if name in raw:
            value = raw[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"field {name!r} must be an integer of at least {least}")
            values[name] = value
    if 0 < values.get("max_disk_gb", 0) < MIN_DISK_GB:
        raise ValueError(f"field 'max_disk_gb' must be 0 or at least {MIN_DISK_GB}")
    families = raw.get("families")
    if (
        not isinstance(families, list)
        or not families
        or not all(isinstance(f, str) and _FAMILY_RE.match(f) for f in families)
        or len(set(families)) != len(families)
    ):
        raise ValueError(
            "field 'families' must be a non-empty list of distinct instance families (m7i, c7g)"
        )
    values["families"] = tuple(families)
    if "arch" in raw:
        if raw["arch"] not in ARCHITECTURES:
            raise ValueError("field 'arch' must be x64 or arm64")
        values["arch"] = raw["arch"]
    if "on_demand" in raw:
        if not isinstance(raw["on_demand"], bool):
            raise ValueError("field 'on_demand' must be true or false")
        values["on_demand"] = raw["on_demand"]
    if "root_device" in raw:
        device = raw["root_device"]
        if not isinstance(device, str) or not device.startswith("/dev/"):
            raise ValueError("field 'root_device' must be a device name such as /dev/xvda")
        values["root_device"] = device
    return SizingPolicy(**values)


def tag_value(labels: Iterable[str]) -> str:
    """The `jitrunners:sizing` tag of a sized job's instance: its sizing labels as it wrote them
    (GitHub matches labels exactly, case aside), `/`-separated: sizing labels never contain one."""
    return "/".join(labels)[:256]


def from_tag(value: str) -> tuple[str, ...]:
    """The sizing labels a `jitrunners:sizing` tag holds (only well-formed sizing labels)."""
    return tuple(part for part in value.split("/") if split_key(part))


def for_job(labels: Iterable[str], template: RunnerTemplate) -> Sizing | None:
    """The job's sizing request on this template, or None when it asks for none (the template's
    own instance types then). SizingRefused when it asks for something the template refuses."""
    found = sizing_labels(labels, template.labels_folded)
    if not found:
        return None
    if template.sizing is None:
        raise SizingRefused(
            "sizing_not_enabled", found[0], f"template {template.name} does not admit sizing labels"
        )
    return parse(found, template.sizing, template.market)
