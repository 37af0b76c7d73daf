#!/usr/bin/env bash
# One command for the development environment: .venv with the pinned requirements.
# Reruns are cheap: the venv is rebuilt only when requirements-dev.txt changed.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
venv=${FERRY_VENV:-$top/.venv}
stamp=$venv/.requirements.sha256
want=$(sha256sum "$top/requirements-dev.txt" | cut -d' ' -f1)
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install -q --no-warn-script-location -r "$top/requirements-dev.txt"
echo "$want" >"$stamp"
echo "venv ready: $venv" >&2
