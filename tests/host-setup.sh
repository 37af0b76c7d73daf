#!/usr/bin/env bash
# Prepare this machine for Ferry's tests and demo: system packages, a running Docker
# engine, qemu for arm64 test hosts. Idempotent: skips what is already there.
# Needs root (apt-get, dockerd, binfmt_misc).
set -euo pipefail
log() { printf '[host-setup] %s\n' "$*" >&2; }

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
[ -e /usr/bin/qemu-aarch64-static ] || need+=(qemu-user-static)
command -v update-binfmts >/dev/null || need+=(binfmt-support)
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v htpasswd >/dev/null || need+=(apache2-utils)
command -v ssh-keygen >/dev/null || need+=(openssh-client)
command -v shellcheck >/dev/null || need+=(shellcheck)
# The test bundle carries Debian's arm64 binaries too (apt-get download PKG:arm64).
arm64_new=0
dpkg --print-foreign-architectures | grep -qx arm64 || { dpkg --add-architecture arm64; arm64_new=1; }
if [ ${#need[@]} -gt 0 ] || [ $arm64_new = 1 ]; then
  log "installing ${need[*]}"
  apt-get update -qq
  [ ${#need[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  # No systemd on this machine: run the daemon by hand.
  nohup dockerd >/var/log/dockerd.log 2>&1 &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { tail -n 30 /var/log/dockerd.log >&2; log "dockerd did not start"; exit 1; }
fi

# arm64 test hosts run under qemu-user emulation.
[ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
log "ready: $(docker version -f 'engine {{.Server.Version}}')"
