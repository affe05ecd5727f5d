#!/usr/bin/env bash
# Smoke start of a robot or control image WITHOUT a container runtime (podman run / crun cannot run on
# machines without cgroup delegation, such as this project's CI VMs):
#
#   scripts/smoke_image.sh robot|control IMAGE
#
# 1. `podman create` + `podman mount`: the image's root file system as a writable overlay;
# 2. `unshare --pid --mount --net --ipc --uts`: fresh namespaces. The network namespace has only
#    loopback (brought up here), so the smoke start can reach nothing but itself: the network rule;
# 3. proc, a minimal /dev, tmpfs /tmp and /dev/shm are mounted, and the image's ENTRYPOINT + a minimal
#    command run by `chroot --userspec` as the image's USER, with exactly the image's ENV;
# 4. pass = within RP_SMOKE_TIMEOUT (default 240 s) docker/healthcheck.py passes INSIDE (nsenter into
#    the same namespaces + chroot) with every expected node process running; then SIGTERM to the
#    entrypoint's process (PID 1 of the namespace) must stop it with exit code 0 within 60 s, leave no
#    process, and the log must hold no Python traceback.
# The log is kept in .state/images/smoke-<kind>.log.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
KIND="${1:?usage: smoke_image.sh robot|control IMAGE}"
IMAGE="${2:?usage: smoke_image.sh robot|control IMAGE}"
STATE="$ROOT/.state/images"
LOG="$STATE/smoke-$KIND.log"
TIMEOUT="${RP_SMOKE_TIMEOUT:-240}"
mkdir -p "$STATE"
say() { printf '[smoke %s] %s\n' "$KIND" "$*"; }
fail() { printf '[smoke %s] FAILED: %s\n' "$KIND" "$*" >&2; tail -n 60 "$LOG" >&2 || true; exit 1; }

# The minimal configuration of each image: everything on loopback, no hub/S3/MQTT to reach.
case "$KIND" in
  robot)
    # The robot image's default command (its own nats-server leaf + every node); no camera. The agent's
    # nodes run in one process (robot_agent_all, the default agent_layout), each still serving its port.
    CMD=(robot-platform robot --robot-id r1 --nats-store-dir /tmp/nats)
    HEALTH_URLS=http://127.0.0.1:8222/healthz,http://127.0.0.1:9090/healthz,http://127.0.0.1:9101/metrics,http://127.0.0.1:9102/metrics
    HEALTH_PROCS=robot_sim,robot_agent_all
    ;;
  control)
    # The hub in the same namespace (compose runs it from the nats image) + every control node; the
    # jobs service needs a Mosquitto with certificates, which the mosquitto image serves: off here.
    CMD=(robot-platform control --start-nats true --nats-store-dir /tmp/hub --enable-jobs false)
    HEALTH_URLS=http://127.0.0.1:8222/healthz,http://127.0.0.1:8080/healthz,http://127.0.0.1:9202/metrics
    HEALTH_PROCS=nats_bridge,ws_agent,fleet_registry
    ;;
  *) echo "unknown kind $KIND (robot|control)" >&2; exit 2 ;;
esac

# (tests: RP_SMOKE_HEALTH_PROCS replaces the expected processes, to show that a missing one fails)
HEALTH_PROCS="${RP_SMOKE_HEALTH_PROCS:-$HEALTH_PROCS}"

inspect() { podman image inspect --format "$1" "$IMAGE"; }
mapfile -t ENV_LIST < <(inspect '{{range .Config.Env}}{{println .}}{{end}}' | sed '/^$/d')
mapfile -t ENTRYPOINT < <(inspect '{{range .Config.Entrypoint}}{{println .}}{{end}}' | sed '/^$/d')
USER_SPEC="$(inspect '{{.Config.User}}')"
WORKDIR="$(inspect '{{.Config.WorkingDir}}')"
[ -n "$USER_SPEC" ] && [ "${USER_SPEC%%:*}" != 0 ] || fail "image $IMAGE has no non-root USER"
ENV_LIST+=("HOME=$WORKDIR" "ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-42}" "ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST")
# The test run's marker (scripts/test.sh): a process left over inside is still found by its environment.
if [ -n "${RP_TEST_RUN:-}" ]; then ENV_LIST+=("RP_TEST_RUN=$RP_TEST_RUN"); fi

ctr="rp-smoke-$KIND-$$"
rootfs=""
ns_pid=""
unshare_pid=""
cleanup() {
  if [ -n "$unshare_pid" ] && kill -0 "$unshare_pid" 2>/dev/null; then
    # SIGKILL to the namespace's PID 1 takes every process of the namespace with it. Killing unshare
    # alone does not: --kill-child's parent-death signal is cleared when chroot --userspec changes the
    # user, so the entrypoint outlived it (make test-long found a smoke start's robot still running).
    if [ -n "$ns_pid" ]; then kill -KILL "$ns_pid" 2>/dev/null || true; fi
    kill -KILL "$unshare_pid" 2>/dev/null || true
    wait "$unshare_pid" 2>/dev/null || true
  fi
  if [ -n "$rootfs" ]; then podman umount "$ctr" >/dev/null 2>&1 || true; fi
  podman rm --force "$ctr" >/dev/null 2>&1 || true
}
trap cleanup EXIT
podman create --quiet --name "$ctr" "$IMAGE" >/dev/null
rootfs="$(podman mount "$ctr")"
[ -x "$rootfs${ENTRYPOINT[0]}" ] || fail "entrypoint ${ENTRYPOINT[0]} missing in $IMAGE"

# Runs as PID 1's parent inside the new namespaces: mounts, loopback up, then becomes the entrypoint.
# shellcheck disable=SC2016
INNER='set -e
R="$1"; shift
ip link set lo up
mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
mount -t tmpfs -o nosuid,mode=0755,size=1m tmpfs "$R/dev"
for d in null zero full random urandom tty; do touch "$R/dev/$d"; mount --bind "/dev/$d" "$R/dev/$d"; done
mkdir -p "$R/dev/shm" "$R/dev/pts"
mount -t tmpfs -o nosuid,nodev,mode=1777,size=256m tmpfs "$R/dev/shm"
mount -t tmpfs -o nosuid,nodev,mode=1777,size=256m tmpfs "$R/tmp"
exec "$@"'
t0=$(date +%s)
say "starting ${ENTRYPOINT[*]} ${CMD[*]} in $IMAGE (user $USER_SPEC, fresh pid/mount/net namespaces)"
unshare --fork --pid --mount --net --ipc --uts --kill-child=SIGKILL \
  bash -c "$INNER" inner "$rootfs" \
  chroot --userspec="$USER_SPEC" "$rootfs" /usr/bin/env -i "${ENV_LIST[@]}" \
  /bin/sh -c 'cd "$HOME" && exec "$@"' sh "${ENTRYPOINT[@]}" "${CMD[@]}" > "$LOG" 2>&1 &
unshare_pid=$!

# The namespace's PID 1 (the entrypoint, after the execs) is unshare's only child.
for _ in $(seq 100); do
  ns_pid="$(cat "/proc/$unshare_pid/task/$unshare_pid/children" 2>/dev/null | awk '{print $1}')"
  [ -n "$ns_pid" ] && break
  sleep 0.1
done
[ -n "$ns_pid" ] || fail "the namespace did not start"

in_ns() {  # a command inside the smoke start's namespaces and root, as the image's user
  nsenter --target "$ns_pid" --pid --mount --net --ipc --uts \
    chroot --userspec="$USER_SPEC" "$rootfs" /usr/bin/env -i "${ENV_LIST[@]}" "$@"
}
healthy=""
while [ $(( $(date +%s) - t0 )) -lt "$TIMEOUT" ]; do
  kill -0 "$unshare_pid" 2>/dev/null || fail "the entrypoint exited during start"
  if out="$(in_ns RP_HEALTH_URLS="$HEALTH_URLS" RP_HEALTH_PROCS="$HEALTH_PROCS" \
      python3 /usr/local/bin/robot-platform-healthcheck 2>&1)"; then
    healthy=yes; break
  fi
  sleep 2
done
[ -n "$healthy" ] || fail "not healthy within ${TIMEOUT}s: $out"
say "healthy after $(( $(date +%s) - t0 ))s (healthcheck inside: $HEALTH_URLS; processes $HEALTH_PROCS)"
# The process list inside (the image has no ps): what the healthcheck's process names matched.
in_ns python3 -c 'import pathlib
for p in sorted(pathlib.Path("/proc").glob("[0-9]*"), key=lambda p: int(p.name)):
    try:
        print(p.name, (p / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:150])
    except OSError:
        pass' | sed "s/^/[smoke $KIND]   /"

# Clean stop: SIGTERM to PID 1 of the namespace, as `docker stop` does.
t1=$(date +%s)
kill -TERM "$ns_pid"
for _ in $(seq 600); do kill -0 "$unshare_pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$unshare_pid" 2>/dev/null; then fail "still running 60 s after SIGTERM"; fi
rc=0; wait "$unshare_pid" || rc=$?
unshare_pid=""
[ "$rc" -eq 0 ] || fail "exit code $rc after SIGTERM"
if grep -q "Traceback (most recent call last)" "$LOG"; then fail "traceback in the log"; fi
say "stopped cleanly by SIGTERM in $(( $(date +%s) - t1 ))s (exit 0, no traceback; log: $LOG)"
