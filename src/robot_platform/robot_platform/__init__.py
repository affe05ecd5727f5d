"""robot_platform: robot operations for closed sites (ROS 2 <-> NATS, WebSocket, deployments, health)."""

__version__ = "0.1.0"
