"""The providers' quotas in the local stack: AWS API token buckets and GitHub's rate limits.

AWS (`AwsQuotas`): one token bucket per API bucket and account, as AWS documents them, checked on
every HTTP attempt of the clients it is attached to (botocore `before-send`, inside the retry
loop: botocore's standard retries see each refusal as the throttle it is). A refused
request is answered as the service answers it: EC2 `RequestLimitExceeded` (HTTP 503, EC2's XML
error), Systems Manager `ThrottlingException` (HTTP 400, JSON 1.1 `__type`).

GitHub (`GitHubQuotas`): per App installation (per App for JWT calls), the primary limit
(requests per hour, `x-ratelimit-*` headers on every answer, 403 with `x-ratelimit-remaining: 0`
once spent), the secondary limits (points per minute: GET/HEAD/OPTIONS 1, other methods 5;
concurrent requests) answered 403 with `retry-after`, and the `actions_runner_registration`
budget of the runner-registration endpoints. The simulator asks it once per REST request
(`GitHubSim.rate_limits`).

Sources (checked against AWS's and GitHub's pages, 2026-11; every value is configurable):
* EC2: "Request throttling for the Amazon EC2 API" (docs.aws.amazon.com/ec2/latest/devguide/
  ec2-api-throttling.html), tables "Request token bucket sizes and refill rates" and "Resource
  token bucket sizes and refill rates".
* Parameter Store: "AWS Systems Manager endpoints and quotas" (General Reference), "Max throughput
  (transactions per second)": default 40, shared by GetParameter, GetParameters and
  GetParametersByPath; "Changing Parameter Store throughput" counts PutParameter in the same
  throughput. AWS publishes no rate for DeleteParameter, SendCommand or the other SSM actions:
  those buckets are assumptions (`ASSUMED`), to be replaced by an account's Service Quotas values.
* KMS: "AWS KMS quotas", cryptographic operations (symmetric) request rate, 5,500 per second in
  most Regions (shared; 10,000 or 50,000 in some): SSM's Encrypt/Decrypt of a SecureString made
  with a customer managed key count against it.
* SQS: standard queues support "a nearly unlimited number of API calls per second" (SQS quotas):
  counted, never throttled.
* GitHub: "Rate limits for the REST API" (docs.github.com/rest/using-the-rest-api/
  rate-limits-for-the-rest-api): installation tokens 5,000 requests per hour (more for large
  organizations, at most 12,500; 15,000 on Enterprise Cloud), secondary limits of 100 concurrent
  requests and 900 points per minute per endpoint group, GET 1 point and POST/PATCH/PUT/DELETE 5;
  exceeded: 403 or 429, `retry-after` when present, else wait until `x-ratelimit-reset` (primary).
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from botocore.awsrequest import AWSResponse

ASSUMED = "assumed (AWS publishes no rate for it): set it from your account's Service Quotas"
EC2_DOC = "EC2 API throttling, request token buckets"
EC2_RESOURCE_DOC = "EC2 API throttling, resource token buckets"


@dataclass(frozen=True)
class Bucket:
    """A token bucket: `capacity` tokens at most, `refill_per_s` added back each second."""

    capacity: float
    refill_per_s: float
    source: str = ""

    def scaled(self, factor: float) -> Bucket:
        return replace(
            self, capacity=self.capacity * factor, refill_per_s=self.refill_per_s * factor
        )


# The buckets of the APIs jitrunners calls (name -> bucket). EC2 request buckets are per action
# (each API is evaluated individually); the category gives the size of each action's own bucket.
AWS_BUCKETS: dict[str, Bucket] = {
    "ec2:non-mutating": Bucket(100, 20, f"{EC2_DOC}: non-mutating actions (Describe*, ...)"),
    "ec2:unfiltered": Bucket(
        50, 10, f"{EC2_DOC}: unfiltered and unpaginated non-mutating (DescribeInstances, ...)"
    ),
    "ec2:mutating": Bucket(50, 5, f"{EC2_DOC}: mutating actions (CreateFleet, ...)"),
    "ec2:CreateTags": Bucket(100, 10, f"{EC2_DOC}: uncategorized, CreateTags"),
    "ec2:DeleteTags": Bucket(100, 10, f"{EC2_DOC}: uncategorized, DeleteTags"),
    "ec2:RunInstances": Bucket(5, 2, f"{EC2_DOC}: uncategorized, RunInstances"),
    "ec2:StartInstances": Bucket(5, 2, f"{EC2_DOC}: uncategorized, StartInstances"),
    "ec2:TerminateInstances": Bucket(100, 5, f"{EC2_DOC}: uncategorized, TerminateInstances"),
    # Resource buckets: one token per instance the request acts on.
    "ec2:RunInstances/instances": Bucket(1000, 2, f"{EC2_RESOURCE_DOC}: RunInstances"),
    "ec2:StartInstances/instances": Bucket(1000, 2, f"{EC2_RESOURCE_DOC}: StartInstances"),
    "ec2:StopInstances/instances": Bucket(1000, 20, f"{EC2_RESOURCE_DOC}: StopInstances"),
    "ec2:TerminateInstances/instances": Bucket(1000, 20, f"{EC2_RESOURCE_DOC}: TerminateInstances"),
    "ssm:parameter-throughput": Bucket(
        40, 40, "SSM quotas: Parameter Store max throughput, default 40 TPS (Get*/PutParameter)"
    ),
    "ssm:SendCommand": Bucket(20, 20, f"SendCommand: {ASSUMED}"),
    "ssm:other": Bucket(20, 20, f"other SSM actions (DeleteParameter, ...): {ASSUMED}"),
    "kms:symmetric": Bucket(5500, 5500, "KMS quotas: cryptographic operations (symmetric) rate"),
}

_EC2_UNFILTERED = frozenset(
    {
        "DescribeInstances",
        "DescribeInstanceStatus",
        "DescribeNetworkInterfaces",
        "DescribeSecurityGroups",
        "DescribeSnapshots",
        "DescribeSpotInstanceRequests",
        "DescribeVolumes",
    }
)
_EC2_OWN_BUCKET = frozenset(
    {"CreateTags", "DeleteTags", "RunInstances", "StartInstances", "TerminateInstances"}
)
_EC2_RESOURCE = {
    "RunInstances": "MaxCount",
    "StartInstances": "InstanceIds",
    "StopInstances": "InstanceIds",
    "TerminateInstances": "InstanceIds",
}
_PARAMETER_THROUGHPUT = frozenset(
    {"GetParameter", "GetParameters", "GetParametersByPath", "PutParameter"}
)
_NON_MUTATING_PREFIXES = ("Describe", "List", "Search", "Get")

_EC2_THROTTLED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
    b"<Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message>"
    b"</Error></Errors><RequestID>devstack-quota</RequestID></Response>"
)
_JSON_THROTTLED = b'{"__type":"ThrottlingException","message":"Rate exceeded"}'


def aws_buckets_for(
    service: str, operation: str, params: Mapping[str, Any]
) -> list[tuple[str, float]]:
    """(bucket name, tokens) a request takes; [] for an API without a modeled quota (SQS).

    `params` are the call's parameters (API names). A bucket name of the per-action kinds is
    returned per action (`ec2:mutating:CreateFleet`), as AWS keeps one bucket per API."""
    if service == "ec2":
        if operation in _EC2_OWN_BUCKET:
            found = [(f"ec2:{operation}", 1.0)]
        elif operation in _EC2_UNFILTERED and not (
            params.get("Filters") or params.get("MaxResults") or params.get("NextToken")
        ):
            found = [(f"ec2:unfiltered:{operation}", 1.0)]
        elif operation.startswith(_NON_MUTATING_PREFIXES):
            found = [(f"ec2:non-mutating:{operation}", 1.0)]
        else:
            found = [(f"ec2:mutating:{operation}", 1.0)]
        if operation in _EC2_RESOURCE:
            value = params.get(_EC2_RESOURCE[operation])
            count = len(value) if isinstance(value, list) else int(value or 1)
            found.append((f"ec2:{operation}/instances", float(max(1, count))))
        return found
    if service == "ssm":
        if operation in _PARAMETER_THROUGHPUT:
            found = [("ssm:parameter-throughput", 1.0)]
            if operation == "PutParameter" and params.get("KeyId"):
                found.append(("kms:symmetric", 1.0))  # SSM encrypts with the caller's key
            elif params.get("WithDecryption"):
                found.append(("kms:symmetric", 1.0))
            return found
        if operation == "SendCommand":
            return [("ssm:SendCommand", 1.0)]
        return [("ssm:other", 1.0)]
    if service == "kms":
        return [("kms:symmetric", 1.0)]
    return []


def bucket_config(name: str, buckets: Mapping[str, Bucket]) -> Bucket:
    """The configured bucket of a (per-action) bucket name: `ec2:mutating:CreateFleet` is sized
    as `ec2:mutating`."""
    if name in buckets:
        return buckets[name]
    return buckets[name.rsplit(":", 1)[0]]


class TokenBucket:
    """Tokens refill continuously at `refill_per_s` up to `capacity`; a request that finds too
    few is refused and takes none (AWS: "the remaining requests within that second fail")."""

    def __init__(self, config: Bucket, clock: Callable[[], float]) -> None:
        self.config = config
        self._clock = clock
        self._tokens = float(config.capacity)
        self._at = self.started = clock()
        self.taken = 0.0
        self.forced = 0.0  # of it, requests a shim had answered already
        self.refused = 0

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(
            self.config.capacity, self._tokens + (now - self._at) * self.config.refill_per_s
        )
        self._at = now

    def available(self, tokens: float) -> bool:
        self._refill()
        return self._tokens + 1e-9 >= tokens

    def take(self, tokens: float, *, force: bool = False) -> None:
        """Take `tokens` (after `available`); `force`: a request answered anyway (the bucket may
        go below zero, and the next requests wait for it)."""
        self._refill()
        self._tokens -= tokens if force else min(tokens, self._tokens + 1e-9)
        self.taken += tokens
        self.forced += tokens if force else 0.0


class _Raw:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data


_CURRENT = threading.local()


@contextmanager
def acting_as(function: str) -> Iterator[None]:
    """Attribute the AWS calls this thread makes meanwhile to `function` (a Lambda's key)."""
    previous = getattr(_CURRENT, "function", None)
    _CURRENT.function = function
    try:
        yield
    finally:
        _CURRENT.function = previous


def current_function(default: str = "-") -> str:
    return getattr(_CURRENT, "function", None) or default


@dataclass
class AwsQuotas:
    """The account's AWS API buckets, enforced on the clients `attach` is given."""

    buckets: dict[str, Bucket] = field(default_factory=lambda: dict(AWS_BUCKETS))
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._live: dict[str, TokenBucket] = {}
        self._pending = threading.local()
        # (function, "service:Operation") -> requests AWS received, of them throttled; calls.
        self.requests: Counter[tuple[str, str]] = Counter()
        self.throttled: Counter[tuple[str, str]] = Counter()
        self.calls: Counter[tuple[str, str]] = Counter()
        # Seconds between a refused attempt and the call's next one, by function: the caller
        # waiting out a throttle inside its invocation (botocore's back-off), not in a queue.
        self.waited_s: Counter[str] = Counter()

    def bucket(self, name: str) -> TokenBucket:
        with self._lock:
            live = self._live.get(name)
            if live is None:
                live = self._live[name] = TokenBucket(bucket_config(name, self.buckets), self.clock)
            return live

    def overdrawn(self) -> dict[str, float]:
        """Buckets that admitted more than they may have since they were made (capacity plus
        the refill since), with the excess: none, where every request was answered right."""
        now = self.clock()
        with self._lock:
            return {
                name: excess
                for name, b in self._live.items()
                if (
                    excess := b.taken
                    - b.forced
                    - b.config.capacity
                    - (now - b.started) * b.config.refill_per_s
                )
                > 1e-6
            }

    def tokens_taken(self) -> dict[str, float]:
        with self._lock:
            return {name: b.taken for name, b in self._live.items()}

    def refusals(self) -> dict[str, int]:
        with self._lock:
            return {name: b.refused for name, b in self._live.items() if b.refused}

    def attach(self, boto_client: Any, function: str | None = None) -> Any:
        """Enforce the quotas on this client's requests; `function` names its caller for the
        counts (None: the Lambda whose invocation runs on the calling thread, `acting_as`)."""
        events = boto_client.meta.events
        service = boto_client.meta.service_model.service_id.hyphenize()
        for operation in boto_client.meta.service_model.operation_names:
            events.register_first(
                f"before-parameter-build.{service}.{operation}",
                self._call_started(service, operation, function),
            )
            events.register(f"before-send.{service}.{operation}", self._before_send)
            events.register(f"after-call.{service}.{operation}", self._call_ended)
        return boto_client

    # ---- per call: which function, which buckets; per attempt: admit or throttle
    def _call_started(
        self, service: str, operation: str, function: str | None
    ) -> Callable[..., None]:
        def started(params: Mapping[str, Any], **_: Any) -> None:
            self._close_unsent()  # a call a shim ended by raising before it was sent
            who = function or current_function()
            key = (who, f"{service}:{operation}")
            with self._lock:
                self.calls[key] += 1
            wanted = aws_buckets_for(service, operation, params)
            self._pending.call = [key, wanted, 0, service, None]

        return started

    def _before_send(self, request: Any, **_: Any) -> Any:
        call = getattr(self._pending, "call", None)
        if call is None:
            return None
        key, wanted, _, service, refused_at = call
        call[2] += 1
        now = self.clock()
        with self._lock:
            self.requests[key] += 1
            if refused_at is not None:
                self.waited_s[key[0]] += now - refused_at
            live = [(self._bucket_locked(name), tokens) for name, tokens in wanted]
            refused = [b for b, tokens in live if not b.available(tokens)]
            if refused:
                for b in refused:
                    b.refused += 1
                self.throttled[key] += 1
                call[4] = now
            else:
                for b, tokens in live:
                    b.take(tokens)
        if not refused:
            return None
        if service == "ec2":
            return AWSResponse(request.url, 503, {}, _Raw(_EC2_THROTTLED))
        headers = {
            "Content-Type": "application/x-amz-json-1.1",
            "x-amzn-ErrorType": "ThrottlingException",
        }
        return AWSResponse(request.url, 400, headers, _Raw(_JSON_THROTTLED))

    def _bucket_locked(self, name: str) -> TokenBucket:
        live = self._live.get(name)
        if live is None:
            live = self._live[name] = TokenBucket(bucket_config(name, self.buckets), self.clock)
        return live

    def _call_ended(self, **_: Any) -> None:
        self._close_unsent()

    def _close_unsent(self) -> None:
        """A call that a devstack shim answered in-process (the agent's InvalidInstanceId and
        GetCommandInvocation, an EC2 capacity refusal): one request in AWS, which takes its
        tokens; never refused here (the shim has answered already)."""
        call = getattr(self._pending, "call", None)
        self._pending.call = None
        if call is None or call[2]:
            return
        key, wanted = call[0], call[1]
        with self._lock:
            self.requests[key] += 1
            for name, tokens in wanted:
                self._bucket_locked(name).take(tokens, force=True)


# ------------------------------------------------------------------------------------- GitHub
@dataclass(frozen=True)
class GitHubLimits:
    """GitHub's REST limits per App installation (see the module's sources)."""

    requests_per_hour: int = 5000
    points_per_minute: int = 900
    concurrent: int = 100
    read_points: int = 1  # GET, HEAD, OPTIONS
    write_points: int = 5  # POST, PATCH, PUT, DELETE
    # The `actions_runner_registration` resource of GET /rate_limit: registration tokens and
    # JIT configs, per hour (GitHub's published /rate_limit example shows 10,000).
    registrations_per_hour: int = 10000
    window_s: float = 60.0
    hour_s: float = 3600.0

    def scaled(self, factor: float) -> GitHubLimits:
        """Every budget times `factor` (at least 1): for tests where a small burst must bind."""

        def at_least_one(value: int) -> int:
            return max(1, round(value * factor))

        return replace(
            self,
            requests_per_hour=at_least_one(self.requests_per_hour),
            points_per_minute=at_least_one(self.points_per_minute),
            concurrent=at_least_one(self.concurrent),
            registrations_per_hour=at_least_one(self.registrations_per_hour),
        )


RATE_LIMIT_DOCS = "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api"
_REGISTRATION = ("/actions/runners/generate-jitconfig", "/actions/runners/registration-token")


@dataclass
class Refusal:
    status: int
    message: str
    headers: dict[str, str]
    limit: str  # "primary", "registration", "points", "concurrent"


class _Budget:
    """One installation's (or App's) state: hourly windows, the minute's points, in flight."""

    def __init__(self, now: float) -> None:
        self.hour_start = now
        self.used = 0
        self.registrations = 0
        self.points: deque[tuple[float, int]] = deque()
        self.points_used = 0
        self.in_flight = 0


@dataclass
class GitHubQuotas:
    """GitHub's limits as the simulator enforces them. `clock` is epoch seconds (GitHub's
    `x-ratelimit-reset` is one)."""

    limits: GitHubLimits = field(default_factory=GitHubLimits)
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._budgets: dict[str, _Budget] = {}
        self.requests: Counter[str] = Counter()  # by "METHOD /template"
        self.refused: Counter[str] = Counter()  # by limit
        self.refused_by_endpoint: Counter[str] = Counter()
        # By installation (or App) key: points, requests and registrations admitted.
        self.points_taken: Counter[str] = Counter()
        self.admitted: Counter[str] = Counter()
        self.registrations: Counter[str] = Counter()
        self.max_in_flight = 0
        self.peak_points = 0  # the most points any budget held within one window

    def points(self, method: str) -> int:
        read = method.upper() in ("GET", "HEAD", "OPTIONS")
        return self.limits.read_points if read else self.limits.write_points

    def admit(
        self, who: str, method: str, path: str, endpoint: str
    ) -> tuple[Refusal | None, dict[str, str]]:
        """Count one request of `who` (an installation or App key); a Refusal to answer instead
        of the real thing, and the `x-ratelimit-*` headers for the answer. A admitted request
        must be `release`d once answered (the concurrency limit)."""
        limits, now = self.limits, self.clock()
        registration = method == "POST" and path.endswith(_REGISTRATION)
        with self._lock:
            self.requests[endpoint] += 1
            budget = self._budgets.get(who)
            if budget is None:
                budget = self._budgets[who] = _Budget(now)
            if now - budget.hour_start >= limits.hour_s:
                budget.hour_start, budget.used, budget.registrations = now, 0, 0
            while budget.points and budget.points[0][0] <= now - limits.window_s:
                budget.points_used -= budget.points.popleft()[1]
            reset = budget.hour_start + limits.hour_s
            refusal = None
            if budget.used >= limits.requests_per_hour:
                refusal = self._primary(who, reset, "core", limits.requests_per_hour)
            elif registration and budget.registrations >= limits.registrations_per_hour:
                refusal = self._primary(
                    who, reset, "actions_runner_registration", limits.registrations_per_hour
                )
            elif budget.in_flight >= limits.concurrent:
                refusal = self._secondary(1, "concurrent")
            elif budget.points_used + self.points(method) > limits.points_per_minute:
                refusal = self._secondary(self._points_wait(budget, method, now), "points")
            if refusal is None:
                budget.used += 1
                budget.registrations += registration
                budget.points.append((now, self.points(method)))
                budget.points_used += self.points(method)
                self.peak_points = max(self.peak_points, budget.points_used)
                self.points_taken[who] += self.points(method)
                self.admitted[who] += 1
                self.registrations[who] += registration
                budget.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, budget.in_flight)
            else:
                self.refused[refusal.limit] += 1
                self.refused_by_endpoint[endpoint] += 1
            headers = {
                "x-ratelimit-limit": str(limits.requests_per_hour),
                "x-ratelimit-remaining": str(max(0, limits.requests_per_hour - budget.used)),
                "x-ratelimit-used": str(budget.used),
                "x-ratelimit-reset": str(math.ceil(reset)),
                "x-ratelimit-resource": "core",
            }
        if refusal is not None:
            headers.update(refusal.headers)
        return refusal, headers

    def release(self, who: str) -> None:
        with self._lock:
            budget = self._budgets.get(who)
            if budget is not None and budget.in_flight > 0:
                budget.in_flight -= 1

    def _points_wait(self, budget: _Budget, method: str, now: float) -> int:
        """Seconds until the minute's window has room for this request."""
        needed = budget.points_used + self.points(method) - self.limits.points_per_minute
        freed = 0
        for at, points in budget.points:
            freed += points
            if freed >= needed:
                return max(1, math.ceil(at + self.limits.window_s - now))
        return max(1, math.ceil(self.limits.window_s))

    @staticmethod
    def _primary(who: str, reset: float, resource: str, limit: int) -> Refusal:
        target = f"installation ID {who}" if who.isdigit() else who
        return Refusal(
            403,
            f"API rate limit exceeded for {target}. If you reach out to GitHub Support for help, "
            "please include the request ID.",
            {"x-ratelimit-remaining": "0", "x-ratelimit-resource": resource},
            "primary" if resource == "core" else "registration",
        )

    @staticmethod
    def _secondary(retry_after: int, limit: str) -> Refusal:
        return Refusal(
            403,
            "You have exceeded a secondary rate limit. Please wait a few minutes before you try "
            "again. If you reach out to GitHub Support for help, please include the request ID.",
            {"retry-after": str(retry_after)},
            limit,
        )


@dataclass
class Limited:
    """One REST request as the limits saw it: answer `refusal` instead, or add `headers`."""

    quotas: GitHubQuotas
    who: str
    refusal: Refusal | None
    headers: dict[str, str]

    def answer(self) -> tuple[int, dict[str, Any], dict[str, str]]:
        assert self.refusal is not None
        body = {
            "message": self.refusal.message,
            "documentation_url": RATE_LIMIT_DOCS,
            "status": str(self.refusal.status),
        }
        return self.refusal.status, body, self.headers

    def release(self) -> None:
        self.quotas.release(self.who)


def _issuer(token: str) -> str:
    """The App id a JWT names ('' when it is none): whose budget a JWT call spends."""
    import jwt

    try:
        return str(jwt.decode(token, options={"verify_signature": False}).get("iss") or "")
    except jwt.PyJWTError:
        return ""


def rate_limit(sim: Any, headers: Any, method: str, path: str, endpoint: str) -> Limited:
    """The simulator's one call into the limits (GitHubSim.rate_limits set): whose budget the
    request spends (its installation token's installation, else the App's or the token's)."""
    quotas: GitHubQuotas = sim.rate_limits
    token = (headers.get("Authorization") or "").partition(" ")[2].strip()
    with sim._lock:
        found = sim._tokens.get(token)
    if found is not None:
        who = str(found[0])
    elif token and token == getattr(sim, "pat", None):
        who = "token"
    else:
        who = f"app {_issuer(token) or sim.app_id}"  # App JWT calls spend their App's budget
    refusal, answer_headers = quotas.admit(who, method, path, endpoint)
    return Limited(quotas, who, refusal, answer_headers)


class ProviderClock:
    """The providers' clock: the time the quotas refill, count their windows and stamp their
    answers in (`x-ratelimit-reset`, `retry-after`), running `rate` emulated seconds a real one
    from the moment it is made. At rate 1 it is real time.

    A faster clock lets a burst that AWS's buckets would spread over 18 minutes run in 12: every
    limit admits `rate` times as much a real second, and whatever waits for a limit must wait in
    emulated seconds too. The stack gives the Lambdas' GitHub client this clock (what it knows of
    GitHub's windows and resets), and runs the Lambdas with RETRY_DELAY_PERCENT = 100 / rate
    (their delays and back-offs, in emulated seconds, become real ones); reports convert real
    seconds with `emulated`. What stays on real time: boots and jobs (the boot model's own scaled
    clock, already far shorter than any wait for a limit), SQS's clock, botocore's sub-second
    retry back-off, and the Lambdas' ages (a job's age, an instance's)."""

    def __init__(
        self,
        rate: float = 1.0,
        *,
        real: Callable[[], float] = time.monotonic,
        epoch: Callable[[], float] = time.time,
    ) -> None:
        if not 1.0 <= rate <= 10.0:
            raise ValueError(f"the providers' clock rate {rate} is not within 1-10")
        self.rate = rate
        self._real = real
        self._real0 = real()
        self._epoch0 = epoch()

    def monotonic(self) -> float:
        return self._real0 + (self._real() - self._real0) * self.rate

    def time(self) -> float:
        """Epoch seconds: real at the clock's start, emulated since."""
        return self._epoch0 + (self._real() - self._real0) * self.rate

    def emulated(self, real_s: float) -> float:
        return real_s * self.rate

    def real(self, emulated_s: float) -> float:
        return emulated_s / self.rate


@dataclass(frozen=True)
class Quotas:
    """What the stack enforces (`Options.quotas`): the AWS buckets and GitHub's limits, on the
    providers' clock (`clock_rate` emulated seconds a real one: ProviderClock)."""

    aws: Mapping[str, Bucket] = field(default_factory=lambda: dict(AWS_BUCKETS))
    github: GitHubLimits = field(default_factory=GitHubLimits)
    clock_rate: float = 1.0

    def scaled(self, factor: float) -> Quotas:
        """Every bucket and budget times `factor`: a small burst meets the limits a large one
        would (tests)."""
        return Quotas(
            aws={name: b.scaled(factor) for name, b in self.aws.items()},
            github=self.github.scaled(factor),
            clock_rate=self.clock_rate,
        )
