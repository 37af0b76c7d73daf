#!/usr/bin/env bash
# The test command: everything, in stages, each with its duration.
#
#   bash tests/run.sh                 # all stages
#   bash tests/run.sh unit lint       # only these stages
#
# Stages: setup (system packages, dockerd, venv, test host images, the test bundle), unit (pytest),
# py36 (vermin: module code stays Python 3.6 compatible), lint (ansible-lint production,
# yamllint), sanity (ansible-test sanity, no ignores), build (ansible-galaxy collection build),
# molecule (every scenario under extensions/molecule).
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1
venv=${FERRY_VENV:-$top/.venv}
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(setup unit py36 lint sanity build molecule)
export PATH=$venv/bin:$PATH ANSIBLE_COLLECTIONS_PATH=$top/.collections ANSIBLE_NOCOLOR=1 PY_COLORS=0
summary=()
failed=0

stage_setup() {
  bash tests/host-setup.sh && bash tests/setup-venv.sh && bash tests/images/build.sh &&
    # The test bundle from Debian's real binaries (cached): unit tests and scenarios use it.
    "$venv/bin/python" tests/support/testbundle.py --version 1.0.0 >/dev/null
}
stage_unit() { "$venv/bin/pytest" -q -p no:cacheprovider tests/unit; }
stage_py36() {
  # Code that runs on target hosts: modules and module_utils (CentOS 7 ships Python 3.6).
  "$venv/bin/vermin" -t=3.6- --no-tips --violations --eval-annotations --backport typing \
    plugins/modules plugins/module_utils
}
stage_lint() { "$venv/bin/ansible-lint" --offline -q && "$venv/bin/yamllint" -s .; }
stage_sanity() { bash tests/sanity.sh; }
stage_build() {
  local out; out=$(mktemp -d)
  "$venv/bin/ansible-galaxy" collection build --force --output-path "$out" . >/dev/null &&
    tar -tzf "$out/ferry-airgap-0.1.0.tar.gz" >"$out/list" &&
    ! grep -qE '^(tests/(images|output|support)|\.collections|\.venv|\.ansible|\.pytest_cache|\.cache|bench|extensions)/' "$out/list" &&
    echo "ferry-airgap-0.1.0.tar.gz: $(wc -l <"$out/list") entries, $(du -h "$out/ferry-airgap-0.1.0.tar.gz" | cut -f1)"
  local rc=$?; rm -rf "$out"; return $rc
}
# Scenarios in $FERRY_MOLECULE_PARALLEL (default: k3s, the longest, which waits on k3s more than it
# computes) start in the background with their own containers and volumes; the others run one after
# another meanwhile. Each scenario's log: tests/output/molecule-<scenario>.log.
molecule_one() {
  "$venv/bin/molecule" test -s "$1" >"tests/output/molecule-$1.log" 2>&1
}
molecule_report() {
  [ "$2" -eq 0 ] || tail -n 80 "tests/output/molecule-$1.log"
  echo "--- $1: $(grep -aE '[0-9]+ passed' "tests/output/molecule-$1.log" | tail -n 1)"
}
# Scenarios in $FERRY_MOLECULE_NEEDS_RELEASE (default: k3s_release) need upstream k3s release files under
# $FERRY_K3S_ARTIFACTS (docs/install.md); testbundle.py --k3s-layout says whether it holds them. Returns 0: run,
# 1: skipped (the reason printed), 2: the artifacts cannot be read (printed; the stage fails).
molecule_gate() {
  local needs=" ${FERRY_MOLECULE_NEEDS_RELEASE-k3s_release} " layout
  local where="FERRY_K3S_ARTIFACTS=${FERRY_K3S_ARTIFACTS:-/work/shared/artifacts/k3s}"
  case "$needs" in *" $1 "*) ;; *) return 0 ;; esac
  if ! layout=$("$venv/bin/python" tests/support/testbundle.py --k3s-layout 2>&1); then
    echo "--- $1: FAIL: $layout"
    return 2
  fi
  case "$layout" in
    "release "*) echo "--- $1: upstream k3s ${layout#release } from $where"; return 0 ;;
    test-bed) echo "--- $1: skipped: $where holds the test-bed build, not upstream release artifacts (docs/install.md)" ;;
    *) echo "--- $1: skipped: $where holds no k3s artifacts (docs/install.md)" ;;
  esac
  return 1
}
# Gate every scenario once; start the $FERRY_MOLECULE_PARALLEL ones (default: k3s, the longest, which waits
# on k3s more than it computes) in the background. Called by stage_molecule, or right after setup when the
# molecule stage is to run, so the background scenarios overlap the unit, lint and sanity stages too.
gated=" " bg_pids=() bg_names=() bg_rc=0 bg_started=0
molecule_start() {
  local scenario parallel=" ${FERRY_MOLECULE_PARALLEL-k3s} " status
  [ $bg_started -eq 0 ] || return 0
  bg_started=1
  for scenario in extensions/molecule/*/molecule.yml; do
    scenario=$(basename "$(dirname "$scenario")")
    molecule_gate "$scenario"; status=$?
    [ $status -eq 0 ] || gated+="$scenario "
    [ $status -ne 2 ] || bg_rc=1
  done
  for scenario in extensions/molecule/*/molecule.yml; do
    scenario=$(basename "$(dirname "$scenario")")
    case "$gated" in *" $scenario "*) continue ;; esac
    case "$parallel" in *" $scenario "*)
      echo "--- molecule test -s $scenario (in the background, from $(date +%H:%M:%S))"
      molecule_one "$scenario" & bg_pids+=($!); bg_names+=("$scenario") ;;
    esac
  done
}
stage_molecule() {
  local scenario rc=0 parallel=" ${FERRY_MOLECULE_PARALLEL-k3s} " i status
  molecule_start
  rc=$bg_rc
  for scenario in extensions/molecule/*/molecule.yml; do
    scenario=$(basename "$(dirname "$scenario")")
    case "$parallel$gated" in *" $scenario "*) continue ;; esac
    echo "--- molecule test -s $scenario"
    molecule_one "$scenario"; status=$?
    [ $status -eq 0 ] || rc=1
    molecule_report "$scenario" $status
  done
  for i in "${!bg_pids[@]}"; do
    wait "${bg_pids[$i]}"; status=$?
    [ $status -eq 0 ] || rc=1
    molecule_report "${bg_names[$i]}" $status
  done
  return $rc
}

mkdir -p tests/output
for stage in "${stages[@]}"; do
  echo "=== stage $stage"
  start=$(date +%s)
  case $stage in
    setup) stage_setup ;;
    unit) stage_unit ;;
    py36) stage_py36 ;;
    lint) stage_lint ;;
    sanity) stage_sanity ;;
    build) stage_build ;;
    molecule) stage_molecule ;;
    *) echo "unknown stage: $stage"; false ;;
  esac
  rc=$?
  took=$(( $(date +%s) - start ))
  summary+=("$(printf '%-9s %-4s %4ds' "$stage" "$([ $rc -eq 0 ] && echo ok || echo FAIL)" "$took")")
  [ $rc -eq 0 ] || failed=1
  [ $rc -eq 0 ] || [ "$stage" != setup ] || break
  if [ "$stage" = setup ] && [[ " ${stages[*]} " == *" molecule "* ]]; then molecule_start; fi
done
echo "=== summary"
printf '%s\n' "${summary[@]}"
exit $failed
