"""Expected failures: printed as one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations


class CliError(Exception):
    """A failure the operator can act on (missing credentials, unknown prefix, access denied)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
