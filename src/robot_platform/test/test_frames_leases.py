"""frames.leases: grant, renew, release, expiry, limits, request parsing (JSON and msgpack)."""

from __future__ import annotations

import json

import msgpack
import pytest

from robot_platform.frames.errors import LeaseRequestError
from robot_platform.frames.leases import LeaseTable, decode_reply, encode_reply, parse_request


def table(**kw) -> LeaseTable:
    return LeaseTable(
        ["front", "rear"], ttl_s=kw.pop("ttl_s", 5.0), max_ttl_s=kw.pop("max_ttl_s", 30.0), **kw
    )


def test_grant_renew_expire():
    t = table()
    lease = t.grant("front", "", 0.0, now=100.0)
    assert lease.lease_id and lease.expires_at == 105.0
    assert t.active("front", 104.9) and not t.active("rear", 104.9)
    renewed = t.grant("front", lease.lease_id, 0.0, now=104.0)
    assert renewed.lease_id == lease.lease_id and renewed.expires_at == 109.0
    assert t.viewers("front", 108.0) == 1
    assert not t.active("front", 109.0)
    assert t.expired == 1 and t.granted == 1 and t.renewed == 1
    assert t.next_expiry() is None


def test_stream_stays_while_any_lease_lives():
    t = table()
    a = t.grant("front", "viewer-a", 2.0, now=0.0)
    t.grant("front", "viewer-b", 10.0, now=0.0)
    assert t.next_expiry() == 2.0
    assert t.viewers("front", 3.0) == 1
    assert t.release("front", "viewer-b")
    assert not t.active("front", 3.0)
    assert not t.release("front", a.lease_id)  # already expired
    assert t.active_cameras(3.0) == []


def test_ttl_is_capped_and_renewing_an_expired_id_makes_a_new_lease():
    t = table(max_ttl_s=10.0)
    lease = t.grant("front", "x", 3600.0, now=0.0)
    assert lease.expires_at == 10.0
    again = t.grant("front", "x", 0.0, now=20.0)
    assert again.expires_at == 25.0 and t.granted == 2


def test_refusals_are_typed_and_counted():
    t = table(max_leases_per_camera=2)
    with pytest.raises(LeaseRequestError, match="no such camera"):
        t.grant("side", "", 0.0, 0.0)
    with pytest.raises(LeaseRequestError, match="lease_id"):
        t.grant("front", "bad id with spaces", 0.0, 0.0)
    with pytest.raises(LeaseRequestError, match="ttl_s"):
        t.grant("front", "", -1.0, 0.0)
    t.grant("front", "", 0.0, 0.0)
    t.grant("front", "", 0.0, 0.0)
    with pytest.raises(LeaseRequestError, match="viewers already"):
        t.grant("front", "", 0.0, 0.0)
    assert t.refused == 4
    with pytest.raises(ValueError):
        LeaseTable(["a"], ttl_s=10.0, max_ttl_s=5.0)


def test_parse_request_formats():
    assert parse_request("front", b"") == parse_request("front", b"  ")
    r = parse_request("front", json.dumps({"lease_id": "abc", "ttl_s": 4}).encode())
    assert (r.lease_id, r.ttl_s, r.release, r.json_format) == ("abc", 4.0, False, True)
    r = parse_request("front", msgpack.packb({"lease_id": "abc", "release": True}))
    assert r.release and not r.json_format


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"\xc1",  # never-used msgpack byte
        json.dumps([1, 2]).encode(),
        json.dumps({"lease_id": 5}).encode(),
        json.dumps({"ttl_s": "ten"}).encode(),
        json.dumps({"ttl_s": True}).encode(),
        json.dumps({"release": "yes"}).encode(),
        json.dumps({"release": True}).encode(),  # release without id
        json.dumps({"lease_id": "a", "camera": "other"}).encode(),
        b"{" + b" " * 2000 + b"}",
    ],
)
def test_parse_request_rejects_bad_bodies(body):
    with pytest.raises(LeaseRequestError):
        parse_request("front", body)


def test_reply_roundtrip_both_formats():
    reply = {"ok": True, "lease_id": "x", "ttl_s": 5.0}
    assert decode_reply(encode_reply(reply, True)) == reply
    assert decode_reply(encode_reply(reply, False)) == reply
