"""One login limiter for every path: per address, per user (without locking the user out elsewhere),
backoff, forgetting, bounded memory; and the gateway's ``auth`` op under it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from robot_platform.messaging.codec import Codec
from robot_platform.messaging.rostypes import TypeRegistry
from robot_platform.ws.access import AccessControl
from robot_platform.ws.audit import Auditor
from robot_platform.ws.client_session import ClientSession
from robot_platform.ws.fanout import Hub
from robot_platform.ws.gateway import Gateway, GatewayLimits
from robot_platform.ws.hashing import hash_secret
from robot_platform.ws.login_limiter import LoginLimiter
from robot_platform.ws.topics import Mode, TopicMapper


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(clock: Clock, **kw: float) -> LoginLimiter:
    args = {"addr_limit": 10, "user_limit": 5, "window_s": 60.0, "base_backoff_s": 5.0, "max_backoff_s": 300.0}
    return LoginLimiter(**{**args, **kw}, clock=clock)  # type: ignore[arg-type]


def test_address_limit_blocks_every_name_with_doubling_backoff() -> None:
    clock = Clock()
    lim = limiter(clock)
    for i in range(9):
        lim.failed("10.0.0.1", f"u{i}")
    assert lim.retry_after("10.0.0.1") == 0.0
    lim.failed("10.0.0.1", "u9")
    assert lim.retry_after("10.0.0.1", "anyone") == pytest.approx(5.0)
    assert lim.retry_after("10.0.0.2", "anyone") == 0.0  # another address is not affected
    clock.now += 5.0
    lim.failed("10.0.0.1", "u10")  # the 11th failure: twice as long
    assert lim.retry_after("10.0.0.1") == pytest.approx(10.0)
    assert lim.refused == 2  # the two checks that found it blocked


def test_user_under_attack_blocks_failing_addresses_not_the_right_user_elsewhere() -> None:
    clock = Clock()
    lim = limiter(clock)
    for _ in range(5):
        lim.failed("10.0.0.1", "otto")
    assert lim.retry_after("10.0.0.1", "otto") > 0  # this address may not try otto now
    assert lim.retry_after("10.0.0.1", "vera") == 0.0  # other users from it still may (address: 5 of 10)
    assert lim.retry_after("10.0.0.2", "otto") == 0.0  # the right user from another address logs in
    lim.failed("10.0.0.3", "otto")  # a distributed guesser: one failure per address, then backoff
    assert lim.retry_after("10.0.0.3", "otto") > 0
    lim.succeeded("10.0.0.2", "otto")
    assert lim.retry_after("10.0.0.2", "otto") == 0.0


def test_success_does_not_reset_the_address_budget_and_failures_are_forgotten() -> None:
    clock = Clock()
    lim = limiter(clock)
    for i in range(9):
        lim.failed("10.0.0.1", f"u{i}")
    lim.succeeded("10.0.0.1", "own-account")
    lim.failed("10.0.0.1", "u9")
    assert lim.retry_after("10.0.0.1") > 0  # knowing one login does not buy more guesses
    clock.now += 5.0 + 60.0
    assert lim.retry_after("10.0.0.1") == 0.0 and lim.snapshot()["addresses"] == 0


def test_backoff_is_capped_and_memory_bounded() -> None:
    clock = Clock()
    lim = limiter(clock, addr_limit=1, max_backoff_s=30.0)
    for _ in range(50):
        lim.failed("10.0.0.1")
    assert lim.retry_after("10.0.0.1") == pytest.approx(30.0)
    small = LoginLimiter(capacity=100, clock=clock)
    for i in range(1000):
        small.failed(f"10.0.{i // 256}.{i % 256}", f"user{i}")
    assert max(small.snapshot()["addresses"], small.snapshot()["users"]) <= 100


# ---------------------------------------------------------------------------------------- gateway auth op
class NoNats:
    def publish(self, subject: str, body: bytes, headers: dict[str, str]) -> None:
        pass

    def request(self, *_args: object) -> None:
        pass


@pytest.fixture
def gateway(tmp_path: Path) -> Gateway:
    users = tmp_path / "users.yaml"
    users.write_text(f"users:\n  otto: {{role: operator, secret_hash: '{hash_secret('otto-pw')}'}}\n")
    return Gateway(TopicMapper(Mode.ROBOT, "r1"), AccessControl.from_file(users), Hub(lambda s, on: None, 1 << 20),
                   NoNats(), Auditor("r1", NoNats().publish, logging.getLogger("test")), Codec(TypeRegistry()), "r1",
                   GatewayLimits(max_client_msgs_per_s=0), logins=LoginLimiter())  # fmt: skip


def auth(gw: Gateway, address: str, secret: str) -> tuple[bool, str]:
    """One auth op on a fresh connection from ``address``: (connection kept, status message or user)."""
    s = gw.open(None, f"{address}:4000")
    kept = gw.handle(s, json.dumps({"op": "auth", "user": "otto", "secret": secret}))
    frames = [json.loads(f) for f in s.render(s.take(0) or [])]
    return kept, frames[-1]["msg"] if frames else f"user {s.user}"


def test_auth_op_on_fresh_connections_is_limited_and_the_right_user_elsewhere_logs_in(gateway: Gateway) -> None:
    for _ in range(5):
        assert "authentication failed" in auth(gateway, "10.0.0.1", "guess")[1]
    kept, msg = auth(gateway, "10.0.0.1", "otto-pw")
    assert not kept and "too many failed logins" in msg  # the right secret too: backoff, connection closed
    assert auth(gateway, "10.0.0.2", "otto-pw") == (True, "user otto")
    assert gateway.logins.refused == 1


def test_session_address_defaults_to_the_client_host(gateway: Gateway) -> None:
    assert isinstance(gateway.open(None, "[::1]:4000"), ClientSession)
    assert gateway.open(None, "10.0.0.9:4000").address == "10.0.0.9"
