"""Launch the control server: the NATS hub (JetStream, leaf node port for robots) and its nodes
(from robot_platform.launch_plan) with config/control.yaml.

    ros2 launch robot_platform control.launch.py

On machines without launch_ros, `robot-platform control` starts the same set.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import EnvironmentVariable, LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from robot_platform import launch_plan


def _everything(context, *args, **kwargs):
    values = {a.name: LaunchConfiguration(a.name).perform(context) for a in launch_plan.CONTROL_ARGUMENTS}
    share = FindPackageShare("robot_platform")
    actions = [
        ExecuteProcess(
            cmd=["nats-server", "-c", PathJoinSubstitution([share, "config", "nats", "hub.conf"])],
            additional_env=launch_plan.control_nats_env(values),
            name="nats_hub",
            output="screen",
            condition=IfCondition(LaunchConfiguration("start_nats")),
        )
    ]
    params_file = PathJoinSubstitution([share, "config", "control.yaml"])
    actions += [
        Node(
            package="robot_platform",
            executable=spec.executable,
            name=spec.name,
            parameters=[params_file, launch_plan.node_overrides(spec, values)],
            output="screen",
            emulate_tty=True,
            condition=IfCondition(LaunchConfiguration(spec.enabled_by)),
        )
        for spec in launch_plan.CONTROL_NODES
    ]
    return actions


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        *[DeclareLaunchArgument(a.name, default_value=a.default, description=a.description)
          for a in launch_plan.CONTROL_ARGUMENTS],
        SetEnvironmentVariable(
            "ROS_AUTOMATIC_DISCOVERY_RANGE",
            EnvironmentVariable("ROS_AUTOMATIC_DISCOVERY_RANGE", default_value="LOCALHOST"),
        ),
        OpaqueFunction(function=_everything),
    ])
