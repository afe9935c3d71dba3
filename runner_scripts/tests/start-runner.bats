#!/usr/bin/env bats
# start-runner.sh with a fake `aws` CLI and a fake Actions runner (docs/contracts.md).

bats_require_minimum_version 1.5.0

SECRET='eyJqaXQiOiJzdXBlci1zZWNyZXQtY29uZmlnIn0='

setup() {
  SCRIPT="${BATS_TEST_DIRNAME}/../start-runner.sh"
  FAKES="${BATS_TEST_TMPDIR}/fakes"
  export RUNNER_DIR="${BATS_TEST_TMPDIR}/actions-runner"
  export FAKE_STATE="${BATS_TEST_TMPDIR}/state"
  export FAKE_PARAM="${FAKE_STATE}/param"
  export JITRUNNERS_POLL_S=0.1
  export JITRUNNERS_STOP_GRACE_S=3
  export JITRUNNERS_ENV_FILE="${BATS_TEST_TMPDIR}/no-env"
  export FAKE_EXPECT="${SECRET}"
  # As root (CI), runuser switches to this user; otherwise the script runs as the current user.
  RUNNER_USER="$(id -un)"
  export RUNNER_USER
  mkdir -p "${FAKES}" "${RUNNER_DIR}/_diag" "${FAKE_STATE}"
  printf '%s' "${SECRET}" >"${FAKE_PARAM}"

  # Fake aws: get-parameter prints the stored value; any other call fails (the runner's role may
  # only read its parameter). Every argv is recorded so a test can prove the secret was never an
  # argument.
  cat >"${FAKES}/aws" <<'FAKE'
#!/usr/bin/env bash
printf '%s\n' "$*" >>"${FAKE_STATE}/aws-calls"
case "$1 $2" in
  "ssm get-parameter")
    if [[ -f "${FAKE_PARAM}" ]]; then cat "${FAKE_PARAM}"; echo; exit 0; fi
    echo "An error occurred (ParameterNotFound) when calling the GetParameter operation: " >&2
    exit 254 ;;
esac
echo "fake aws: unexpected $*" >&2
exit 1
FAKE
  # Fake runner: FAKE_RUNNER_MODE = job (exit 0) | fail (exit 7) | idle (waits to be stopped).
  cat >"${RUNNER_DIR}/run.sh" <<'FAKE'
#!/usr/bin/env bash
printf '%s\n' "$#:$*" >"${FAKE_STATE}/runner-args"
if [[ "${ACTIONS_RUNNER_INPUT_JITCONFIG:-}" == "${FAKE_EXPECT}" ]]; then
  echo ok >"${FAKE_STATE}/runner-env"
else
  echo wrong >"${FAKE_STATE}/runner-env"
fi
echo "fake runner: listening for jobs"
# While everything runs: is the secret on any process's command line?
if grep -lsF "${FAKE_EXPECT}" /proc/[0-9]*/cmdline >/dev/null 2>&1; then
  echo exposed >"${FAKE_STATE}/cmdline-check"
else
  echo clean >"${FAKE_STATE}/cmdline-check"
fi
case "${FAKE_RUNNER_MODE:-job}" in
  job) touch "_diag/Worker_20260101-000000-utc.log"; sleep 0.3; exit 0 ;;
  fail) touch "_diag/Worker_20260101-000000-utc.log"; sleep 0.3; exit 7 ;;
  idle) trap 'echo stopped >"${FAKE_STATE}/runner-stopped"; exit 0' TERM; while true; do sleep 0.1; done ;;
esac
FAKE
  chmod +x "${FAKES}/aws" "${RUNNER_DIR}/run.sh"
  PATH="${FAKES}:${PATH}"
}

@test "a job runs: the parameter is read, left to scale-down, and the runner's status 0 is returned" {
  run "${SCRIPT}" /jitrunners/jit/i-0abc 30
  [ "${status}" -eq 0 ]
  # One Parameter Store call, a read: scale-down deletes ended runners' parameters in batches.
  [ "$(cat "${FAKE_STATE}/aws-calls")" = "ssm get-parameter --name /jitrunners/jit/i-0abc --with-decryption --query Parameter.Value --output text" ]
  [ -f "${FAKE_PARAM}" ]
  [ "$(cat "${FAKE_STATE}/runner-env")" = ok ]
  [[ "${output}" == *"job assigned"* ]]
}

@test "an unreadable parameter (throttled, denied) exits 3 with the CLI's error, no secret" {
  cat >"${FAKES}/aws" <<'FAKE'
#!/usr/bin/env bash
printf '%s\n' "$*" >>"${FAKE_STATE}/aws-calls"
echo "An error occurred (ThrottlingException) when calling the GetParameter operation: Rate exceeded" >&2
exit 254
FAKE
  run "${SCRIPT}" /jitrunners/jit/i-0abc 30
  [ "${status}" -eq 3 ]
  [[ "${output}" == *"cannot read parameter /jitrunners/jit/i-0abc: An error occurred (ThrottlingException)"* ]]
  [ ! -f "${FAKE_STATE}/runner-args" ]
}

@test "the runner failing exits with the runner's status" {
  FAKE_RUNNER_MODE=fail run "${SCRIPT}" /jitrunners/jit/i-0abc 30
  [ "${status}" -eq 7 ]
  [[ "${output}" == *"runner exited with status 7"* ]]
}

@test "a missing parameter exits 3 without starting the runner" {
  rm -f "${FAKE_PARAM}"
  run "${SCRIPT}" /jitrunners/jit/i-0gone 30
  [ "${status}" -eq 3 ]
  [[ "${output}" == *"does not exist"* ]]
  [ ! -f "${FAKE_STATE}/runner-args" ]
}

@test "no job within the idle timeout stops the runner and exits 4" {
  FAKE_RUNNER_MODE=idle run "${SCRIPT}" /jitrunners/jit/i-0abc 1
  [ "${status}" -eq 4 ]
  [ "$(cat "${FAKE_STATE}/runner-stopped")" = stopped ]
  [[ "${output}" == *"no job assigned within 1s"* ]]
}

@test "the secret is never printed, logged, or passed as an argument" {
  run "${SCRIPT}" /jitrunners/jit/i-0abc 30
  [ "${status}" -eq 0 ]
  [[ "${output}" != *"${SECRET}"* ]]
  run ! grep -qF "${SECRET}" "${FAKE_STATE}/aws-calls"
  run ! grep -qF "${SECRET}" "${FAKE_STATE}/runner-args"
  run ! grep -rqF "${SECRET}" "${RUNNER_DIR}" "${BATS_TEST_TMPDIR}/fakes"
  [ "$(cat "${FAKE_STATE}/runner-args")" = "0:" ]
  [ "$(cat "${FAKE_STATE}/cmdline-check")" = clean ]
}

@test "the script holds no xtrace that could leak the secret" {
  run grep -nE '^[^#]*(set -[a-z]*x|set -o xtrace)' "${SCRIPT}"
  [ "${status}" -eq 1 ]
}

@test "usage errors exit 2" {
  run "${SCRIPT}"
  [ "${status}" -eq 2 ]
  run "${SCRIPT}" /p not-a-number
  [ "${status}" -eq 2 ]
}
