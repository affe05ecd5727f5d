"""Run ws_agent without ROS: ``python -m robot_platform.ws.standalone --mode fleet --port 9090 ...``.

For benchmarks, development and machines without rclpy; the ROS node (:mod:`.node`) is the normal way.
Stops cleanly on SIGINT and SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from robot_platform.ws.client_session import SessionLimits
from robot_platform.ws.gateway import GatewayLimits
from robot_platform.ws.server import GIL_SWITCH_INTERVAL_S, AgentConfig, LoginLimits, WsAgent
from robot_platform.ws.topics import Mode


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mode", choices=[m.value for m in Mode], default="robot")
    ap.add_argument("--robot-id", default="", help="the robot served (required in robot mode)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9090)
    ap.add_argument("--nats-url", default="nats://127.0.0.1:4222")
    ap.add_argument("--users-file", default="")
    ap.add_argument("--anonymous-role", default="")
    ap.add_argument("--allowed-origin", action="append", default=[])
    ap.add_argument("--allowed-host", action="append", default=[])
    ap.add_argument("--max-clients", type=int, default=100)
    ap.add_argument("--max-clients-per-user", type=int, default=32, help="0 = no limit per user")
    ap.add_argument("--max-pending-connections", type=int, default=128)
    ap.add_argument("--handshake-timeout-s", type=float, default=5.0)
    ap.add_argument("--auth-timeout-s", type=float, default=10.0)
    ap.add_argument("--login-max-failures-per-addr", type=int, default=10)
    ap.add_argument("--login-max-failures-per-user", type=int, default=5)
    ap.add_argument("--web-dir", default="")
    ap.add_argument("--site-map-file", default="")
    ap.add_argument("--max-client-msgs-per-s", type=float, default=200.0)
    ap.add_argument("--default-queue-length", type=int, default=100)
    ap.add_argument("--frame-lease-ttl-s", type=float, default=5.0)
    ap.add_argument(
        "--foxglove-bridge-config",
        default="",
        help="nats_bridge params YAML: serve foxglove.websocket.v1 with its channels ('' = off)",
    )
    ap.add_argument("--log-level", default="INFO")
    ap.add_argument("--switch-interval-s", type=float, default=GIL_SWITCH_INTERVAL_S)
    args = ap.parse_args(argv)
    if args.mode == Mode.ROBOT.value and not args.robot_id:
        ap.error("--robot-id is required in robot mode (a robot must not be r1 by accident)")
    sys.setswitchinterval(args.switch_interval_s)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = AgentConfig(
        mode=Mode(args.mode),
        robot_id=args.robot_id,
        host=args.host,
        port=args.port,
        nats_url=args.nats_url,
        users_file=args.users_file,
        anonymous_role=args.anonymous_role,
        allowed_origins=args.allowed_origin,
        allowed_hosts=args.allowed_host,
        max_clients=args.max_clients,
        max_clients_per_user=args.max_clients_per_user,
        max_pending_connections=args.max_pending_connections,
        handshake_timeout_s=args.handshake_timeout_s,
        auth_timeout_s=args.auth_timeout_s,
        logins=LoginLimits(args.login_max_failures_per_addr, args.login_max_failures_per_user),
        web_dir=args.web_dir,
        site_map_file=args.site_map_file,
        foxglove_bridge_config=args.foxglove_bridge_config,
        frame_lease_ttl_s=args.frame_lease_ttl_s,
        gateway=GatewayLimits(max_client_msgs_per_s=args.max_client_msgs_per_s),
        session=SessionLimits(default_queue_length=args.default_queue_length),
    )
    agent = WsAgent(config)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    agent.start()
    try:
        stop.wait()
    finally:
        agent.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
