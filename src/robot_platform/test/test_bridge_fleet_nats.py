"""Rendering of the secured fleet NATS configs (the servers themselves are exercised in test/)."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from robot_platform.messaging.errors import SubjectError
from robot_platform.site_setup.nats_config import Endpoint, Fleet, main, render_hub, render_robot, robot_permissions


def test_robot_permissions_are_scoped_to_the_robot() -> None:
    perms = robot_permissions("r7")
    assert 'publish: { allow: ["robots.r7.>", "_INBOX.*.~r7.>", "$JSC.R.>", "$JS.S.>", "$JS.FC.>"] }' in perms
    assert (
        'subscribe: { allow: ["robots.r7.cmd.>", "robots.r7.ops.>", "robots.r7.srv.>", "robots.r7.health.ack",'
        ' "robots.r7.health.silence", "robots.r7.frames.*.lease", "_INBOX.r7.>", "$JS.r7.API.>", "$JS.FC.>"] }' in perms
    )
    assert "robots.>" not in perms and "$JS.r1" not in perms


def test_robot_reads_and_writes_no_other_inbox() -> None:
    """A robot's user neither reads the replies of anyone else nor writes into anyone's own inbox space."""
    perms = robot_permissions("r7")
    assert '"_INBOX.>"' not in perms
    assert "_INBOX.console" not in perms and "_INBOX.*.>" not in perms


def test_hub_takes_extra_users() -> None:
    fleet = Fleet({"r1": "a" * 20}, "c" * 20)
    text = render_hub(fleet, Endpoint(port=4000), 7000, "/tmp/js", extra_users=['{ user: alice, password: "x" }'])
    assert text.count("user: ") == 3 and '      { user: alice, password: "x" }\n' in text


def test_hub_has_one_user_per_robot_and_control() -> None:
    fleet = Fleet({"r1": "a" * 20, "r2": "b" * 20}, "c" * 20)
    text = render_hub(fleet, Endpoint(port=4000, monitor_port=8000), 7000, "/tmp/js")
    assert "listen: 127.0.0.1:4000" in text and "http: 127.0.0.1:8000" in text
    assert "leafnodes { listen: 127.0.0.1:7000, no_advertise: true, authorization { timeout: 10 } }" in text
    assert text.count("user: ") == 3
    assert f'user: r2, password: "{"b" * 20}", permissions: {robot_permissions("r2")}' in text


@pytest.mark.parametrize("password", ["-i6E67Ldo2oHwcsDyZPMwt2", "1234567890123456", "0x12345678901234"])
def test_generated_hub_config_parses_whatever_the_password(password: str, tmp_path: Path) -> None:
    """Regression: a generated password starting with '-' made nats-server refuse the whole config."""
    exe = shutil.which("nats-server")
    assert exe, "nats-server not on PATH"
    fleet = Fleet({"r1": password}, password[::-1].replace("-", "a"))
    conf = tmp_path / "hub.conf"
    conf.write_text(render_hub(fleet, Endpoint(port=4000), 7000, str(tmp_path / "js")))
    result = subprocess.run([exe, "-t", "-c", str(conf)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr + result.stdout


def test_robot_config_tolerates_a_busy_hub_and_parses(tmp_path: Path) -> None:
    """Leaf pings every 10 s, stale after 6 (bench/fleet_scale.py: nats-server's defaults made 100 robots
    redial a busy hub thousands of times); nats-server accepts the rendered file."""
    text = render_robot("r1", "p" * 20, Endpoint(port=4001), "127.0.0.1:7422", str(tmp_path / "js"))
    assert 'ping_interval: "10s"\nping_max: 6\n' in text
    conf = tmp_path / "r1.conf"
    conf.write_text(text)
    exe = shutil.which("nats-server")
    assert exe, "nats-server not on PATH"
    result = subprocess.run([exe, "-t", "-c", str(conf)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr + result.stdout


def test_robot_config_links_as_its_own_user() -> None:
    text = render_robot("r1", "p" * 20, Endpoint(port=4001), "hub.example:7422", "/tmp/js")
    assert 'url: "nats-leaf://r1:pppppppppppppppppppp@hub.example:7422"' in text
    assert "jetstream { domain: r1" in text and "listen: 127.0.0.1:4001" in text


@pytest.mark.parametrize("password", ["short", "has space in it here", 'quote"injection"here', "x" * 200])
def test_unsafe_passwords_are_refused(password: str) -> None:
    with pytest.raises(ValueError):
        render_robot("r1", password, Endpoint(), "h:1", "/tmp")
    with pytest.raises(ValueError):
        render_hub(Fleet({"r1": password}, "c" * 20), Endpoint(), 1, "/tmp")


def test_bad_robot_id_and_address() -> None:
    with pytest.raises(SubjectError):
        Fleet.generate(["r1", "r.2"])
    with pytest.raises(ValueError):
        render_robot("r1", "p" * 20, Endpoint(), "no-port", "/tmp")


def test_cli_writes_private_files(tmp_path: Path) -> None:
    main(["--robots", "r1,r2", "--out", str(tmp_path / "out")])
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["control.password", "hub.conf", "r1.conf", "r1.password", "r2.conf", "r2.password"]
    for path in (tmp_path / "out").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    r1_password = (tmp_path / "out" / "r1.password").read_text().strip()
    assert r1_password in (tmp_path / "out" / "hub.conf").read_text()
    assert r1_password not in (tmp_path / "out" / "r2.conf").read_text()
