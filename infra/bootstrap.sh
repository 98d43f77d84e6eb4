#!/usr/bin/env bash
# Installs what the project needs into .tools/ and .venv/ (idempotent, no root needed):
#   uv (pinned) from PyPI, a Python 3.13 (PATH, pyenv, or uv's own), the locked dependencies.
# Prints nothing on a warm machine except uv's one-line sync summary.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION="0.13.9"
TOOLS=".tools"
export UV_PYTHON_DOWNLOADS="${UV_PYTHON_DOWNLOADS:-never}"

find_python313() {
  local c
  for c in "${SHELFWISE_PYTHON:-}" "$(command -v python3.13 || true)" "$HOME"/.pyenv/versions/3.13.*/bin/python3 /usr/bin/python3.13 /usr/local/bin/python3.13; do
    [ -n "$c" ] && [ -x "$c" ] || continue
    if "$c" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 13) else 1)' >/dev/null 2>&1; then
      echo "$c"; return 0
    fi
  done
  return 1
}

# 1. uv, in a venv of its own built from any python3 on the machine.
if [ ! -x "$TOOLS/uv/bin/uv" ] || ! "$TOOLS/uv/bin/uv" --version 2>/dev/null | grep -q " $UV_VERSION"; then
  echo "bootstrap: installing uv $UV_VERSION into $TOOLS/uv" >&2
  rm -rf "$TOOLS/uv"
  python3 -m venv "$TOOLS/uv"
  "$TOOLS/uv/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
UV="$TOOLS/uv/bin/uv"

# 2. Python 3.13.
if ! PY=$(find_python313); then
  echo "bootstrap: no Python 3.13 on PATH or in pyenv; asking uv for one" >&2
  UV_PYTHON_DOWNLOADS=automatic "$UV" python install 3.13
  PY=$("$UV" python find 3.13)
fi
echo "$PY" > "$TOOLS/python"

# 3. The locked environment (runtime + dev groups) in .venv.
"$UV" sync --locked --python "$PY" --quiet --compile-bytecode
