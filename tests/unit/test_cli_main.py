"""The `jitrunners` entry point: help without a command, expected errors as one line and an exit."""

from __future__ import annotations

import argparse
import sys
import types

import pytest

from jitrunners_cli import main as cli
from jitrunners_cli.errors import CliError


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "usage: jitrunners" in capsys.readouterr().out


def test_an_expected_error_is_one_line_and_its_exit_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail(args: argparse.Namespace) -> int:
        raise CliError(f"no deployment with prefix {args.prefix!r}", exit_code=3)

    def register(subparsers: argparse._SubParsersAction, parents: list) -> None:  # type: ignore[type-arg]
        subparsers.add_parser("boom", parents=parents).set_defaults(func=fail)

    module = types.ModuleType("jitrunners_cli.boom")
    module.register = register  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "jitrunners_cli.boom", module)
    monkeypatch.setattr(cli, "COMMANDS", ("boom",))
    assert cli.main(["boom", "--prefix", "nope"]) == 3
    err = capsys.readouterr().err
    assert err == "jitrunners boom: no deployment with prefix 'nope'\n"
