"""Run a node's private asyncio loop to its end without tracebacks on a normal stop.

Why: nodes keep their NATS client on an asyncio loop in a thread of their own. When the server stops
together with them (Ctrl-C reaches every process of a launch at once), nats.py leaves reader and
reconnect tasks and gathered futures behind, cancelled; closing the loop then made asyncio print
"exception was never retrieved ... CancelledError" with a traceback on every stop. This does what
``asyncio.run`` does at the end (cancel and collect the leftover tasks, close async generators) and
treats a cancelled future nobody awaited as the normal end it is; any other unhandled error still goes to
the loop's default handler.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def _quiet_cancellations(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    if isinstance(context.get("exception"), asyncio.CancelledError):
        return
    loop.default_exception_handler(context)


def run_to_end(loop: asyncio.AbstractEventLoop, main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on ``loop`` (in the calling thread), then end its leftover tasks and close it."""
    asyncio.set_event_loop(loop)
    loop.set_exception_handler(_quiet_cancellations)
    try:
        return loop.run_until_complete(main)
    finally:
        try:
            leftover = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in leftover:
                task.cancel()
            if leftover:
                loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
