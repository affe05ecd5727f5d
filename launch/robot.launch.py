"""Launch one robot: its nodes (from robot_platform.launch_plan) with config/robot.yaml, and its
local nats-server linked to the control server's hub.

    ros2 launch robot_platform robot.launch.py robot_id:=r1 use_sim:=true enable_camera:=false

On machines without launch_ros (ROS 2 from PyPI wheels), `robot-platform robot --robot-id r1` starts the
same set from the same plan and config.
"""

from pathlib import Path

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import EnvironmentVariable, LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from robot_platform import launch_plan


def _nats_server(context, *args, **kwargs):
    values = {a.name: LaunchConfiguration(a.name).perform(context) for a in launch_plan.ROBOT_ARGUMENTS}
    conf = PathJoinSubstitution([FindPackageShare("robot_platform"), "config", "nats", "robot.conf"])
    return [
        ExecuteProcess(
            cmd=["nats-server", "-c", conf],
            additional_env=launch_plan.robot_nats_env(values),
            name="nats_server",
            output="screen",
            condition=IfCondition(LaunchConfiguration("start_nats")),
        )
    ]


def _nodes(context, *args, **kwargs):
    values = {a.name: LaunchConfiguration(a.name).perform(context) for a in launch_plan.ROBOT_ARGUMENTS}
    params_file = PathJoinSubstitution([FindPackageShare("robot_platform"), "config", "robot.yaml"])
    share = Path(FindPackageShare("robot_platform").perform(context))
    ros_env = launch_plan.robot_ros_env(values, share)
    return [
        Node(
            package="robot_platform",
            executable=spec.executable,
            name=spec.name,
            parameters=[params_file, launch_plan.node_overrides(spec, values)],
            output="screen",
            emulate_tty=True,
            additional_env=ros_env,
            condition=IfCondition(LaunchConfiguration(spec.enabled_by)),
        )
        for spec in launch_plan.ROBOT_NODES
    ]


def generate_launch_description() -> LaunchDescription:
    declared = [
        DeclareLaunchArgument(a.name, default_value=a.default, description=a.description)
        for a in launch_plan.ROBOT_ARGUMENTS
    ]
    return LaunchDescription([
        *declared,
        # Keep DDS discovery on this host unless the robot's environment says otherwise.
        SetEnvironmentVariable(
            "ROS_AUTOMATIC_DISCOVERY_RANGE",
            EnvironmentVariable("ROS_AUTOMATIC_DISCOVERY_RANGE", default_value="LOCALHOST"),
        ),
        OpaqueFunction(function=_nats_server),
        OpaqueFunction(function=_nodes),
    ])
