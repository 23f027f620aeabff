"""Sources resolve to a local file and its sha256: local paths, file://, http(s), Google Drive, s3://."""

from __future__ import annotations

import hashlib

import boto3
import pytest

from tests.x_http import serve
from txnwatch.core.errors import TxnwatchError
from txnwatch.ingest import sources
from txnwatch.ingest.sources import describe, drive_file_id, fetch, looks_like_drive_id

DRIVE_ID = "1AbCdEfGhIjKlMnOpQrStUvWxYz012345"


pytestmark = pytest.mark.usefixtures("local_dir")


@pytest.fixture
def csv_file(tmp_path):
    path = tmp_path / "tx.csv"
    path.write_bytes(b"a,b\n1,2\n")
    return path


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_local_path_is_read_in_place(csv_file):
    copy = fetch(str(csv_file))
    assert copy.path == csv_file.resolve()
    assert copy.sha256 == sha(csv_file)


def test_file_url_is_a_local_path(csv_file):
    assert fetch(f"file://{csv_file}").path == csv_file.resolve()


def test_missing_local_file_is_a_clear_error(tmp_path):
    with pytest.raises(TxnwatchError, match="does not exist"):
        fetch(str(tmp_path / "nope.csv"))


def test_http_source_is_downloaded_into_the_cache_with_its_checksum(csv_file, local_dir):
    with serve({"/data/tx.csv": csv_file}) as (base, _):
        copy = fetch(f"{base}/data/tx.csv")
    assert copy.path.parent == local_dir / "cache"
    assert copy.path.read_bytes() == csv_file.read_bytes()
    assert copy.sha256 == sha(csv_file)
    sidecar = copy.path.with_name(copy.path.name + ".sha256")
    assert sidecar.read_text().split()[0] == copy.sha256


def test_cached_download_is_reused_without_a_request(csv_file):
    with serve({"/tx.csv": csv_file}) as (base, requests):
        first = fetch(f"{base}/tx.csv")
        second = fetch(f"{base}/tx.csv")
    assert requests == ["/tx.csv"]
    assert second == first


def test_corrupt_cache_entry_is_downloaded_again(csv_file):
    with serve({"/tx.csv": csv_file}) as (base, requests):
        first = fetch(f"{base}/tx.csv")
        first.path.write_bytes(b"truncated")
        second = fetch(f"{base}/tx.csv")
    assert len(requests) == 2
    assert second.path.read_bytes() == csv_file.read_bytes()


def test_http_404_is_a_clear_error():
    with serve({}) as (base, _), pytest.raises(TxnwatchError, match="HTTP 404"):
        fetch(f"{base}/missing.csv")


def test_unreachable_http_host_is_a_clear_error():
    from tests.helpers import free_port

    with pytest.raises(TxnwatchError, match="cannot download"):
        fetch(f"http://127.0.0.1:{free_port()}/tx.csv")


def test_failed_download_leaves_no_cache_entry(local_dir):
    with serve({}) as (base, _), pytest.raises(TxnwatchError):
        fetch(f"{base}/missing.csv")
    assert list((local_dir / "cache").iterdir()) == []


@pytest.mark.parametrize("link", [
    f"https://drive.google.com/file/d/{DRIVE_ID}/view?usp=sharing",
    f"https://drive.google.com/open?id={DRIVE_ID}",
    f"https://drive.google.com/uc?id={DRIVE_ID}&export=download",
])
def test_drive_share_links_name_the_file_id(link):
    assert drive_file_id(link) == DRIVE_ID


def test_a_bare_drive_id_is_told_apart_from_a_local_path(csv_file):
    assert looks_like_drive_id(DRIVE_ID)
    assert not looks_like_drive_id(str(csv_file))
    assert not looks_like_drive_id("data/transactions.csv")


@pytest.mark.parametrize("given", [f"https://drive.google.com/file/d/{DRIVE_ID}/view?usp=sharing", DRIVE_ID])
def test_drive_source_is_downloaded_with_gdown(given, csv_file, monkeypatch):
    with serve({}, drive={DRIVE_ID: csv_file}) as (base, requests):
        monkeypatch.setenv(sources.GDRIVE_BASE_ENV, base)
        copy = fetch(given)
    assert requests == [f"/uc?id={DRIVE_ID}&export=download"]
    assert copy.path.read_bytes() == csv_file.read_bytes()
    assert copy.sha256 == sha(csv_file)


def test_unknown_drive_file_is_a_clear_error(monkeypatch):
    with serve({}) as (base, _):
        monkeypatch.setenv(sources.GDRIVE_BASE_ENV, base)
        with pytest.raises(TxnwatchError, match=f"Google Drive file {DRIVE_ID}"):
            fetch(DRIVE_ID)


def test_s3_source_is_downloaded(s3_bucket, csv_file):
    boto3.client("s3").put_object(Bucket=s3_bucket, Key="in/tx.csv", Body=csv_file.read_bytes())
    copy = fetch(f"s3://{s3_bucket}/in/tx.csv")
    assert copy.path.read_bytes() == csv_file.read_bytes()
    assert copy.sha256 == sha(csv_file)


def test_s3_source_uses_the_given_client(s3_bucket, csv_file):
    client = boto3.client("s3")
    client.put_object(Bucket=s3_bucket, Key="tx.csv", Body=csv_file.read_bytes())
    calls = []
    client.meta.events.register("before-call.s3.GetObject", lambda **kw: calls.append(kw["model"].name))
    fetch(f"s3://{s3_bucket}/tx.csv", s3_client=client)
    assert calls == ["GetObject"]


def test_missing_s3_key_is_a_clear_error(s3_bucket):
    with pytest.raises(TxnwatchError, match="does not exist"):
        fetch(f"s3://{s3_bucket}/nope.csv")


def test_missing_s3_bucket_is_a_clear_error(s3_endpoint):
    with pytest.raises(TxnwatchError, match="bucket 'no-such-bucket-x' does not exist"):
        fetch("s3://no-such-bucket-x/tx.csv")


def test_credentials_and_tokens_are_not_shown():
    assert describe("https://user:pw@example.com/f.csv?token=abc") == "https://example.com/f.csv"
