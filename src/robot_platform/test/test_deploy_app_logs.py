"""Apps' and functions' output as log records: line parsing (pure), the bounded reader and forwarder (real
pipes and threads), and real app / function processes (restarts leak no threads or fds)."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

from robot_platform.deploy.app_logs import (
    LogFile,
    LogForwarder,
    LogLine,
    OutputReader,
    ReaderConfig,
    parse_level_name,
)
from robot_platform.deploy.apps import AppProcess
from robot_platform.deploy.code_runner import invoke_function
from robot_platform.deploy.log_lines import (
    DEBUG,
    ERROR,
    FATAL,
    INFO,
    WARN,
    LevelParser,
    LineSplitter,
    clean_line,
    marked_level,
)
from robot_platform.deploy.manifest import parse_manifest


class Sink:
    def __init__(self) -> None:
        self.lines: list[LogLine] = []
        self.lock = threading.Lock()

    def __call__(self, line: LogLine) -> None:
        with self.lock:
            self.lines.append(line)

    def texts(self) -> list[str]:
        with self.lock:
            return [line.msg for line in self.lines]


def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


# ---- parsing (pure) ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "level"),
    [
        ("[WARN] [1732565000.123456789] [talker]: battery low", WARN),
        ("[ERROR] [1732565000.1] [nav]: planner failed", ERROR),
        ("[INFO] [1.0] [x]: an ERROR word later does not count", INFO),
        ("WARNING:root:disk almost full", WARN),
        ("CRITICAL:app:on fire", FATAL),
        ("DEBUG:urllib3:connection", DEBUG),
        ("2026-11-25 20:01:02,123 ERROR planner: no path", ERROR),
        ("2026-11-25 20:01:02 [warning] fan slow", WARN),
        ("warning: deprecated option", WARN),
        ("Error: cannot open /dev/ttyUSB0", ERROR),
        ("fatal: not a git repository", FATAL),
        ('time=2026-11-25T20:01:02Z level=warn msg="retrying"', WARN),
        ('{"time": 1, "level": "error", "msg": "x"}', ERROR),
        ("W1125 20:01:02.123456  4242 main.cc:10] queue full", WARN),
        ("E1125 20:01:02.123456  4242 main.cc:10] crashed", ERROR),
        ("/app/x.py:3: DeprecationWarning: old api", WARN),
        ("Traceback (most recent call last):", ERROR),
        ("ValueError: bad value", ERROR),
        ("KeyboardInterrupt", ERROR),
        ("hello world", None),
        ("informational errors were counted", None),  # words inside others are not markers
        ("the warning light is off", None),  # a lowercase word in the middle of prose is not a marker
    ],
)
def test_marked_level(line: str, level: int | None) -> None:
    assert marked_level(line) == level


def test_level_parser_continuations_and_defaults() -> None:
    stderr = LevelParser(default=WARN)
    assert stderr.level("something odd happened") == WARN  # stderr without a marker: the configured default
    assert stderr.level("[INFO] [1.0] [n]: fine") == INFO
    lines = [
        "Traceback (most recent call last):",
        '  File "app.py", line 3, in <module>',
        "    raise ValueError('info')",  # a frame's source line: never its own marker
        "ValueError: info",
    ]
    assert [stderr.level(line) for line in lines] == [ERROR, ERROR, ERROR, ERROR]
    stdout = LevelParser(default=INFO)
    assert [stdout.level(t) for t in ("WARNING:x:multi-line", "  second line", "plain")] == [WARN, WARN, INFO]
    assert parse_level_name("WARN") == WARN
    with pytest.raises(ValueError, match="unknown level"):
        parse_level_name("loud")


def test_clean_line() -> None:
    assert clean_line(b"\x1b[33m[WARN] [1.0] [n]: hot\x1b[0m") == "[WARN] [1.0] [n]: hot"
    assert clean_line(b"caf\xc3\xa9 \xff\xfe ok") == "caf\u00e9 \ufffd\ufffd ok"
    assert clean_line(b"bell\x07 null\x00 tab\tend\r") == "bell\ufffd null\ufffd tab\tend"
    assert clean_line(b"progress 10%\rprogress 20%\rprogress 30%") == "progress 30%"


def test_line_splitter_caps_long_lines() -> None:
    splitter = LineSplitter(max_bytes=10)
    assert splitter.feed(b"one\ntw") == [(b"one", False)]
    assert splitter.feed(b"o\nthree") == [(b"two", False)]
    assert splitter.feed(b"-is-much-too-long") == [(b"three-is-m", True)]
    assert splitter.feed(b"-still going") == []  # the rest of the cut line is dropped ...
    assert splitter.feed(b"\nfour\n") == [(b"four", False)]  # ... up to its newline
    assert splitter.feed(b"x" * 25 + b"\n") == [(b"x" * 10, True)]  # a long line in a single chunk
    assert splitter.feed(b"tail") == [] and splitter.flush() == [(b"tail", False)]


# ---- the reader and the forwarder (real pipes, real threads) ------------------------------------------------


def test_reader_file_records_caps_and_rate_limit(tmp_path: Path) -> None:
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    sink = Sink()
    config = ReaderConfig(rate=0.001, burst=5, max_line_bytes=64, stderr_level=WARN)
    log_path = tmp_path / "app.log"
    reader = OutputReader("apps.demo", "demo@1.0", {"stdout": out_r, "stderr": err_r}, sink, config,
                          LogFile(log_path, 1024 * 1024))  # fmt: skip
    reader.start()
    os.write(out_w, b"WARNING:root:low battery\n")
    wait_until(lambda: len(sink.lines) == 1)  # two pipes: the order across them is the order read
    os.write(err_w, b"odd stderr line\n\xff\xfe binary \x00 junk\n")
    wait_until(lambda: len(sink.lines) == 3)
    os.write(out_w, b"x" * 200 + b"\n")
    wait_until(lambda: len(sink.lines) == 4)
    for i in range(100):  # over the burst: file only, counted
        os.write(out_w, f"flood {i}\n".encode())
    os.close(out_w)
    os.close(err_w)
    reader.stop()
    assert not reader.running
    first = sink.lines[0]
    assert (first.name, first.level, first.msg, first.stream, first.source) == (
        "apps.demo", WARN, "WARNING:root:low battery", "stdout", "demo@1.0"
    )  # fmt: skip
    assert abs(first.stamp - time.time()) < 10
    assert [(r.level, r.stream) for r in sink.lines[1:3]] == [(WARN, "stderr"), (WARN, "stderr")]
    assert sink.lines[2].msg == "\ufffd\ufffd binary \ufffd junk"
    assert sink.lines[3].msg == "x" * 64 + " [line cut at 64 bytes]"
    assert reader.truncated == 1 and reader.lines == 104
    assert sink.lines[4].msg.startswith("flood 0")
    summary = sink.lines[-1]
    assert summary.level == WARN and summary.msg.startswith("99 lines of output not forwarded")
    assert str(log_path) in summary.msg
    assert reader.rate_limited == 99 and reader.forwarded == 5
    content = log_path.read_bytes()  # the file keeps every byte, long line and flood included
    assert b"x" * 200 in content and b"flood 99\n" in content and b"\xff\xfe binary" in content


def test_slow_consumer_never_blocks_the_writer(tmp_path: Path) -> None:
    """A child writing far more than a pipe buffer finishes while the publisher is stuck: drop, count."""
    release = threading.Event()
    forwarder = LogForwarder(lambda line: release.wait(30), capacity=50)
    out_r, out_w = os.pipe()
    reader = OutputReader("apps.flood", "flood@1", {"stdout": out_r}, forwarder.offer,
                          ReaderConfig(rate=1e9, burst=1_000_000), LogFile(tmp_path / "f.log", 10**9))  # fmt: skip
    reader.start()
    import subprocess

    code = "import sys\nfor i in range(50000): sys.stdout.write(f'line {i} ' + 'y' * 60 + '\\n')\n"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=out_w)
    os.close(out_w)
    try:
        assert child.wait(timeout=20) == 0
    finally:
        release.set()
    reader.stop()
    forwarder.close()
    assert reader.forwarded == 50000 and forwarder.dropped > 40000
    assert forwarder.published + forwarder.dropped == 50000
    assert (tmp_path / "f.log").read_bytes().count(b"\n") == 50000


def test_forwarder_counts_publish_errors_and_drains_on_close() -> None:
    seen: list[str] = []

    def publish(line: LogLine) -> None:
        if line.msg == "bad":
            raise RuntimeError("context is invalid")
        seen.append(line.msg)

    forwarder = LogForwarder(publish, capacity=10, errors=(RuntimeError,))
    for text in ("a", "bad", "b"):
        forwarder.offer(LogLine(0.0, INFO, "apps.x", text, "stdout", "x@1", 1))
    forwarder.close()
    assert seen == ["a", "b"] and forwarder.failed == 1 and forwarder.published == 2
    forwarder.offer(LogLine(0.0, INFO, "apps.x", "late", "stdout", "x@1", 2))
    assert forwarder.dropped == 1


def test_log_file_rotates_while_running(tmp_path: Path) -> None:
    log_file = LogFile(tmp_path / "a.log", max_bytes=100)
    log_file.write(b"a" * 60)
    log_file.write(b"b" * 60)  # passes 100: renamed to a.log.1
    log_file.write(b"c" * 10)
    log_file.close()
    assert (tmp_path / "a.log.1").read_bytes() == b"a" * 60 + b"b" * 60
    assert (tmp_path / "a.log").read_bytes() == b"c" * 10


# ---- real apps and functions ---------------------------------------------------------------------------------


def app_manifest(**kw):
    return parse_manifest(
        {"name": "talky", "version": "1.2.0", "kind": "app", "runtime": "python3", "run": ["python3", "app.py"], **kw}
    )


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_app_output_becomes_records_and_restarts_leak_nothing(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(
        "import logging, signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
        "print('hello from the app', flush=True)\n"
        "logging.warning('motor temperature high')\n"
        "print('plain stderr', file=sys.stderr, flush=True)\n"
        "if len(sys.argv) > 1: sys.exit(1)\n"
        "while True: time.sleep(0.2)\n"
    )
    sink = Sink()
    threads_before = threading.active_count()
    fds_before = open_fds()
    app = AppProcess(tmp_path, app_manifest(), tmp_path / "logs" / "1.2.0.log", sink)
    app.start()
    wait_until(lambda: len(sink.lines) >= 3)
    records = {line.msg: line for line in sink.lines}
    assert records["hello from the app"].level == INFO and records["hello from the app"].stream == "stdout"
    warning = records["WARNING:root:motor temperature high"]
    assert (warning.level, warning.name, warning.stream) == (WARN, "apps.talky", "stderr")
    assert warning.source == "talky@1.2.0"
    assert records["plain stderr"].level == INFO  # the default stderr level
    for run in range(2, 5):  # stop/start cycles (a restart, a rollback) leave no reader thread or pipe behind
        app.stop()
        app.start()
        wait_until(lambda run=run: sink.texts().count("plain stderr") >= run)
    app.stop()
    assert app.reader is None
    assert threading.active_count() == threads_before
    assert open_fds() == fds_before
    text = (tmp_path / "logs" / "1.2.0.log").read_text()
    assert text.count("--- start talky 1.2.0") == 4 and text.count("motor temperature high") == 4

    crashing = AppProcess(tmp_path, app_manifest(run=["python3", "app.py", "crash"], restart="always"),
                          tmp_path / "logs" / "crash.log", sink)  # fmt: skip
    crashing.start()
    try:
        wait_until(lambda: not crashing.alive())
        crashing._next_restart_at = 0.0
        assert crashing.supervise()  # restarted: the exited run's reader is finished and replaced
        wait_until(lambda: not crashing.alive())
    finally:
        crashing.stop()
    assert threading.active_count() == threads_before and open_fds() == fds_before


def test_function_output_becomes_records(tmp_path: Path) -> None:
    (tmp_path / "h.py").write_text(
        "import logging\n"
        "def main(event, context):\n"
        "    print('handling', event)\n"
        "    logging.warning('cache miss')\n"
        "    if event == 'fail':\n"
        "        raise RuntimeError('no luck')\n"
        "    return event\n"
    )
    manifest = parse_manifest(
        {"name": "fn", "version": "2.0.0", "kind": "function", "runtime": "python3", "handler": "h.main"}
    )
    sink = Sink()
    result = invoke_function(tmp_path, manifest, 5, log_sink=sink, log_config=ReaderConfig(stderr_level=WARN))
    assert result.ok and result.result == 5 and "handling 5" in result.logs
    levels = {line.msg: line.level for line in sink.lines}
    assert levels == {"handling 5": INFO, "WARNING:root:cache miss": WARN}  # prints are INFO for functions
    assert {line.name for line in sink.lines} == {"functions.fn"}
    failed = invoke_function(tmp_path, manifest, "fail", log_sink=sink)
    assert not failed.ok and "Traceback" in failed.logs
    last = sink.lines[-1]
    assert last.level == ERROR and "failed: RuntimeError: no luck" in last.msg
