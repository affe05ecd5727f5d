"""Download (and, for tools, upload) package archives from S3-compatible storage with boto3.

Why resumable: robots sit on site Wi-Fi. A large archive is fetched with ranged GETs into
``<dest>.part``; a retry, or the next deployment after a restart, continues from the bytes already on
disk as long as the object's ETag is unchanged (kept in ``<dest>.part.etag``).

Credentials come from an explicit :class:`S3Config` (read by the node from a credentials file) or, when
empty, from boto3's usual chain (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` ...). They are never
logged: :class:`S3Config`'s repr hides them and errors name only the uri.

boto3 and botocore (with awscrt, which botocore loads when present: about 12 MB of a robot agent's
memory) are imported by the functions that talk to S3, at the first download: a robot that never
deploys never pays for them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robot_platform.deploy.errors import FetchError, LimitExceededError

log = logging.getLogger(__name__)

DOWNLOAD_CHUNK_BYTES = 256 * 1024
RETRY_BACKOFF_BASE_S = 0.5
RETRY_BACKOFF_MAX_S = 8.0
S3_URI_RE = re.compile(r"^s3://([a-z0-9][a-z0-9.-]{1,62})/([^\x00]{1,1024})$")

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class S3Config:
    """Where the packages are and how to reach them."""

    endpoint_url: str = ""
    region: str = "us-east-1"
    access_key_id: str = field(default="", repr=False)
    secret_access_key: str = field(default="", repr=False)
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    retries: int = 4

    def client(self) -> Any:
        """A boto3 S3 client; botocore's own retries are off, :class:`S3Fetcher` retries with resume."""
        import boto3.session
        from botocore.config import Config

        config = Config(
            connect_timeout=self.connect_timeout_s,
            read_timeout=self.read_timeout_s,
            retries={"max_attempts": 1, "mode": "standard"},
            s3={"addressing_style": "path"},
            signature_version="s3v4",
        )
        kwargs: dict[str, Any] = {"region_name": self.region or "us-east-1", "config": config}
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        if self.access_key_id and self.secret_access_key:
            kwargs["aws_access_key_id"] = self.access_key_id
            kwargs["aws_secret_access_key"] = self.secret_access_key
        return boto3.session.Session().client("s3", **kwargs)


def load_credentials_file(path: Path) -> tuple[str, str]:
    """Read ``{"access_key_id": ..., "secret_access_key": ...}`` (JSON, should be mode 0600)."""
    try:
        data = json.loads(Path(path).read_text())
        return str(data["access_key_id"]), str(data["secret_access_key"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        # The message names the file and the problem kind only, never its content.
        raise FetchError(str(path), f"credentials file unreadable or missing keys ({type(exc).__name__})") from exc


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key). Raises :class:`FetchError` on anything else."""
    match = S3_URI_RE.match(uri)
    if not match:
        raise FetchError(uri, "not an s3://bucket/key uri")
    bucket, key = match.group(1), match.group(2)
    if ".." in bucket:
        raise FetchError(uri, "bucket names have no '..'")
    if any(ord(c) < 0x20 or c in "\x7f\\" for c in key):
        raise FetchError(uri, "object key has a control character or a backslash")
    if key.startswith("/") or any(part in ("", ".", "..") for part in key.split("/")):
        raise FetchError(uri, "object key has an empty, '.' or '..' path segment (no path tricks in artifact_uri)")
    return bucket, key


def _transient(exc: Exception) -> bool:
    """Is a retry worth it? Network errors and 5xx/throttling yes; 403/404 and friends no."""
    import botocore.exceptions

    if isinstance(exc, botocore.exceptions.ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        code = exc.response.get("Error", {}).get("Code", "")
        return status >= 500 or status == 429 or code in ("SlowDown", "RequestTimeout")
    return isinstance(exc, botocore.exceptions.BotoCoreError | OSError)


def _describe(exc: Exception) -> str:
    import botocore.exceptions

    if isinstance(exc, botocore.exceptions.ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
        meaning = {404: "object or bucket not found", 403: "access denied (check the S3 credentials)"}
        detail = code if code and code != str(status) else meaning.get(status, "")  # type: ignore[call-overload]
        return f"HTTP {status} {detail}".strip()
    if isinstance(exc, botocore.exceptions.EndpointConnectionError):
        return "storage endpoint unreachable"
    return type(exc).__name__


class S3Fetcher:
    """Resumable, retrying downloads. One instance may serve several threads (one client each)."""

    def __init__(self, config: S3Config, sleep: Callable[[float], None] = time.sleep) -> None:
        self._config = config
        self._sleep = sleep
        self._local = threading.local()

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._config.client()
            self._local.client = client
        return client

    def download(
        self,
        uri: str,
        dest: Path,
        max_bytes: int,
        progress: ProgressCallback | None = None,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> int:
        """Fetch ``uri`` into ``dest`` (renamed into place when complete). Returns the size in bytes."""
        import botocore.exceptions

        bucket, key = parse_s3_uri(uri)
        dest = Path(dest)
        part = dest.with_name(dest.name + ".part")
        etag_file = dest.with_name(dest.name + ".part.etag")
        last_error = ""
        for attempt in range(self._config.retries + 1):
            if attempt:
                delay = min(RETRY_BACKOFF_MAX_S, RETRY_BACKOFF_BASE_S * 2 ** (attempt - 1))
                self._sleep(delay * (0.5 + random.random() / 2))  # noqa: S311 - jitter, not crypto
            if cancelled():
                raise FetchError(uri, "canceled")
            try:
                return self._attempt(bucket, key, dest, part, etag_file, max_bytes, progress, cancelled)
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, OSError) as exc:
                last_error = _describe(exc)
                if not _transient(exc):
                    raise FetchError(uri, last_error) from exc
                log.warning("download of %s: attempt %d failed (%s)", uri, attempt + 1, last_error)
        raise FetchError(uri, f"{last_error} after {self._config.retries + 1} attempts")

    def _attempt(
        self,
        bucket: str,
        key: str,
        dest: Path,
        part: Path,
        etag_file: Path,
        max_bytes: int,
        progress: ProgressCallback | None,
        cancelled: Callable[[], bool],
    ) -> int:
        client = self._client()
        head = client.head_object(Bucket=bucket, Key=key)
        total = int(head["ContentLength"])
        etag = str(head.get("ETag", ""))
        if total > max_bytes:
            raise LimitExceededError("archive_bytes", total, max_bytes)
        have = part.stat().st_size if part.exists() else 0
        old_etag = etag_file.read_text() if etag_file.exists() else ""
        if have > total or (have and old_etag != etag):
            have = 0  # a different object now: start again
        if have == 0:
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
            etag_file.write_text(etag)
        if have < total:
            kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
            if have:
                kwargs["Range"] = f"bytes={have}-"
                log.info("resuming s3://%s/%s at byte %d of %d", bucket, key, have, total)
            body = client.get_object(**kwargs)["Body"]
            with body, open(part, "ab") as sink:
                for chunk in body.iter_chunks(DOWNLOAD_CHUNK_BYTES):
                    if cancelled():
                        raise OSError("canceled")
                    sink.write(chunk)
                    have += len(chunk)
                    if have > total:
                        raise LimitExceededError("archive_bytes", have, total)
                    if progress is not None:
                        progress(have, total)
                sink.flush()
                os.fsync(sink.fileno())
        if have != total:
            raise OSError(f"short read: {have} of {total} bytes")
        os.replace(part, dest)
        with contextlib.suppress(FileNotFoundError):
            etag_file.unlink()
        return total

    def upload(self, path: Path, uri: str) -> None:
        """Upload a file (used by ``robot-platform package push``)."""
        import boto3.exceptions
        import botocore.exceptions

        bucket, key = parse_s3_uri(uri)
        try:
            self._client().upload_file(str(path), bucket, key)
        except (
            botocore.exceptions.BotoCoreError,
            botocore.exceptions.ClientError,
            boto3.exceptions.S3UploadFailedError,
        ) as exc:
            raise FetchError(uri, f"upload failed: {_describe(exc)}") from exc

    def ensure_bucket(self, bucket: str) -> None:
        import botocore.exceptions

        client = self._client()
        try:
            client.head_bucket(Bucket=bucket)
        except botocore.exceptions.ClientError:
            try:
                client.create_bucket(Bucket=bucket)
            except botocore.exceptions.ClientError as exc:
                raise FetchError(f"s3://{bucket}", f"cannot create bucket: {_describe(exc)}") from exc
