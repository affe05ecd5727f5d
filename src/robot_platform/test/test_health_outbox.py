"""Unit tests of the durable alert outbox (health/outbox.py): order, bound, ids across reopen, corruption,
single owner, I/O failure. Real SQLite files in tmp_path; no NATS, no ROS."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from robot_platform.health.durable_outbox import DurableOutbox, OutMsg

SUBJECT = "robots.r1.alerts"


def alert(i: int) -> OutMsg:
    return OutMsg(SUBJECT, f"body-{i}".encode(), {"Nats-Msg-Id": f"a{i}.raise.2.0", "Rp-Robot": "r1"})


def drain(box: DurableOutbox) -> list[OutMsg]:
    out = []
    while (entry := box.peek()) is not None:
        seq, msg = entry
        out.append(msg)
        box.remove(seq)
    return out


def ids(msgs: list[OutMsg]) -> list[str]:
    return [m.headers["Nats-Msg-Id"] for m in msgs]


def test_fifo_order_and_remove_only_after_ack(tmp_path: Path) -> None:
    box = DurableOutbox(tmp_path / "o.sqlite3", 10)
    for i in range(3):
        assert box.append(alert(i)) == 0
    seq, head = box.peek()  # type: ignore[misc]
    assert head == alert(0) and len(box) == 3
    assert box.peek() == (seq, head), "peek does not consume: an unacknowledged alert stays first"
    box.remove(seq)
    box.remove(seq)  # a second remove of the same entry is a no-op
    assert len(box) == 2
    assert drain(box) == [alert(1), alert(2)] and len(box) == 0 and box.peek() is None
    box.close()


def test_entries_survive_reopen_in_order_with_their_message_ids(tmp_path: Path) -> None:
    path = tmp_path / "state" / "o.sqlite3"  # the directory is created
    box = DurableOutbox(path, 10)
    for i in range(4):
        box.append(alert(i))
    seq, _ = box.peek()  # type: ignore[misc]
    box.remove(seq)  # a0 acknowledged before the "crash"
    box.close()
    again = DurableOutbox(path, 10)
    assert again.durable and again.replayed == 3
    msgs = drain(again)
    assert ids(msgs) == ["a1.raise.2.0", "a2.raise.2.0", "a3.raise.2.0"]
    assert msgs[0] == alert(1), "subject, body and every header come back unchanged"
    again.append(alert(9))
    again.close()
    assert ids(drain(DurableOutbox(path, 10))) == ["a9.raise.2.0"], "new entries queue after the replayed ones"


def test_committed_before_append_returns_even_if_the_process_is_killed(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    code = (
        "import os, sys\n"
        "from robot_platform.health.durable_outbox import DurableOutbox, OutMsg\n"
        f"box = DurableOutbox({str(path)!r}, 10)\n"
        "for i in range(3):\n"
        "    box.append(OutMsg('s', b'x', {'Nats-Msg-Id': f'k{i}'}))\n"
        "os.kill(os.getpid(), 9)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, timeout=60, check=False)
    assert proc.returncode == -9
    assert ids(drain(DurableOutbox(path, 10))) == ["k0", "k1", "k2"]


def test_bound_drops_oldest_counted_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "o.sqlite3"
    box = DurableOutbox(path, 3)
    with caplog.at_level(logging.WARNING, logger="robot_platform.health.durable_outbox"):
        dropped = [box.append(alert(i)) for i in range(5)]
    assert dropped == [0, 0, 0, 1, 1] and box.dropped == 2 and len(box) == 3
    assert "outbox full (3)" in caplog.text
    box.close()
    assert ids(drain(DurableOutbox(path, 3))) == ["a2.raise.2.0", "a3.raise.2.0", "a4.raise.2.0"]


def test_reopening_with_a_smaller_bound_drops_oldest_on_next_append(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    box = DurableOutbox(path, 10)
    for i in range(5):
        box.append(alert(i))
    box.close()
    small = DurableOutbox(path, 2)
    assert small.append(alert(5)) == 4 and small.dropped == 4
    assert ids(drain(small)) == ["a4.raise.2.0", "a5.raise.2.0"]


def test_garbage_file_is_moved_aside_and_a_fresh_queue_starts(tmp_path: Path, caplog) -> None:
    path = tmp_path / "o.sqlite3"
    path.write_bytes(b"this is not an SQLite database, just garbage" * 100)
    with caplog.at_level(logging.ERROR, logger="robot_platform.health.durable_outbox"):
        box = DurableOutbox(path, 10)
    assert box.corrupt == 1 and box.durable and box.replayed == 0
    [aside] = box.corrupt_files
    assert aside.name.startswith("o.sqlite3.corrupt-") and aside.read_bytes().startswith(b"this is not")
    assert str(aside) in caplog.text and "moved aside" in caplog.text
    box.append(alert(1))
    box.close()
    assert ids(drain(DurableOutbox(path, 10))) == ["a1.raise.2.0"], "the fresh queue is durable"


def test_truncated_database_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    box = DurableOutbox(path, 100)
    for i in range(50):
        box.append(OutMsg(SUBJECT, os.urandom(2000), {"Nats-Msg-Id": f"a{i}"}))
    box.close()
    with sqlite3.connect(path) as db:  # fold the WAL into the main file, then damage it
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] + b"\x00" * 4096 + data[len(data) // 2 + 4096 :])
    again = DurableOutbox(path, 100)
    assert again.corrupt == 1 and len(again) == 0
    again.close()


def test_database_of_another_schema_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("INSERT INTO meta VALUES ('schema', '99')")
    box = DurableOutbox(path, 10)
    assert box.corrupt == 1 and len(box) == 0
    box.close()


def test_unreadable_row_is_skipped_counted_and_the_rest_still_sent(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    box = DurableOutbox(path, 10)
    for i in range(3):
        box.append(alert(i))
    box.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE alerts SET headers = x'c1' WHERE seq = 2")  # 0xc1 is never valid msgpack
    again = DurableOutbox(path, 10)
    assert ids(drain(again)) == ["a0.raise.2.0", "a2.raise.2.0"] and again.corrupt == 1


def test_second_owner_of_the_same_file_gets_a_memory_queue(tmp_path: Path, caplog) -> None:
    path = tmp_path / "o.sqlite3"
    first = DurableOutbox(path, 10)
    first.append(alert(1))
    with caplog.at_level(logging.WARNING, logger="robot_platform.health.durable_outbox"):
        second = DurableOutbox(path, 10)
    assert first.durable and not second.durable and "in use by another process" in caplog.text
    assert len(second) == 0, "the second owner never sees (or sends) the first one's alerts"
    second.append(alert(2))
    second.close()
    first.close()
    assert ids(drain(DurableOutbox(path, 10))) == ["a1.raise.2.0"]


def test_write_failure_switches_to_memory_keeping_the_queue(tmp_path: Path, caplog) -> None:
    path = tmp_path / "o.sqlite3"
    box = DurableOutbox(path, 10)
    box.append(alert(0))
    box._db.execute("PRAGMA query_only = ON")  # every later write fails like a full or read-only disk
    with caplog.at_level(logging.ERROR, logger="robot_platform.health.durable_outbox"):
        assert box.append(alert(1)) == 0
    assert not box.durable and box.store_errors == 1 and "memory only" in caplog.text
    assert ids(drain(box)) == ["a0.raise.2.0", "a1.raise.2.0"]
    box.close()


def test_unusable_directory_falls_back_to_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state directory should be")
    box = DurableOutbox(blocker / "sub" / "o.sqlite3", 10)
    assert not box.durable and box.store_errors == 1
    box.append(alert(1))
    assert ids(drain(box)) == ["a1.raise.2.0"]
    box.close()


def test_memory_queue_has_the_same_policies() -> None:
    box = DurableOutbox(None, 2)
    for i in range(3):
        box.append(alert(i))
    assert not box.durable and box.dropped == 1
    assert ids(drain(box)) == ["a1.raise.2.0", "a2.raise.2.0"]
    with pytest.raises(ValueError):
        DurableOutbox(None, 0)
