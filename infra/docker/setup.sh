#!/usr/bin/env bash
# Docker for `sam local invoke` / `sam local start-api` on a Debian machine (run as root):
#   1. Debian's docker.io, and for arm64 functions on another CPU qemu-user-static + binfmt-support
#      (debootstrap too, for step 4), each only when missing;
#   2. dockerd, started in the background when no daemon answers (log: $SHELFWISE_DOCKERD_LOG), with
#      --userland-proxy=false (see step 2 below; a daemon already running with it on gets a warning);
#   3. the aarch64 binfmt handler registered (binfmt_misc mounted if need be);
#   4. the Lambda base image SAM asks for, public.ecr.aws/lambda/python:3.13-arm64: kept if present;
#      pulled from AWS where a registry is reachable (never in CI); otherwise built here from Debian
#      packages and PyPI (infra/docker/lambda-python/: a Debian trixie arm64 root file system with
#      python3.13 and awslambdaric as /var/runtime, behind a bootstrap that honours
#      AWS_LAMBDA_EXEC_WRAPPER). SAM must then run with --skip-pull-image.
# Idempotent: prints nothing when everything is in place; progress goes to stderr.
#
#   infra/docker/setup.sh            # everything above
#   SHELFWISE_DOCKER_PULL=0 ...      # never try to pull the base image (CI=true implies it)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
IMAGE="public.ecr.aws/lambda/python:3.13-arm64"
SUITE="trixie"
# The Debian archive this machine's apt already uses (its sources), unless told otherwise.
apt_mirror() {
  { grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}'
    grep -hsE '^deb ' /etc/apt/sources.list | awk '{print $2}'; } | grep -v -- '-security' | grep -m1 -E '/debian/?$'
}
MIRROR="${SHELFWISE_DEBIAN_MIRROR:-$(apt_mirror || true)}"
DOCKERD_LOG="${SHELFWISE_DOCKERD_LOG:-/var/log/shelfwise-dockerd.log}"
say() { echo "infra/docker/setup.sh: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
  say "needs root (apt-get, dockerd, binfmt_misc); run it with sudo"
  exit 1
fi

emulate=0
case "$(uname -m)" in aarch64 | arm64) ;; *) emulate=1 ;; esac

# -- 1. packages --------------------------------------------------------------------------------------
missing=()
docker_answers() { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }
if ! docker_answers && ! command -v dockerd >/dev/null 2>&1; then missing+=(docker.io); fi
if [ "$emulate" = 1 ]; then
  [ -e /usr/bin/qemu-aarch64-static ] || missing+=(qemu-user-static)
  command -v update-binfmts >/dev/null 2>&1 || missing+=(binfmt-support)
fi
if ! docker_answers || ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt_log="$(mktemp)"
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$apt_log" 2>&1; then
    tail -n 30 "$apt_log" >&2
    exit 1
  fi
  rm -f "$apt_log"
fi

# -- 2. the daemon ------------------------------------------------------------------------------------
if ! docker_answers; then
  say "starting dockerd (log: $DOCKERD_LOG)"
  mkdir -p "$(dirname "$DOCKERD_LOG")"
  # Without Docker's userland proxy: the proxy accepts on a published port before anything in the
  # container listens, and `sam local` takes that accept as "the emulator is up", then gives its
  # invoke three tries within a second. An emulated arm64 emulator on a busy machine takes longer
  # to listen: SAM says "No response from invoke container" and waits out the function's timeout.
  # With iptables alone the port refuses until the emulator listens, and SAM waits for it.
  nohup dockerd --userland-proxy=false >>"$DOCKERD_LOG" 2>&1 </dev/null &
  for _ in $(seq 1 60); do
    docker_answers && break
    sleep 1
  done
  if ! docker_answers; then
    say "dockerd did not answer within 60 s; the end of its log:"
    tail -n 30 "$DOCKERD_LOG" >&2 || true
    exit 1
  fi
elif [ "$emulate" = 1 ] && ! pgrep -a dockerd | grep -q -- '--userland-proxy=false' &&
  ! grep -qsE '"userland-proxy"[[:space:]]*:[[:space:]]*false' /etc/docker/daemon.json; then
  say "warning: the running dockerd uses its userland proxy; emulated 'sam local' invokes can then fail"
  say "  with 'No response from invoke container' on a busy machine. Set \"userland-proxy\": false in"
  say "  /etc/docker/daemon.json and restart Docker."
fi

# -- 3. arm64 emulation -------------------------------------------------------------------------------
if [ "$emulate" = 1 ]; then
  if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  fi
  if ! grep -qs '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64; then
    say "registering qemu-aarch64 with binfmt_misc"
    update-binfmts --enable qemu-aarch64 >&2 || update-binfmts --import qemu-aarch64 >&2
  fi
  # The handler must be opened at registration (flag F): containers do not hold the interpreter.
  if ! grep -qs '^flags:.*F' /proc/sys/fs/binfmt_misc/qemu-aarch64; then
    say "qemu-aarch64 is registered without the F flag; arm64 containers will not start:"
    cat /proc/sys/fs/binfmt_misc/qemu-aarch64 >&2
    exit 1
  fi
fi

# -- 4. the base image --------------------------------------------------------------------------------
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  exit 0
fi
if [ "${CI:-}" != true ] && [ "${SHELFWISE_DOCKER_PULL:-1}" != 0 ]; then
  say "pulling $IMAGE"
  if timeout 600 docker pull --platform linux/arm64 "$IMAGE" >&2; then
    exit 0
  fi
  say "could not pull $IMAGE; building a stand-in from Debian packages instead"
fi
if [ -z "$MIRROR" ]; then
  say "found no Debian archive in apt's sources to build the image from; set SHELFWISE_DEBIAN_MIRROR"
  exit 1
fi
exec "$ROOT/infra/docker/lambda-python/build.sh" "$IMAGE" "$SUITE" "$MIRROR"
