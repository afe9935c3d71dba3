#!/usr/bin/env bash
# Runs one just-in-time GitHub Actions runner and exits when it does (docs/contracts.md).
#
#   start-runner.sh <param-name> [idle-timeout-s]
#
# Run as root by SSM RunCommand. Reads the JIT config from the SSM SecureString <param-name> and
# runs $RUNNER_DIR/run.sh as $RUNNER_USER with the config in the environment
# (ACTIONS_RUNNER_INPUT_JITCONFIG), never on a command line or in output. The parameter is not
# deleted here: scale-down deletes the parameters of a batch of ended runners in one call
# (DeleteParameters), so a burst's runners make one Parameter Store call each, and the runner's
# role needs no write access to Parameter Store.
# Exit status: 3 parameter missing or unreadable, 4 idle timeout (no job assigned), 2 usage,
# otherwise the runner's own status.
#
# Environment: RUNNER_DIR (/opt/actions-runner), RUNNER_USER (runner; ignored when not root),
# JITRUNNERS_POLL_S (5), JITRUNNERS_STOP_GRACE_S (30), JITRUNNERS_ENV_FILE (/etc/jitrunners/env,
# written by bootstrap.sh: AWS_DEFAULT_REGION).
# No `set -x` anywhere in this file: the JIT config passes through a shell variable.
set -euo pipefail
umask 077

readonly EXIT_USAGE=2
readonly EXIT_MISSING_PARAM=3
readonly EXIT_IDLE=4

RUNNER_DIR="${RUNNER_DIR:-/opt/actions-runner}"
RUNNER_USER="${RUNNER_USER:-runner}"
POLL_S="${JITRUNNERS_POLL_S:-5}"
STOP_GRACE_S="${JITRUNNERS_STOP_GRACE_S:-30}"
ENV_FILE="${JITRUNNERS_ENV_FILE:-/etc/jitrunners/env}"

runner_pid=""
work_dir=""

log() {
  printf '%s start-runner[%s]: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$$" "$*" >&2
}

cleanup() {
  if [[ -n "${work_dir}" ]]; then
    rm -rf -- "${work_dir}"
  fi
}

# Stop the runner's whole process group: TERM, then KILL after the grace period.
stop_runner() {
  local waited=0
  if [[ -z "${runner_pid}" ]] || ! kill -0 "${runner_pid}" 2>/dev/null; then
    return 0
  fi
  kill -TERM -- "-${runner_pid}" 2>/dev/null || kill -TERM "${runner_pid}" 2>/dev/null || true
  while kill -0 "${runner_pid}" 2>/dev/null && ((waited < STOP_GRACE_S)); do
    sleep 1
    waited=$((waited + 1))
  done
  if kill -0 "${runner_pid}" 2>/dev/null; then
    log "runner did not stop within ${STOP_GRACE_S}s; killing it"
    kill -KILL -- "-${runner_pid}" 2>/dev/null || kill -KILL "${runner_pid}" 2>/dev/null || true
  fi
}

on_signal() {
  local signal="$1"
  log "received ${signal}; stopping the runner"
  stop_runner
  exit 143
}

load_region() {
  local line
  if [[ -n "${AWS_DEFAULT_REGION:-}" || ! -r "${ENV_FILE}" ]]; then
    return 0
  fi
  # Only the one key we expect; the file is never sourced.
  while IFS= read -r line; do
    if [[ "${line}" =~ ^AWS_DEFAULT_REGION=([a-z0-9-]+)$ ]]; then
      export AWS_DEFAULT_REGION="${BASH_REMATCH[1]}"
    fi
  done <"${ENV_FILE}"
}

# Print the decrypted parameter value on stdout (captured by the caller, never echoed).
read_parameter() {
  local name="$1"
  local err_file="${work_dir}/get-parameter.err"
  if ! aws ssm get-parameter --name "${name}" --with-decryption \
    --query Parameter.Value --output text 2>"${err_file}"; then
    if grep -q 'ParameterNotFound' "${err_file}"; then
      log "parameter ${name} does not exist (never stored, or deleted: the runner ended)"
    else
      # The CLI's error names the parameter and the error code, never a value.
      log "cannot read parameter ${name}: $(tr '\n' ' ' <"${err_file}" | cut -c1-300)"
    fi
    return 1
  fi
}

# Start run.sh in its own process group with the JIT config in its environment only.
launch_runner() {
  local jit_config="$1"
  local -a as_user=()
  if ((EUID == 0)); then
    if ! id -u "${RUNNER_USER}" >/dev/null 2>&1; then
      log "runner user ${RUNNER_USER} does not exist"
      return 1
    fi
    as_user=(runuser -u "${RUNNER_USER}" --)
  fi
  (
    # `export` is a shell builtin: the value never appears in any process's argv.
    export ACTIONS_RUNNER_INPUT_JITCONFIG="${jit_config}"
    cd "${RUNNER_DIR}"
    exec setsid "${as_user[@]}" "${RUNNER_DIR}/run.sh"
  ) &
  runner_pid=$!
}

job_assigned() {
  compgen -G "${RUNNER_DIR}/_diag/Worker_*.log" >/dev/null
}

main() {
  local param_name="${1:-}"
  local idle_timeout_s="${2:-300}"
  local jit_config status assigned=false

  if [[ -z "${param_name}" || $# -gt 2 || ! "${idle_timeout_s}" =~ ^[0-9]+$ ]]; then
    log "usage: start-runner.sh <param-name> [idle-timeout-s]"
    return "${EXIT_USAGE}"
  fi
  if [[ ! -x "${RUNNER_DIR}/run.sh" ]]; then
    log "no runner at ${RUNNER_DIR}/run.sh"
    return 1
  fi

  work_dir="$(mktemp -d -t start-runner.XXXXXX)"
  trap cleanup EXIT
  trap 'on_signal TERM' TERM
  trap 'on_signal INT' INT
  load_region

  if ! jit_config="$(read_parameter "${param_name}")" || [[ -z "${jit_config}" || "${jit_config}" == "None" ]]; then
    jit_config=""
    return "${EXIT_MISSING_PARAM}"
  fi

  launch_runner "${jit_config}"
  jit_config=""
  log "runner started (pid ${runner_pid}, idle timeout ${idle_timeout_s}s)"

  SECONDS=0
  while kill -0 "${runner_pid}" 2>/dev/null; do
    if [[ "${assigned}" == false ]]; then
      if job_assigned; then
        assigned=true
        log "job assigned after ${SECONDS}s"
      elif ((SECONDS >= idle_timeout_s)); then
        log "no job assigned within ${idle_timeout_s}s; stopping the runner"
        stop_runner
        wait "${runner_pid}" 2>/dev/null || true
        return "${EXIT_IDLE}"
      fi
    fi
    sleep "${POLL_S}"
  done

  if wait "${runner_pid}"; then
    status=0
  else
    status=$?
  fi
  log "runner exited with status ${status}"
  return "${status}"
}

main "$@"
