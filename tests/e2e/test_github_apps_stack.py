"""Two GitHub Apps through the local stack (bench/burst_bench.py --apps): the module's policies
let the Lambdas read the further App's key, and its JIT configs come from its own installation."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.burst_bench import run_burst

from devstack.quotas import Quotas
from tests.support.waits import PATIENCE_S

pytestmark = pytest.mark.e2e


def test_a_burst_spreads_its_jit_configs_over_two_apps_within_their_limits(
    tmp_path: Path,
) -> None:
    jobs = 16
    result = run_burst(
        jobs, {}, workdir=tmp_path, job_seconds=0.2, timeout_s=PATIENCE_S, quotas=Quotas(), apps=2
    )
    assert result["jobs_completed"] == jobs
    assert not any(result["left"].values()), result["left"]
    by_installation = result["jit_configs_by_installation"]
    assert len(by_installation) == 2  # the primary App's installation and the further App's
    assert min(by_installation.values()) > 0
    assert sum(by_installation.values()) >= jobs
    assert result["quotas"]["github_refused_by_limit"] == {}
