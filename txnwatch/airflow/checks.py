"""What the X DAG's source sensor looks at: is a source readable yet, is it a local file."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from txnwatch.ingest.sources import looks_like_drive_id


def split_s3(urls: list[str]) -> tuple[list[str], list[str]]:
    """(s3:// URLs, everything else) — S3 objects are watched by the provider's deferrable sensor."""
    s3 = [u for u in urls if str(u).startswith("s3://")]
    return s3, [u for u in urls if not str(u).startswith("s3://")]


def local_path(url: str) -> Path | None:
    """The file a local path or file:// URL names; None for remote sources (and bare Google Drive ids)."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(parsed.path)
    if parsed.scheme or looks_like_drive_id(url):
        return None
    return Path(url).expanduser()


def source_available(url: str, s3_client: Any | None = None) -> bool:
    """True when a source can be read now: a local file exists, an http(s) URL answers, an S3 object exists.

    Google Drive links and bare file ids are resolved by the ingest itself; they count as available.
    """
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        client = s3_client
        if client is None:
            import boto3

            client = boto3.client("s3")
        try:
            client.head_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))
            return True
        except Exception:
            return False
    if parsed.scheme in ("http", "https"):
        if "drive.google.com" in parsed.netloc:
            return True
        req = urllib.request.Request(url, method="HEAD")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status < 400
        except Exception:
            return False
    if parsed.scheme == "file":
        return Path(parsed.path).is_file()
    path = Path(url).expanduser()
    if path.is_file():
        return True
    return looks_like_drive_id(url)
