"""What the DAGs' sensors look at: is a source there yet, has the landing zone started."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from txnwatch.landing import END_KEY, chunk_key
from txnwatch.storage import open_store


def split_s3(urls: list[str]) -> tuple[list[str], list[str]]:
    """(s3:// URLs, everything else) — S3 objects are watched by the provider's deferrable sensor."""
    s3 = [u for u in urls if str(u).startswith("s3://")]
    return s3, [u for u in urls if not str(u).startswith("s3://")]


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
    # A bare Google Drive file id (no slash, no dot) is not a local path.
    return "/" not in url and "." not in url and len(url) >= 20


def landing_ready(landing: str, s3_client: Any | None = None) -> bool:
    """True once the landing zone holds its first chunk or `_END.json`."""
    store = open_store(landing, client=s3_client, check=False)
    try:
        return store.exists(chunk_key(1)) or store.exists(END_KEY)
    except Exception:
        return False
