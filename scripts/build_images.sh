#!/usr/bin/env bash
# `make images`: build the robot and control container images on this machine, from a local Debian 12
# base, and smoke-start each one without a container runtime (scripts/smoke_image.sh).
#
# Why a local base: air-gapped sites (and this project's CI machines) reach the Debian and PyPI
# registries but no container registry, so no `FROM debian:...` can be pulled. mmdebstrap builds the
# same Debian 12 minbase that debian:bookworm-slim is, `podman import` makes it an image, and the
# Dockerfiles take it as their BASE_IMAGE build argument. The rootfs tarball is cached under
# .state/images/ (a second run skips mmdebstrap), and podman's layer cache makes an unchanged rebuild
# take seconds. `podman build --isolation=chroot`: no runc/crun needed for RUN steps.
#
#   scripts/build_images.sh              # base (cached) + robot + control images, then smoke starts
#   RP_IMAGES_SMOKE=0 scripts/build_images.sh   # build only
#   RP_IMAGES_TAG=dev                   # tag of the built images (default: dev)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
STATE="$ROOT/.state/images"
TAG="${RP_IMAGES_TAG:-dev}"
SUITE=bookworm
BASE="localhost/robot-platform/debian-base:$SUITE"
say() { printf '[images] %s\n' "$*"; }
die() { printf '[images] ERROR: %s\n' "$*" >&2; exit 1; }

missing=()
for tool in podman mmdebstrap unshare nsenter chroot ip; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  die "missing tools: ${missing[*]}; install as root: apt-get install -y podman mmdebstrap iproute2 (see requirements/apt.txt)"
fi
[ "$(id -u)" -eq 0 ] || die "run as root: mmdebstrap, podman mount and the namespaces of the smoke start need it"
mkdir -p "$STATE"
df -h / | sed 's/^/[images] /'

# ---- 1. Debian base rootfs (cached) and its image ---------------------------------------------------
# debian:bookworm-slim's dpkg excludes (docs, man pages, locales) are part of the base, so every apt
# install of the Dockerfiles leaves them out as it would on the public image.
# The merged-usr hook installs usr-is-merged (as the official image has) instead of usrmerge, which
# would pull the whole of perl into the base: ~45 MB of every image.
MMDEBSTRAP_ARGS=(--variant=minbase --quiet --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
  "$SUITE")
stamp="mmdebstrap $(printf '%s ' "${MMDEBSTRAP_ARGS[@]}")"
tarball="$STATE/debian-$SUITE-minbase.tar"
if [ ! -s "$tarball" ] || [ "$(cat "$tarball.stamp" 2>/dev/null)" != "$stamp" ]; then
  say "building the Debian $SUITE base with mmdebstrap (cached in $tarball)"
  t0=$(date +%s)
  mmdebstrap "${MMDEBSTRAP_ARGS[@]}" "$tarball.tmp.tar"   # the suffix tells mmdebstrap the format
  mv "$tarball.tmp.tar" "$tarball"
  echo "$stamp" > "$tarball.stamp"
  say "base rootfs: $(( $(date +%s) - t0 ))s, $(du -h "$tarball" | cut -f1)"
else
  say "base rootfs: cached ($tarball)"
fi
tar_sum="$(sha256sum "$tarball" | cut -c1-16)"
if [ "$(podman image inspect --format '{{index .Labels "rp.rootfs"}}' "$BASE" 2>/dev/null)" != "$tar_sum" ]; then
  say "importing $BASE"
  podman import --quiet --change "LABEL rp.rootfs=$tar_sum" --change 'CMD ["/bin/bash"]' "$tarball" "$BASE" >/dev/null
fi

# ---- 2. the images ------------------------------------------------------------------------------------
# --format docker: the OCI image format drops SHELL (pipefail) and HEALTHCHECK from the image config.
# The build stage is shared by both Dockerfiles; tagging it keeps its layers (the cache of the next
# run) out of `podman image prune`, which removes only untagged images without children.
# This machine's CA bundle (PIP_CERT, else SSL_CERT_FILE, else Debian's) for pip inside the build: a
# TLS-intercepting proxy or a site mirror is trusted there as it is here. A build secret: in no layer.
CA_BUNDLE="${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}"
SECRET=()
if [ -s "$CA_BUNDLE" ]; then SECRET=(--secret "id=pip_ca,src=$CA_BUNDLE"); fi
build() {  # name dockerfile [extra podman build args]
  local name="$1" file="$2"; shift 2
  local t0; t0=$(date +%s)
  podman build --isolation=chroot --format docker --build-arg "BASE_IMAGE=$BASE" "${SECRET[@]}" -f "$file" "$@" . \
    > "$STATE/build-$name.log" 2>&1 || { tail -n 40 "$STATE/build-$name.log" >&2; die "build of $name failed (log: $STATE/build-$name.log)"; }
  say "$name: built in $(( $(date +%s) - t0 ))s"
}
build build-stage docker/robot.Dockerfile --target build -t "localhost/robot-platform/build-stage:$TAG"
build robot docker/robot.Dockerfile -t "localhost/robot-platform/robot:$TAG"
build control docker/control.Dockerfile -t "localhost/robot-platform/control:$TAG"
podman image prune --force >/dev/null
for name in robot control; do
  say "$name image: $(podman image inspect --format '{{.Size}}' "localhost/robot-platform/$name:$TAG" | awk '{printf "%.0f MB", $1/1e6}')"
done

# ---- 3. smoke starts ------------------------------------------------------------------------------------
if [ "${RP_IMAGES_SMOKE:-1}" != 0 ]; then
  scripts/smoke_image.sh robot "localhost/robot-platform/robot:$TAG"
  scripts/smoke_image.sh control "localhost/robot-platform/control:$TAG"
fi
df -h / | sed 's/^/[images] /'
