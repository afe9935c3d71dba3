#!/usr/bin/env bash
# Runner instance bootstrap (cloud-init user data runs it as root, once per boot): creates the
# unprivileged runner user, blocks the instance metadata service for it, installs the GitHub
# Actions runner at a pinned version with its SHA-256 checked (or verifies one baked into the AMI),
# installs start-runner.sh, and writes the region for it. Idempotent: a second run changes nothing
# that is already in place.
#
# Environment (set by terraform/templates/user-data.sh.tftpl):
#   RUNNER_VERSION       runner version, e.g. 2.329.0 (>= 2.329.0: GitHub refuses older runners)
#   RUNNER_SHA256_X64    SHA-256 of actions-runner-linux-x64-<version>.tar.gz
#   RUNNER_SHA256_ARM64  SHA-256 of actions-runner-linux-arm64-<version>.tar.gz
#   RUNNER_PREINSTALLED  "true": the AMI has the runner at RUNNER_DIR; download nothing
#   RUNNER_DOWNLOAD_URL  base URL of the runner releases (default GitHub's; a mirror for private
#                        subnets): <base>/v<version>/actions-runner-linux-<arch>-<version>.tar.gz
#   START_RUNNER_SRC     start-runner.sh to install (default /opt/jitrunners/src/start-runner.sh)
#   RUNNER_DIR (/opt/actions-runner), RUNNER_USER (runner), JITRUNNERS_LOG_DIR (/var/log/jitrunners),
#   JITRUNNERS_INSTALL_DIR (/opt/jitrunners), JITRUNNERS_ENV_DIR (/etc/jitrunners): overridable so
#   the bats tests run it in a sandbox.
set -euo pipefail
umask 022

RUNNER_DIR="${RUNNER_DIR:-/opt/actions-runner}"
RUNNER_USER="${RUNNER_USER:-runner}"
RUNNER_VERSION="${RUNNER_VERSION:-}"
RUNNER_PREINSTALLED="${RUNNER_PREINSTALLED:-false}"
START_RUNNER_SRC="${START_RUNNER_SRC:-/opt/jitrunners/src/start-runner.sh}"
INSTALL_DIR="${JITRUNNERS_INSTALL_DIR:-/opt/jitrunners}"
ENV_DIR="${JITRUNNERS_ENV_DIR:-/etc/jitrunners}"
LOG_DIR="${JITRUNNERS_LOG_DIR:-/var/log/jitrunners}"
DOWNLOAD_BASE="${RUNNER_DOWNLOAD_URL:-https://github.com/actions/runner/releases/download}"
DOWNLOAD_BASE="${DOWNLOAD_BASE%/}"

work_dir=""

log() {
  # One line per event, UTC, to stderr and the log file the CloudWatch agent (if any) tails.
  local line
  line="$(date -u +%Y-%m-%dT%H:%M:%SZ) bootstrap: $*"
  printf '%s\n' "${line}" >&2
  printf '%s\n' "${line}" >>"${LOG_DIR}/bootstrap.log" 2>/dev/null || true
}

fail() {
  log "FAILED: $*"
  exit 1
}

cleanup() {
  if [[ -n "${work_dir}" ]]; then
    rm -rf -- "${work_dir}"
  fi
}

runner_arch() {
  case "$(uname -m)" in
    x86_64 | amd64) echo x64 ;;
    aarch64 | arm64) echo arm64 ;;
    *) fail "unsupported CPU architecture $(uname -m)" ;;
  esac
}

version_at_least() {
  local have="$1" want="$2"
  [[ "$(printf '%s\n%s\n' "${want}" "${have}" | sort -V | head -n1)" == "${want}" ]]
}

ensure_user() {
  if id -u "${RUNNER_USER}" >/dev/null 2>&1; then
    return 0
  fi
  useradd --system --create-home --home-dir "/home/${RUNNER_USER}" --shell /bin/bash "${RUNNER_USER}"
  log "created user ${RUNNER_USER}"
}

ensure_aws_cli() {
  if command -v aws >/dev/null 2>&1; then
    return 0
  fi
  log "installing the AWS CLI"
  if command -v dnf >/dev/null 2>&1; then
    dnf install -y -q awscli-2 || dnf install -y -q awscli
  elif command -v snap >/dev/null 2>&1; then
    snap install aws-cli --classic
  elif command -v apt-get >/dev/null 2>&1; then
    apt-get update -q && apt-get install -y -q awscli
  fi
  command -v aws >/dev/null 2>&1 || fail "no aws CLI and no way to install it: bake it into the AMI"
}

ensure_iptables() {
  if command -v iptables >/dev/null 2>&1 && command -v ip6tables >/dev/null 2>&1; then
    return 0
  fi
  log "installing iptables"
  if command -v dnf >/dev/null 2>&1; then
    dnf install -y -q iptables-nft || true
  elif command -v apt-get >/dev/null 2>&1; then
    apt-get update -q && apt-get install -y -q iptables || true
  fi
  if ! command -v iptables >/dev/null 2>&1 || ! command -v ip6tables >/dev/null 2>&1; then
    fail "no iptables/ip6tables: cannot keep ${RUNNER_USER} off the instance metadata service"
  fi
}

# One OUTPUT rule rejecting the address for one uid, inserted first, added once.
reject_for_uid() {
  local tool="$1" address="$2" uid="$3"
  local -a rule=(OUTPUT -d "${address}" -m owner --uid-owner "${uid}" -j REJECT)
  if "${tool}" -w -C "${rule[@]}" >/dev/null 2>&1; then
    return 0
  fi
  "${tool}" -w -I "${rule[@]}" || fail "${tool} could not block ${address} for uid ${uid}"
}

# Jobs run as the runner user; the instance metadata service hands out the instance role's
# credentials to any local process. Root (this script, the SSM agent, start-runner.sh) keeps it.
block_imds_for_runner() {
  local uid
  uid="$(id -u "${RUNNER_USER}")" || fail "no user ${RUNNER_USER}"
  if ((uid == 0)); then
    fail "RUNNER_USER ${RUNNER_USER} is root: refusing to run jobs with the instance's credentials"
  fi
  ensure_iptables
  reject_for_uid iptables 169.254.169.254 "${uid}"
  reject_for_uid ip6tables fd00:ec2::254 "${uid}"
  log "instance metadata blocked for ${RUNNER_USER} (uid ${uid})"
}

# The region for start-runner.sh, from instance metadata (IMDSv2: a token first).
write_region() {
  local token region
  token="$(curl -fsS -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' \
    http://169.254.169.254/latest/api/token)" || fail "instance metadata unreachable"
  region="$(curl -fsS -H "X-aws-ec2-metadata-token: ${token}" \
    http://169.254.169.254/latest/meta-data/placement/region)" || fail "no region in instance metadata"
  install -d -m 0755 "${ENV_DIR}"
  printf 'AWS_DEFAULT_REGION=%s\n' "${region}" >"${ENV_DIR}/env.tmp"
  mv -f "${ENV_DIR}/env.tmp" "${ENV_DIR}/env"
  chmod 0644 "${ENV_DIR}/env"
}

install_runner() {
  local arch expected tarball url
  if [[ "${RUNNER_PREINSTALLED}" == true ]]; then
    [[ -x "${RUNNER_DIR}/run.sh" ]] || fail "RUNNER_PREINSTALLED but no ${RUNNER_DIR}/run.sh in the AMI"
    log "using the runner baked into the AMI at ${RUNNER_DIR}"
    return 0
  fi
  [[ "${RUNNER_VERSION}" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "RUNNER_VERSION '${RUNNER_VERSION}' is not a version"
  version_at_least "${RUNNER_VERSION}" 2.329.0 || fail "runner ${RUNNER_VERSION} is older than 2.329.0 (GitHub refuses it)"
  if [[ -f "${RUNNER_DIR}/.jitrunners-version" && "$(cat "${RUNNER_DIR}/.jitrunners-version")" == "${RUNNER_VERSION}" ]]; then
    log "runner ${RUNNER_VERSION} already installed"
    return 0
  fi
  arch="$(runner_arch)"
  if [[ "${arch}" == x64 ]]; then
    expected="${RUNNER_SHA256_X64:-}"
  else
    expected="${RUNNER_SHA256_ARM64:-}"
  fi
  [[ "${expected}" =~ ^[0-9a-f]{64}$ ]] || fail "no SHA-256 for the ${arch} runner ${RUNNER_VERSION}: refusing to install an unverified runner"

  tarball="${work_dir}/actions-runner-linux-${arch}-${RUNNER_VERSION}.tar.gz"
  url="${DOWNLOAD_BASE}/v${RUNNER_VERSION}/actions-runner-linux-${arch}-${RUNNER_VERSION}.tar.gz"
  log "downloading ${url}"
  curl -fsSL --retry 5 --retry-delay 2 --connect-timeout 10 -o "${tarball}" "${url}" || fail "download failed"
  printf '%s  %s\n' "${expected}" "${tarball}" | sha256sum --check --status \
    || fail "SHA-256 mismatch for ${url}"
  log "checksum verified (${expected})"

  rm -rf -- "${RUNNER_DIR}"
  install -d -m 0755 "${RUNNER_DIR}"
  tar -xzf "${tarball}" -C "${RUNNER_DIR}"
  if [[ -x "${RUNNER_DIR}/bin/installdependencies.sh" ]]; then
    "${RUNNER_DIR}/bin/installdependencies.sh" >>"${LOG_DIR}/installdependencies.log" 2>&1 \
      || log "warning: installdependencies.sh failed (see ${LOG_DIR}/installdependencies.log)"
  fi
  printf '%s\n' "${RUNNER_VERSION}" >"${RUNNER_DIR}/.jitrunners-version"
  log "installed runner ${RUNNER_VERSION} (${arch}) at ${RUNNER_DIR}"
}

install_start_script() {
  [[ -f "${START_RUNNER_SRC}" ]] || fail "no ${START_RUNNER_SRC}"
  install -d -m 0755 "${INSTALL_DIR}"
  # Root-owned: RunCommand runs it as root, so the runner user must not be able to change it.
  install -m 0755 "${START_RUNNER_SRC}" "${INSTALL_DIR}/start-runner.sh.new"
  if ((EUID == 0)); then
    chown root:root "${INSTALL_DIR}/start-runner.sh.new"
  fi
  mv -f "${INSTALL_DIR}/start-runner.sh.new" "${INSTALL_DIR}/start-runner.sh"
  log "installed ${INSTALL_DIR}/start-runner.sh"
}

ensure_ssm_agent() {
  local unit
  for unit in amazon-ssm-agent snap.amazon-ssm-agent.amazon-ssm-agent; do
    if systemctl list-unit-files "${unit}.service" >/dev/null 2>&1; then
      systemctl enable --now "${unit}.service" >/dev/null 2>&1 || true
      log "SSM agent ${unit} enabled"
      return 0
    fi
  done
  log "warning: no SSM agent unit found; RunCommand cannot start the runner"
}

main() {
  install -d -m 0755 "${LOG_DIR}"
  work_dir="$(mktemp -d -t jitrunners-bootstrap.XXXXXX)"
  trap cleanup EXIT
  log "starting (runner ${RUNNER_VERSION:-preinstalled}, user ${RUNNER_USER}, dir ${RUNNER_DIR})"
  ensure_user
  block_imds_for_runner
  ensure_aws_cli
  write_region
  install_runner
  chown -R "${RUNNER_USER}:" "${RUNNER_DIR}"
  install_start_script
  ensure_ssm_agent
  log "done"
}

main "$@"
