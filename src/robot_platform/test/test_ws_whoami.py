"""GET /whoami: how the web UI learns its role (and the agent's mode) before drawing controls; and the
plain HTTP routes of http_api.py (Host allow-list, static files) without a socket."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from robot_platform.ws.hashing import hash_secret
from robot_platform.ws.http_api import HttpReply
from robot_platform.ws.server import AgentConfig, WsAgent
from robot_platform.ws.static_files import StaticFiles
from robot_platform.ws.topics import Mode


class Client:
    """GET requests straight into the agent's HttpApi (what the event loop does with a parsed request)."""

    def __init__(self, agent: WsAgent) -> None:
        self.agent = agent

    def get(self, target: str, headers: dict[str, str] | None = None, addr: str = "127.0.0.1") -> HttpReply:
        reply = self.agent.api.handle("GET", target, {"Host": "127.0.0.1:9090", **(headers or {})}, (addr, 5555))
        assert isinstance(reply, HttpReply)
        return reply


def body(reply: HttpReply) -> Any:
    return json.loads(reply.body)


def agent(tmp_path: Path, anonymous_role: str = "", mode: Mode = Mode.ROBOT) -> WsAgent:
    users = tmp_path / "users.yaml"
    users.write_text(f"users:\n  otto: {{role: operator, secret_hash: '{hash_secret('otto-pw')}'}}\n")
    config = AgentConfig(mode=mode, robot_id="r7", users_file=str(users), anonymous_role=anonymous_role)
    return WsAgent(config)  # not started: its HttpApi alone answers HTTP


def test_token_gives_role_rules_mode_and_robot(tmp_path: Path) -> None:
    client = Client(agent(tmp_path))
    resp = client.get("/whoami?token=otto:otto-pw")
    assert resp.status == 200
    got = body(resp)
    assert (got["user"], got["role"], got["mode"], got["robot_id"]) == ("otto", "operator", "robot", "r7")
    assert "robots.*.cmd.cmd_vel" in got["rules"]["publish"]
    assert "robots.*.ros.>" in got["rules"]["subscribe"]  # inherited from viewer
    assert resp.headers["Cache-Control"] == "no-store"
    assert b"otto-pw" not in resp.body


def test_bearer_header_works_like_the_token(tmp_path: Path) -> None:
    client = Client(agent(tmp_path, mode=Mode.FLEET))
    got = body(client.get("/whoami", headers={"Authorization": "Bearer otto:otto-pw"}))
    assert (got["role"], got["mode"]) == ("operator", "fleet")


def test_anonymous_role_without_credentials(tmp_path: Path) -> None:
    got = body(Client(agent(tmp_path, anonymous_role="viewer")).get("/whoami"))
    assert (got["user"], got["role"], got["rules"]["publish"]) == ("anonymous", "viewer", [])


def test_login_required_and_wrong_secret_refused(tmp_path: Path) -> None:
    a = agent(tmp_path)
    client = Client(a)
    resp = client.get("/whoami")
    assert resp.status == 401 and body(resp)["login_required"] is True
    assert client.get("/whoami?token=otto:wrong").status == 401
    assert a.refused["auth"] == 1


def test_repeated_failures_block_the_user_then_the_address(tmp_path: Path) -> None:
    """5 wrong secrets for otto from one address: otto is blocked there (429 + Retry-After), yet otto logs
    in from another address; 10 failures of any names block the address itself."""
    client = Client(agent(tmp_path))
    codes = [client.get("/whoami?token=otto:wrong").status for _ in range(6)]
    assert codes == [401] * 5 + [429]
    assert "Retry-After" in client.get("/whoami?token=otto:otto-pw").headers
    assert client.get("/whoami?token=otto:otto-pw", addr="10.0.0.2").status == 200
    codes = [client.get(f"/whoami?token=user{i}:wrong").status for i in range(6)]
    assert codes == [401] * 5 + [429]  # the address's 10th failure blocks it for every name


def test_directory_url_serves_its_index(tmp_path: Path) -> None:
    web = tmp_path / "web"
    (web / "console").mkdir(parents=True)
    (web / "console" / "index.html").write_text("<p>console</p>")
    a = agent(tmp_path)
    a.api.static = StaticFiles(web)
    client = Client(a)
    assert client.get("/console/").body == b"<p>console</p>"
    assert client.get("/console/../../etc/passwd").status == 404


def test_foreign_host_is_refused_on_every_route(tmp_path: Path) -> None:
    """DNS rebinding: a page on attacker.example (resolving to the robot) sends Host: attacker.example."""
    client = Client(agent(tmp_path, anonymous_role="viewer"))
    for path in ("/healthz", "/whoami", "/", "/ws"):
        assert client.get(path, {"Host": "attacker.example:9090"}).status == 421
    assert client.get("/healthz", {"Host": "localhost:9090"}).status == 200
    assert client.get("/healthz", {"Host": "[::1]:9090"}).status == 200
