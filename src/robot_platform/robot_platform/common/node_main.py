"""The ``main()`` shape every robot_platform node shares (Jazzy idiom, see STYLE.md).

rclpy installs handlers for SIGINT and SIGTERM by default, so both end ``spin`` with
KeyboardInterrupt or ExternalShutdownException; either way the node's own resources are closed, the node
is destroyed and the context shut down, which is what lets the runner and the tests stop nodes cleanly.

SIGTERM shuts the context down from a signal handler, which can run in the middle of a callback: that
callback's next publish then fails (RCLError / InvalidHandle: "publisher's context is invalid"), or the
executor's next take of a message fails (a RuntimeError from rclpy's C++ layer). Once the context is down
such an error is the stop itself, not a crash, so the node still exits 0.

A node that cannot start because of its configuration (any :class:`RobotPlatformError`, or an OSError
such as a port already in use) exits with :data:`EXIT_CANNOT_START` and one line on stderr saying why,
instead of a traceback: the runner, launch and systemd then show the reason.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable, Sequence

import rclpy
from rclpy.executors import Executor, ExternalShutdownException
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node

from robot_platform.exceptions import RobotPlatformError

EXIT_CANNOT_START = 2
# What a callback cut by the shutdown raises when it touches a publisher, timer or client afterwards.
SHUTDOWN_RACE_ERRORS: tuple[type[BaseException], ...] = (_rclpy.RCLError, _rclpy.InvalidHandle)


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
    except SHUTDOWN_RACE_ERRORS:
        if rclpy.ok():
            raise  # a real failure while running
        # else: a callback was cut by SIGTERM's context shutdown: a clean stop
    except RuntimeError:
        # The executor taking a message while the signal's shutdown tears the subscription down fails in
        # rclpy's C++ layer ("Unable to convert call argument '0' to Python object"): seen as exit 1 of
        # health_monitor_tree on a Ctrl-C. With the context down that is the stop; otherwise a failure.
        if rclpy.ok():
            raise
    finally:
        # Stopping now: a second SIGINT (an impatient Ctrl-C, or the terminal's and the launcher's both
        # arriving) must not cut the clean-up short with a KeyboardInterrupt traceback. SIGTERM and
        # SIGKILL still end a clean-up that hangs.
        with contextlib.suppress(ValueError):  # not the main thread (tests): leave it alone
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        if node is not None:
            close = getattr(node, "close", None)
            if callable(close):
                close()  # the node's own non-ROS resources (threads, sockets, child processes)
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
