"""Failure metrics a canary rollout watches go out per function version as well."""

from __future__ import annotations

import json

import pytest

from jitrunners.observability import count


def emf_documents(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith('{"_aws"')]


def dimension_sets(documents: list[dict], metric: str) -> list[list[str]]:
    return [
        sorted(dims)
        for doc in documents
        for directive in doc["_aws"]["CloudWatchMetrics"]
        if any(m["Name"] == metric for m in directive["Metrics"])
        for dims in directive["Dimensions"]
    ]


def test_a_watched_failure_carries_the_function_and_version_lambda_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "jitrunners-scale-up")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_VERSION", "7")
    count("StartFailed", reason="github_502")
    count("RunnerLaunched", market="spot")
    documents = emf_documents(capsys.readouterr().out)
    assert sorted(dimension_sets(documents, "StartFailed")) == [
        ["function", "service", "version"],
        ["reason", "service"],
    ]
    [versioned] = [d for d in documents if "version" in d]
    assert (versioned["function"], versioned["version"]) == ("jitrunners-scale-up", "7")
    assert dimension_sets(documents, "RunnerLaunched") == [["market", "service"]]


def test_outside_lambda_no_version_line_goes_out(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_VERSION", raising=False)
    count("WebhookFailed", reason="queue")
    assert dimension_sets(emf_documents(capsys.readouterr().out), "WebhookFailed") == [
        ["reason", "service"]
    ]
