#!/usr/bin/env bash
# The whole test suite: each package's own tests through `colcon test`, then the system tests in test/.
# Fails if any test fails, or if any process started by the tests is still running afterwards.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
# shellcheck disable=SC1091
. scripts/env.sh
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
start=$(date +%s)
ours() { pgrep -f -a "nats-server|weed |mosquitto -c|$ROOT/install|robot_platform\." 2>/dev/null | sort; }
before="$(ours)"
rc=0

echo "== ruff =="
ruff check src test bench launch scripts || rc=1

echo "== colcon test =="
colcon test --base-paths src --event-handlers console_cohesion+ summary+ \
  --pytest-args -q -p no:cacheprovider || rc=1
colcon test-result --verbose || rc=1

echo "== system tests (test/) =="
python -m pytest test -v -p no:cacheprovider --junitxml=build/system-tests.xml || rc=1

after="$(ours)"
leftover="$(comm -13 <(echo "$before") <(echo "$after"))"
if [ -n "$leftover" ]; then
  echo "== processes left running by the tests =="; echo "$leftover"; rc=1
fi
echo "== make test: $([ $rc -eq 0 ] && echo PASSED || echo FAILED) in $(( $(date +%s) - start ))s =="
exit $rc
