"""The ``main()`` shape every robot_platform node shares (Jazzy idiom, see STYLE.md).

rclpy installs handlers for SIGINT and SIGTERM by default, so both end ``spin`` with
KeyboardInterrupt or ExternalShutdownException; either way the node's own resources are closed, the node
is destroyed and the context shut down, which is what lets the runner and the tests stop nodes cleanly.

A node that cannot start because of its configuration (any :class:`RobotPlatformError`, or an OSError
such as a port already in use) exits with :data:`EXIT_CANNOT_START` and one line on stderr saying why,
instead of a traceback: the runner, launch and systemd then show the reason.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import rclpy
from rclpy.executors import Executor, ExternalShutdownException
from rclpy.node import Node

from robot_platform.exceptions import RobotPlatformError

EXIT_CANNOT_START = 2


def spin_node(
    make_node: Callable[[], Node],
    args: Sequence[str] | None = None,
    make_executor: Callable[[], Executor] | None = None,
) -> int:
    """Init rclpy, build the node, spin it until Ctrl-C or SIGTERM, clean up; return the exit code."""
    rclpy.init(args=args)
    node: Node | None = None
    try:
        try:
            node = make_node()
        except (RobotPlatformError, OSError) as exc:
            name = getattr(make_node, "__name__", "node")
            sys.stderr.write(f"{name}: cannot start: {exc}\n")
            return EXIT_CANNOT_START
        if make_executor is None:
            rclpy.spin(node)
        else:
            executor = make_executor()
            executor.add_node(node)
            executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if callable(close):
                close()  # the node's own non-ROS resources (threads, sockets, child processes)
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
