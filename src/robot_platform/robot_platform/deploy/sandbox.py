"""Child-side launcher: apply resource limits to itself, then exec a command or call a function handler.

Run as a script by path (``python .../sandbox.py exec|invoke ...``); it imports only the standard
library so it starts fast and never loads the platform (or its secrets) into the child.

Why not ``subprocess.Popen(preexec_fn=...)``: deploy_service is multi-threaded (rclpy executor, engine
workers, NATS loop) and Python documents ``preexec_fn`` as unsafe with threads (it can deadlock in the
forked child). Setting the limits here, after exec in a fresh single-threaded interpreter, gives the same
``setrlimit`` effect safely.

``exec LIMITS -- argv...``
    set limits, then ``execvp(argv)``.
``probe LIMITS HANDLER``
    set limits, import the handler's module from the current directory; exit 0 if the function exists.
``invoke LIMITS HANDLER NAME VERSION INVOCATION_ID TIMEOUT_S``
    set limits, read the event (JSON) from stdin, import ``HANDLER`` (``module.function``) from the current
    directory, call ``handler(event, context)``, write ``{"ok": true, "result": ...}`` or
    ``{"ok": false, "error": ..., "traceback": ...}`` as one JSON document to the original stdout. The
    handler's own prints go to stderr (the invocation's log).
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import sys
import time
import traceback

MB = 1024 * 1024


def apply_limits(limits: dict[str, int | None]) -> None:
    """setrlimit for each limit given (soft = hard, so the package cannot raise it again)."""
    table = {
        "memory_mb": (resource.RLIMIT_AS, MB),
        "cpu_s": (resource.RLIMIT_CPU, 1),
        "open_files": (resource.RLIMIT_NOFILE, 1),
        "file_size_mb": (resource.RLIMIT_FSIZE, MB),
        "processes": (resource.RLIMIT_NPROC, 1),
    }
    for key, value in limits.items():
        if value is None or key not in table:
            continue
        which, unit = table[key]
        amount = int(value) * unit
        _soft, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            amount = min(amount, hard)
        resource.setrlimit(which, (amount, amount))


class Context:
    """The Lambda-style ``context`` argument: names, limits and the time left."""

    def __init__(self, name: str, version: str, invocation_id: str, timeout_s: float, memory_mb: int | None):
        self.function_name = name
        self.function_version = version
        self.aws_request_id = invocation_id  # Lambda's name, kept so ported handlers work unchanged
        self.invocation_id = invocation_id
        self.memory_limit_in_mb = memory_mb
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _invoke(
    limits: dict[str, int | None], handler: str, name: str, version: str, invocation_id: str, timeout_s: float
) -> int:
    result_fd = os.dup(1)
    os.dup2(2, 1)  # the handler's prints (and any C-level writes) go to the log, not the result
    sys.stdout = sys.stderr
    os.set_inheritable(result_fd, False)
    try:
        event = json.loads(sys.stdin.read() or "null")
        # The package root replaces this script's directory (whose modules must not shadow the package's).
        here = os.path.dirname(os.path.abspath(__file__))
        sys.path[:] = [os.getcwd(), *(p for p in sys.path if p and os.path.abspath(p) != here)]
        module_name, function_name = handler.rsplit(".", 1)
        function = getattr(importlib.import_module(module_name), function_name)
        context = Context(name, version, invocation_id, timeout_s, limits.get("memory_mb"))
        result = function(event, context)
        document = json.dumps({"ok": True, "result": result})
        code = 0
    except BaseException as exc:
        document = json.dumps(
            {
                "ok": False,
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(limit=20),
            }
        )
        code = 1
    with os.fdopen(result_fd, "w") as out:
        out.write(document)
    return code


def _probe(handler: str) -> int:
    """Import the handler's module and check the function exists: a function package's health check."""
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [os.getcwd(), *(p for p in sys.path if p and os.path.abspath(p) != here)]
    module_name, function_name = handler.rsplit(".", 1)
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except BaseException as exc:
        sys.stderr.write(f"cannot load {handler}: {type(exc).__name__}: {exc}\n")
        return 1
    if not callable(function):
        sys.stderr.write(f"{handler} is not callable\n")
        return 1
    return 0


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "exec" and "--" in argv:
        split = argv.index("--")
        apply_limits(json.loads(argv[1]))
        command = argv[split + 1 :]
        os.execvp(command[0], command)  # noqa: S606 - argv list from a validated manifest, no shell
    if len(argv) == 3 and argv[0] == "probe":
        apply_limits(json.loads(argv[1]))
        return _probe(argv[2])
    if len(argv) == 7 and argv[0] == "invoke":
        limits = json.loads(argv[1])
        apply_limits(limits)
        return _invoke(limits, argv[2], argv[3], argv[4], argv[5], float(argv[6]))
    sys.stderr.write("usage: sandbox.py exec LIMITS -- argv... | invoke LIMITS HANDLER NAME VERSION ID TIMEOUT\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
