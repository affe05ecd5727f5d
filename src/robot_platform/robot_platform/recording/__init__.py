"""MCAP files of ROS 2 messages: robot captures and fleet recordings (what Foxglove and ros2 bag replay)."""
