"""``jobs.catalogue``: the packages and versions in the site's S3 packages bucket, as job documents.

Why the jobs service serves it: it is the control-side service that deploys, so it holds read-only
credentials for the packages bucket (parameters ``packages_bucket``, ``s3_endpoint_url``, ``s3_region``,
``s3_credentials_file``); the console picks a package and a version from this list instead of pasting
what ``robot-platform package push`` printed. ``package push`` uploads, under
``<name>/<name>-<version>.tar.gz``, the archive, its ``.sig.json`` and the job document ``.job.json``
(package_name, version, kind, artifact_uri, sha256, signature). An archive pushed before ``.job.json``
existed is listed from its ``.sig.json`` (kind unknown: the operator picks it).

Request ``{package?}`` -> ``{packages: [{name, versions: [document + {size, pushed_at}], newest
version first}], truncated}``. Bounded: at most ``MAX_KEYS`` objects listed and ``MAX_DOCUMENTS`` small
documents (``MAX_DOCUMENT_BYTES`` each) read per refresh; answers are cached ``CACHE_S`` seconds so a
console full of operators does not list the bucket on every page load. An archive without a signature
is not offered (robots would refuse it).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import botocore.exceptions

from robot_platform.deploy.fetch import S3Config
from robot_platform.jobs.errors import CatalogueError, JobSpecError

ARCHIVE_RE = re.compile(r"^(?P<name>[A-Za-z0-9_.-]{1,128})/(?P=name)-(?P<version>[A-Za-z0-9_.+-]{1,64})\.tar\.gz$")
SIG_SUFFIX, DOC_SUFFIX = ".sig.json", ".job.json"
MAX_KEYS = 10_000
MAX_DOCUMENTS = 2_000
MAX_DOCUMENT_BYTES = 16 * 1024
CACHE_S = 5.0
DOC_FIELDS = ("package_name", "version", "kind", "artifact_uri", "sha256", "signature")


def version_key(version: str) -> tuple[Any, ...]:
    """Sort key: numeric parts as numbers (1.10.0 after 1.9.0), a pre-release (-rc1) before its release."""
    main, _, pre = version.partition("-")
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[.+]", main))
    return (parts, 0 if pre else 1, pre)


class PackageCatalogue:
    """Lists the bucket with a boto3 client made by ``client_factory`` (S3Config.client in production)."""

    def __init__(self, bucket: str, client_factory: Callable[[], Any], clock: Callable[[], float] = time.monotonic):
        self.bucket = bucket
        self._client_factory = client_factory
        self._client: Any = None
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, dict[str, Any]] | None = None
        self.refreshes = 0

    @classmethod
    def from_config(cls, bucket: str, s3: S3Config) -> PackageCatalogue:
        return cls(bucket, s3.client)

    def handle(self, body: Any) -> dict[str, Any]:
        """The ``jobs.catalogue`` reply for a request body (JobSpecError for bad arguments)."""
        if not isinstance(body, dict) or set(body) - {"package"}:
            raise JobSpecError("package" if isinstance(body, dict) else "", "the request is {package?}")
        package = body.get("package") or ""
        if not isinstance(package, str) or len(package) > 128:
            raise JobSpecError("package", "must be a package name")
        with self._lock:
            now = self._clock()
            if self._cached is None or now - self._cached[0] > CACHE_S:
                self._cached = (now, self._refresh())
            listing = self._cached[1]
        packages = [p for p in listing["packages"] if not package or p["name"] == package]
        return {"packages": packages, "truncated": listing["truncated"]}

    def _s3(self) -> Any:
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def _refresh(self) -> dict[str, Any]:
        self.refreshes += 1
        try:
            objects, truncated = self._list()
            return self._fold(objects, truncated)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, OSError) as exc:
            self._client = None
            raise CatalogueError(f"cannot list s3://{self.bucket}: {type(exc).__name__}: {exc}") from None

    def _list(self) -> tuple[dict[str, dict[str, Any]], bool]:
        objects: dict[str, dict[str, Any]] = {}
        token = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "MaxKeys": 1000}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._s3().list_objects_v2(**kwargs)
            for obj in page.get("Contents", []):
                objects[obj["Key"]] = obj
                if len(objects) >= MAX_KEYS:
                    return objects, True
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return objects, False

    def _document(self, key: str, size: int) -> dict[str, Any] | None:
        if size > MAX_DOCUMENT_BYTES:
            return None
        data = self._s3().get_object(Bucket=self.bucket, Key=key)["Body"].read(MAX_DOCUMENT_BYTES + 1)
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            return None
        return doc if isinstance(doc, dict) else None

    def _fold(self, objects: dict[str, dict[str, Any]], truncated: bool) -> dict[str, Any]:
        by_name: dict[str, list[dict[str, Any]]] = {}
        reads = 0
        for key in sorted(objects):
            match = ARCHIVE_RE.match(key)
            if not match or key + SIG_SUFFIX not in objects:
                continue
            if reads >= MAX_DOCUMENTS:
                truncated = True
                break
            name, version, obj = match["name"], match["version"], objects[key]
            uri = f"s3://{self.bucket}/{key}"
            doc_key = key + DOC_SUFFIX if key + DOC_SUFFIX in objects else key + SIG_SUFFIX
            reads += 1
            raw = self._document(doc_key, int(objects[doc_key].get("Size", 0))) or {}
            entry = {"package_name": name, "version": version, "kind": "", "artifact_uri": uri,
                     "sha256": str(raw.get("sha256", "")), "signature": str(raw.get("signature", ""))}  # fmt: skip
            if doc_key.endswith(DOC_SUFFIX) and raw.get("package_name") == name and raw.get("version") == version:
                entry["kind"] = str(raw.get("kind", ""))
            if not entry["sha256"] or not entry["signature"]:
                continue  # unsigned: robots would refuse it
            modified = obj.get("LastModified")
            entry.update(size=int(obj.get("Size", 0)), pushed_at=modified.timestamp() if modified else None)
            by_name.setdefault(name, []).append(entry)
        packages = [
            {"name": name, "versions": sorted(v, key=lambda d: version_key(d["version"]), reverse=True)}
            for name, v in sorted(by_name.items())
        ]
        return {"packages": packages, "truncated": truncated}
