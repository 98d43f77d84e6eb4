#!/usr/bin/env bash
# Installs the external tools the test suite drives, each in its own place under .tools/:
#   infra/tools/*.sh, one script per tool, each idempotent and quiet when already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
for script in infra/tools/*.sh; do
  [ -e "$script" ] || continue
  bash "$script"
done
