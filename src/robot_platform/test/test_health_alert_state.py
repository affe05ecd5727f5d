"""Active alert persistence (alert_state): round trip, atomic replace, corrupt files, bound, one owner."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from robot_platform.health import alert_state
from robot_platform.health.alert_state import STATE_FILE, AlertStateStore, SavedAlert


def alert(check: str = "scan_silent", alert_id: str = "A", stamp: float = 1_700_000_000.0, **kw: object) -> SavedAlert:
    fields: dict[str, object] = {"code": "TOPIC_SILENT.scan", "severity": 2, "message": "/scan: never received"}
    fields.update(kw)
    return SavedAlert(check=check, alert_id=alert_id, raised_stamp=stamp, **fields)  # type: ignore[arg-type]


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    store = AlertStateStore(tmp_path, "r1")
    saved = [
        alert(acknowledged_by="alice", acknowledged_at=1_700_000_001.5),
        alert("battery", "B", code="BATTERY_LOW", severity=3, message="battery critical: 5%"),
    ]
    assert store.save(saved) and store.saves == 1
    assert not store.save(list(reversed(saved))), "an unchanged set is not rewritten"
    store.close()
    doc = json.loads((tmp_path / STATE_FILE).read_text())
    assert doc["version"] == 1 and doc["robot_id"] == "r1" and len(doc["alerts"]) == 2
    again = AlertStateStore(tmp_path, "r1")
    assert sorted(again.load(), key=lambda a: a.check) == sorted(saved, key=lambda a: a.check)
    assert not again.save(saved), "what was loaded counts as saved"
    assert again.save([]) and again.load() == []
    again.close()


def test_missing_file_and_disabled_store_restore_nothing(tmp_path: Path) -> None:
    store = AlertStateStore(tmp_path / "new" / "dir", "r1")
    assert store.durable and store.load() == []
    disabled = AlertStateStore(None, "r1")
    assert not disabled.durable and disabled.load() == [] and not disabled.save([alert()])


def test_failed_write_keeps_the_previous_file_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = AlertStateStore(tmp_path, "r1")
    store.save([alert()])
    before = (tmp_path / STATE_FILE).read_bytes()

    def crash(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(alert_state.os, "replace", crash)
    with caplog.at_level(logging.ERROR):
        assert not store.save([alert(), alert("battery", "B", code="BATTERY_LOW")])  # never raises
    assert store.store_errors == 1 and "No space left" in caplog.text
    assert (tmp_path / STATE_FILE).read_bytes() == before, "the old document is intact (write temp + rename)"
    assert sorted(p.name for p in tmp_path.iterdir()) == [STATE_FILE, f"{STATE_FILE}.lock"], "temp file removed"
    monkeypatch.undo()
    assert store.save([alert(), alert("battery", "B", code="BATTERY_LOW")]), "retried on the next change"
    store.close()
    assert len(AlertStateStore(tmp_path, "r1").load()) == 2


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b'{"version": 99, "robot_id": "r1", "alerts": []}',
        b'{"version": 1, "robot_id": "r2", "alerts": []}',
        b'{"version": 1, "robot_id": "r1", "alerts": {}}',
        b"\xff\xfe garbage",
    ],
)
def test_corrupt_or_foreign_file_is_moved_aside_with_a_log_line(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / STATE_FILE).write_bytes(content)
    store = AlertStateStore(tmp_path, "r1")
    with caplog.at_level(logging.ERROR):
        assert store.load() == []
    [aside] = store.corrupt_files
    assert store.corrupt == 1 and aside.read_bytes() == content and not (tmp_path / STATE_FILE).exists()
    assert aside.name.startswith(f"{STATE_FILE}.corrupt-") and f"moved aside to {aside}" in caplog.text
    assert store.save([alert()]), "a fresh document replaces the one moved aside"
    store.close()
    assert [a.alert_id for a in AlertStateStore(tmp_path, "r1").load()] == ["A"]


def test_malformed_entries_are_skipped_and_counted(tmp_path: Path) -> None:
    good = {**alert().__dict__}
    entries = [good, {**good, "check": "x", "severity": 7}, {**good, "check": ""}, "nope", {**good, "check": "y",
               "raised_stamp": "yesterday"}, {**good, "check": "z", "message": "m" * 5000}]  # fmt: skip
    doc = {"version": 1, "robot_id": "r1", "alerts": entries}
    (tmp_path / STATE_FILE).write_text(json.dumps(doc))
    store = AlertStateStore(tmp_path, "r1")
    loaded = store.load()
    assert [a.check for a in loaded] == ["scan_silent", "z"] and store.corrupt == 4
    assert len(loaded[1].message) == alert_state.MESSAGE_MAX
    store.close()


def test_bound_keeps_the_newest_raises(tmp_path: Path) -> None:
    store = AlertStateStore(tmp_path, "r1", max_alerts=2)
    store.save([alert(f"c{i}", f"id{i}", stamp=1000.0 + i) for i in range(3)])
    assert store.dropped == 1
    store.close()
    doc = json.loads((tmp_path / STATE_FILE).read_text())
    assert [a["alert_id"] for a in doc["alerts"]] == ["id1", "id2"]
    big = {"version": 1, "robot_id": "r1", "alerts": [{**alert(f"c{i}", f"id{i}", stamp=float(i)).__dict__}
                                                      for i in range(5)]}  # fmt: skip
    (tmp_path / STATE_FILE).write_text(json.dumps(big))
    store = AlertStateStore(tmp_path, "r1", max_alerts=3)
    assert [a.alert_id for a in store.load()] == ["id4", "id3", "id2"] and store.dropped == 2
    store.close()
    (tmp_path / STATE_FILE).write_bytes(b" " * (alert_state.MAX_FILE_BYTES + 1))
    store = AlertStateStore(tmp_path, "r1")
    assert store.load() == [] and store.corrupt == 1, "an oversized file is not read into memory"
    store.close()


def test_second_owner_of_the_directory_neither_loads_nor_saves(tmp_path: Path) -> None:
    first = AlertStateStore(tmp_path, "r1")
    first.save([alert()])
    second = AlertStateStore(tmp_path, "r1")
    assert not second.durable and second.store_errors == 1 and second.load() == []
    assert not second.save([])
    first.close()
    third = AlertStateStore(tmp_path, "r1")
    assert third.durable and [a.alert_id for a in third.load()] == ["A"]
    third.close()
    assert os.stat(tmp_path / STATE_FILE).st_mode & 0o777 == 0o600, "operator names stay private to the user"
