"""NATS going away is logged as one line, never as a traceback (a real nats-server stopped under a client).

nats-py's default error callback logs every refused (re)connect with the exception's traceback; a node
that leaves it in place fills its log with tracebacks when the robot's server restarts or starts late,
which is what the quiet-stop check caught from deploy_service on a loaded machine.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time

import pytest

from helpers import free_port, wait_for
from robot_platform.deploy.nats_adapter import DeployNatsAdapter
from robot_platform.jobs.nats_api import JobsNatsApi
from robot_platform.jobs.service import JobsService
from robot_platform.jobs.store import JobStore
from robot_platform.ops.client import HubUnavailableError
from robot_platform.ops.client import connect as cli_connect


def _tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.exc_info]


def test_deploy_link_logs_lost_server_without_traceback(nats_server, procs, caplog):
    caplog.set_level(logging.DEBUG)
    link = DeployNatsAdapter(nats_server.url, robot_id="r1", invoker=None)
    link.start()
    try:
        assert link.wait_connected(20), "deploy link never connected"
        procs.child("nats-server").popen.send_signal(signal.SIGKILL)
        wait_for(lambda: any("NATS" in r.getMessage() and r.levelno >= logging.WARNING for r in caplog.records),
                 20, "a warning about the lost server")  # fmt: skip
    finally:
        link.stop()
    assert not _tracebacks(caplog), _tracebacks(caplog)


def test_cli_connect_refused_is_one_error_without_traceback(caplog):
    """A CLI call with the hub down fails at once with one clear error (it used to retry forever)."""
    caplog.set_level(logging.DEBUG)
    with pytest.raises(HubUnavailableError):
        asyncio.run(asyncio.wait_for(cli_connect(f"nats://127.0.0.1:{free_port()}"), 15))
    assert not _tracebacks(caplog), _tracebacks(caplog)


def test_jobs_api_stopped_while_its_server_hangs_without_traceback(nats_server, procs, caplog, tmp_path):
    """CI caught jobs_service printing "_GatheringFuture exception was never retrieved" at a Ctrl-C that
    stopped its nats-server first: the API's drain was cut and its loop closed with the future pending."""
    caplog.set_level(logging.DEBUG)
    service = JobsService(JobStore(tmp_path / "jobs.sqlite3"), lambda topic, body: None, lambda event: None,
                          time.time)  # fmt: skip
    api = JobsNatsApi(nats_server.url, service)
    api.start()
    try:
        assert api.wait_connected(20), "jobs API never connected"
        # A stopped (not dead) server: the drain at stop hangs and is cut by the API's drain timeout, as when
        # a Ctrl-C reaches the server and the service together.
        server = procs.child("nats-server").popen
        server.send_signal(signal.SIGSTOP)
    finally:
        api.stop(timeout=15)
        server.send_signal(signal.SIGCONT)
        gc.collect()  # the cut drain's gathered future reports "never retrieved" when it is collected
        service.store.close()
    assert not api.link.alive
    assert not _tracebacks(caplog), _tracebacks(caplog)
