"""The ``main()`` shape every robot_platform node shares (Jazzy idiom, see STYLE.md).

rclpy installs handlers for SIGINT and SIGTERM by default, so both end ``spin`` with
KeyboardInterrupt or ExternalShutdownException; either way the node is destroyed and the context shut
down, which is what lets the runner and the tests stop nodes cleanly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import rclpy
from rclpy.executors import Executor, ExternalShutdownException
from rclpy.node import Node


def spin_node(
    make_node: Callable[[], Node],
    args: Sequence[str] | None = None,
    executor: Executor | None = None,
) -> None:
    """Init rclpy, build the node, spin it until Ctrl-C or SIGTERM, then clean up."""
    rclpy.init(args=args)
    node: Node | None = None
    try:
        node = make_node()
        if executor is None:
            rclpy.spin(node)
        else:
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
