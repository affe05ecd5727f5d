"""``robot_agent_all``: the robot agent's nodes in ONE rclpy process (``agent_layout:=single``).

Why: on a 2-core robot each node in a process of its own pays for a Python interpreter (80-100 MB RSS)
and for rclpy's executor on every message of the topics it subscribes, although several nodes subscribe
to the same topics (bench/RESULTS.md, "Robot agent footprint"). Here nats_bridge, health_monitor_tree,
frame_publisher, ws_agent, robot_agent and deploy_service (those the launch arguments switch on) are
built from their usual classes in one context and spun by one executor. The simulator, like a robot's
own drivers, stays a process of its own.

Command line (what the runner and ``launch/robot.launch.py`` pass)::

    robot_agent_all --robot-id=r1 --enable-bridge=true ... --ros-args --params-file robot.yaml [-r __ns:=/ns]

The ``--name=value`` words are the robot's launch arguments (:data:`launch_plan.ROBOT_ARGUMENTS`; only
those :func:`launch_plan.agent_argument_names` lists), read by the same plan code as the split layout:
which nodes run (their ``enable_*``) and each node's own overrides (``metrics_port`` is the bridge's
``bridge_metrics_port`` but health's ``metrics_port``). rcl's ``-p node:name:=value`` cannot carry the
latter (it matches no node inside a namespace) and ``-r __node:=`` would rename every node, so the
overrides go into a parameters file of our own, keyed ``/**/<node>`` like config/robot.yaml, passed after
the caller's (later files win) and deleted once rcl has read it.

Executor: one :class:`MultiThreadedExecutor` with :data:`EXECUTOR_THREADS` threads. A single-threaded
executor would let one waiting callback stall every node, and deploy_service's callbacks do wait:
``invoke`` runs a function to its end (up to its timeout) and deploy/rollback do disk work, in
re-entrant callback groups so its services answer meanwhile (it had 4 threads of its own before). The
other nodes' callbacks never wait (they cache under a lock, publish, or hand work to their own threads),
and each node's default callback group is mutually exclusive, so every node keeps the guarantee it was
written for: its own callbacks never run concurrently (health_monitor_tree relies on it). Four threads:
deploy_service's waiting callbacks can hold two while the rest keep the others going; more threads only
add GIL hand-overs. nats_bridge's outbound topics keep their own reader thread (bridge/ros_reader.py).

Faults: an exception escaping any node's callback ends ``spin``; the process then logs one error line
naming the node (:func:`failing_node`) with the traceback, closes and destroys every node and exits
:data:`EXIT_NODE_FAILED` (1). One process is one unit: the others are not left running without it
(a robot without its health monitor must not look up); the launcher stops the robot, or with
``use_respawn:=true`` restarts the whole agent after 2 s, and its exit code and log show why. A node
that cannot start (its configuration, a port in use) ends the start the same way, with
:data:`~robot_platform.common.node_main.EXIT_CANNOT_START` and one line naming the node.

Stop: SIGINT and SIGTERM end ``spin`` through rclpy's signal handlers (as in common/node_main.py): the
executor's threads are joined, then each node is closed (``close()``, its own threads, sockets and
children) and destroyed, in reverse order of construction, and the process exits 0 with no traceback.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import rclpy
import yaml
from rclpy.executors import Executor, ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.utilities import remove_ros_args

from robot_platform import launch_plan
from robot_platform.common.node_main import EXIT_CANNOT_START, SHUTDOWN_RACE_ERRORS
from robot_platform.exceptions import ConfigError, RobotPlatformError

PROGRAM = launch_plan.AGENT_EXECUTABLE
EXECUTOR_THREADS = 4
EXECUTOR_STOP_TIMEOUT_S = 5.0
EXIT_NODE_FAILED = 1
# Node name -> "module:class", imported only when the node is switched on (frame_publisher brings
# numpy and OpenCV, deploy_service boto3: memory a robot without them should not pay).
NODE_CLASSES: dict[str, str] = {
    "nats_bridge": "robot_platform.bridge.node:NatsBridgeNode",
    "health_monitor_tree": "robot_platform.health.node:HealthMonitorNode",
    "frame_publisher": "robot_platform.frames.node:FramePublisherNode",
    "ws_agent": "robot_platform.ws.node:WsAgentNode",
    "robot_agent": "robot_platform.ops.node:RobotAgentNode",
    "deploy_service": "robot_platform.deploy.node:DeployServiceNode",
}

NodeFactory = tuple[str, Callable[[], Node]]  # (node name, builds the node)


def node_factory(name: str) -> Callable[[], Node]:
    module, _, cls = NODE_CLASSES[name].partition(":")
    return getattr(importlib.import_module(module), cls)


@contextlib.contextmanager
def overrides_file(document: dict[str, object]) -> Iterator[Path]:
    """A private parameters file holding ``document`` until the block ends (rcl reads it at init)."""
    fd, name = tempfile.mkstemp(prefix=f"{PROGRAM}-", suffix=".yaml")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yaml.safe_dump(document, f, default_flow_style=False)
        yield Path(name)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


def failing_node(exc: BaseException, nodes: dict[str, Node]) -> str | None:
    """Which node's code raised ``exc``: the deepest traceback frame that is a method of one of
    ``nodes`` (``self``) or, for lambdas and helpers, is in the module of exactly one node's class."""
    by_object = {id(node): name for name, node in nodes.items()}
    by_module: dict[str, list[str]] = {}
    for name, node in nodes.items():
        by_module.setdefault(type(node).__module__, []).append(name)
    found = None
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        owner = by_object.get(id(frame.f_locals.get("self")))
        if owner is None:
            candidates = by_module.get(frame.f_globals.get("__name__", ""), [])
            owner = candidates[0] if len(candidates) == 1 else None
        found = owner or found
        tb = tb.tb_next
    return found


def spin_nodes(factories: Sequence[NodeFactory], make_executor: Callable[[], Executor] | None = None) -> int:
    """Build the nodes in order (rclpy initialised), spin them on one executor until SIGINT/SIGTERM or
    an exception in a callback, close and destroy them; return the exit code (see the module docstring)."""
    log = rclpy.logging.get_logger(PROGRAM)
    nodes: dict[str, Node] = {}
    executor: Executor | None = None
    code = 0
    try:
        for name, make in factories:
            try:
                nodes[name] = make()
            except (RobotPlatformError, OSError) as exc:
                sys.stderr.write(f"{PROGRAM}: {name} cannot start: {exc}\n")
                return EXIT_CANNOT_START
        executor = make_executor() if make_executor else MultiThreadedExecutor(num_threads=EXECUTOR_THREADS)
        for node in nodes.values():
            executor.add_node(node)
        log.info(f"{len(nodes)} nodes in one process: {', '.join(nodes)}")
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (*SHUTDOWN_RACE_ERRORS, RuntimeError) as exc:
        if rclpy.ok():  # a real failure while running (with the context down: the stop itself)
            code = _report(log, exc, nodes)
    except Exception as exc:  # not swallowed: named, logged with its traceback, exit 1
        code = _report(log, exc, nodes)
    finally:
        # Stopping now: a second SIGINT must not cut the clean-up short (see common/node_main.py).
        with contextlib.suppress(ValueError):  # not the main thread (tests): leave it alone
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        if executor is not None:
            executor.shutdown(timeout_sec=EXECUTOR_STOP_TIMEOUT_S)  # no callback runs while nodes close
        for name, node in reversed(list(nodes.items())):
            if not _close(log, name, node):
                code = code or EXIT_NODE_FAILED
        rclpy.try_shutdown()
    return code


def _report(log: object, exc: BaseException, nodes: dict[str, Node]) -> int:
    name = failing_node(exc, nodes) or "an unknown node"
    text = "".join(traceback.format_exception(exc))
    message = (f"{name} failed: {type(exc).__name__}: {exc}; stopping every node of the agent "
               f"(exit {EXIT_NODE_FAILED}; use_respawn:=true restarts the agent)\n{text}")  # fmt: skip
    log.error(message)  # type: ignore[attr-defined]
    return EXIT_NODE_FAILED


def _close(log: object, name: str, node: Node) -> bool:
    """``close()`` then ``destroy_node()``; a failure is logged and the other nodes still close."""
    try:
        close = getattr(node, "close", None)
        if callable(close):
            close()
        node.destroy_node()
    except Exception:  # not swallowed: logged, and the exit code says so
        log.error(f"{name}: failed to stop cleanly:\n{traceback.format_exc()}")  # type: ignore[attr-defined]
        return False
    return True


def main(args: Sequence[str] | None = None) -> int:
    argv = list(sys.argv if args is None else args)
    try:
        values = launch_plan.agent_values(remove_ros_args(argv)[1:])
        specs = launch_plan.enabled_agent_nodes(values)
        if not specs:
            raise ConfigError("enable_*", "false", "every node of the agent is switched off: nothing to run")
        document = launch_plan.agent_parameters(values)
    except RobotPlatformError as exc:
        sys.stderr.write(f"{PROGRAM}: cannot start: {exc}\n")
        return EXIT_CANNOT_START
    # deploy_service's engine and the MQTT client log through Python logging (as deploy_service's main)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if any(spec.name == "ws_agent" for spec in specs):
        from robot_platform.ws.server import GIL_SWITCH_INTERVAL_S

        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)  # as ws_agent's main does (see ws/server.py)
    with overrides_file(document) as path:
        rclpy.init(args=[*argv, "--ros-args", "--params-file", str(path)])
    return spin_nodes([(spec.name, node_factory(spec.name)) for spec in specs])


if __name__ == "__main__":
    sys.exit(main())
