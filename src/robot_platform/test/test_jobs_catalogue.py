"""jobs.catalogue without S3: what the bucket listing becomes (a fake client stands in for boto3)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

import botocore.exceptions
import pytest

from robot_platform.jobs.catalogue import CatalogueError, PackageCatalogue, version_key
from robot_platform.jobs.errors import JobSpecError


class FakeS3:
    def __init__(self, objects: dict[str, bytes], page: int = 2) -> None:
        self.objects, self.page, self.lists, self.fail = objects, page, 0, False

    def list_objects_v2(self, Bucket: str, MaxKeys: int, ContinuationToken: str = "") -> dict[str, Any]:
        if self.fail:
            raise botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
        self.lists += 1
        keys = sorted(self.objects)
        start = int(ContinuationToken or 0)
        chunk = keys[start : start + self.page]
        more = start + self.page < len(keys)
        stamp = datetime(2026, 1, 2, tzinfo=UTC)
        return {"Contents": [{"Key": k, "Size": len(self.objects[k]), "LastModified": stamp} for k in chunk],
                "IsTruncated": more, "NextContinuationToken": str(start + self.page) if more else None}  # fmt: skip

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        return {"Body": io.BytesIO(self.objects[Key])}


def doc(name: str, version: str, kind: str = "app") -> bytes:
    uri = f"s3://pk/{name}/{name}-{version}.tar.gz"
    return json.dumps({"package_name": name, "version": version, "kind": kind, "sha256": "a" * 64,
                       "signature": "c2ln", "artifact_uri": uri}).encode()  # fmt: skip


def bucket() -> dict[str, bytes]:
    sig = json.dumps({"sha256": "b" * 64, "signature": "c2ln"}).encode()
    objects = {}
    for version in ("1.9.0", "1.10.0", "1.10.0-rc1"):
        key = f"nav/nav-{version}.tar.gz"
        objects |= {key: b"x" * 10, key + ".sig.json": sig, key + ".job.json": doc("nav", version)}
    objects |= {"old/old-0.1.tar.gz": b"x", "old/old-0.1.tar.gz.sig.json": sig}  # pushed before .job.json
    objects |= {"unsigned/unsigned-1.0.tar.gz": b"x", "notes.txt": b"hi", "nav/other-1.0.tar.gz": b"x"}
    return objects


def test_listing_becomes_signed_job_documents_newest_version_first() -> None:
    s3 = FakeS3(bucket())
    now = [0.0]
    cat = PackageCatalogue("pk", lambda: s3, clock=lambda: now[0])
    reply = cat.handle({})
    assert [p["name"] for p in reply["packages"]] == ["nav", "old"] and not reply["truncated"]
    nav = reply["packages"][0]["versions"]
    assert [v["version"] for v in nav] == ["1.10.0", "1.10.0-rc1", "1.9.0"]
    assert nav[0] | {"pushed_at": 0} == {"package_name": "nav", "version": "1.10.0", "kind": "app", "sha256": "a" * 64,
                                         "signature": "c2ln", "artifact_uri": "s3://pk/nav/nav-1.10.0.tar.gz",
                                         "size": 10, "pushed_at": 0}  # fmt: skip
    old = reply["packages"][1]["versions"][0]
    assert (old["kind"], old["sha256"]) == ("", "b" * 64)  # from .sig.json: the operator picks the kind
    assert cat.handle({"package": "old"})["packages"][0]["name"] == "old"
    assert s3.lists > 1 and cat.refreshes == 1  # paged listing; cached
    now[0] = 10.0
    cat.handle({})
    assert cat.refreshes == 2


def test_bad_requests_and_unreachable_bucket() -> None:
    s3 = FakeS3(bucket())
    cat = PackageCatalogue("pk", lambda: s3)
    for body in ([], {"pkg": "x"}, {"package": 5}):
        with pytest.raises(JobSpecError):
            cat.handle(body)
    s3.fail = True
    with pytest.raises(CatalogueError, match="cannot list s3://pk"):
        cat.handle({})
    assert version_key("2.0.0") > version_key("2.0.0-rc2") > version_key("1.99")
