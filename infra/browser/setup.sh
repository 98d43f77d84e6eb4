#!/usr/bin/env bash
# The browser tests (tests/browser) drive Debian's Chromium at /usr/bin/chromium: install it when it
# is missing and we are root (CI); quiet when it is already there. Browsers are never downloaded by
# the test tools themselves.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "infra/browser/setup.sh: $CHROMIUM is missing; as root: apt-get install -y --no-install-recommends chromium" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends chromium >/dev/null
echo "infra/browser/setup.sh: chromium $(dpkg-query -W -f='${Version}' chromium) installed"
