# shellcheck shell=bash
# Source this to get the project's environment: ROS 2 Jazzy (from /opt/ros/jazzy if present, else the
# .venv with the PyPI wheels), the built workspace, and safe DDS defaults.
#   . scripts/env.sh
# colcon's and ROS's setup scripts read unset variables: relax `set -u` while sourcing them.
case $- in *u*) _rp_had_u=1; set +u;; *) _rp_had_u=;; esac
_rp_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
: "${ROS_DISTRO_PREFIX:=/opt/ros/jazzy}"
if [ -z "${RP_USE_VENV_ROS:-}" ] && [ -f "$ROS_DISTRO_PREFIX/setup.bash" ]; then
  # ROS 2 from apt: the venv (if any) only adds the platform's Python dependencies.
  # shellcheck disable=SC1091
  . "$ROS_DISTRO_PREFIX/setup.bash"
fi
if [ -d "$_rp_root/.venv" ]; then
  export VIRTUAL_ENV="$_rp_root/.venv"
  export PATH="$VIRTUAL_ENV/bin:$PATH"
  if [ ! -f "$ROS_DISTRO_PREFIX/setup.bash" ] || [ -n "${RP_USE_VENV_ROS:-}" ]; then
    # ROS 2 from PyPI wheels: the venv root is an ament prefix (it has share/ament_index).
    export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
    export CMAKE_PREFIX_PATH="$VIRTUAL_ENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  fi
fi
if [ -f "$_rp_root/install/local_setup.bash" ] && [ -n "${BASH_VERSION:-}" ]; then
  # shellcheck disable=SC1091
  . "$_rp_root/install/local_setup.bash"
  export RP_ENV_ROOT="$_rp_root"  # bin/robot-platform: this workspace's environment is already set up
elif [ -f "$_rp_root/install/local_setup.sh" ]; then
  # shellcheck disable=SC1091
  COLCON_CURRENT_PREFIX="$_rp_root/install" . "$_rp_root/install/local_setup.sh"
  export RP_ENV_ROOT="$_rp_root"
fi
# `robot-platform` (bin/, which works without sourcing anything) on PATH, as the README and the demo
# banner print it; ament_python installs it under lib/robot_platform/, which is not on PATH.
case ":$PATH:" in *":$_rp_root/bin:"*) ;; *) export PATH="$_rp_root/bin:$PATH";; esac
# DDS discovery stays on this machine unless the caller chose otherwise (real robots set SUBNET or a
# discovery server in their own environment).
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
export PYTHONUNBUFFERED=1
if [ -n "$_rp_had_u" ]; then set -u; fi
unset _rp_root _rp_had_u
