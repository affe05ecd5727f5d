"""``robot_agent_all``: the robot agent's nodes in ONE rclpy process (``agent_layout:=single``).

Why: on a 2-core robot each node in a process of its own pays for a Python interpreter (80-100 MB RSS)
and for rclpy's executor on every message of the topics it subscribes, although several nodes subscribe
to the same topics (bench/RESULTS.md, "Robot agent footprint"). Here nats_bridge, health_monitor_tree,
frame_publisher, ws_agent, robot_agent and deploy_service (those the launch arguments switch on) are
built from their usual classes in one context and spun by one executor. The simulator, like a robot's
own drivers, stays a process of its own.

Command line (what the runner and ``launch/robot.launch.py`` pass)::

    robot_agent_all --robot-id=r1 --enable-bridge=true ... --ros-args --params-file robot.yaml [-r __ns:=/ns]

The ``--name=value`` words are the robot's launch arguments (:data:`plan.ROBOT_ARGUMENTS`; only
those :func:`plan.agent_argument_names` lists), read by the same plan code as the split layout:
which nodes run (their ``enable_*``) and each node's own overrides (``metrics_port`` is the bridge's
``bridge_metrics_port`` but health's ``metrics_port``). rcl's ``-p node:name:=value`` cannot carry the
latter (it matches no node inside a namespace) and ``-r __node:=`` would rename every node, so the
overrides go into a parameters file of our own, keyed ``/**/<node>`` like config/robot.yaml, passed after
the caller's (later files win) and deleted once rcl has read it.

NATS: the nodes' links to the robot's nats-server share one connection (``share_connections``,
messaging/connection.py): one socket and one asyncio thread; each node keeps its own subscriptions,
outbox and set-up, closing a node ends only its part, and the last one closes the connection.

Executors: one per node, each on a thread of its own, all in the one context: the executor the node's
own ``main()`` gives it (a :class:`SingleThreadedExecutor`; deploy_service, whose module asks for
``EXECUTOR_THREADS``, a :class:`MultiThreadedExecutor` with that many threads, so its services answer
while ``invoke`` runs a function to its end). Not one executor for all, measured: rclpy's executor
(Jazzy) rebuilds its wait set on every wake-up from every entity of every node it holds (each node
brings seven parameter and type-description services besides its timers and subscriptions), so one
executor for the five nodes made each wake-up of any node pay for all of them: 9.7 % of a core idle and
42.9 % with telemetry (split: 4.2 % and 28.2 %), against 4.2 % and 25.6 % with an executor per node
(bench/RESULTS.md, "Robot agent footprint"). A
MultiThreadedExecutor for all would also let deploy_service's waiting callbacks hold threads the other
nodes need. With its own executor each node keeps exactly the guarantees it was written for (its
callbacks never run concurrently, health_monitor_tree relies on it) and a slow callback holds up only
its own node. nats_bridge's outbound topics keep their own reader thread (bridge/ros_reader.py).

Faults: an exception escaping any node's callback ends that node's executor; the process then logs one
error line naming the node, with the traceback, stops every other executor, closes and destroys every
node and exits :data:`EXIT_NODE_FAILED` (1). One process is one unit: the others are not left running
without it (a robot without its health monitor must not look up); the launcher stops the robot, or with
``use_respawn:=true`` restarts the whole agent after 2 s, and its exit code and log show why. A node
that cannot start (its configuration, a port in use) ends the start the same way, with
:data:`~robot_platform.common.node_main.EXIT_CANNOT_START` and one line naming the node.

Stop: SIGINT and SIGTERM shut the context down through rclpy's signal handlers (as in
common/node_main.py), which ends every executor; their threads are joined, then each node is closed
(``close()``: its own threads, sockets and children) and destroyed, in reverse order of construction,
and the process exits 0 with no traceback. A failure stops the others the same way (the context is shut
down), so every node closes as it does after a signal in the split layout.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import rclpy
import yaml
from rclpy.executors import Executor, ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.utilities import remove_ros_args

from robot_platform.common.node_main import EXIT_CANNOT_START, SHUTDOWN_RACE_ERRORS
from robot_platform.exceptions import ConfigError, RobotPlatformError
from robot_platform.launcher import plan

PROGRAM = plan.AGENT_EXECUTABLE
EXECUTOR_STOP_TIMEOUT_S = 5.0
MAIN_WAIT_S = 1.0
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


def make_executor(node: Node) -> Executor:
    """The executor the node's own ``main()`` uses: multi-threaded if its module says how many threads
    (``EXECUTOR_THREADS``), else single-threaded."""
    threads = getattr(sys.modules[type(node).__module__], "EXECUTOR_THREADS", 0)
    return MultiThreadedExecutor(num_threads=threads) if threads else SingleThreadedExecutor()


class NodeThread:
    """One node's executor, spun on a thread of its own; records how it ended."""

    def __init__(self, name: str, node: Node, executor: Executor, ended: threading.Event) -> None:
        self.name = name
        self.node = node
        self.executor = executor
        self.failure: BaseException | None = None
        self._ended = ended
        executor.add_node(node)
        self.thread = threading.Thread(target=self._spin, name=f"{name}-executor", daemon=True)

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass  # SIGINT/SIGTERM: the context is down
        except (*SHUTDOWN_RACE_ERRORS, RuntimeError) as exc:
            if rclpy.ok():  # with the context down, a callback cut by the stop (see common/node_main.py)
                self.failure = exc
        except Exception as exc:  # not swallowed: the main thread names the node, logs it, exits 1
            self.failure = exc
        finally:
            self._ended.set()

    def stop(self, log: Any) -> None:
        """Once the context is down (which ends ``spin``): wait for the thread, then release the executor.
        Never ``executor.shutdown()`` while the thread may still wait on it: that destroys the guard
        conditions in its wait set (a segmentation fault, seen under SIGINT). Safe before the thread has
        started (a SIGINT can land while the threads are being started)."""
        if self.thread.ident is not None:
            self.thread.join(EXECUTOR_STOP_TIMEOUT_S)
            if self.thread.is_alive():
                log.warning(f"{self.name}: a callback still runs after {EXECUTOR_STOP_TIMEOUT_S:.0f} s; closing anyway")
                return
        self.executor.shutdown(timeout_sec=EXECUTOR_STOP_TIMEOUT_S)


def spin_nodes(factories: Sequence[NodeFactory]) -> int:
    """Build the nodes in order (rclpy initialised), spin each on its own executor until SIGINT/SIGTERM
    or an exception in a callback, close and destroy them; return the exit code (module docstring)."""
    log = rclpy.logging.get_logger(PROGRAM)
    nodes: dict[str, Node] = {}
    spinning: list[NodeThread] = []
    ended = threading.Event()
    code = 0
    try:
        for name, make in factories:
            try:
                nodes[name] = make()
            except (RobotPlatformError, OSError) as exc:
                sys.stderr.write(f"{PROGRAM}: {name} cannot start: {exc}\n")
                return EXIT_CANNOT_START
        spinning = [NodeThread(name, node, make_executor(node), ended) for name, node in nodes.items()]
        for each in spinning:
            each.thread.start()
        log.info(f"{len(nodes)} nodes in one process: {', '.join(nodes)}")
        while not ended.wait(MAIN_WAIT_S):  # a timeout, so SIGINT's KeyboardInterrupt is seen here
            pass
    except KeyboardInterrupt:
        pass
    finally:
        # Stopping now: a second SIGINT must not cut the clean-up short (see common/node_main.py).
        with contextlib.suppress(ValueError):  # not the main thread (tests): leave it alone
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        # Every executor ends when the context is down: SIGINT/SIGTERM's handler shuts it down (from a
        # thread of rclpy's, so perhaps not yet), here it is done for every other ending (a failure).
        _shutdown_context()
        for each in spinning:
            each.stop(log)  # no callback runs while the nodes close
        for each in spinning:
            if each.failure is not None:
                code = _report(log, each.name, each.failure)
        for name, node in reversed(list(nodes.items())):
            if not _close(log, name, node):
                code = code or EXIT_NODE_FAILED
        _shutdown_context()
    return code


def _shutdown_context() -> None:
    """``rclpy.try_shutdown()``, racing rclpy's signal-handling thread: "rcl_shutdown already called"
    means the signal's shutdown got there first, which is the same outcome."""
    with contextlib.suppress(*SHUTDOWN_RACE_ERRORS):
        rclpy.try_shutdown()


def _report(log: Any, name: str, exc: BaseException) -> int:
    text = "".join(traceback.format_exception(exc))
    log.error(f"{name} failed: {type(exc).__name__}: {exc}; stopped every node of the agent "
              f"(exit {EXIT_NODE_FAILED}; use_respawn:=true restarts the agent)\n{text}")  # fmt: skip
    return EXIT_NODE_FAILED


def _close(log: Any, name: str, node: Node) -> bool:
    """``close()`` then ``destroy_node()``; a failure is logged and the other nodes still close."""
    try:
        close = getattr(node, "close", None)
        if callable(close):
            close()
        node.destroy_node()
    except Exception:  # not swallowed: logged, and the exit code says so
        log.error(f"{name}: failed to stop cleanly:\n{traceback.format_exc()}")
        return False
    return True


def main(args: Sequence[str] | None = None) -> int:
    argv = list(sys.argv if args is None else args)
    try:
        values = plan.agent_values(remove_ros_args(argv)[1:])
        specs = plan.enabled_agent_nodes(values)
        if not specs:
            raise ConfigError("enable_*", "false", "every node of the agent is switched off: nothing to run")
        document = plan.agent_parameters(values)
    except RobotPlatformError as exc:
        sys.stderr.write(f"{PROGRAM}: cannot start: {exc}\n")
        return EXIT_CANNOT_START
    # deploy_service's engine and the MQTT client log through Python logging (as deploy_service's main)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if any(spec.name == "ws_agent" for spec in specs):
        from robot_platform.ws.server import GIL_SWITCH_INTERVAL_S

        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)  # as ws_agent's main does (see ws/server.py)
    # Every node's NatsLink to the robot's server on one connection (messaging/connection.py)
    from robot_platform.messaging.connection import share_connections

    share_connections(True, name=f"{PROGRAM}.{values.get('robot_id', '')}")
    with overrides_file(document) as path:
        rclpy.init(args=[*argv, "--ros-args", "--params-file", str(path)])
    return spin_nodes([(spec.name, node_factory(spec.name)) for spec in specs])


if __name__ == "__main__":
    sys.exit(main())
