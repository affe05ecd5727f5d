"""The output of package processes as log records: read from pipes, kept in a file, forwarded line by line.

Why: an app's stdout/stderr used to go only to ``<package>/logs/<version>.log`` on the robot, out of reach
of the fleet's log search. Now each process gets two pipes and one :class:`OutputReader` thread that

* appends every byte to the per-app log file, as before (rotated once past ``max_file_bytes``, also
  while the app runs);
* splits the output into lines (a line longer than ``max_line_bytes`` is cut and says so; bytes that are
  not UTF-8 are replaced, terminal colour codes removed), gives each line a level (log_lines.py),
  a name (``apps.<package>`` or ``functions.<package>``) and the time it was read;
* hands each line to a *sink* that never blocks (:class:`LogForwarder`: a bounded queue drained by one
  thread, drop-oldest when full, counted), after a per-process token bucket (``rate`` lines/s, ``burst``):
  lines over the limit stay in the file only, and a warning record says how many were held back.

The pipe is drained by the reader alone, so a slow consumer never blocks the app: the worst case is
dropped (counted) records, never a full pipe. Readers end at EOF (the process and its children exited)
or, when a process group leaves a descendant holding the pipe, when :meth:`OutputReader.stop` gives up
after its timeout; either way the thread closes its fds and file. Environment variables are never read
or logged here: a record is exactly a line the process wrote.

Plain Python: the node supplies the publish function (``rcl_interfaces/msg/Log`` on ``/rosout``).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import selectors
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from robot_platform.common.rate_limit import TokenBucket
from robot_platform.deploy.log_lines import (
    INFO,
    LEVEL_NAMES,
    MAX_LINE_BYTES,
    WARN,
    LevelParser,
    LineSplitter,
    clean_line,
)

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 10 * 1024 * 1024
RATE_LINES_PER_S = 50.0
BURST_LINES = 200
READ_CHUNK_BYTES = 64 * 1024
SELECT_TIMEOUT_S = 0.5
SUMMARY_PERIOD_S = 5.0  # at most one "lines held back" record per process per period
READER_STOP_TIMEOUT_S = 2.0
FORWARDER_CAPACITY = 1000


def parse_level_name(text: str) -> int:
    """``info`` / ``warn`` (node parameters) -> level number; ValueError if unknown."""
    key = text.strip().lower()
    if key not in LEVEL_NAMES:
        raise ValueError(f"unknown level {text!r}; use one of {', '.join(LEVEL_NAMES)}")
    return LEVEL_NAMES[key]




@dataclass(frozen=True)
class LogLine:
    """One line of a process's output as a log record (fields map onto ``rcl_interfaces/msg/Log``)."""

    stamp: float  # wall-clock seconds when the line was read
    level: int
    name: str  # apps.<package> / functions.<package>
    msg: str
    stream: str  # stdout | stderr  (Log.file)
    source: str  # <package>@<version>  (Log.function)
    number: int  # line number in this process's output, both streams counted  (Log.line)


LineSink = Callable[[LogLine], None]


@dataclass(frozen=True)
class ReaderConfig:
    """How lines are forwarded (node parameters ``app_log_*``)."""

    rate: float = RATE_LINES_PER_S
    burst: int = BURST_LINES
    max_line_bytes: int = MAX_LINE_BYTES
    max_file_bytes: int = MAX_FILE_BYTES
    stderr_level: int = INFO  # the level of a stderr line that names none (stdout: always INFO)


class LogFile:
    """The per-process log file, appended to; renamed to ``<name>.1`` once it passes ``max_bytes``."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._stream: BinaryIO = open(path, "ab")  # noqa: SIM115 - closed in close()

    def write(self, data: bytes) -> None:
        self._stream.write(data)
        self._stream.flush()
        if self._stream.tell() > self.max_bytes:
            self._stream.close()
            os.replace(self.path, self.path.with_name(self.path.name + ".1"))
            self._stream = open(self.path, "ab")  # noqa: SIM115

    def close(self) -> None:
        self._stream.close()


class OutputReader:
    """One thread reading a process's output pipes (see the module docstring). Owns the fds it is given.

    Counters: ``lines`` read, ``forwarded``, ``rate_limited`` (held back), ``truncated``.
    """

    def __init__(
        self,
        name: str,
        source: str,
        fds: dict[str, int],
        sink: LineSink | None,
        config: ReaderConfig = ReaderConfig(),
        log_file: LogFile | None = None,
        tail_bytes: int = 0,
    ) -> None:
        self.name = name
        self.source = source
        self.sink = sink
        self.config = config
        self.log_file = log_file
        self.tail_bytes = tail_bytes
        self.lines = self.forwarded = self.rate_limited = self.truncated = 0
        self._fds = dict(fds)
        self._splitters = {stream: LineSplitter(config.max_line_bytes) for stream in fds}
        self._parsers = {stream: LevelParser(config.stderr_level if stream == "stderr" else INFO) for stream in fds}
        self._bucket = TokenBucket(config.rate, config.burst, time.monotonic())
        self._held_back = 0
        self._held_since = 0.0
        self._tail = bytearray()
        self._abort = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"output-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = READER_STOP_TIMEOUT_S) -> None:
        """Wait for EOF (the process is gone) up to ``timeout_s``, then stop reading anyway."""
        if self._thread.ident is None:
            self._close_all()
            return
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self._abort.set()  # a descendant outside the process group still holds the pipe
            self._thread.join(SELECT_TIMEOUT_S * 4)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def tail_text(self) -> str:
        """The last ``tail_bytes`` of the output (both streams), decoded."""
        return bytes(self._tail).decode("utf-8", errors="replace")

    # ---- the thread ---------------------------------------------------------------------------------
    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        try:
            for stream, fd in self._fds.items():
                os.set_blocking(fd, False)
                selector.register(fd, selectors.EVENT_READ, stream)
            while self._fds and not self._abort.is_set():
                for key, _ in selector.select(SELECT_TIMEOUT_S):
                    stream = key.data
                    try:
                        data = os.read(key.fd, READ_CHUNK_BYTES)
                    except BlockingIOError:
                        continue
                    if data:
                        self._take(stream, data)
                        continue
                    selector.unregister(key.fd)
                    os.close(self._fds.pop(stream))
                    for line, cut in self._splitters[stream].flush():
                        self._line(stream, line, cut)
        except OSError as exc:
            log.error("reading the output of %s failed: %s", self.name, exc)
        finally:
            selector.close()
            self._summarize(force=True)
            self._close_all()

    def _close_all(self) -> None:
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
        if self.log_file is not None:
            with contextlib.suppress(OSError):
                self.log_file.close()

    def _take(self, stream: str, data: bytes) -> None:
        if self.log_file is not None:
            try:
                self.log_file.write(data)
            except OSError as exc:  # disk full: keep draining the pipe and forwarding
                log.error("cannot write %s: %s; the file stops here", self.log_file.path, exc)
                with contextlib.suppress(OSError):
                    self.log_file.close()
                self.log_file = None
        if self.tail_bytes:
            self._tail += data
            del self._tail[: max(0, len(self._tail) - self.tail_bytes)]
        for line, cut in self._splitters[stream].feed(data):
            self._line(stream, line, cut)

    def _line(self, stream: str, raw: bytes, cut: bool) -> None:
        self.lines += 1
        text = clean_line(raw)
        if cut:
            self.truncated += 1
            text += f" [line cut at {self.config.max_line_bytes} bytes]"
        level = self._parsers[stream].level(text)
        if self.sink is None or not text:
            return
        if not self._bucket.take(time.monotonic()):
            if not self._held_back:
                self._held_since = time.monotonic()
            self._held_back += 1
            self.rate_limited += 1
            self._summarize()
            return
        self._summarize(force=True)  # the limit lets a line through: say first what it held back
        self.sink(LogLine(time.time(), level, self.name, text, stream, self.source, self.lines))
        self.forwarded += 1

    def _summarize(self, force: bool = False) -> None:
        """One warning record for the lines the rate limit held back (they are in the file): when a line
        gets through again, at the end, or every ``SUMMARY_PERIOD_S`` during a flood."""
        if not self._held_back or self.sink is None:
            return
        if not force and time.monotonic() - self._held_since < SUMMARY_PERIOD_S:
            return
        where = f"; all are in {self.log_file.path}" if self.log_file is not None else ""
        text = (
            f"{self._held_back} lines of output not forwarded (over {self.config.rate:g} lines/s, "
            f"burst {self.config.burst}){where}"
        )
        self.sink(LogLine(time.time(), WARN, self.name, text, "deploy_service", self.source, self.lines))
        self._held_back = 0


class LogForwarder:
    """The non-blocking sink shared by all readers: a bounded queue (drop-oldest, counted in ``dropped``)
    drained by one thread calling ``publish``. ``publish`` raising one of ``errors`` counts in ``failed``."""

    def __init__(
        self,
        publish: Callable[[LogLine], None],
        capacity: int = FORWARDER_CAPACITY,
        errors: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.publish = publish
        self.capacity = capacity
        self.errors = errors
        self.published = self.dropped = self.failed = 0
        self._queue: collections.deque[LogLine] = collections.deque()
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="app-log-forwarder", daemon=True)
        self._thread.start()

    def offer(self, line: LogLine) -> None:
        """Queue a line; never blocks. When full, the oldest queued line is dropped."""
        with self._cond:
            if self._closing:
                self.dropped += 1
                return
            if len(self._queue) >= self.capacity:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(line)
            self._cond.notify()

    def close(self, timeout_s: float = 2.0) -> None:
        """Publish what is queued (within ``timeout_s``), then stop the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout_s)
        if self.dropped or self.failed:
            log.warning("app output records: %d dropped (queue full), %d not published", self.dropped, self.failed)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                batch = list(self._queue)
                self._queue.clear()
            for line in batch:
                try:
                    self.publish(line)
                    self.published += 1
                except self.errors as exc:
                    self.failed += 1
                    if self.failed == 1:
                        log.warning("cannot publish app output records: %s", exc)
