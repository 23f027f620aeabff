"""One storage layer for the landing zone and the output: a local folder or an S3 prefix.

Objects appear atomically (write-then-rename locally, one PUT on S3), so a reader never sees a
partial file. S3-compatible endpoints are reached through the standard `AWS_ENDPOINT_URL`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from txnwatch.core.errors import TxnwatchError
from txnwatch.core.retry import is_transient


def _umask() -> int:
    """The process umask, read without changing it (os.umask sets it while reading, racing other threads)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class Store(Protocol):
    url: str

    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes: ...
    def delete(self, key: str) -> None: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str = "") -> list[str]: ...
    def uri(self, key: str) -> str: ...
    def local_path(self, key: str) -> str | None: ...
    def mtime(self, key: str) -> float | None: ...


@dataclass
class LocalStore:
    root: Path

    @property
    def url(self) -> str:
        return str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / key

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would hide chunks and output from other readers
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise TxnwatchError(f"{self.uri(key)} does not exist") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list(self, prefix: str = "") -> list[str]:
        if not self.root.is_dir():
            return []
        out = []
        for p in self.root.rglob("*"):
            if p.is_file() and not p.name.startswith("."):
                rel = p.relative_to(self.root).as_posix()
                if rel.startswith(prefix):
                    out.append(rel)
        return sorted(out)

    def uri(self, key: str) -> str:
        return str(self._path(key))

    def local_path(self, key: str) -> str | None:
        return str(self._path(key))

    def mtime(self, key: str) -> float | None:
        try:
            return self._path(key).stat().st_mtime
        except FileNotFoundError:
            return None


class S3Store:
    def __init__(self, bucket: str, prefix: str, client: Any | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._client = client

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            from txnwatch.core.retry import s3_config

            # boto3 reads AWS_ENDPOINT_URL and the usual credential chain by itself.
            self._client = boto3.client("s3", config=s3_config())
        return self._client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def check_bucket(self) -> None:
        with s3_failures(f"cannot reach bucket {self.bucket!r}",
                         unreachable=f"cannot reach S3 for bucket {self.bucket!r}",
                         missing={MISSING_BUCKET + ("404", "NotFound"): f"bucket {self.bucket!r} does not exist"}):
            self.client.head_bucket(Bucket=self.bucket)

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def get(self, key: str) -> bytes:
        with s3_failures(f"cannot read {self.uri(key)}"):
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()

    def _head(self, key: str) -> dict | None:
        from botocore.exceptions import ClientError

        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as e:
            if s3_code(e) in MISSING_KEY:
                return None
            raise

    def exists(self, key: str) -> bool:
        return self._head(key) is not None

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def list(self, prefix: str = "") -> list[str]:
        full = self._key(prefix)
        base = f"{self.prefix}/" if self.prefix else ""
        out = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
            out.extend(obj["Key"][len(base):] for obj in page.get("Contents", []))
        return sorted(out)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def local_path(self, key: str) -> str | None:
        return None

    def mtime(self, key: str) -> float | None:
        head = self._head(key)
        return head["LastModified"].timestamp() if head else None


def open_store(url: str, client: Any | None = None, check: bool = True) -> Store:
    """A store for a local path, `file://` URL, `s3://bucket/prefix` or Unity Catalog volume path.

    `check` verifies that an S3 bucket exists, so a typo fails with one clear line up front.
    """
    from txnwatch.core.volumes import VolumeStore, is_volume_path, on_databricks, volume_root

    if is_volume_path(url):
        # A Unity Catalog volume: a local path on Databricks compute, the Files API elsewhere.
        return LocalStore(Path(volume_root(url))) if on_databricks() else VolumeStore(url)
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise TxnwatchError(f"{url!r} has no bucket name")
        store = S3Store(parsed.netloc, parsed.path, client)
        if check:
            store.check_bucket()
        return store
    if parsed.scheme == "file":
        return LocalStore(Path(parsed.path))
    if parsed.scheme in ("", None) or (len(parsed.scheme) == 1 and os.name == "nt"):
        return LocalStore(Path(url).expanduser().resolve())
    raise TxnwatchError(f"unsupported location {url!r}: use a local path, file:// or s3://")


def s3_errors() -> tuple[type[Exception], ...]:
    """botocore's exception bases (none when boto3 is absent: it is only needed for s3:// locations)."""
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        return ()
    return (BotoCoreError, ClientError)


# The one mapping of botocore's errors to what a caller acts on.
MISSING_BUCKET = ("NoSuchBucket",)
MISSING_KEY = ("NoSuchKey", "404", "NotFound")


def s3_code(e: Exception) -> str:
    """The S3 error code of a botocore ClientError ("" when it has none)."""
    return str(getattr(e, "response", {}).get("Error", {}).get("Code", "") or "")


@contextmanager
def s3_failures(what: str, missing: dict[tuple[str, ...], str] | None = None,
                unreachable: str | None = None) -> Iterator[None]:
    """Turn a failed S3 call into what its caller acts on:

    - a missing bucket or object whose code `missing` names: a TxnwatchError with that message;
    - an outage (retry.is_transient): raised as it is, for the caller's retry policy;
    - any other ClientError: TxnwatchError `<what>: <code>`;
    - any other BotoCoreError (no response: endpoint, credentials): TxnwatchError `<unreachable>: <error>`,
      or raised as it is when `unreachable` is None.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as e:
        code = s3_code(e)
        for codes, message in (missing or {}).items():
            if code in codes:
                raise TxnwatchError(message) from None
        if is_transient(e):
            raise
        raise TxnwatchError(f"{what}: {code or e}") from None
    except BotoCoreError as e:
        if unreachable is None or is_transient(e):
            raise
        raise TxnwatchError(f"{unreachable}: {e}") from None
