"""Launch one robot: its nodes (from robot_platform.launcher.plan) with config/robot.yaml, and its
local nats-server linked to the control server's hub.

    ros2 launch robot_platform robot.launch.py robot_id:=r1 use_sim:=true enable_camera:=false
    ros2 launch robot_platform robot.launch.py --show-args     # every argument with its default

On machines without launch_ros (ROS 2 from PyPI wheels), `robot-platform robot --robot-id r1` starts the
same set from the same plan and config. The description is declarative (no OpaqueFunction): the
arguments, node list and per-node overrides come from the plan, the values stay substitutions, so
`ros2 launch --print` shows every action.
"""

from launch import LaunchDescription
from launch.actions import SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import EnvironmentVariable, LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

from robot_platform.launcher import plan
from robot_platform.launcher.launch_support import declared_arguments, nats_server, platform_nodes


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("robot_platform")
    return LaunchDescription(
        [
            *declared_arguments(plan.ROBOT_ARGUMENTS, PathJoinSubstitution([share, "config", "robot.yaml"])),
            # Keep DDS discovery on this host unless the robot's environment says otherwise.
            SetEnvironmentVariable(
                "ROS_AUTOMATIC_DISCOVERY_RANGE",
                EnvironmentVariable("ROS_AUTOMATIC_DISCOVERY_RANGE", default_value="LOCALHOST"),
            ),
            # With the camera on, raw 640x480 images need the large shared-memory segment.
            SetEnvironmentVariable(
                "FASTRTPS_DEFAULT_PROFILES_FILE",
                PathJoinSubstitution([share, *plan.LARGE_DATA_PROFILE]),
                condition=IfCondition(LaunchConfiguration("enable_camera")),
            ),
            *nats_server(
                "nats_server", PathJoinSubstitution([share, "config", "nats", "robot.conf"]), plan.ROBOT_NATS_ENV
            ),
            *platform_nodes(plan.ROBOT_NODES, plan.ROBOT_ARGUMENTS),
        ]
    )
