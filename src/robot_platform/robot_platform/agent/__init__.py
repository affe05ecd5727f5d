"""The robot agent as one process: every robot node of the platform in one rclpy context (see one_process)."""
