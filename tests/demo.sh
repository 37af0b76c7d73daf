#!/usr/bin/env bash
# The demo: build a bundle from real artifacts, start local test hosts (systemd containers, amd64
# and arm64), carry the bundle to the deploy node and run install.yml against them.
#
#   bash tests/demo.sh          # set up this machine, build the bundle, start the hosts, install
#   bash tests/demo.sh down     # remove the demo hosts
#
# install.yml: verify the bundle, preflight, distribute files, containerd and images on standalone
# hosts, k3s on k3s hosts. The demo's hosts are all standalone (its bundle carries no k3s: only amd64
# k3s built from source exists here; the k3s Molecule scenario runs it). Then the demo starts a
# container from a loaded image on the amd64 host and asks it for a page. Nothing is simulated; the
# application deployment is not in install.yml yet.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
work=$top/tests/output/demo
bundle_version=1.0.0
bundle_on_host=/opt/ferry/bundles/ferry-test-$bundle_version
timings=()
hosts=(ferry-demo-x86:bookworm-amd64:standalone ferry-demo-arm:bookworm-arm64:standalone ferry-demo-kylin:kylin-v10:standalone)
mapfile -t caps < <(grep -v '^#' "$top/tests/images/testhost-caps.txt" | grep .)  # the test hosts' capabilities

step() {  # step NAME COMMAND...: run and print its duration
  local name=$1 start; shift
  printf '\n##### %s\n' "$name"
  start=$(date +%s)
  "$@"
  printf '##### %s: done in %ds\n' "$name" $(( $(date +%s) - start ))
  timings+=("$(printf '%5ds  %s' $(( $(date +%s) - start )) "$name")")
}

down() {
  for entry in "${hosts[@]}"; do
    docker rm -f "${entry%%:*}" >/dev/null 2>&1 || true
    docker volume rm "${entry%%:*}-containerd" >/dev/null 2>&1 || true
  done
  echo "demo hosts and their volumes removed"
}

start_hosts() {
  local entry name image args=(--cap-drop ALL)
  for cap in "${caps[@]}"; do args+=(--cap-add "$cap"); done
  for entry in "${hosts[@]}"; do
    IFS=: read -r name image _ <<<"$entry"
    docker rm -f "$name" >/dev/null 2>&1 || true
    docker volume rm "$name-containerd" >/dev/null 2>&1 || true
    docker run -d --name "$name" --hostname "$name" "${args[@]}" \
      --security-opt seccomp=unconfined --security-opt apparmor=unconfined --cgroupns host \
      -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /run/lock \
      -v "$name-containerd:/var/lib/containerd" "ferry-testhost:$image" >/dev/null
    echo "started $name ($image)"
  done
  for entry in "${hosts[@]}"; do
    name=${entry%%:*}
    for _ in $(seq 1 60); do
      state=$(docker exec "$name" systemctl is-system-running 2>/dev/null || true)
      case $state in running|degraded) break ;; esac
      sleep 1
    done
    echo "$name: systemd $state, $(docker exec "$name" uname -m)"
  done
}

write_inventory() {
  mkdir -p "$work"
  {
    echo "all:"
    echo "  vars: {ansible_connection: community.docker.docker}"
    echo "  children:"
    echo "    deploy:"
    echo "      hosts:"
    echo "        ferry-demo-x86: {bundle_dir: $bundle_on_host}"
    for group in k3s_server k3s_agent standalone; do
      echo "    $group:"
      echo "      hosts:"
      for entry in "${hosts[@]}"; do
        [ "${entry##*:}" = "$group" ] && echo "        ${entry%%:*}: {}"
      done
    done
  } >"$work/hosts.yml"
  cat "$work/hosts.yml"
}

build_bundle() {
  # Debian's containerd, runc and CNI plugins for amd64 and arm64, busybox-based images for both
  # platforms, through playbooks/bundle.yml, signed with a demo key (cached: a rerun takes a second).
  "$top/.venv/bin/python" tests/support/testbundle.py --version "$bundle_version" | tail -n 1 >"$work/bundle-path"
  echo "bundle: $(cat "$work/bundle-path")"
  du -sh "$(cat "$work/bundle-path")"
}

carry_bundle() {
  # What the engineer does with a USB disk: the bundle and the site's allowed_signers onto the deploy node.
  docker exec ferry-demo-x86 mkdir -p /opt/ferry/bundles /etc/ferry
  docker cp "$(cat "$work/bundle-path")/." "ferry-demo-x86:$bundle_on_host"
  docker cp tests/output/testbundle/keys/allowed_signers ferry-demo-x86:/etc/ferry/allowed_signers
  echo "copied to ferry-demo-x86:$bundle_on_host"
}

install() {
  # The test hosts' kernel lacks br_netfilter and containers cannot load it: waived, and the report says so.
  ANSIBLE_CALLBACKS_ENABLED=ansible.posix.profile_roles "$top/.venv/bin/ansible-playbook" -i "$work/hosts.yml" \
    playbooks/install.yml -e '{"preflight_waive": ["br_netfilter"], "bundle_allowed_signers": "/etc/ferry/allowed_signers"}'
}

container_answers() {
  # Not part of install.yml (the application deployment comes later): start a container from the
  # image install.yml loaded, on the amd64 host, and ask it for its page.
  local ctr=(ctr -n k8s.io) body=""
  docker exec ferry-demo-x86 sh -c "ctr -n k8s.io task kill -s KILL demo-web >/dev/null 2>&1; sleep 1; ctr -n k8s.io containers rm demo-web >/dev/null 2>&1; true"
  docker exec ferry-demo-x86 "${ctr[@]}" run -d --net-host ferry.test/web:1.0 demo-web
  for _ in $(seq 1 30); do
    body=$(docker exec ferry-demo-x86 python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8080/', timeout=2).read().decode())" 2>/dev/null) && break
    sleep 1
  done
  echo "GET http://127.0.0.1:8080/ on ferry-demo-x86 -> ${body:-no answer}"
  docker exec ferry-demo-x86 "${ctr[@]}" images ls -q
  docker exec ferry-demo-arm ctr -n k8s.io images check
  [ -n "$body" ]
}

case ${1:-up} in
  down) down ;;
  up)
    total=$(date +%s)
    step "prepare this machine (packages, dockerd, venv)" bash -c 'bash tests/host-setup.sh && bash tests/setup-venv.sh'
    step "test host images (debootstrap, cached by recipe)" bash tests/images/build.sh amd64 arm64 variants
    mkdir -p "$work"
    step "build the bundle (bundle.yml, real Debian binaries, cached)" build_bundle
    step "start local test hosts" start_hosts
    step "inventory" write_inventory
    step "carry the bundle to the deploy node" carry_bundle
    step "install.yml (verify, preflight, distribute, containerd, images)" install
    step "a container from a loaded image answers" container_answers
    step "install.yml again (nothing to change, nothing to move)" install
    printf '\n##### timings\n'
    printf '%s\n' "${timings[@]}"
    printf '\nDemo finished in %ds. Remove the hosts with: bash tests/demo.sh down\n' $(( $(date +%s) - total ))
    ;;
  *) echo "usage: $0 [up|down]" >&2; exit 2 ;;
esac
