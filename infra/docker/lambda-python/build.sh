#!/usr/bin/env bash
# Builds the stand-in Lambda base image (see Dockerfile) when no registry can provide AWS's own:
#   build.sh IMAGE SUITE MIRROR      (infra/docker/setup.sh calls it; root, Docker, debootstrap)
# 1. `debootstrap --foreign` downloads a minimal Debian SUITE for arm64 with python3 (its second
#    stage would run arm64 binaries, so instead every downloaded package is unpacked with dpkg-deb);
# 2. the standard library is byte-compiled here by the project's Python 3.13 (emulated, compiling
#    it on every cold start would cost seconds);
# 3. awslambdaric and its dependencies from PyPI (cp313 aarch64 wheels) become /var/runtime;
# 4. `docker build --platform linux/arm64` FROM scratch with the bootstrap files of this folder.
# Everything downloaded stays in a temporary folder, removed at the end.
set -euo pipefail
IMAGE="$1" SUITE="$2" MIRROR="$3"
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
AWSLAMBDARIC="awslambdaric==4.2.2"
say() { echo "infra/docker/setup.sh: $*" >&2; }
started=$SECONDS

if [ ! -x "$ROOT/.tools/uv/bin/uv" ] || [ ! -s "$ROOT/.tools/python" ]; then
  "$ROOT/infra/bootstrap.sh"
fi
UV="$ROOT/.tools/uv/bin/uv"
PY="$(cat "$ROOT/.tools/python")"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/shelfwise-lambda-base.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
FS="$WORK/rootfs"
LOG="$WORK/debootstrap.log"

say "building a stand-in for $IMAGE (Debian $SUITE arm64 + python3.13 + $AWSLAMBDARIC), a few minutes"
say "debootstrap --foreign $SUITE arm64"
if ! debootstrap --foreign --arch=arm64 --variant=minbase --include=python3 "$SUITE" "$FS" "$MIRROR" >"$LOG" 2>&1; then
  tail -n 30 "$LOG" >&2
  exit 1
fi

say "unpacking $(find "$FS/var/cache/apt/archives" -name '*.deb' | wc -l) packages"
for deb in "$FS"/var/cache/apt/archives/*.deb; do
  # --keep-directory-symlink: /bin, /lib, /sbin stay the merged-/usr links debootstrap made.
  dpkg-deb --fsys-tarfile "$deb" | tar -x --keep-directory-symlink -C "$FS"
done
rm -rf "$FS/debootstrap" "$FS"/var/cache/apt/archives/*.deb
rm -rf "$FS"/usr/share/{doc,man,info,locale} "$FS"/var/lib/apt/lists/*
# What maintainer scripts would have made: accounts, /bin/sh, the python3 name, /tmp.
cp "$FS/usr/share/base-passwd/passwd.master" "$FS/etc/passwd"
cp "$FS/usr/share/base-passwd/group.master" "$FS/etc/group"
[ -e "$FS/usr/bin/sh" ] || ln -s dash "$FS/usr/bin/sh"
[ -e "$FS/usr/bin/python3" ] || ln -s python3.13 "$FS/usr/bin/python3"
mkdir -p "$FS/var/lang/bin" "$FS/var/task" "$FS/opt" "$FS/tmp"
ln -sfn /usr/bin/python3.13 "$FS/var/lang/bin/python3.13"
ln -sfn python3.13 "$FS/var/lang/bin/python3"
ln -sfn python3.13 "$FS/var/lang/bin/python"
chmod 1777 "$FS/tmp"
if [ ! -x "$FS/usr/bin/python3.13" ]; then
  say "python3.13 is not in the $SUITE root file system"
  exit 1
fi

say "byte-compiling the standard library"
"$PY" -m compileall -q -j 0 --invalidation-mode unchecked-hash -s "$FS" -p / "$FS/usr/lib/python3.13" >/dev/null || true

say "installing $AWSLAMBDARIC into /var/runtime"
UV_PYTHON_DOWNLOADS=never "$UV" pip install --quiet --no-config --no-compile \
  --target "$FS/var/runtime" --python "$PY" \
  --python-platform aarch64-manylinux_2_28 --python-version 3.13 --only-binary :all: "$AWSLAMBDARIC"
"$PY" -m compileall -q -j 0 --invalidation-mode unchecked-hash -s "$FS" -p / "$FS/var/runtime" >/dev/null

say "docker build --platform linux/arm64 -t $IMAGE"
cp "$HERE"/Dockerfile "$HERE"/bootstrap "$HERE"/bootstrap.py "$HERE"/lambda-entrypoint.sh "$WORK/"
tar -C "$FS" --numeric-owner -cf "$WORK/rootfs.tar" .
rm -rf "$FS"
# Built under a scratch name and given IMAGE's name only once it runs, so a broken build never
# passes for the base image on the next run.
CANDIDATE="shelfwise-lambda-base-candidate:latest"
if ! out="$(DOCKER_BUILDKIT=0 docker build --quiet --platform linux/arm64 -t "$CANDIDATE" "$WORK" 2>&1)"; then
  echo "$out" >&2
  exit 1
fi
# The image must run arm64 code here (under emulation on another CPU).
if ! out="$(docker run --rm --platform linux/arm64 -e PYTHONPATH=/var/runtime --entrypoint /var/lang/bin/python3 "$CANDIDATE" \
  -c 'import platform, awslambdaric; print(platform.machine())' 2>&1)" || [ "$out" != aarch64 ]; then
  say "the built image does not run: $out"
  exit 1
fi
docker tag "$CANDIDATE" "$IMAGE"
docker rmi "$CANDIDATE" >/dev/null
say "built $IMAGE in $((SECONDS - started)) s"
