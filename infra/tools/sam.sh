#!/usr/bin/env bash
# aws-sam-cli in a venv of its own (.tools/sam): it pins its own boto3, pydantic and cfn-lint,
# which must not meet the project's. Idempotent; prints nothing when the pinned version is there.
set -euo pipefail
cd "$(dirname "$0")/../.."

SAM_VERSION="1.170.0"
DEST=".tools/sam"
UV=".tools/uv/bin/uv"
export UV_PYTHON_DOWNLOADS=never

installed_version() {
  # "SAM CLI, version 1.170.0" -> 1.170.0 (empty when missing or broken)
  SAM_CLI_TELEMETRY=0 "$DEST/bin/sam" --version 2>/dev/null | awk '{print $NF}' || true
}

if [ -x "$DEST/bin/sam" ] && [ "$(installed_version)" = "$SAM_VERSION" ]; then
  exit 0
fi

if [ ! -x "$UV" ] || [ ! -s .tools/python ]; then
  echo "tools/sam: run infra/bootstrap.sh first (needs $UV and .tools/python)" >&2
  exit 1
fi
PY="$(cat .tools/python)"

echo "tools/sam: installing aws-sam-cli $SAM_VERSION into $DEST" >&2
rm -rf "$DEST"
"$UV" venv --quiet --python "$PY" --seed "$DEST"
"$UV" pip install --quiet --python "$DEST/bin/python" "aws-sam-cli==$SAM_VERSION"

got="$(installed_version)"
if [ "$got" != "$SAM_VERSION" ]; then
  echo "tools/sam: expected sam $SAM_VERSION, got '${got:-nothing}'" >&2
  exit 1
fi
