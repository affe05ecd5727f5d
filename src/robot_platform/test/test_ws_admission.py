"""Plain parts of ws_agent's front door: the cap on pending connections (oldest cut) and static files."""

from __future__ import annotations

from pathlib import Path

import pytest

from robot_platform.ws.admission import PendingConnections
from robot_platform.ws.static_files import StaticFiles


def test_pending_cap_cuts_the_oldest_and_counts() -> None:
    cut: list[int] = []
    pending = PendingConnections(3)
    for i in range(5):
        pending.add(i, lambda i=i: cut.append(i))
    assert cut == [0, 1] and len(pending) == 3 and pending.evicted == 2 and pending.peak == 3
    pending.done(3)  # its request arrived: no longer evictable
    pending.add(5, lambda: cut.append(5))
    pending.add(6, lambda: cut.append(6))
    assert cut == [0, 1, 2] and len(pending) == 3
    with pytest.raises(ValueError):
        PendingConnections(0)


def test_static_files_serve_inside_the_root_only(tmp_path: Path) -> None:
    web = tmp_path / "web"
    (web / "console").mkdir(parents=True)
    (web / "index.html").write_text("<p>panel</p>")
    (web / "console" / "index.html").write_text("<p>console</p>")
    (web / "app.js").write_text("1")
    (web / ".secret").write_text("x")
    (tmp_path / "outside.txt").write_text("x")
    (web / "link.txt").symlink_to(tmp_path / "outside.txt")
    files = StaticFiles(web)
    page = files.get("/")
    assert page is not None and page.body == b"<p>panel</p>" and page.content_type.startswith("text/html")
    console = files.get("/console/")
    assert console is not None and console.body == b"<p>console</p>"
    js = files.get("/app.js")
    assert js is not None and "javascript" in js.content_type
    for bad in ("/../outside.txt", "/console/../../outside.txt", "/%2e%2e/outside.txt", "/.secret", "/link.txt",
                "/console", "/missing.html", "//etc/passwd", "/console/%00"):  # fmt: skip
        assert files.get(bad) is None, bad
    assert StaticFiles(None).get("/") is None


def test_websockets_log_lines_never_carry_a_token() -> None:
    """websockets may log a request target (e.g. in an error); tokens travel in query strings."""
    import logging

    from robot_platform.ws.connections import _RedactTokens

    record = logging.LogRecord(
        "ws", logging.WARNING, __file__, 1, "bad request %s", ("GET /ws?token=otto:pw&x=1",), None
    )
    _RedactTokens().filter(record)
    assert record.getMessage() == "bad request GET /ws?token=<redacted>&x=1"
