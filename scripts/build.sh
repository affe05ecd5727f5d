#!/usr/bin/env bash
# Build the colcon workspace (src/) into install/ with the project's environment.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
# shellcheck disable=SC1091
. scripts/env.sh
colcon build --base-paths src --event-handlers console_cohesion- summary+ \
  --cmake-args -DPython3_EXECUTABLE="$(command -v python)" -DBUILD_TESTING=OFF
