"""Parameters of ``nats_bridge``: the node's interface as tables (see common/params.py).

All read-only: routes, subscriptions and the NATS link are built once at start (restart the node to
change them). config/robot.yaml (robot mode) and config/control.yaml (control mode) repeat these
defaults; test_param_tables.py holds them equal. Per-route groups (``out.<n>.*``, ``in.<n>.*``,
``commands.<n>.*``, ``services.<n>.*``) are declared for each name of their ``*.names`` list.
"""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from robot_platform.common.params import REQUIRED, Param, ParamTable
from robot_platform.exceptions import ConfigError

MIB = 1024 * 1024
RELIABILITY = {"reliable": ReliabilityPolicy.RELIABLE, "best_effort": ReliabilityPolicy.BEST_EFFORT}
DURABILITY = {"volatile": DurabilityPolicy.VOLATILE, "transient_local": DurabilityPolicy.TRANSIENT_LOCAL}

PARAMS: tuple[Param, ...] = (  # both modes
    Param("robot_id", str, REQUIRED, "robot id, a single subject token ([A-Za-z0-9_-])"),
    Param("nats_url", str, "nats://127.0.0.1:4222", "NATS server URL (the robot's local server)"),
    Param("nats_user", str, "", "NATS user name; empty = no authentication"),
    Param("nats_password_file", str, "", "file holding the NATS password (never logged)"),
    Param("max_payload_bytes", int, MIB, "refuse larger encoded messages", (1024, 64 * MIB)),
    Param("outbox_capacity", int, 1000, "messages kept while NATS is down (drop oldest)", (1, 1_000_000)),
    Param("dedup_capacity", int, 10_000, "recent message ids remembered for duplicate dropping", (1, 10_000_000)),
    Param("discovery_period_s", float, 2.0, "period of the search for topics matching out.allow; 0=off", (0.0, 3600.0)),
    Param("health_period_s", float, 1.0, "period of the counters report", (0.1, 3600.0)),
    Param("mode", str, "robot", "'robot' or 'control' (control also mirrors robots into ROS)", control="control"),
    Param("in.names", list, (), "allowlisted commands (robots.<id>.cmd.<topic>)", site=True),
    Param("events_stream", bool, True, "ensure the JetStream event stream(s)"),
    Param("out.names", list, (), "named outbound topics", site=True),
    Param("out.allow", list, (), "globs of topics bridged when discovered", site=True),
    Param("out.deny", list, (), "globs of topics never bridged (wins over out.allow)", site=True),
    # Discovered topics are extras (/robot_state, /sensors/**): a low rate keeps them off the uplink's budget.
    Param("out.pattern_max_rate_hz", float, 5.0, "max rate of discovered topics; 0=unlimited", (0.0, 10000.0)),
    Param(
        "out.read_period_s",
        float,
        0.0,
        "at most one round of outbound takes per this many seconds (what arrives meanwhile goes in that "
        "round: fewer wake-ups, up to this much added latency); 0 = each message at once",
        (0.0, 1.0),
        site=True,  # a CPU-for-latency choice: robot.yaml takes 0.02, a bare `ros2 run` the lowest latency
    ),
    Param("out.pattern_reliability", str, "best_effort", "QoS reliability of discovered topics"),
    Param("out.pattern_depth", int, 5, "QoS depth of discovered topics", (1, 1000)),
    Param("metrics_port", int, 0, "Prometheus port on 127.0.0.1; 0 = off", (0, 65535), control=9202),
)
ROBOT_PARAMS: tuple[Param, ...] = (  # mode robot
    Param("services.names", list, (), "ROS services callable through NATS", site=True),
    Param("services.max_pending", int, 16, "service calls in flight at once", (1, 1000)),
)
CONTROL_PARAMS: tuple[Param, ...] = (  # mode control
    Param("fleet_robots", list, (), "robots whose event streams are sourced and commands bridged", site=True),
    Param("mirror.max_robots", int, 256, "with mirror.robots empty: most robot ids mirrored", (1, 100_000)),
    Param("mirror.topics", list, (), "robot topics mirrored into /fleet/<id>/<topic>", site=True),
    # The shipped control.yaml sets [/odom]: robot.yaml's nats_bridge sends that copy. Empty by default, so
    # robots configured without overview copies still have their topics mirrored.
    Param("mirror.overview_topics", list, (), "mirrored topics taken from robots.<id>.overview.<topic>", site=True),
    Param("mirror.robots", list, (), "robots mirrored (empty: all)"),
    Param("mirror.namespace", str, "/fleet", "prefix of mirrored topics"),
    Param("mirror.reliability", str, "reliable", "QoS reliability of mirrored topics"),
    Param("mirror.depth", int, 10, "QoS depth of mirrored topics", (1, 1000)),
    Param(
        "mirror.frame_prefix",
        bool,
        True,
        "prefix mirrored frame ids with the robot id (r1/odom) and publish "
        "each robot's TF tree under 'fleet' (needs tf2_msgs)",
    ),
    Param("mirror.origins", str, "", "where robots' odom frames sit in 'fleet': r1:x,y,yaw; ..."),
    Param("commands.names", list, (), "commands sent from this graph to the fleet robots", site=True),
)
ROUTE_PARAMS: tuple[Param, ...] = (  # out.<n>, in.<n>, commands.<n>
    Param("topic", str, "", "ROS topic (fully qualified)"),
    Param("type", str, "", "ROS type, e.g. nav_msgs/msg/Odometry"),
    Param("reliability", str, "reliable", "reliable | best_effort"),
    Param("durability", str, "volatile", "volatile | transient_local"),
    Param("depth", int, 10, "QoS history depth", (1, 10000)),
)
ALLOW_NON_FINITE = Param(
    "allow_non_finite", bool, False, "accept NaN/inf in float fields (default: refuse, counted as out_of_range)"
)
OUT_PARAMS: tuple[Param, ...] = (
    *ROUTE_PARAMS,
    Param("max_rate_hz", float, 0.0, "max rate, keep latest; 0 = unlimited", (0.0, 100000.0)),
    Param("overview_rate_hz", float, 0.0, "also a copy this often on robots.<id>.overview.<topic>", (0.0, 1000.0)),
    Param("subject", str, "", "'' or a suffix under robots.<id>"),
)
IN_PARAMS: tuple[Param, ...] = (*ROUTE_PARAMS, ALLOW_NON_FINITE)
SERVICE_PARAMS: tuple[Param, ...] = (  # services.<n>
    Param("service", str, "", "ROS service name (fully qualified)"),
    Param("type", str, "", "service type, e.g. std_srvs/srv/SetBool"),
    Param("timeout_s", float, 5.0, "reply 'timeout' after this long", (0.01, 600.0)),
    ALLOW_NON_FINITE,
)
TABLE = ParamTable(
    "nats_bridge",
    PARAMS + ROBOT_PARAMS + CONTROL_PARAMS,
    {"out": OUT_PARAMS, "in": IN_PARAMS, "commands": ROUTE_PARAMS, "services": SERVICE_PARAMS},
)


def qos(reliability: str, durability: str, depth: int, where: str) -> QoSProfile:
    """The QoS profile a route's parameters describe; ConfigError names the parameter at fault."""
    if reliability not in RELIABILITY:
        raise ConfigError(f"{where}.reliability", reliability, f"one of {sorted(RELIABILITY)}")
    if durability not in DURABILITY:
        raise ConfigError(f"{where}.durability", durability, f"one of {sorted(DURABILITY)}")
    if depth < 1:
        raise ConfigError(f"{where}.depth", depth, "at least 1")
    return QoSProfile(depth=depth, reliability=RELIABILITY[reliability], durability=DURABILITY[durability])
