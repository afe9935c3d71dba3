#!/usr/bin/env bash
# Simulated Actions runner entry point (the real one is actions/runner's run.sh): one JIT job, then exit.
# Reads ACTIONS_RUNNER_INPUT_JITCONFIG like the real runner; the config is never printed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "${DEVSTACK_PYTHON:-python3}" "${here}/runner.py" "$@"
