"""Health monitoring: a py_trees behaviour tree of fault checks, built from YAML.

Plain-Python modules (no rclpy): :mod:`fault_state` (debounce/hysteresis state machine),
:mod:`sources` (data caches fed by callbacks), :mod:`checks` (behaviours), :mod:`tree_builder`
(config -> tree), :mod:`outputs` (alert/diagnostic/marker/snapshot content), :mod:`metrics`
(Prometheus), :mod:`nats_out` and :mod:`mqtt_out` (alert transports). The ROS glue is :mod:`node`.
"""
