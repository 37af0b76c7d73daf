#!/usr/bin/env bash
# Build the Ferry test host images offline from Debian's archive.
#
#   tests/images/build.sh [amd64] [arm64] [variants]     (default: all)
#
# Each image carries a label ferry.recipe=<hash of this recipe>; an image whose
# label matches is reused, so a rerun costs seconds. Images:
#   ferry-testhost:bookworm-amd64   Debian 12, systemd, python3 (amd64)
#   ferry-testhost:bookworm-arm64   the same for arm64, run through qemu-user emulation
#   ferry-testhost:<variant>        amd64 base carrying the os-release (and vendor
#                                   release files) of kylin-v10, openeuler-2203,
#                                   uos-20, centos-7: OS detection only.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=ferry-testhost
suite=bookworm
packages=systemd,systemd-sysv,python3,iproute2,procps,ca-certificates,iptables,kmod,openssh-client
recipe=$( { cat "$0"; find "$here/variants" -type f | LC_ALL=C sort | xargs cat; } | sha256sum | cut -c1-16)
work=${FERRY_IMAGE_WORKDIR:-/var/tmp/ferry-images}

log() { printf '[images] %s\n' "$*" >&2; }

current() {  # current IMAGE -> 0 when the image exists with this recipe
  [ "$(docker image inspect -f '{{ index .Config.Labels "ferry.recipe" }}' "$1" 2>/dev/null)" = "$recipe" ]
}

enable_qemu() {
  [ -d /proc/sys/fs/binfmt_misc ] || return 1
  [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
}

build_base() {  # build_base ARCH
  local arch=$1 image=$repo:$suite-$1 root
  if current "$image"; then log "$image is current ($recipe)"; return 0; fi
  [ "$arch" = amd64 ] || enable_qemu
  root=$work/$suite-$arch
  rm -rf "$root"; mkdir -p "$root"
  log "debootstrap $suite $arch into $root"
  debootstrap --variant=minbase --arch="$arch" --include="$packages" "$suite" "$root" >"$work/$suite-$arch.log" 2>&1 \
    || { tail -n 20 "$work/$suite-$arch.log" >&2; exit 1; }
  # A container host: no getty, no udev triggering, a hostname from docker.
  rm -f "$root"/etc/systemd/system/getty.target.wants/* "$root"/etc/machine-id
  : >"$root"/etc/machine-id
  ln -sf /dev/null "$root"/etc/systemd/system/systemd-udevd.service
  ln -sf /dev/null "$root"/etc/systemd/system/systemd-udev-trigger.service
  ln -sf /dev/null "$root"/etc/systemd/system/getty@tty1.service
  apt_clean "$root"
  tar -C "$root" -c . | docker import \
    -c 'CMD ["/lib/systemd/systemd"]' \
    -c "LABEL ferry.recipe=$recipe ferry.arch=$arch" - "$image" >/dev/null
  rm -rf "$root"
  log "built $image"
}

apt_clean() { rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*; }

build_variant() {  # build_variant NAME: amd64 base + the files under variants/NAME (paths relative to /)
  local name=$1 image=$repo:$1 dir=$here/variants/$1 ctr
  if current "$image"; then log "$image is current ($recipe)"; return 0; fi
  ctr=$(docker create "$repo:$suite-amd64")
  # os-release is a link to ../usr/lib/os-release on Debian: replace the link itself.
  docker cp "$dir/." "$ctr:/" 
  docker commit -c 'CMD ["/lib/systemd/systemd"]' \
    -c "LABEL ferry.recipe=$recipe ferry.arch=amd64 ferry.variant=$name" "$ctr" "$image" >/dev/null
  docker rm "$ctr" >/dev/null
  log "built $image"
}

main() {
  local what=("$@")
  [ ${#what[@]} -gt 0 ] || what=(amd64 arm64 variants)
  mkdir -p "$work"
  for w in "${what[@]}"; do
    case $w in
      amd64|arm64) build_base "$w" ;;
      variants)
        build_base amd64
        for v in "$here"/variants/*/; do build_variant "$(basename "$v")"; done ;;
      *) echo "unknown image set: $w" >&2; exit 2 ;;
    esac
  done
}

main "$@"
