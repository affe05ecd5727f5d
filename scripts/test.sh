#!/usr/bin/env bash
# The whole test suite: each package's own tests through `colcon test`, then the system tests in test/.
# Fails if any test fails, or if any process started by the tests is still running afterwards.
# `scripts/test.sh long` runs only test/long/: the system tests that take minutes each (image builds,
# a clustered hub losing a node, a hundred leaf nodes); `make test-long`, which CI runs after `make test`.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
# shellcheck disable=SC1091
. scripts/env.sh
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
start=$(date +%s)
# Every process the tests start inherits this marker, so leftovers are found precisely (and other
# runs on the same machine are never mistaken for ours).
export RP_TEST_RUN="make-test-$$-$(date +%s%N)"
rc=0
mkdir -p test-results

if [ "${1:-}" = "long" ]; then
  echo "== long system tests (test/long/) =="
  python -m pytest test/long -v -p no:cacheprovider --junitxml=test-results/long-tests.xml
  status=$?
  # 5 = nothing collected: only acceptable while test/long/ holds no test file at all.
  if [ $status -ne 0 ] && ! { [ $status -eq 5 ] && [ -z "$(ls test/long/test_*.py 2>/dev/null)" ]; }; then
    rc=1
  fi
  leftover="$(python scripts/leftover_processes.py "$RP_TEST_RUN")"
  if [ -n "$leftover" ]; then
    echo "== processes left running by the tests =="; echo "$leftover"; rc=1
  fi
  echo "== make test-long: $([ $rc -eq 0 ] && echo PASSED || echo FAILED) in $(( $(date +%s) - start ))s =="
  exit $rc
fi

echo "== ruff =="
ruff check . || rc=1

echo "== colcon test =="
colcon test --base-paths src --event-handlers console_cohesion+ summary+ \
  --pytest-args -q -p no:cacheprovider || rc=1
colcon test-result --verbose || rc=1

echo "== system tests (test/) =="
# The junit file lives outside build/: `colcon test-result` above reads every XML under build/, and a
# system-test report left there by an earlier run would be judged again as if it were a package's.
python -m pytest test --ignore=test/long -v -p no:cacheprovider --junitxml=test-results/system-tests.xml || rc=1

leftover="$(python scripts/leftover_processes.py "$RP_TEST_RUN")"
if [ -n "$leftover" ]; then
  echo "== processes left running by the tests =="; echo "$leftover"; rc=1
fi
echo "== make test: $([ $rc -eq 0 ] && echo PASSED || echo FAILED) in $(( $(date +%s) - start ))s =="
exit $rc
