"""Compressed sources: gzip and zip, told apart by their bytes, read as a stream from the local copy of
any source kind; the BankSim archive serves as both the source and the importance file."""

from __future__ import annotations

import gzip
import tracemalloc

import boto3
import pytest

from tests.x_data import NETWORK_HEADER, banksim_line, snapshot, write_banksim, write_gzip, write_zip
from tests.x_http import serve
from txnwatch.core.errors import TxnwatchError
from txnwatch.ingest.compressed import Wanted, open_input
from txnwatch.ingest.rows import read_records
from txnwatch.ingest.sources import GDRIVE_BASE_ENV, fetch

pytestmark = pytest.mark.usefixtures("local_dir")

BANKSIM_TX = "bs140513_032310.csv"
BANKSIM_NET = "bsNET140513_032310.csv"
DRIVE_ID = "1Gz9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe"


@pytest.fixture
def plain(tmp_path):
    """A source with a rejected row, and the landing zone its plain-text replay makes."""
    return write_banksim(tmp_path / "tx.csv", 25, {7: banksim_line(7, amount="x")})


def replay(ingest, source, landing):
    return ingest(source, landing, rows_per_chunk=10)


@pytest.mark.parametrize("kind", ["local", "local, named .csv", "http", "s3", "google drive"])
def test_a_gzip_source_lands_the_same_chunks_as_the_plain_file(kind, ingest, plain, tmp_path, request,
                                                              monkeypatch):
    replay(ingest, plain, tmp_path / "fresh")
    gz = write_gzip(tmp_path / ("tx-gz.csv" if kind == "local, named .csv" else "tx.csv.gz"), plain)
    land = tmp_path / "land"
    if kind.startswith("local"):
        replay(ingest, gz, land)
    elif kind == "s3":
        bucket = request.getfixturevalue("s3_bucket")
        boto3.client("s3").put_object(Bucket=bucket, Key="in/tx.csv.gz", Body=gz.read_bytes())
        replay(ingest, f"s3://{bucket}/in/tx.csv.gz", land)
    else:
        with serve({"/tx.csv.gz": gz}, drive={DRIVE_ID: gz}) as (base, _):
            monkeypatch.setenv(GDRIVE_BASE_ENV, base)
            replay(ingest, DRIVE_ID if kind == "google drive" else f"{base}/tx.csv.gz", land)
    assert snapshot(land) == snapshot(tmp_path / "fresh")
    assert (land / "_rejected/chunk_00000001.csv").exists()


@pytest.fixture
def banksim_zip(tmp_path, sample_csv):
    """The public BankSim archive's shape: the transactions file (the real sample) and the network file."""
    net = tmp_path / "net.csv"
    net.write_text(f"{NETWORK_HEADER}\n'C1093826151','M348934600',4.55,'es_transportation',0\n"
                   "'C352968107','M348934600',39.68,'es_transportation',0\n")
    return write_zip(tmp_path / "banksim.zip", {BANKSIM_NET: net, BANKSIM_TX: sample_csv}), net


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_the_banksim_zip_serves_as_source_and_importance(kind, ingest, banksim_zip, sample_csv, tmp_path,
                                                         request):
    archive, net = banksim_zip
    ingest(sample_csv, tmp_path / "fresh", importance=net, rows_per_chunk=4000)
    location = str(archive)
    if kind == "s3":
        bucket = request.getfixturevalue("s3_bucket")
        boto3.client("s3").put_object(Bucket=bucket, Key="banksim.zip", Body=archive.read_bytes())
        location = f"s3://{bucket}/banksim.zip"
    land = tmp_path / "land"
    summary = ingest(location, land, importance=location, rows_per_chunk=4000)
    assert (summary.chunks_landed, summary.rows) == (3, 10_000)
    assert snapshot(land) == snapshot(tmp_path / "fresh")


def test_a_zip_with_two_transactions_files_is_refused(ingest, plain, tmp_path):
    archive = write_zip(tmp_path / "two.zip", {"a.csv": plain, "b.csv": plain})
    with pytest.raises(TxnwatchError, match=r"the zip holds 2 transactions files \(a.csv, b.csv\)"):
        ingest(archive, tmp_path / "land")


def test_a_large_gzip_source_is_read_with_flat_memory(tmp_path):
    """40 MB of text behind a small gzip file: reading it all (integrity pass included) holds ~1 MB."""
    line = (banksim_line(1) + ",pad" + "x" * 2000 + "\n").encode()
    rows = 20_000
    path = tmp_path / "big.csv.gz"
    with gzip.GzipFile(path, "wb", compresslevel=1, mtime=0) as out:
        out.write(b"a,b,c,d,e,f,g,h,i,j,k\n")
        for _ in range(rows // 1000):
            out.write(line * 1000)
    tracemalloc.start()
    try:
        f, _ = open_input(fetch(str(path)), "source", Wanted("file", lambda fields: True))
        with f:
            count = sum(1 for _ in read_records(f, "source", "'"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == rows + 1
    assert rows * len(line) > 40e6 and peak < 4e6, f"peak {peak / 1e6:.1f} MB"
