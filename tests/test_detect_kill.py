"""Kill -9 of the detection process at any moment, then restart: the output is exactly what an
uninterrupted run writes (the reference), with no duplicate and nothing missing.

Narrow windows (between commit and file write, between file write and its record) are hit
deterministically through a fault point armed in the subprocess (fault_points.py), which os._exit(137)s
there; wider ones
by SIGKILL at random moments. Each process start costs a Spark start, so the points are chained on one
stream instead of one stream per point.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.fault_points import subprocess_env
from tests.reference_rules import detect_store
from tests.y_data import LOW, assert_matches_reference, build_rows, check_exactly_once, land
from txnwatch.core.landing import REFERENCE_KEY
from txnwatch.core.storage import open_store

ROOT = Path(__file__).resolve().parents[1]
LOW_ARGS = [a for name in ("upgrade_min_merchant_txns", "upgrade_weight_percentile", "child_min_txns",
                           "dei_min_female_customers")
            for a in ("--threshold", f"{name}={getattr(LOW, name)}")]


def detect_cmd(landing, out, db, schema) -> list[str]:
    return [sys.executable, "-m", "txnwatch", "detect", "--landing", landing, "--output", out, "--db", db,
            "--schema", schema, "--until-end", "--poll-interval", "0.02", "--max-batch-chunks", "2", *LOW_ARGS]


def run(cmd, fault: str | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    env = subprocess_env(dict(os.environ, TXNWATCH_SPARK_WARMUP="0"), fault)  # start-up speed is not the point
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_fault_points_then_restart(tmp_path, pg_server_url, schema):
    rows, imp = build_rows(10_000, seed=1)
    landing = open_store(str(tmp_path / "landing"))
    land(landing, rows, imp, 1000)
    ref = detect_store(landing, REFERENCE_KEY, LOW)
    assert len(ref) > 100
    out = open_store(str(tmp_path / "out"))
    cmd = detect_cmd(landing.url, out.url, pg_server_url, schema)
    snapshots = {}
    for fault in ("before_commit:2", "after_commit:1", "before_file:1", "after_file:1"):
        proc = run(cmd, fault)
        assert proc.returncode == 137, f"{fault}: {proc.returncode}\n{proc.stderr[-3000:]}"
        assert f"injected fault at {fault.split(':')[0]}" in proc.stderr
        # Whatever was written stays byte-identical through the repair.
        snapshots.update({k: out.get(k) for k in out.list()})
    proc = run(cmd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_matches_reference(out, ref)
    for key, data in snapshots.items():
        assert out.get(key) == data, key
    check_exactly_once(pg_server_url, schema, len(ref))


def test_random_kill_9_then_restart(tmp_path, pg_server_url, schema):
    rows, imp = build_rows(10_000, seed=2)
    landing = open_store(str(tmp_path / "landing"))
    land(landing, rows, imp, 500)
    ref = detect_store(landing, REFERENCE_KEY, LOW)
    out = open_store(str(tmp_path / "out"))
    cmd = detect_cmd(landing.url, out.url, pg_server_url, schema)
    seed = random.randrange(1 << 30)
    rnd = random.Random(seed)
    env = subprocess_env(dict(os.environ, TXNWATCH_SPARK_WARMUP="0"), None)
    for _ in range(2):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
        # Spark starts in ~5-8 s here: kill during start-up, Spark work, commits and file writes.
        time.sleep(rnd.uniform(4.0, 14.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        proc.stderr.close()
    final = run(cmd)
    assert final.returncode == 0, f"seed {seed}\n{final.stderr[-3000:]}"
    assert_matches_reference(out, ref)
    check_exactly_once(pg_server_url, schema, len(ref))
