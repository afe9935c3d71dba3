"""`runner_download_url`: where the user data's bootstrap downloads the runner (a mirror)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from devstack import deployment, tfrender
from devstack.aws_world import REGION, TEMPLATES_FILE

GITHUB = "https://github.com/actions/runner/releases/download"


def render(**runner: Any) -> tfrender.Documents:
    templates = json.loads(TEMPLATES_FILE.read_text())
    templates.append({**templates[0], "name": "windows", "os": "windows", "labels": ["windows"]})
    return deployment.documents(templates, prefix="jitrunners", region=REGION, runner=runner)


def test_default_is_githubs_releases_and_a_mirror_reaches_both_bootstraps() -> None:
    default = render()
    assert f"RUNNER_DOWNLOAD_URL='{GITHUB}'" in default.user_data["linux-x64"]
    assert f"-DownloadUrl '{GITHUB}'" in default.user_data["windows"]
    mirror = "https://artifacts.internal.example/actions-runner"
    mirrored = render(runner_download_url=mirror)
    assert f"RUNNER_DOWNLOAD_URL='{mirror}'" in mirrored.user_data["linux-x64"]
    assert f"-DownloadUrl '{mirror}'" in mirrored.user_data["windows"]


@pytest.mark.parametrize(
    "url",
    [
        "ftp://mirror.example/runner",
        "https://mirror.example/runner/",
        "https://mirror.example/it's",
        "https://mirror.example/a b",
        "https://mirror.example/$(id)",
        "https://mirror.example/`id`",
    ],
)
def test_invalid_download_urls_are_refused(url: str) -> None:
    with pytest.raises(tfrender.RenderError, match="runner_download_url"):
        render(runner_download_url=url)
