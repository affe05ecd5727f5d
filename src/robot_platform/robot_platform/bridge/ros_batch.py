"""Take a subscription's queued ROS messages in one go: one wake-up per burst, not one per message.

Why: when a bridged topic becomes ready, more of its messages are usually waiting already (the DDS
reader queue, up to the QoS depth). :func:`take_queued` takes them right away with the call rclpy's own
executor uses (``handle.take_message``), in arrival order, at most ``limit`` so other topics and the
rate-limit releases still get their turn. Used by :mod:`.ros_reader` (rclpy glue); the per-message
logic stays in :class:`~.core.BridgeCore`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rclpy.exceptions import InvalidHandle
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.type_support import check_for_type_support

TAKE_BATCH_MAX = 64  # messages of one topic taken per wake-up (a few ms of work at most)


def take_queued(
    subscription: Any, handle_msg: Callable[..., None], limit: int = TAKE_BATCH_MAX, with_info: bool = False
) -> int:
    """Pass up to ``limit`` messages already queued on ``subscription`` to ``handle_msg``; return how many.
    ``with_info``: ``handle_msg(msg, info)``, info being rmw's message info (``received_timestamp``...).

    Call it only from the one thread that reads ``subscription``. A destroyed subscription
    (InvalidHandle) simply ends the batch.
    """
    handle = subscription.handle
    msg_type, raw = subscription.msg_type, subscription.raw
    taken = 0
    try:
        with handle:
            while taken < limit:
                info = handle.take_message(msg_type, raw)
                if info is None:
                    break
                taken += 1
                if with_info:
                    handle_msg(info[0], info[1])
                else:
                    handle_msg(info[0])
    except InvalidHandle:
        pass
    return taken


def cdr_decoder(msg_class: type) -> Callable[[bytes], Any]:
    """Raw CDR bytes -> a ``msg_class`` message, for subscriptions taken raw (``raw=True``).

    rclpy's ``deserialize_message`` looks the type support up again on every call, which cost here as
    much as the deserialization itself; it is looked up once, now (raising for a class without one).
    The returned function raises what rclpy raises for bytes that do not deserialize."""
    check_for_type_support(msg_class)
    deserialize = _rclpy.rclpy_deserialize

    def decode(data: bytes) -> Any:
        return deserialize(data, msg_class)

    return decode
