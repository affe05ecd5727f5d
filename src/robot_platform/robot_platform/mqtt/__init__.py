"""MQTT for both ends of the fleet: one connection builder, one client, the AWS IoT Jobs wire protocol.

The robot side (deploy_service's IoT Jobs agent, health_monitor_tree's alert push) and the control side
(jobs_service) import this package and nothing of each other: :mod:`.connection` (settings and the
mutual-TLS builder), :mod:`.client` (the threaded client), :mod:`.jobs_protocol` (topics, payload
limits, execution statuses) and :mod:`.errors`. No rclpy here.
"""
