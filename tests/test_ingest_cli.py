"""`txnwatch ingest` as a process: one-line errors with exit 2, and kill -9 at any moment loses nothing."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys

import pytest

from tests.helpers import free_port, wait_for
from tests.x_data import (
    BANKSIM_HEADER,
    banksim_line,
    ledger,
    snapshot,
    write_banksim,
    write_gzip,
    write_importance,
    write_zip,
)
from txnwatch.ingest.job import run_ingest


@pytest.fixture
def env(tmp_path):
    return {**os.environ, "TXNWATCH_LOCAL_DIR": str(tmp_path / "local")}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "txnwatch", "ingest", *args]


def ingest_args(source, importance, landing, db, schema, *extra) -> list[str]:
    return cli("--source", str(source), "--importance", str(importance), "--landing", str(landing),
               "--db", db, "--schema", schema, *extra)


def bad_source(kind: str, tmp_path) -> str:
    path = tmp_path / "src.csv"
    if kind == "missing file":
        return str(tmp_path / "nope.csv")
    if kind == "empty file":
        path.write_text("")
    elif kind == "unknown header":
        path.write_text("when,who,what\n1,2,3\n")
    elif kind == "header only":
        path.write_text(BANKSIM_HEADER + "\n")
    elif kind == "truncated gzip":
        gz = write_gzip(tmp_path / "src.csv.gz", write_banksim(tmp_path / "plain.csv", 2000))
        gz.write_bytes(gz.read_bytes()[:-200])
        return str(gz)
    elif kind == "corrupt gzip":
        data = bytearray(write_gzip(tmp_path / "src.csv.gz", write_banksim(tmp_path / "plain.csv", 2000))
                         .read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))  # named .csv: gzip is told by its bytes
    elif kind == "zip without transactions":
        return str(write_zip(tmp_path / "src.zip", {"bsNET140513_032310.csv": write_importance(
            tmp_path / "net.csv")}))
    elif kind == "truncated zip":
        archive = write_zip(tmp_path / "src.zip", {"tx.csv": write_banksim(tmp_path / "plain.csv", 2000)})
        archive.write_bytes(archive.read_bytes()[:-30])
        return str(archive)
    elif kind == "unreachable http":
        return f"http://127.0.0.1:{free_port()}/tx.csv"
    elif kind == "missing s3 object":
        return "s3://no-such-bucket-src/tx.csv"
    return str(path)


@pytest.mark.parametrize(("kind", "message"), [
    ("missing file", "does not exist"),
    ("empty file", "is empty"),
    ("unknown header", "unknown transactions header 'when,who,what'"),
    ("header only", "has a header but no data rows"),
    ("truncated gzip", "(gzip) is damaged or truncated: it ends before the end of its compressed data"),
    ("corrupt gzip", "(gzip) is damaged or truncated: "),
    ("zip without transactions", "the zip holds no transactions file (no member has its header; members: "
                                 "bsNET140513_032310.csv)"),
    ("truncated zip", "is not a readable zip archive (damaged or truncated): File is not a zip file"),
    ("unreachable http", "cannot download"),
    ("missing s3 object", "bucket 'no-such-bucket-src' does not exist"),
])
def test_bad_source_is_one_line_and_exit_2(kind, message, tmp_path, env, pg_server_url, schema, s3_endpoint):
    imp = write_importance(tmp_path / "imp.csv")
    args = ingest_args(bad_source(kind, tmp_path), imp, tmp_path / "land", pg_server_url, schema)
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert message in proc.stderr
    assert not (tmp_path / "land" / "chunk_00000001").exists()


def test_a_chunk_of_mostly_rejected_rows_is_one_line_and_lands_nothing_of_it(tmp_path, env, pg_server_url,
                                                                            schema):
    bad = {i: banksim_line(i, merchant="") for i in range(30, 60)}
    src, imp = write_banksim(tmp_path / "tx.csv", 90, bad), write_importance(tmp_path / "imp.csv")
    land = tmp_path / "land"
    args = ingest_args(src, imp, land, pg_server_url, schema, "--rows-per-chunk", "30", "--interval", "0")
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2
    error = proc.stderr.splitlines()[-1]
    assert error.startswith("txnwatch ingest: error: chunk 2: 30 of its 30 rows were rejected (100%, over "
                            "--max-reject-share 0.5)"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in land.iterdir()) == ["_reference", "chunk_00000001"]
    lenient = subprocess.run([*args, "--max-reject-share", "1"], capture_output=True, text=True, env=env,
                             timeout=60)
    assert lenient.returncode == 0, lenient.stderr
    assert (land / "_rejected/chunk_00000002.csv").exists() and (land / "_END.json").exists()


@pytest.mark.parametrize(("content", "message"), [
    (None, "does not exist"),
    ("who,what\n1,2\n", "unknown importance header 'who,what'"),
])
def test_bad_importance_file_is_one_line_and_exit_2(content, message, tmp_path, env, pg_server_url, schema):
    imp = tmp_path / "imp.csv"
    if content is not None:
        imp.write_text(content)
    args = ingest_args(write_banksim(tmp_path / "tx.csv", 3), imp, tmp_path / "land", pg_server_url, schema)
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "land" / "chunk_00000001").exists()


def test_missing_landing_bucket_is_one_line_and_exit_2(tmp_path, env, pg_server_url, schema, s3_endpoint):
    src, imp = write_banksim(tmp_path / "tx.csv", 3), write_importance(tmp_path / "imp.csv")
    proc = subprocess.run(ingest_args(src, imp, "s3://no-such-landing/x", pg_server_url, schema),
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "bucket 'no-such-landing' does not exist" in proc.stderr


def test_unreachable_postgres_without_retries_is_one_line_and_exit_2(tmp_path, env):
    src, imp = write_banksim(tmp_path / "tx.csv", 3), write_importance(tmp_path / "imp.csv")
    db = f"postgresql://x:s3cret@127.0.0.1:{free_port()}/db"
    proc = subprocess.run(ingest_args(src, imp, tmp_path / "land", db, "t", "--retry-seconds", "0"),
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "cannot connect to PostgreSQL" in proc.stderr
    assert "s3cret" not in proc.stderr


def test_unreachable_postgres_is_retried_up_to_the_bound_then_one_error_line(tmp_path, env):
    src, imp = write_banksim(tmp_path / "tx.csv", 3), write_importance(tmp_path / "imp.csv")
    db = f"postgresql://x:s3cret@127.0.0.1:{free_port()}/db"
    proc = subprocess.run(ingest_args(src, imp, tmp_path / "land", db, "t", "--retry-seconds", "2"),
                          capture_output=True, text=True, env=env, timeout=60)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2 and len(lines) == 2, proc.stderr
    assert "PostgreSQL unreachable" in lines[0] and "retrying for up to 2 s" in lines[0]
    assert lines[1].startswith("txnwatch ingest: error: PostgreSQL unreachable for ")
    assert "s3cret" not in proc.stderr and "Traceback" not in proc.stderr


def test_finished_ingest_rerun_exits_0_and_says_so(tmp_path, env, pg_server_url, schema):
    src, imp = write_banksim(tmp_path / "tx.csv", 3), write_importance(tmp_path / "imp.csv")
    args = ingest_args(src, imp, tmp_path / "land", pg_server_url, schema, "--interval", "0")
    assert subprocess.run(args, env=env, capture_output=True, timeout=60).returncode == 0
    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "already complete" in again.stderr


def test_sigterm_stops_between_chunks_and_the_next_run_resumes(tmp_path, env, pg_server_url, schema, db):
    src, imp = write_banksim(tmp_path / "tx.csv", 20), write_importance(tmp_path / "imp.csv")
    land = tmp_path / "land"
    args = ingest_args(src, imp, land, pg_server_url, schema, "--rows-per-chunk", "2", "--interval", "0.3")
    proc = subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (land / "chunk_00000002/transactions.csv").exists(), what="chunk 2")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM and "rerun to resume" in err
    resumed = subprocess.run([*args[:-1], "0"], env=env, capture_output=True, timeout=60)
    assert resumed.returncode == 0
    assert [r[0] for r in ledger(db, schema, str(land.resolve()))] == list(range(1, 11))


def test_kill_9_at_random_points_then_resume_lands_exactly_the_source(tmp_path, env, pg_server_url, schema,
                                                                     db):
    bad = {i: f"{i},'C1','3','F','28007','','28007','es_food',1.0,0" for i in range(7, 1500, 97)}
    src, imp = write_banksim(tmp_path / "tx.csv", 1500, bad), write_importance(tmp_path / "imp.csv")
    fresh, land = tmp_path / "fresh", tmp_path / "land"
    run_ingest(str(src), str(imp), str(fresh), pg_server_url, schema, rows_per_chunk=50, interval=0)
    args = ingest_args(src, imp, land, pg_server_url, schema, "--rows-per-chunk", "50", "--interval", "0.02")
    key = str(land.resolve())
    rng = random.Random(20251125)
    kills = 0
    for _ in range(8):
        done = len(ledger(db, schema, key))
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Kill during start-up, or a random few chunks further on, at a random moment within a chunk.
        target = done + rng.choice([0, 1, 2, 3, 5])
        wait_for(lambda t=target: len(ledger(db, schema, key)) >= t or proc.poll() is not None,  # noqa: B023
                 timeout=30, interval=0.005, what=f"chunk {target}")
        try:
            proc.wait(rng.uniform(0, 0.03))
        except subprocess.TimeoutExpired:
            proc.kill()  # SIGKILL: no cleanup of any kind
            kills += 1
        proc.wait(10)
    assert kills >= 4
    final = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert final.returncode == 0, final.stderr
    assert snapshot(land) == snapshot(fresh)
    assert ledger(db, schema, key) == ledger(db, schema, str(fresh.resolve()))
    assert [r[0] for r in ledger(db, schema, key)] == list(range(1, 31))
