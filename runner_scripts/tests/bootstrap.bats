#!/usr/bin/env bats
# bootstrap.sh in a sandbox: fake curl (instance metadata and the runner download), fake aws,
# systemctl, iptables/ip6tables (rules kept in files) and `id` (the runner user is uid 4242, so
# the test may run as root) on PATH; every directory redirected under the test's temporary
# directory.

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
  cat >"${FAKES}/id" <<'FAKE'
#!/usr/bin/env bash
if [[ "$#" -eq 2 && "$1" == -u && "$2" == "${RUNNER_USER}" ]]; then
  echo "${FAKE_RUNNER_UID:-4242}"
  exit 0
fi
exec /usr/bin/id "$@"
FAKE
  # iptables/ip6tables: -C finds a rule in <tool>-rules, -I adds it; every call in <tool>-calls.
  cat >"${FAKES}/iptables" <<'FAKE'
#!/usr/bin/env bash
tool="$(basename "$0")"
printf '%s\n' "$*" >>"${FAKE_STATE}/${tool}-calls"
[[ -e "${FAKE_STATE}/${tool}-broken" ]] && exit 4
[[ "$1" == -w ]] && shift
op="$1"
shift
touch "${FAKE_STATE}/${tool}-rules"
case "${op}" in
  -C) grep -qxF -- "$*" "${FAKE_STATE}/${tool}-rules" ;;
  -I | -A) printf '%s\n' "$*" >>"${FAKE_STATE}/${tool}-rules" ;;
  *) exit 2 ;;
esac
FAKE
  cp "${FAKES}/iptables" "${FAKES}/ip6tables"
  chmod +x "${FAKES}/curl" "${FAKES}/aws" "${FAKES}/systemctl" "${FAKES}/id" "${FAKES}/iptables" \
    "${FAKES}/ip6tables"
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

@test "instance metadata is rejected for the runner user only, and the rules are added once" {
  RUNNER_VERSION=2.329.0 RUNNER_SHA256_X64="${GOOD_SHA}" RUNNER_SHA256_ARM64="${GOOD_SHA}" \
    run "${SCRIPT}"
  [ "${status}" -eq 0 ]
  [ "$(cat "${FAKE_STATE}/iptables-rules")" = "OUTPUT -d 169.254.169.254 -m owner --uid-owner 4242 -j REJECT" ]
  [ "$(cat "${FAKE_STATE}/ip6tables-rules")" = "OUTPUT -d fd00:ec2::254 -m owner --uid-owner 4242 -j REJECT" ]
  [[ "${output}" == *"instance metadata blocked for ${RUNNER_USER} (uid 4242)"* ]]

  RUNNER_VERSION=2.329.0 RUNNER_SHA256_X64="${GOOD_SHA}" RUNNER_SHA256_ARM64="${GOOD_SHA}" \
    run "${SCRIPT}"
  [ "${status}" -eq 0 ]
  [ "$(wc -l <"${FAKE_STATE}/iptables-rules")" -eq 1 ]
  [ "$(wc -l <"${FAKE_STATE}/ip6tables-rules")" -eq 1 ]
  [ "$(grep -c -- '-I OUTPUT' "${FAKE_STATE}/iptables-calls")" -eq 1 ]
}

@test "a metadata block that cannot be applied fails the bootstrap before the runner is installed" {
  touch "${FAKE_STATE}/ip6tables-broken"
  RUNNER_VERSION=2.329.0 RUNNER_SHA256_X64="${GOOD_SHA}" RUNNER_SHA256_ARM64="${GOOD_SHA}" \
    run "${SCRIPT}"
  [ "${status}" -eq 1 ]
  [[ "${output}" == *"ip6tables could not block fd00:ec2::254 for uid 4242"* ]]
  [ ! -e "${RUNNER_DIR}/run.sh" ]
  run ! grep -q 'enable' "${FAKE_STATE}/systemctl-calls"
}

@test "a runner user with uid 0 is refused" {
  FAKE_RUNNER_UID=0 RUNNER_VERSION=2.329.0 RUNNER_SHA256_X64="${GOOD_SHA}" \
    RUNNER_SHA256_ARM64="${GOOD_SHA}" run "${SCRIPT}"
  [ "${status}" -eq 1 ]
  [[ "${output}" == *"is root: refusing"* ]]
}
