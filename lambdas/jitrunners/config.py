"""Settings and runner templates: read from the environment once per cold start and validated."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Final

from jitrunners.pools import PoolPolicy, hot_counts, parse_pool
from jitrunners.sizing import KEYS as SIZING_KEYS
from jitrunners.sizing import SizingPolicy, parse_policy

DEFAULT_PREFIX: Final = "jitrunners"
DEFAULT_GITHUB_API_URL: Final = "https://api.github.com"
MARKETS: Final = ("spot", "on-demand", "spot-then-on-demand")
SCOPES: Final = ("org", "repo")
OPERATING_SYSTEMS: Final = ("linux", "windows")
# What the budget guard does when an ACTUAL budget notification arrives (README "Budget guardrail").
BUDGET_ACTIONS: Final = ("notify", "spot-only", "kill-switch")
# SSM RunCommand accepts executionTimeout up to 48 h; a runner may not outlive its command.
MAX_LIFETIME_LIMIT_S: Final = 172_800
# generate-jitconfig takes 1 to 100 labels: a template with more could never start a runner.
MAX_LABELS: Final = 100
# A sized job's runner registers with the job's sizing labels too, one per sizing key at most.
MAX_SIZED_LABELS: Final = MAX_LABELS - len(SIZING_KEYS)

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_PREFIX_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")


class ConfigError(ValueError):
    """The configuration is invalid; the message names the template and field at fault."""


@dataclass(frozen=True, slots=True)
class RunnerTemplate:
    """One kind of runner: which jobs it takes (labels) and how its instances are launched."""

    name: str
    labels: tuple[str, ...]
    launch_template: str
    instance_types: tuple[str, ...]
    market: str = "spot-then-on-demand"
    max_runners: int = 10
    runner_group_id: int = 1
    scope: str = "org"
    os: str = "linux"
    subnet_ids: tuple[str, ...] = ()
    start_timeout_s: int = 600
    idle_timeout_s: int = 300
    max_lifetime_s: int = 86_400
    # Per-job sizing labels this template admits (README "Sizing jobs"); None: none.
    sizing: SizingPolicy | None = None
    # Spot circuit breaker (README "Spot circuit breaker"): after this many spot interruptions or
    # capacity refusals within the window, launch on-demand (where the market allows) for
    # `spot_breaker_open_s`. 0: no breaker.
    spot_breaker_threshold: int = 2
    spot_breaker_window_s: int = 900
    spot_breaker_open_s: int = 1800
    # Warm pool (README "Warm pools"); None: every job gets a fresh instance.
    pool: PoolPolicy | None = None

    @property
    def labels_folded(self) -> frozenset[str]:
        return frozenset(label.casefold() for label in self.labels)


# Field name -> (required, validator). Validators return the normalised value or raise ValueError.
def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty string")
    return value.strip()


def _text_list(*, allow_empty: bool, most: int | None = None, why: str = "") -> Any:
    def check(value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise ValueError("must be a list of non-empty strings")
        if not value and not allow_empty:
            raise ValueError("must not be empty")
        if most is not None and len(value) > most:
            raise ValueError(f"must have at most {most} entries, got {len(value)}{why}")
        items = tuple(v.strip() for v in value)
        if len({i.casefold() for i in items}) != len(items):
            raise ValueError("must not repeat an entry")
        return items

    return check


def _positive_int(upper: int | None = None, *, zero: bool = False) -> Any:
    def check(value: Any) -> int:
        # bool is an int in Python; `true` is never a valid limit.
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if zero else 1):
            raise ValueError(
                "must be a non-negative integer" if zero else "must be a positive integer"
            )
        if upper is not None and value > upper:
            raise ValueError(f"must be at most {upper}")
        return value

    return check


def _one_of(choices: Sequence[str]) -> Any:
    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return str(value)

    return check


def _template_name(value: Any) -> str:
    name = _text(value)
    if not _NAME_RE.match(name):
        raise ValueError("must be 1-63 characters of a-z, 0-9, '-' or '_', starting alphanumeric")
    return name


_FIELDS: Final[dict[str, tuple[bool, Any]]] = {
    "name": (True, _template_name),
    "labels": (
        True,
        _text_list(
            allow_empty=False,
            most=MAX_LABELS,
            why=" (GitHub's generate-jitconfig takes at most 100 labels)",
        ),
    ),
    "launch_template": (True, _text),
    "instance_types": (True, _text_list(allow_empty=False)),
    "market": (False, _one_of(MARKETS)),
    # 0: drained (`jitrunners drain`): no launch, its queued jobs wait, its runners finish.
    "max_runners": (False, _positive_int(zero=True)),
    "runner_group_id": (False, _positive_int()),
    "scope": (False, _one_of(SCOPES)),
    "os": (False, _one_of(OPERATING_SYSTEMS)),
    "subnet_ids": (False, _text_list(allow_empty=True)),
    "start_timeout_s": (False, _positive_int()),
    "idle_timeout_s": (False, _positive_int()),
    "max_lifetime_s": (False, _positive_int(MAX_LIFETIME_LIMIT_S)),
    "sizing": (False, parse_policy),
    "spot_breaker_threshold": (False, _positive_int(1000, zero=True)),
    "spot_breaker_window_s": (False, _positive_int(86_400)),
    "spot_breaker_open_s": (False, _positive_int(86_400)),
    "pool": (False, parse_pool),
}


def parse_templates(
    document: str | bytes | Sequence[Mapping[str, Any]],
) -> tuple[RunnerTemplate, ...]:
    """Parse and validate the runner-template document (DESIGN §2); ConfigError on any fault."""
    if isinstance(document, str | bytes):
        try:
            data = json.loads(document)
        except ValueError as exc:
            raise ConfigError(f"runner templates: not valid JSON ({exc})") from None
    else:
        data = document
    if not isinstance(data, list) or not data:
        raise ConfigError("runner templates: must be a non-empty JSON array of objects")

    templates: list[RunnerTemplate] = []
    seen: set[str] = set()
    for index, raw in enumerate(data):
        where = f"runner template #{index}"
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}: must be a JSON object")
        if isinstance(raw.get("name"), str):
            where = f"runner template {raw['name']!r}"
        unknown = sorted(set(raw) - set(_FIELDS))
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}")
        values: dict[str, Any] = {}
        for key, (required, check) in _FIELDS.items():
            if key not in raw:
                if required:
                    raise ConfigError(f"{where}: field {key!r} is required")
                continue
            try:
                values[key] = check(raw[key])
            except ValueError as exc:
                raise ConfigError(f"{where}: field {key!r} {exc}") from None
        template = RunnerTemplate(**values)
        if template.name in seen:
            raise ConfigError(f"{where}: duplicate template name {template.name!r}")
        if template.sizing is not None and len(template.labels) > MAX_SIZED_LABELS:
            raise ConfigError(
                f"{where}: field 'labels' must have at most {MAX_SIZED_LABELS} entries with "
                f"'sizing', got {len(template.labels)} (a sized job's runner registers with up "
                f"to {len(SIZING_KEYS)} sizing labels besides them, and GitHub's "
                f"generate-jitconfig takes at most {MAX_LABELS} labels)"
            )
        for key in ("start_timeout_s", "idle_timeout_s"):
            if getattr(template, key) >= template.max_lifetime_s:
                raise ConfigError(f"{where}: field {key!r} must be less than 'max_lifetime_s'")
        _check_pool(template, where)
        seen.add(template.name)
        templates.append(template)
    return tuple(templates)


def _check_pool(template: RunnerTemplate, where: str) -> None:
    pool = template.pool
    if pool is None:
        return
    if template.max_runners and pool.most > template.max_runners:
        raise ConfigError(
            f"{where}: field 'pool' wants up to {pool.most} members, more than 'max_runners' "
            f"({template.max_runners}): pool members count against it, and jobs need room too"
        )
    if max(hot_counts(pool)) and template.scope != "org":
        raise ConfigError(
            f"{where}: field 'pool' has hot members, which need scope 'org': a hot runner is "
            "registered before any job names a repository"
        )
    stopped = [pool.stopped] + [w.stopped for w in pool.windows if w.stopped is not None]
    if max(stopped) and template.market == "spot":
        raise ConfigError(
            f"{where}: field 'pool' has stopped members, which need a market that allows "
            "on-demand: EC2 stops only on-demand instances of ours (a one-time spot instance "
            "cannot be stopped)"
        )


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def _flag(env: Mapping[str, str], key: str, default: bool) -> bool:
    raw = env.get(key)
    if raw is None or not raw.strip():
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{key}: expected true or false, got {raw!r}")


def _int(env: Mapping[str, str], key: str, default: int, *, minimum: int = 1) -> int:
    raw = env.get(key)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{key}: expected an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{key}: must be at least {minimum}, got {value}")
    return value


def _extra_apps(raw: str) -> tuple[tuple[str, str], ...]:
    """GITHUB_EXTRA_APPS: `[{"app_id": "123", "key_param": "/<prefix>/secrets/..."}, ...]`."""
    if not raw.strip():
        return ()
    try:
        items = json.loads(raw)
    except ValueError:
        raise ConfigError("GITHUB_EXTRA_APPS: not JSON") from None
    if not isinstance(items, list):
        raise ConfigError("GITHUB_EXTRA_APPS: must be a JSON list")
    apps: list[tuple[str, str]] = []
    for item in items:
        if not isinstance(item, dict) or set(item) != {"app_id", "key_param"}:
            raise ConfigError('GITHUB_EXTRA_APPS: each item is {"app_id", "key_param"}')
        app_id, key_param = str(item["app_id"]).strip(), str(item["key_param"]).strip()
        if not app_id.isdigit() or not key_param.startswith("/"):
            raise ConfigError(
                f"GITHUB_EXTRA_APPS: app_id {app_id!r} must be numeric and key_param "
                f"{key_param!r} a parameter name starting with /"
            )
        if app_id in {a for a, _ in apps}:
            raise ConfigError(f"GITHUB_EXTRA_APPS: App {app_id} listed twice")
        apps.append((app_id, key_param))
    return tuple(apps)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the Lambdas read from their environment. See README "Configuration"."""

    prefix: str = DEFAULT_PREFIX
    job_queue_url: str = ""
    dlq_url: str = ""
    templates_json: str = ""
    templates_param: str = ""
    webhook_secret: str = field(default="", repr=False)
    webhook_secret_param: str = ""
    allowed_owners: tuple[str, ...] = ()
    allowed_repos: tuple[str, ...] = ()
    allow_public_repos: bool = False
    max_body_bytes: int = 1_048_576
    # Webhook replay guard: DynamoDB table of claimed X-GitHub-Delivery ids (empty: no guard,
    # for tests; the Terraform module always sets it).
    deliveries_table: str = ""
    # GitHub access (scale-up, scale-down, redrive, housekeeper).
    github_api_url: str = DEFAULT_GITHUB_API_URL
    github_app_id: str = ""
    github_app_key_param: str = ""
    github_token_param: str = ""
    # Further GitHub Apps that generate JIT configs too, (app id, key parameter) each (README
    # "Scaling"): GITHUB_EXTRA_APPS, a JSON list of {"app_id", "key_param"}.
    github_extra_apps: tuple[tuple[str, str], ...] = ()
    # GitHub points per minute this process spends per App installation at most (GitHub's
    # secondary limit: 900; 0: only what GitHub's answers say).
    github_points_per_minute: int = 900
    # Scale-up.
    max_runners: int = 100
    # How long a scale-up container decides launches on its last list of our instances (with
    # its own launches since) before it lists them again (lifecycle/provisioning/headcount.py).
    headcount_max_age_s: int = 5
    check_job_queued: bool = True
    start_delay_s: int = 20
    jit_kms_key_id: str = ""
    runner_subnet_ids: tuple[str, ...] = ()
    runner_script_path: str = "/opt/jitrunners/start-runner.sh"
    # Ownership beyond the tag: only instances with this IAM instance profile are ever
    # terminated, tagged or commanded ("" = the tag alone; the Terraform module always sets it).
    runner_instance_profile_arn: str = ""
    ssm_output_log_group: str = ""
    # Scale-down / redrive / housekeeper.
    rerun_interrupted_jobs: bool = False
    max_reruns: int = 1
    max_redrives: int = 3
    dry_run: bool = False
    # Housekeeper reconciliation: a job queued this long without a runner gets a launch (younger
    # ones may still get theirs from the webhook; the local stack and tests shorten it).
    reconcile_grace_s: int = 120
    # Housekeeper reconciliation: at most this many runs' jobs listed per repository and pass,
    # going round the runs from pass to pass (README "Reconciliation").
    reconcile_run_listings: int = 300
    # Housekeeper: a runner command that ended less than this long ago is left to scale-down,
    # whose status event may still be in the teardown queue (the local stack shortens it).
    teardown_grace_s: int = 120
    # Housekeeper: a pass lists every ended instance EC2 still lists (about an hour's) only this
    # often per container; the passes between describe the live ones and those that ended since
    # the last (lifecycle/recovery/listing.py). 0: every pass lists all (the local stack scales
    # it with its housekeeper's period).
    housekeeper_full_listing_s: int = 900
    # The retry and back-off delays (SQS retries, and the in-Lambda back-off of GitHub and EC2
    # calls), in percent of the built-in ones (the local stack, whose instances boot in a
    # second, runs at 5).
    retry_delay_percent: int = 100
    # Budget guard: what an exceeded budget (ACTUAL notification) does.
    budget_action: str = "notify"

    def back_off_s(self, seconds: float) -> float:
        """A built-in in-Lambda back-off (GitHub 5xx, EC2 throttling), scaled like the retry
        delays: a local stack whose instances boot in a second waits 5 % as long."""
        return max(0.0, seconds) * self.retry_delay_percent / 100

    def pause(self, seconds: float) -> None:
        """Sleep a built-in in-Lambda back-off, scaled (back_off_s)."""
        import time

        time.sleep(self.back_off_s(seconds))

    def retry_delay(self, seconds: int) -> int:
        """A built-in delay scaled by RETRY_DELAY_PERCENT; never below 1 s unless it was 0."""
        if seconds <= 0 or self.retry_delay_percent == 100:
            return max(0, seconds)
        return max(1, round(seconds * self.retry_delay_percent / 100))

    @property
    def jit_param_prefix(self) -> str:
        return f"/{self.prefix}/jit/"

    def jit_param_name(self, instance_id: str) -> str:
        return f"{self.jit_param_prefix}{instance_id}"

    @property
    def github_auth_mode(self) -> str:
        return "app" if self.github_app_id else "token"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        prefix = (env.get("JITRUNNERS_PREFIX") or DEFAULT_PREFIX).strip()
        if not _PREFIX_RE.match(prefix):
            raise ConfigError(
                f"JITRUNNERS_PREFIX: {prefix!r} must be 1-31 characters of a-z, 0-9 or '-'"
            )
        settings = cls(
            prefix=prefix,
            job_queue_url=env.get("JOB_QUEUE_URL", "").strip(),
            dlq_url=env.get("DLQ_URL", "").strip(),
            templates_json=env.get("RUNNER_TEMPLATES", "").strip(),
            templates_param=env.get("RUNNER_TEMPLATES_PARAM", "").strip(),
            webhook_secret=env.get("WEBHOOK_SECRET", ""),
            webhook_secret_param=env.get("WEBHOOK_SECRET_PARAM", "").strip(),
            allowed_owners=tuple(o.casefold() for o in _csv(env.get("ALLOWED_OWNERS"))),
            allowed_repos=tuple(r.casefold() for r in _csv(env.get("ALLOWED_REPOS"))),
            allow_public_repos=_flag(env, "ALLOW_PUBLIC_REPOS", False),
            max_body_bytes=_int(env, "MAX_BODY_BYTES", 1_048_576),
            deliveries_table=env.get("DELIVERIES_TABLE", "").strip(),
            github_api_url=(env.get("GITHUB_API_URL") or DEFAULT_GITHUB_API_URL).rstrip("/"),
            github_app_id=env.get("GITHUB_APP_ID", "").strip(),
            github_app_key_param=env.get("GITHUB_APP_KEY_PARAM", "").strip(),
            github_token_param=env.get("GITHUB_TOKEN_PARAM", "").strip(),
            github_extra_apps=_extra_apps(env.get("GITHUB_EXTRA_APPS", "")),
            github_points_per_minute=_int(env, "GITHUB_POINTS_PER_MINUTE", 900, minimum=0),
            max_runners=_int(env, "MAX_RUNNERS", 100),
            headcount_max_age_s=_int(env, "HEADCOUNT_MAX_AGE_S", 5, minimum=0),
            check_job_queued=_flag(env, "CHECK_JOB_QUEUED", True),
            start_delay_s=_int(env, "START_DELAY_S", 20, minimum=0),
            jit_kms_key_id=env.get("JIT_KMS_KEY_ID", "").strip(),
            runner_subnet_ids=_csv(env.get("RUNNER_SUBNET_IDS")),
            runner_script_path=(
                env.get("RUNNER_SCRIPT_PATH") or "/opt/jitrunners/start-runner.sh"
            ).strip(),
            ssm_output_log_group=env.get("SSM_OUTPUT_LOG_GROUP", "").strip(),
            runner_instance_profile_arn=env.get("RUNNER_INSTANCE_PROFILE_ARN", "").strip(),
            rerun_interrupted_jobs=_flag(env, "RERUN_INTERRUPTED_JOBS", False),
            max_reruns=_int(env, "MAX_RERUNS", 1),
            max_redrives=_int(env, "MAX_REDRIVES", 3, minimum=0),
            dry_run=_flag(env, "DRY_RUN", False),
            reconcile_grace_s=_int(env, "RECONCILE_GRACE_S", 120, minimum=0),
            reconcile_run_listings=_int(env, "RECONCILE_RUN_LISTINGS", 300, minimum=1),
            teardown_grace_s=_int(env, "TEARDOWN_GRACE_S", 120, minimum=0),
            housekeeper_full_listing_s=_int(env, "HOUSEKEEPER_FULL_LISTING_S", 900, minimum=0),
            retry_delay_percent=_int(env, "RETRY_DELAY_PERCENT", 100),
            budget_action=(env.get("BUDGET_ACTION") or "notify").strip(),
        )
        if settings.budget_action not in BUDGET_ACTIONS:
            choices = ", ".join(BUDGET_ACTIONS)
            raise ConfigError(f"BUDGET_ACTION: {settings.budget_action!r} must be one of {choices}")
        if settings.github_extra_apps and not settings.github_app_id:
            raise ConfigError("GITHUB_EXTRA_APPS: further Apps need GITHUB_APP_ID (App mode)")
        if settings.github_app_id in {app_id for app_id, _ in settings.github_extra_apps}:
            raise ConfigError("GITHUB_EXTRA_APPS: the primary App (GITHUB_APP_ID) is listed")
        if settings.retry_delay_percent > 100:
            raise ConfigError("RETRY_DELAY_PERCENT: at most 100 (it only shortens the delays)")
        if settings.start_delay_s > 900:
            raise ConfigError("START_DELAY_S: SQS allows a delay of at most 900 seconds")
        if settings.templates_json and settings.templates_param:
            raise ConfigError("set RUNNER_TEMPLATES or RUNNER_TEMPLATES_PARAM, not both")
        if settings.templates_json:
            parse_templates(settings.templates_json)  # fail the cold start on a bad document
        return settings


@cache
def get_settings() -> Settings:
    """The process-wide settings, read once per cold start (tests clear the cache)."""
    return Settings.from_env()


_parsed: dict[str, tuple[RunnerTemplate, ...]] = {}


def load_templates(settings: Settings) -> tuple[RunnerTemplate, ...]:
    """The runner templates: RUNNER_TEMPLATES, or RUNNER_TEMPLATES_PARAM (Powertools-cached)."""
    if settings.templates_json:
        raw = settings.templates_json
    elif settings.templates_param:
        from jitrunners.aws.params import get_text

        raw = get_text(settings.templates_param)
    else:
        raise ConfigError("no runner templates: set RUNNER_TEMPLATES or RUNNER_TEMPLATES_PARAM")
    # Validate each distinct document once; the parameter cache hands back the same text.
    if raw not in _parsed:
        _parsed.clear()
        _parsed[raw] = parse_templates(raw)
    return _parsed[raw]


def webhook_secrets(settings: Settings) -> tuple[str, ...]:
    """The accepted webhook secrets, one per line (two during a rotation); empty when none is set.

    WEBHOOK_SECRET_PARAM (SSM SecureString, cached by Powertools) wins over WEBHOOK_SECRET, which is
    for the local stack only: in AWS a secret never sits in a plain environment variable.
    """
    if settings.webhook_secret_param:
        from jitrunners.aws.params import get_secret

        raw = get_secret(settings.webhook_secret_param)
    else:
        raw = settings.webhook_secret
    return tuple(line.rstrip("\r") for line in raw.split("\n") if line.strip())
