#!/usr/bin/env bats
# bootstrap.sh in a sandbox: fake curl (instance metadata and the runner download), fake aws and
# systemctl on PATH; every directory redirected under the test's temporary directory.

bats_require_minimum_version 1.5.0

setup() {
  SCRIPT="${BATS_TEST_DIRNAME}/../bootstrap.sh"
  FAKES="${BATS_TEST_TMPDIR}/fakes"
  export RUNNER_DIR="${BATS_TEST_TMPDIR}/actions-runner"
  export JITRUNNERS_INSTALL_DIR="${BATS_TEST_TMPDIR}/opt-jitrunners"
  export JITRUNNERS_ENV_DIR="${BATS_TEST_TMPDIR}/etc-jitrunners"
  export JITRUNNERS_LOG_DIR="${BATS_TEST_TMPDIR}/log"
  export START_RUNNER_SRC="${BATS_TEST_DIRNAME}/../start-runner.sh"
  export FAKE_STATE="${BATS_TEST_TMPDIR}/state"
  RUNNER_USER="$(id -un)"
  export RUNNER_USER
  mkdir -p "${FAKES}" "${FAKE_STATE}"

  # A runner tarball for whatever architecture this machine is.
  mkdir -p "${BATS_TEST_TMPDIR}/pkg/bin"
  printf '#!/bin/sh\necho fake runner\n' >"${BATS_TEST_TMPDIR}/pkg/run.sh"
  chmod +x "${BATS_TEST_TMPDIR}/pkg/run.sh"
  export FAKE_TARBALL="${BATS_TEST_TMPDIR}/runner.tar.gz"
  tar -czf "${FAKE_TARBALL}" -C "${BATS_TEST_TMPDIR}/pkg" .
  GOOD_SHA="$(sha256sum "${FAKE_TARBALL}" | cut -d' ' -f1)"

  cat >"${FAKES}/curl" <<'FAKE'
#!/usr/bin/env bash
printf '%s\n' "$*" >>"${FAKE_STATE}/curl-calls"
out=""
while (($#)); do
  case "$1" in
    -o) out="$2"; shift 2 ;;
    *) url="$1"; shift ;;
  esac
done
case "${url}" in
  */latest/api/token) echo token ;;
  */placement/region) echo eu-west-1 ;;
  */actions-runner-linux-*) cp "${FAKE_TARBALL}" "${out}" ;;
  *) exit 22 ;;
esac
FAKE
  printf '#!/bin/sh\nexit 0\n' >"${FAKES}/aws"
  printf '#!/bin/sh\necho "$*" >>"%s/systemctl-calls"\nexit 0\n' "${FAKE_STATE}" >"${FAKES}/systemctl"
  chmod +x "${FAKES}/curl" "${FAKES}/aws" "${FAKES}/systemctl"
  PATH="${FAKES}:${PATH}"
}

@test "a verified download installs the runner, start-runner.sh and the region, idempotently" {
  RUNNER_VERSION=2.329.0 RUNNER_SHA256_X64="${GOOD_SHA}" RUNNER_SHA256_ARM64="${GOOD_SHA}" \
    run "${SCRIPT}"
  [ "${status}" -eq 0 ]
  [ -x "${RUNNER_DIR}/run.sh" ]
  [ "$(cat "${RUNNER_DIR}/.jitrunners-version")" = 2.329.0 ]
  cmp "${START_RUNNER_SRC}" "${JITRUNNERS_INSTALL_DIR}/start-runner.sh"
  [ "$(cat "${JITRUNNERS_ENV_DIR}/env")" = "AWS_DEFAULT_REGION=eu-west-1" ]
  grep -q 'checksum verified' "${JITRUNNERS_LOG_DIR}/bootstrap.log"
  # IMDSv2: a token is fetched with PUT before the metadata read.
  grep -q -- '-X PUT' "${FAKE_STATE}/curl-calls"

  RUNNER_VERSION=2.329.0 RUNNER_SHA256_X64="${GOOD_SHA}" RUNNER_SHA256_ARM64="${GOOD_SHA}" \
    run "${SCRIPT}"
  [ "${status}" -eq 0 ]
  [[ "${output}" == *"runner 2.329.0 already installed"* ]]
  [ "$(grep -c 'actions-runner-linux' "${FAKE_STATE}/curl-calls")" -eq 1 ]
}

@test "a tarball whose SHA-256 does not match is refused" {
  RUNNER_VERSION=2.329.0 RUNNER_SHA256_X64="$(printf '0%.0s' {1..64})" \
    RUNNER_SHA256_ARM64="$(printf '0%.0s' {1..64})" run "${SCRIPT}"
  [ "${status}" -eq 1 ]
  [[ "${output}" == *"SHA-256 mismatch"* ]]
  [ ! -e "${RUNNER_DIR}/run.sh" ]
}

@test "no checksum means no install" {
  RUNNER_VERSION=2.329.0 RUNNER_SHA256_X64="" RUNNER_SHA256_ARM64="" run "${SCRIPT}"
  [ "${status}" -eq 1 ]
  [[ "${output}" == *"refusing to install an unverified runner"* ]]
}

@test "runners older than 2.329.0 are refused" {
  RUNNER_VERSION=2.328.0 RUNNER_SHA256_X64="${GOOD_SHA}" RUNNER_SHA256_ARM64="${GOOD_SHA}" \
    run "${SCRIPT}"
  [ "${status}" -eq 1 ]
  [[ "${output}" == *"older than 2.329.0"* ]]
}

@test "a runner baked into the AMI is used without a download" {
  mkdir -p "${RUNNER_DIR}"
  cp "${BATS_TEST_TMPDIR}/pkg/run.sh" "${RUNNER_DIR}/run.sh"
  RUNNER_PREINSTALLED=true run "${SCRIPT}"
  [ "${status}" -eq 0 ]
  [[ "${output}" == *"baked into the AMI"* ]]
  run ! grep -q 'actions-runner-linux' "${FAKE_STATE}/curl-calls"
}
