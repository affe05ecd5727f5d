"""``robot-platform``: start a robot or the control server without ros2 launch, run the demo.

    robot-platform robot --robot-id r1 [--use-sim true] [--start-nats true] ...
    robot-platform control [--nats-port 4222] ...
    robot-platform demo [--robots 3] [--check]
    robot-platform topics [--domain 11]

Every process is started from robot_platform.launcher.plan with the installed config files (the same
ones the launch files use), each node in a process of its own; Ctrl-C, SIGTERM or SIGHUP stops all of
them (SIGINT, then SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from robot_platform.exceptions import RobotPlatformError
from robot_platform.launcher import plan
from robot_platform.launcher.processes import (
    Installation,
    ProcessSpec,
    control_processes,
    robot_processes,
)
from robot_platform.launcher.supervisor import ProcessGroup

log = logging.getLogger("robot-platform")
SubcommandHook = Callable[[argparse._SubParsersAction], None]

# Other areas' subcommands: command -> (module whose add_subparsers(subparsers) adds it, one-line help).
# Only the module of the command being run is imported: together they pull in boto3, awscrt, nats and
# cryptography, which made every call (even `--help`) cost over a second of start-up.
EXTRA_SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "package": ("robot_platform.cli.deploy", "signed packages: keygen, build, sign, push"),
    "deploy": ("robot_platform.cli.jobs", "fleet deployments through jobs_service: create, rollback, status, list"),
    "certs": ("robot_platform.site_setup.certs", "site certificates: CA, robots, servers, clients"),
    "robots": ("robot_platform.cli.ops", "the fleet registry: online/offline, versions, packages"),
    "logs": ("robot_platform.cli.ops", "search or follow the robots' ROS logs"),
    "ssh": ("robot_platform.cli.ops", "ssh into a robot through the bastion"),
    "ops": ("robot_platform.cli.ops", "remote-operations admin: keys, bastion keys, remote actions"),
    "record": ("robot_platform.cli.record", "record robots' topics from the hub into an MCAP file"),
}
ALL_COMMANDS = "*"
DEMO_HELP = "control server + N simulated robots on this machine"


def _add_arguments(parser: argparse.ArgumentParser, arguments: Sequence[plan.Argument]) -> None:
    for a in arguments:
        flag = f"--{a.name.replace('_', '-')}"
        if a.default is None:
            parser.add_argument(flag, dest=a.name, required=True, help=a.description)
        else:
            parser.add_argument(flag, dest=a.name, default=a.default, help=f"{a.description} (default: {a.default})")


class StopSignal:
    """Turns SIGINT, SIGTERM and SIGHUP into one event the supervising loop waits on."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.received: str | None = None
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: object) -> None:
        self.received = signal.Signals(signum).name
        self.event.set()


def supervise(specs: list[ProcessSpec], group: ProcessGroup, stop: StopSignal,
              on_started: Callable[[], int | None] | None = None) -> int:
    """Start ``specs``, run ``on_started`` (a result ends the run), wait for a signal, stop everything.

    A child that exits on its own is restarted after ``RESPAWN_DELAY_S`` when its spec says ``respawn``
    (``use_respawn``); otherwise the run stops everything and returns 1, naming it: a robot missing a
    node (say its metrics port was taken) must not look up. Returns 0 after a stop signal.
    """
    respawn = {spec.name: spec.respawn for spec in specs}
    try:
        for spec in specs:
            env = dict(os.environ) | spec.env
            group.start(spec.name, spec.argv, env=env, stop_last=spec.server)
            log.info("started %s", spec.name)
        result = on_started() if on_started else None
        if result is not None:
            return result
        due: dict[str, float] = {}
        while not stop.event.wait(0.2):
            now = time.monotonic()
            for child in group.exited():
                if not respawn.get(child.name):
                    log.error("%s exited with code %s: stopping everything (use_respawn:=true restarts "
                              "nodes instead; its output is above or in its log)", child.name, child.popen.returncode)
                    return 1
                if child.name not in due:
                    log.warning("%s exited with code %s: restarting it in %.0f s", child.name,
                                child.popen.returncode, plan.RESPAWN_DELAY_S)
                    due[child.name] = now + plan.RESPAWN_DELAY_S
            for name, when in list(due.items()):
                if now >= when:
                    del due[name]
                    group.restart(name)
                    log.info("restarted %s", name)
        log.info("%s received: stopping %d process(es)", stop.received, len(group.children))
        return 0
    finally:
        codes = group.stop_all()
        unclean = {name: code for name, code in codes.items() if code not in (0, -2, 130, None)}
        if unclean:
            log.info("exit codes: %s", unclean)


def _cmd_robot(args: argparse.Namespace) -> int:
    values = {a.name: getattr(args, a.name) for a in plan.ROBOT_ARGUMENTS}
    specs = robot_processes(values, Installation.find())
    return supervise(specs, ProcessGroup(), StopSignal())


def _cmd_control(args: argparse.Namespace) -> int:
    values = {a.name: getattr(args, a.name) for a in plan.CONTROL_ARGUMENTS}
    specs = control_processes(values, Installation.find())
    return supervise(specs, ProcessGroup(), StopSignal())


def _cmd_demo(args: argparse.Namespace) -> int:
    from robot_platform.demo import nats_site, prometheus_site, site_services
    from robot_platform.demo.check import check_demo, print_banner
    from robot_platform.demo.fleet import (
        DemoLayout,
        demo_processes,
        prometheus_targets,
        write_demo_roles,
        write_demo_users,
    )
    from robot_platform.site_setup.nats_config import Endpoint, HubCluster

    layout = DemoLayout(
        robots=args.robots, state_dir=Path(args.state_dir), hub_port=args.hub_port,
        hub_monitor_port=args.hub_monitor_port, leaf_port=args.leaf_port, robot_port_base=args.robot_port_base,
        robot_monitor_base=args.robot_monitor_base, domain_base=args.domain_base, metrics_base=args.metrics_base,
        bridge_metrics_base=args.bridge_metrics_base, console_port=args.console_port,
        panel_port_base=args.panel_port_base, control_bridge_metrics_port=args.control_bridge_metrics_port,
        jobs_metrics_port=args.jobs_metrics_port, prometheus_port=args.prometheus_port,
        site_ports=site_services.SitePorts(mqtt=args.mqtt_port, s3=args.s3_port, weed_base=args.weed_port_base),
        ha=args.ha, cluster_port=args.cluster_port,
    )
    if not 1 <= layout.robots <= 50:
        raise RobotPlatformError(f"--robots must be between 1 and 50, got {layout.robots}")
    users = write_demo_users(layout.state_dir)
    roles = write_demo_roles(layout.state_dir)
    install = Installation.find()
    robot_ids = [layout.robot_id(i) for i in range(1, layout.robots + 1)]
    site = None if args.no_deployments else site_services.prepare(layout.state_dir, robot_ids, install.share,
                                                                layout.site_ports)  # fmt: skip
    robot_ports = {layout.robot_id(i): (layout.robot_port_base + i, layout.robot_monitor_base + i)
                   for i in range(1, layout.robots + 1)}  # fmt: skip
    cluster = None
    if layout.ha:
        n = range(layout.hub_nodes)
        cluster = HubCluster.local([layout.hub_port + i for i in n], [layout.leaf_port + i for i in n],
                                   [layout.cluster_port + i for i in n], layout.hub_monitor_ports())  # fmt: skip
    nats = nats_site.prepare(layout.state_dir, robot_ports,
                             Endpoint(port=layout.hub_port, monitor_port=layout.hub_monitor_port), layout.leaf_port,
                             cluster)  # fmt: skip
    prometheus = None
    if layout.prometheus_port:
        conf = prometheus_site.prepare(layout.state_dir, install.share, prometheus_targets(layout),
                                       layout.prometheus_port)  # fmt: skip
        prometheus = prometheus_site.process(conf, layout.prometheus_port)
    specs = demo_processes(layout, install, enable_camera=args.enable_camera, users_file=users.path, site=site,
                           nats=nats, roles_file=roles, prometheus=prometheus)  # fmt: skip
    prometheus_url = f"http://127.0.0.1:{layout.prometheus_port}" if prometheus else ""
    group = ProcessGroup(log_dir=layout.state_dir / "logs")
    stop = StopSignal()

    def started() -> int | None:
        ok = check_demo(layout, group, stop.event)
        documents: list[Path] = []
        if site is not None:
            try:
                documents = site_services.publish_samples(site, install.share / "examples" / "packages", stop.event)
            except RobotPlatformError as exc:
                ok = False
                logging.getLogger("robot-platform.demo").error("sample packages not published: %s", exc)
        print_banner(layout, ok, users.tokens, documents, nats.password_files["control"], prometheus_url)
        if args.check:
            return 0 if ok else 1
        return None

    return supervise(specs, group, stop, started)


def _cmd_topics(args: argparse.Namespace) -> int:
    from robot_platform.launcher.graph import topics_in_domain

    domain = args.domain if args.domain is not None else int(os.environ.get("ROS_DOMAIN_ID", "0"))
    for name, types in sorted(topics_in_domain(domain, set(), timeout_s=args.wait).items()):
        print(f"{name}  [{', '.join(types)}]")
    return 0


def _cmd_echo(args: argparse.Namespace) -> int:
    import asyncio

    from robot_platform.cli.echo import echo

    try:
        password = Path(args.password_file).read_text(encoding="utf-8").strip() if args.password_file else ""
        printed = asyncio.run(echo(args.url, args.subject, args.count, sys.stdout, show_headers=args.headers,
                                   truncate_length=args.truncate_length, no_arr=args.no_arr, user=args.user,
                                   password=password))  # fmt: skip
        # echo returns how many it printed (it used to become the exit status: `-n 1` exited 1)
        return 0 if not args.count or printed >= args.count else 1
    except KeyboardInterrupt:
        return 0


def _add_demo_parser(sub: argparse._SubParsersAction) -> None:
    """The demo's options, with their defaults from :class:`DemoLayout` (imported here: the runner of a
    real robot or control server has no use for the demo's modules)."""
    from robot_platform.demo.fleet import DemoLayout

    demo = sub.add_parser("demo", help=DEMO_HELP)
    demo.add_argument("--robots", type=int, default=int(os.environ.get("ROBOTS", "3")),
                      help="number of simulated robots (default: $ROBOTS or 3)")
    demo.add_argument("--state-dir", default=".state/demo", help="logs and JetStream data")
    layout = DemoLayout()
    for option, value, text in (
        ("--hub-port", layout.hub_port, "NATS hub client port"),
        ("--hub-monitor-port", layout.hub_monitor_port, "NATS hub monitoring port"),
        ("--leaf-port", layout.leaf_port, "NATS hub leaf node port"),
        ("--robot-port-base", layout.robot_port_base, "robot i's nats-server listens on base+i"),
        ("--robot-monitor-base", layout.robot_monitor_base, "robot i's monitoring port is base+i"),
        ("--domain-base", layout.domain_base, "control uses this ROS_DOMAIN_ID, robot i base+i"),
        ("--metrics-base", layout.metrics_base, "robot i's health metrics port is base+i"),
        ("--bridge-metrics-base", layout.bridge_metrics_base, "robot i's bridge metrics port is base+i"),
        ("--console-port", layout.console_port, "operator console (ws_agent, fleet mode)"),
        ("--panel-port-base", layout.panel_port_base, "robot i's touch panel (ws_agent) is on base+i"),
        ("--control-bridge-metrics-port", layout.control_bridge_metrics_port, "control nats_bridge metrics"),
        ("--jobs-metrics-port", layout.jobs_metrics_port, "jobs_service metrics"),
        ("--prometheus-port", layout.prometheus_port, "the demo's Prometheus (0: none)"),
        ("--mqtt-port", layout.site_ports.mqtt, "Mosquitto (MQTT over TLS) for deployments"),
        ("--s3-port", layout.site_ports.s3, "SeaweedFS S3 endpoint for packages"),
        ("--weed-port-base", layout.site_ports.weed_base, "SeaweedFS internal ports base..base+6"),
    ):
        demo.add_argument(option, type=int, default=value, help=f"{text} (default: {value})")
    demo.add_argument("--cluster-port", type=int, default=layout.cluster_port,
                      help=f"--ha: route port of hub node 0, node i base+i (default: {layout.cluster_port})")
    demo.add_argument("--ha", action="store_true",
                      help="clustered hub (3 nats-server nodes, R3 streams) and jobs_service/fleet_registry "
                      "active+standby")  # fmt: skip
    demo.add_argument("--enable-camera", action="store_true", help="simulate cameras too")
    demo.add_argument("--no-deployments", action="store_true",
                      help="without Mosquitto, SeaweedFS and the sample packages (jobs API only)")
    demo.add_argument("--check", action="store_true",
                      help="start, verify every robot's topics and NATS link, stop; exit 0 if all good")
    demo.set_defaults(func=_cmd_demo)


def build_parser(command: str | None = ALL_COMMANDS) -> argparse.ArgumentParser:
    """The CLI's parser; with ``command`` only that command's module is imported (the others are listed
    for --help without their options), with ALL_COMMANDS every module."""
    parser = argparse.ArgumentParser(prog="robot-platform", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    robot = sub.add_parser("robot", help="start one robot (nodes + local nats-server)")
    _add_arguments(robot, plan.ROBOT_ARGUMENTS)
    robot.set_defaults(func=_cmd_robot)

    control = sub.add_parser("control", help="start the control server (NATS hub + nodes)")
    _add_arguments(control, plan.CONTROL_ARGUMENTS)
    control.set_defaults(func=_cmd_control)

    if command in (ALL_COMMANDS, "demo"):
        _add_demo_parser(sub)
    else:  # listed only: the demo's layout module brings yaml and the site services (5 MB of the runner)
        sub.add_parser("demo", help=DEMO_HELP, add_help=False)

    topics = sub.add_parser("topics", help="list the topics of a ROS graph (like `ros2 topic list -t`)")
    topics.add_argument("--domain", type=int, default=None, help="ROS_DOMAIN_ID (default: $ROS_DOMAIN_ID)")
    topics.add_argument("--wait", type=float, default=2.0, help="seconds of discovery before listing")
    topics.set_defaults(func=_cmd_topics)

    echo = sub.add_parser("echo", help="print platform messages from NATS as YAML, like ros2 topic echo")
    echo.add_argument("subject", help="NATS subject, wildcards allowed, e.g. 'robots.r1.ros.odom'")
    echo.add_argument("--url", default=os.environ.get("RP_NATS_URL", "nats://127.0.0.1:4222"),
                      help="NATS server (default $RP_NATS_URL, else the hub on 4222)")
    echo.add_argument("--user", default=os.environ.get("RP_NATS_USER", ""), help="NATS user (default $RP_NATS_USER)")
    echo.add_argument("--password-file", default=os.environ.get("RP_NATS_PASSWORD_FILE", ""),
                      help="file holding that user's password (default $RP_NATS_PASSWORD_FILE)")
    echo.add_argument("-n", "--count", type=int, default=0, help="stop after N messages (0: never)")
    echo.add_argument("--headers", action="store_true", help="print the envelope headers too")
    echo.add_argument("--truncate-length", type=int, default=128, help="shorten long arrays and strings")
    echo.add_argument("--no-arr", action="store_true", help="hide arrays, like ros2 topic echo --no-arr")
    echo.set_defaults(func=_cmd_echo)

    import importlib

    wanted = set(EXTRA_SUBCOMMANDS) if command == ALL_COMMANDS else {command} & set(EXTRA_SUBCOMMANDS)
    loaded: list[str] = []
    for name in wanted:
        module_name = EXTRA_SUBCOMMANDS[name][0]
        if module_name not in loaded:
            hook: SubcommandHook = importlib.import_module(module_name).add_subparsers
            hook(sub)
            loaded.append(module_name)
    for name, (module_name, text) in EXTRA_SUBCOMMANDS.items():
        if module_name not in loaded:
            sub.add_parser(name, help=text, add_help=False)  # listed only; never run without its module
    return parser


def chosen_command(argv: Sequence[str]) -> str | None:
    """The subcommand in ``argv`` (the first word that is not an option), if any."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(chosen_command(argv)).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="[%(asctime)s] %(name)s: %(message)s", datefmt="%H:%M:%S")
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    try:
        return int(args.func(args))
    except RobotPlatformError as exc:
        log.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
