#!/usr/bin/env bash
# PID 1 of one emulated instance (devstack/sandbox.py starts it in new mount and PID namespaces).
#
#   init.sh <sandbox-dir> [host-dir-under-/tmp ...]
#
# Gives the instance a root view of its own without changing the host: an overlay over each
# directory the user data and the runner write (lower = the host's, upper/work = the sandbox's),
# a private /tmp (the host directories named after the sandbox stay visible in it: a checkout
# cloned under /tmp), a fresh /run holding the instance metadata the IMDS stand-in serves
# (devstack/instance/bin/curl), and /proc of the new PID namespace. Prints "ready", then waits;
# SIGTERM (the `shutdown` stand-in) powers the instance off: when PID 1 exits, the kernel kills
# every process of the namespace and the mounts go with it.
set -euo pipefail

sandbox="$1"
shift
keep=("$@")
readonly OVERLAID=(etc opt var home root srv usr/local)

for dir in "${OVERLAID[@]}"; do
  [[ -d "/${dir}" ]] || continue
  name="${dir//\//-}"
  mkdir -p "${sandbox}/upper/${name}" "${sandbox}/work/${name}"
  mount -t overlay "instance-${name}" \
    -o "lowerdir=/${dir},upperdir=${sandbox}/upper/${name},workdir=${sandbox}/work/${name}" "/${dir}"
done
# The runner user must reach the stack's Python under /root (a pyenv); copy-up changes the
# instance's /root only, the host's stays as it is.
chmod 0711 /root

mount -t tmpfs -o mode=0755,size=16m instance-run /run
mkdir -p /run/devstack/imds
mount --bind "${sandbox}/imds" /run/devstack/imds
mount -o remount,bind,ro /run/devstack/imds

index=0
for dir in "${keep[@]}"; do
  mkdir -p "/run/devstack/keep/${index}"
  mount --bind "${dir}" "/run/devstack/keep/${index}"
  index=$((index + 1))
done
mkdir -p "${sandbox}/tmp"
chmod 1777 "${sandbox}/tmp"
mount --bind "${sandbox}/tmp" /tmp
index=0
for dir in "${keep[@]}"; do
  mkdir -p "${dir}"
  mount --bind "/run/devstack/keep/${index}" "${dir}"
  index=$((index + 1))
done
mount -t proc proc /proc

mkdir -p /var/lib/devstack
echo ready

trap 'exit 0' TERM
while true; do
  sleep 3600 &
  wait "$!" || true
done
