"""GET /whoami: how the web UI learns its role (and the agent's mode) before drawing controls."""

from __future__ import annotations

from pathlib import Path

from robot_platform.ws.access import hash_secret
from robot_platform.ws.server import AgentConfig, WsAgent
from robot_platform.ws.topics import Mode


def agent(tmp_path: Path, anonymous_role: str = "", mode: Mode = Mode.ROBOT) -> WsAgent:
    users = tmp_path / "users.yaml"
    users.write_text(f"users:\n  otto: {{role: operator, secret_hash: '{hash_secret('otto-pw')}'}}\n")
    config = AgentConfig(mode=mode, robot_id="r7", users_file=str(users), anonymous_role=anonymous_role)
    return WsAgent(config)  # not started: the Flask app alone answers HTTP


def test_token_gives_role_rules_mode_and_robot(tmp_path: Path) -> None:
    client = agent(tmp_path).app.test_client()
    resp = client.get("/whoami?token=otto:otto-pw")
    assert resp.status_code == 200
    body = resp.get_json()
    assert (body["user"], body["role"], body["mode"], body["robot_id"]) == ("otto", "operator", "robot", "r7")
    assert "robots.*.cmd.cmd_vel" in body["rules"]["publish"]
    assert "robots.*.ros.>" in body["rules"]["subscribe"]  # inherited from viewer
    assert resp.headers["Cache-Control"] == "no-store"
    assert "otto-pw" not in resp.get_data(as_text=True)


def test_bearer_header_works_like_the_token(tmp_path: Path) -> None:
    client = agent(tmp_path, mode=Mode.FLEET).app.test_client()
    body = client.get("/whoami", headers={"Authorization": "Bearer otto:otto-pw"}).get_json()
    assert (body["role"], body["mode"]) == ("operator", "fleet")


def test_anonymous_role_without_credentials(tmp_path: Path) -> None:
    body = agent(tmp_path, anonymous_role="viewer").app.test_client().get("/whoami").get_json()
    assert (body["user"], body["role"], body["rules"]["publish"]) == ("anonymous", "viewer", [])


def test_login_required_and_wrong_secret_refused(tmp_path: Path) -> None:
    a = agent(tmp_path)
    client = a.app.test_client()
    resp = client.get("/whoami")
    assert resp.status_code == 401 and resp.get_json()["login_required"] is True
    assert client.get("/whoami?token=otto:wrong").status_code == 401
    assert a.refused["auth"] == 1


def test_repeated_failures_block_the_address(tmp_path: Path) -> None:
    client = agent(tmp_path).app.test_client()
    codes = [client.get("/whoami?token=otto:wrong").status_code for _ in range(11)]
    assert codes[:10] == [401] * 10 and codes[10] == 429


def test_directory_url_serves_its_index(tmp_path: Path) -> None:
    web = tmp_path / "web"
    (web / "console").mkdir(parents=True)
    (web / "console" / "index.html").write_text("<p>console</p>")
    a = agent(tmp_path)
    a.web_dir = web
    client = a.app.test_client()
    assert client.get("/console/").get_data(as_text=True) == "<p>console</p>"
    assert client.get("/console/../../etc/passwd").status_code == 404
