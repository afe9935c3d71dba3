"""One deployment of the module, found by prefix: its resource names (terraform/documents.tf) and
the settings its Lambdas run with (their environment), read once per command."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Final

from jitrunners_cli import aws
from jitrunners_cli.errors import EXIT_NOT_FOUND, CliError

if TYPE_CHECKING:
    from jitrunners.config import RunnerTemplate, Settings
    from jitrunners.github.client import GitHubClient

FUNCTION_KEYS: Final = ("webhook", "scale-up", "scale-down", "redrive", "housekeeper")
# Where the local stack (or another front door) says what AWS cannot: `make run ARGS=--serve`
# prints these (README "The jitrunners CLI").
WEBHOOK_URL_ENV: Final = "JITRUNNERS_WEBHOOK_URL"
GITHUB_URL_ENV: Final = "JITRUNNERS_GITHUB_URL"


@dataclass(frozen=True)
class Names:
    """Resource names of a deployment, as terraform/documents.tf and the other .tf files build
    them from the prefix."""

    prefix: str

    def function(self, key: str) -> str:
        return f"{self.prefix}-{key}"

    def log_group(self, key: str) -> str:
        return f"/aws/lambda/{self.prefix}-{key}"

    @property
    def job_queue(self) -> str:
        return f"{self.prefix}-jobs"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}-jobs-dlq"

    @property
    def events_dlq(self) -> str:
        return f"{self.prefix}-events-dlq"

    @property
    def templates_param(self) -> str:
        return f"/{self.prefix}/config/runner-templates"

    @property
    def webhook_secret_param(self) -> str:
        return f"/{self.prefix}/secrets/webhook-secret"

    @property
    def github_app_key_param(self) -> str:
        return f"/{self.prefix}/secrets/github-app-key"

    @property
    def github_token_param(self) -> str:
        return f"/{self.prefix}/secrets/github-token"

    @property
    def runner_commands_log_group(self) -> str:
        return f"/{self.prefix}/runner-commands"

    @property
    def api(self) -> str:
        return f"{self.prefix}-webhook"

    @property
    def trace_query(self) -> str:
        return f"{self.prefix}/one-job-end-to-end"

    @property
    def alarm_prefix(self) -> str:
        return f"{self.prefix}-"


@dataclass
class Deployment:
    """What a command needs to know of the deployment; look-ups happen when first needed."""

    names: Names
    job_queue_url: str
    dlq_url: str | None
    _templates: tuple[RunnerTemplate, ...] | None = field(default=None, repr=False)

    @property
    def prefix(self) -> str:
        return self.names.prefix

    @cached_property
    def environment(self) -> dict[str, str] | None:
        """The scale-up function's environment (what the Lambdas run with; every function gets
        the same one, terraform/main.tf local.environment); None without the function."""
        return aws.function_environment(self.names.function("scale-up"))

    @cached_property
    def settings(self) -> Settings:
        from jitrunners.config import ConfigError, Settings

        env = self.environment
        if env is None:
            raise CliError(
                f"no Lambda function {self.names.function('scale-up')}: the deployment "
                f"{self.prefix!r} is incomplete",
                EXIT_NOT_FOUND,
            )
        # The templates come from their parameter; a document in the environment is for tests.
        env = {**env, "JOB_QUEUE_URL": self.job_queue_url, "DLQ_URL": self.dlq_url or ""}
        try:
            return Settings.from_env(env)
        except ConfigError as exc:
            raise CliError(f"the Lambdas' environment is invalid: {exc}") from None

    def templates(self) -> tuple[RunnerTemplate, ...]:
        """The runner templates the Lambdas read (their SSM parameter)."""
        if self._templates is None:
            from jitrunners.config import ConfigError, parse_templates

            raw = aws.parameter(self.names.templates_param)
            if raw is None:
                raise CliError(f"no parameter {self.names.templates_param}", EXIT_NOT_FOUND)
            try:
                self._templates = parse_templates(raw)
            except ConfigError as exc:
                raise CliError(f"{self.names.templates_param}: {exc}") from None
        return self._templates

    def github(self) -> GitHubClient:
        """A GitHub client with the deployment's credentials (its App key or token, from SSM)."""
        from jitrunners.github.auth import AppAuth, Auth, TokenAuth
        from jitrunners.github.client import GitHubClient

        settings = self.settings
        param = settings.github_app_key_param if settings.github_app_id else ""
        param = param or settings.github_token_param
        if not param:
            raise CliError("the Lambdas' environment names no GitHub credentials parameter")
        secret = aws.parameter(param, decrypt=True)
        if secret is None or secret.strip() in ("", "REPLACE_ME"):
            raise CliError(
                f"no GitHub credentials in {param}: run `jitrunners setup github-app` or store "
                "them with aws ssm put-parameter --overwrite",
                EXIT_NOT_FOUND,
            )
        auth: Auth = (
            AppAuth(settings.github_app_id, secret)
            if settings.github_app_id
            else TokenAuth(secret.strip())
        )
        # The CLI waits for a rate limit no longer than a Lambda does: say so instead.
        return GitHubClient(auth, settings.github_api_url)

    def webhook_url(self) -> str:
        override = os.environ.get(WEBHOOK_URL_ENV, "").strip()
        if override:
            return override
        endpoint = aws.api_endpoint(self.names.api)
        if endpoint is None:
            raise CliError(
                f"no HTTP API {self.names.api}: is the module deployed here? "
                f"({WEBHOOK_URL_ENV} names another webhook URL)",
                EXIT_NOT_FOUND,
            )
        return f"{endpoint}/webhook"


def find(prefix: str) -> Deployment:
    """The deployment of that prefix in the current account and Region; CliError when none."""
    names = Names(prefix)
    url = aws.queue_url(names.job_queue)
    if url is None:
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "?"
        raise CliError(
            f"no jitrunners deployment with prefix {prefix!r} in {region} (no queue "
            f"{names.job_queue}); pass --prefix or set JITRUNNERS_PREFIX",
            EXIT_NOT_FOUND,
        )
    return Deployment(names=names, job_queue_url=url, dlq_url=aws.queue_url(names.dlq))


def quiet_lambda_logs() -> None:
    """The Lambdas' domain code logs JSON lines and EMF metrics to stdout (CloudWatch's input):
    in the CLI they would bury its output. Warnings and errors go to stderr, metrics nowhere."""
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
    from jitrunners.observability import logger

    handler = logger.registered_handler
    handler.setStream(_Stderr())  # type: ignore[attr-defined]
    logger.setLevel("WARNING")


class _Stderr:
    """sys.stderr as it is when written to (a test's capture, the terminal)."""

    def write(self, text: str) -> int:
        import sys

        return sys.stderr.write(text)

    def flush(self) -> None:
        import sys

        sys.stderr.flush()
