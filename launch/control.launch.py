"""Launch the control server: the NATS hub (JetStream, leaf node port for robots) and its nodes
(from robot_platform.launcher.plan) with config/control.yaml.

    ros2 launch robot_platform control.launch.py
    ros2 launch robot_platform control.launch.py bridge_metrics_port:=19202 jobs_metrics_port:=19203

On machines without launch_ros, `robot-platform control` starts the same set. Declarative like
robot.launch.py: `ros2 launch --print` shows every action.
"""

from launch import LaunchDescription
from launch.actions import SetEnvironmentVariable
from launch.substitutions import EnvironmentVariable, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

from robot_platform.launcher import plan
from robot_platform.launcher.launch_support import declared_arguments, nats_server, platform_nodes


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("robot_platform")
    return LaunchDescription(
        [
            *declared_arguments(plan.CONTROL_ARGUMENTS, PathJoinSubstitution([share, "config", "control.yaml"])),
            SetEnvironmentVariable(
                "ROS_AUTOMATIC_DISCOVERY_RANGE",
                EnvironmentVariable("ROS_AUTOMATIC_DISCOVERY_RANGE", default_value="LOCALHOST"),
            ),
            *nats_server(
                "nats_hub", PathJoinSubstitution([share, "config", "nats", "hub.conf"]), plan.CONTROL_NATS_ENV
            ),
            *platform_nodes(plan.CONTROL_NODES, plan.CONTROL_ARGUMENTS),
        ]
    )
