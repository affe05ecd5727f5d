#!/usr/bin/env bash
# Container entrypoint of the robot and control images: load the ROS 2 environment (apt ROS in the robot
# image, the venv's wheels in the control image) and the built workspace, then exec the command so that
# it is PID 1's only child (compose/systemd use `init: true` / tini to reap and forward signals).
# `robot-platform robot|control` stops every node it started on SIGINT, SIGTERM or SIGHUP.
set -eo pipefail
if [ -f "/opt/ros/${ROS_DISTRO:-jazzy}/setup.bash" ]; then
  # shellcheck disable=SC1090
  . "/opt/ros/${ROS_DISTRO:-jazzy}/setup.bash"
fi
if [ -n "${VIRTUAL_ENV:-}" ] && [ ! -f "/opt/ros/${ROS_DISTRO:-jazzy}/setup.bash" ]; then
  # ROS 2 from PyPI wheels: the venv root is an ament prefix.
  export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
fi
# shellcheck disable=SC1091
. "${RP_WORKSPACE:-/opt/robot_platform}/install/local_setup.bash"
# colcon puts ament_python entry points (robot-platform, robot_sim, ...) in lib/<package>.
export PATH="${RP_WORKSPACE:-/opt/robot_platform}/install/robot_platform/lib/robot_platform:$PATH"
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export PYTHONUNBUFFERED=1
exec "$@"
