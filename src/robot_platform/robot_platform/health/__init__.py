"""Health monitoring: a py_trees behaviour tree of fault checks, built from YAML.

Plain-Python modules (no rclpy): :mod:`fault_state` (debounce/hysteresis state machine),
:mod:`sources` (data caches fed by callbacks), :mod:`checks` (the behaviours' base), :mod:`topic_checks`,
:mod:`value_checks` and :mod:`system_checks` (the check kinds), :mod:`check_kinds` (kind catalogue and
parameter schemas), :mod:`tree_builder` (config -> tree), :mod:`monitor` (tick, alert publication,
acknowledge/silence), :mod:`operator_requests` (NATS ack/silence input), :mod:`outputs` (diagnostic,
marker and snapshot content), :mod:`metrics` (Prometheus), :mod:`nats_out` and :mod:`mqtt_out` (alert
transports). The ROS glue is :mod:`node`.
"""
