"""Where an input file comes from: a local path, file://, http(s)://, Google Drive, or s3://.

Every source ends up as a local file with its sha256, so the replay streams from disk and a restart
can prove it is replaying the same bytes. Remote sources are downloaded once into
`.local/cache/` (streamed, never held in memory) with `<file>.sha256` beside them; delete the
cache entry to fetch again.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qs, urlparse, urlunparse

from txnwatch.core.errors import TxnwatchError, first_line
from txnwatch.core.storage import MISSING_BUCKET, MISSING_KEY, s3_failures

GDRIVE_BASE_ENV = "TXNWATCH_GDRIVE_BASE_URL"
DEFAULT_GDRIVE_BASE = "https://drive.google.com"
_BLOCK = 1 << 20
_TIMEOUT = (10, 60)  # connect, read: an unreachable host fails in seconds, a slow one is tolerated
# Drive file ids are URL-safe base64-ish strings; real ones are 25-44 characters.
_DRIVE_ID = re.compile(r"^[A-Za-z0-9_-]{25,64}$")
_DRIVE_PATH = re.compile(r"^/file(?:/u/\d+)?/d/([A-Za-z0-9_-]+)")


@dataclass(frozen=True)
class LocalCopy:
    path: Path
    sha256: str
    location: str  # the source as given, without credentials, for logs and the checkpoint


def describe(location: str) -> str:
    """The location without credentials: userinfo and (for http) the query, which may hold a token."""
    parsed = urlparse(location)
    if parsed.scheme in ("http", "https"):
        netloc = parsed.hostname or ""
        if parsed.port:
            netloc += f":{parsed.port}"
        keep = parsed.query if drive_file_id(location) else ""
        return urlunparse(parsed._replace(netloc=netloc, query=keep))
    return location


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def drive_file_id(location: str) -> str | None:
    """The file id of a Google Drive share link (`/file/d/<id>/view`, `open?id=`, `uc?id=`)."""
    parsed = urlparse(location)
    if parsed.scheme not in ("http", "https") or parsed.hostname not in ("drive.google.com",
                                                                         "docs.google.com"):
        return None
    m = _DRIVE_PATH.match(parsed.path)
    if m:
        return m.group(1)
    ids = parse_qs(parsed.query).get("id")
    if ids and parsed.path.rstrip("/") in ("/open", "/uc"):
        return ids[0]
    return None


def looks_like_drive_id(location: str) -> bool:
    """A bare Drive id: no such local file, and it has the shape of an id (no dot, slash or scheme)."""
    return bool(_DRIVE_ID.match(location)) and not Path(location).exists()


def cache_dir() -> Path:
    from txnwatch.core.paths import local_dir

    path = local_dir() / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def fetch(location: str, s3_client: Any | None = None) -> LocalCopy:
    """A local file holding the source, and its checksum. Raises TxnwatchError with one line."""
    shown = describe(location)
    parsed = urlparse(location)
    file_id = drive_file_id(location)
    if file_id:
        return _cached(shown, f"gdrive:{file_id}", lambda out: _download_drive(file_id, out))
    if parsed.scheme in ("http", "https"):
        return _cached(shown, location, lambda out: _download_http(location, out))
    if parsed.scheme == "s3":
        return _cached(shown, location, lambda out: _download_s3(location, out, s3_client))
    if parsed.scheme == "file":
        return _local(Path(parsed.path), shown)
    if parsed.scheme == "" or len(parsed.scheme) == 1:
        path = Path(location).expanduser()
        if not path.exists() and looks_like_drive_id(location):
            return _cached(shown, f"gdrive:{location}", lambda out: _download_drive(location, out))
        return _local(path, shown)
    raise TxnwatchError(f"unsupported source {shown!r}: use a path, file://, http(s)://, "
                        "a Google Drive link or id, or s3://")


def _local(path: Path, shown: str) -> LocalCopy:
    if not path.exists():
        raise TxnwatchError(f"source {shown} does not exist")
    if not path.is_file():
        raise TxnwatchError(f"source {shown} is not a file")
    try:
        return LocalCopy(path.resolve(), sha256_file(path), shown)
    except OSError as e:
        raise TxnwatchError(f"cannot read source {shown}: {e.strerror or e}") from None


def _cached(shown: str, key: str, download: Callable[[BinaryIO], None]) -> LocalCopy:
    """Download once into the cache; the file appears by rename only after it is complete."""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", Path(urlparse(shown).path).name or "source")[-60:]
    target = cache_dir() / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}-{base}"
    sidecar = target.with_name(target.name + ".sha256")
    if target.is_file() and sidecar.is_file():
        recorded = sidecar.read_text().split()[0]
        if sha256_file(target) == recorded:
            return LocalCopy(target, recorded, shown)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            download(out)
        digest = sha256_file(Path(tmp))
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    sidecar.write_text(f"{digest}  {target.name}\n")
    return LocalCopy(target, digest, shown)


def _download_http(url: str, out: BinaryIO) -> None:
    import requests

    shown = describe(url)
    try:
        with requests.get(url, stream=True, timeout=_TIMEOUT) as res:
            if res.status_code != 200:
                raise TxnwatchError(f"cannot download {shown}: HTTP {res.status_code} {res.reason}")
            for block in res.iter_content(_BLOCK):
                out.write(block)
    except requests.RequestException as e:
        raise TxnwatchError(f"cannot download {shown}: {_reason(e)}") from None


def _download_drive(file_id: str, out: BinaryIO) -> None:
    """gdown handles Drive's confirmation pages; the base URL is configurable so tests can stand in."""
    import gdown
    import requests
    from gdown.exceptions import DownloadError

    base = os.environ.get(GDRIVE_BASE_ENV, DEFAULT_GDRIVE_BASE).rstrip("/")
    url = f"{base}/uc?id={file_id}&export=download"
    try:
        gdown.download(url=url, output=out, quiet=True, use_cookies=False, timeout=_TIMEOUT)
    except (DownloadError, requests.RequestException) as e:
        raise TxnwatchError(f"cannot download Google Drive file {file_id}: {_reason(e)}") from None


def _download_s3(url: str, out: BinaryIO, client: Any | None) -> None:
    parsed = urlparse(url)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    if not bucket or not key:
        raise TxnwatchError(f"source {url!r} needs s3://bucket/key")
    if client is None:
        import boto3

        from txnwatch.core.retry import s3_config

        client = boto3.client("s3", config=s3_config())  # AWS_ENDPOINT_URL and the usual credential chain
    # An outage is raised as it is: the caller's retry policy decides.
    with s3_failures(f"cannot read source {url}", unreachable=f"cannot read source {url}",
                     missing={MISSING_BUCKET: f"bucket {bucket!r} does not exist",
                              MISSING_KEY: f"source {url} does not exist"}):
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        for block in iter(lambda: body.read(_BLOCK), b""):
            out.write(block)


def _reason(e: Exception) -> str:
    """A short one-line cause: requests' own messages nest the whole retry history."""
    import requests

    if isinstance(e, requests.ConnectTimeout | requests.ReadTimeout):
        return "timed out"
    if isinstance(e, requests.ConnectionError):
        inner = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(e))
        return f"connection failed ({inner.group(1).strip()})" if inner else "connection failed"
    if isinstance(e, requests.HTTPError) and e.response is not None:
        return f"HTTP {e.response.status_code} {e.response.reason}"
    return first_line(e, limit=200)
