#!/usr/bin/env bash
# Runs the project's pinned SAM CLI (.tools/sam, installed by infra/tools/sam.sh) from the repo root:
#   infra/sam.sh build | validate --lint | deploy ...
# Telemetry off, a default region, and python3.13/python3 + uv on PATH for `sam build` (the layer's
# makefile uses uv; SAM's python workflow looks for python3.13).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

SAM="$ROOT/.tools/sam/bin/sam"
if [ ! -x "$SAM" ]; then
  echo "infra/sam.sh: $SAM is missing; run 'make tools' first" >&2
  exit 1
fi
if [ ! -s "$ROOT/.tools/python" ]; then
  echo "infra/sam.sh: .tools/python is missing; run 'make setup' first" >&2
  exit 1
fi

PY="$(cat "$ROOT/.tools/python")"
PYDIR="$(dirname "$PY")"
# A directory of our own holding exactly python3.13, python3 (the project's interpreter) and uv, so
# a pyenv shim or an older system python3 earlier on PATH cannot win. (Not .tools/uv/bin itself:
# that is a venv whose python3 is whatever built it.)
SHIMS="$ROOT/.tools/sam-shims"
mkdir -p "$SHIMS"
link() {
  if [ "$(readlink "$SHIMS/$1" 2>/dev/null || true)" != "$2" ]; then
    ln -sfn "$2" "$SHIMS/$1"
  fi
}
link python3.13 "$PY"
link python3 "$PY"
if [ -x "$ROOT/.tools/uv/bin/uv" ]; then
  link uv "$ROOT/.tools/uv/bin/uv"
fi

export PATH="$SHIMS:$PYDIR:$PATH"
export SAM_CLI_TELEMETRY=0
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
export UV_PYTHON_DOWNLOADS="${UV_PYTHON_DOWNLOADS:-never}"

exec "$SAM" "$@"
