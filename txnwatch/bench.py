"""The project's benchmark (`make bench`): the figures the README quotes.

1. generate: the full-size BankSim-shaped data set (≈594k rows).
2. ingest flat out: `txnwatch ingest --interval 0` of that file: wall time and peak RSS.
3. backlog: `txnwatch detect --until-end` over all landed chunks (multi-chunk batches): wall time.
4. live: detect running, then ingest at the real 1 s cadence: per-chunk lag (landed -> committed).

Each step runs the real CLI in its own process against PostgreSQL; results go to stdout as a
Markdown table and to `.local/bench/results.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from txnwatch.db import connect, resolve_db_url
from txnwatch.embedded_pg import local_dir


def _run(cmd: list[str], env: dict[str, str], log: Path) -> tuple[float, float]:
    """Run a CLI to completion: (wall seconds, peak RSS in MB of that process)."""
    started = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"bench: {' '.join(cmd[2:5])} failed; see {log}")
    return wall, usage.ru_maxrss / 1024


def _wait_for_line(log: Path, text: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise SystemExit(f"bench: process ended early; see {log}")
        time.sleep(0.2)
    raise SystemExit(f"bench: no {text!r} in {log} after {timeout}s")


def _reset(db_url: str, schema: str, *folders: Path) -> None:
    with connect(db_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    for f in folders:
        shutil.rmtree(f, ignore_errors=True)


def _report(db_url: str, schema: str) -> dict:
    from txnwatch.report import collect_report

    with connect(db_url) as conn:
        return collect_report(conn, schema)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m txnwatch.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=594_643)
    parser.add_argument("--live-chunks", type=int, default=60, help="chunks replayed at 1 s (lag figure)")
    args = parser.parse_args(argv)

    work = local_dir() / "bench"
    work.mkdir(parents=True, exist_ok=True)
    db_url = resolve_db_url(None)
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "PYTHONUNBUFFERED": "1"}
    cli = [sys.executable, "-m", "txnwatch"]
    results: dict[str, object] = {"rows": args.rows, "cores": os.cpu_count()}

    # Every step is a child process: Linux counts a forked child's pre-exec memory in its peak RSS, so
    # the parent stays small (nothing heavy is done in-process) for the children's figures to be theirs.
    data = work / "data"
    wall, rss = _run([*cli, "generate", "--rows", str(args.rows), "--seed", "7", "--layout", "banksim",
                      "--out-dir", str(data)], env, work / "generate.log")
    results.update(generate_s=round(wall, 2), generate_peak_rss_mb=round(rss))
    files = argparse.Namespace(transactions=data / "transactions.csv", importance=data / "customer_importance.csv")

    def ingest(landing: Path, schema: str, *extra: str) -> list[str]:
        return [*cli, "ingest", "--source", str(files.transactions), "--importance", str(files.importance),
                "--landing", str(landing), "--db", db_url, "--schema", schema, *extra]

    landing, output = work / "backlog-landing", work / "backlog-output"
    _reset(db_url, "bench_backlog", landing, output)
    wall, rss = _run(ingest(landing, "bench_backlog", "--interval", "0"), env, work / "ingest.log")
    results.update(ingest_flat_out_s=round(wall, 2), ingest_peak_rss_mb=round(rss))

    wall, rss = _run([*cli, "detect", "--landing", str(landing), "--output", str(output), "--db", db_url,
                      "--schema", "bench_backlog", "--until-end"], env, work / "detect-backlog.log")
    rep = _report(db_url, "bench_backlog")
    results.update(backlog_detect_s=round(wall, 2), backlog_chunks=rep["chunks"],
                   backlog_peak_rss_mb=round(rss), backlog_detections=rep["detections"])

    landing, output = work / "live-landing", work / "live-output"
    _reset(db_url, "bench_live", landing, output)
    detect_log = work / "detect-live.log"
    with open(detect_log, "wb") as out:
        detect = subprocess.Popen([*cli, "detect", "--landing", str(landing), "--output", str(output), "--db",
                                   db_url, "--schema", "bench_live", "--until-end"], env=env, stdout=out,
                                  stderr=subprocess.STDOUT)
    try:
        _wait_for_line(detect_log, "resuming after chunk", detect)  # the Spark session is up
        _run(ingest(landing, "bench_live", "--interval", "1", "--max-chunks", str(args.live_chunks)),
             env, work / "ingest-live.log")
        if detect.wait(timeout=300) != 0:
            raise SystemExit(f"bench: live detect failed; see {detect_log}")
    finally:
        if detect.poll() is None:
            detect.kill()
    rep = _report(db_url, "bench_live")
    results.update(live_chunks=rep["chunks"], lag_p50_s=rep["lag_p50_s"], lag_p95_s=rep["lag_p95_s"],
                   lag_max_s=rep["lag_max_s"])

    (work / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print("| measure | value |\n|---|---|")
    for key, value in results.items():
        print(f"| {key} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
