#!/usr/bin/env bash
# ansible-test sanity on a copy of the collection placed under
# ansible_collections/ferry/airgap (ansible-test needs that path), no ignore files.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
venv=${FERRY_VENV:-$top/.venv}
work=${FERRY_SANITY_DIR:-$top/tests/output/sanity}
dest=$work/ansible_collections/ferry/airgap

# ansible-test bootstraps pip in each venv from a script it would download; give it ours.
pip_version=$("$venv/bin/python" -c 'from ansible_test._internal.python_requirements import get_venv_packages as g
class P: version = "3.11"
print(g(P())["pip"])' 2>/dev/null || echo 24.2)
cache=$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py
mkdir -p "$(dirname "$cache")"
cp "$top/tests/tools/get_pip_substitute.py" "$cache"

# The collection as git sees it (tracked files, plus untracked-but-not-ignored ones
# unless FERRY_SANITY_TRACKED_ONLY is set), without the dev-only link farm.
listing=(-co --exclude-standard)
[ -z "${FERRY_SANITY_TRACKED_ONLY:-}" ] || listing=()
rm -rf "$dest"; mkdir -p "$dest"
(cd "$top" && git ls-files -z "${listing[@]}" | grep -zv '^\.collections/' \
  | xargs -0 cp --parents -P -t "$dest"/)
(cd "$dest" && git init -q && git add -A >/dev/null)

py=$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
cd "$dest"
PATH=$venv/bin:$PATH "$venv/bin/ansible-test" sanity --venv --python "$py" --color no "$@"
