"""The project's benchmark (`make bench`): the figures README.md and docs/benchmarks.md quote.

A developer tool, not shipped.

Every step runs the real CLI in its own process against PostgreSQL, as a user would:
1. generate: the full-size BankSim-shaped set (1×, ≈594k rows, 4,112 customers) and, unless --no-10x,
   the 10× set (5,946,430 rows, ≈41k customers).
2. ready: `txnwatch detect` and `spark-submit spark_jobs/detect_job.py` launched on an empty landing
   zone: seconds from launch to the readiness mark (y_checkpoint.ready_at).
3. backlog (1×): ingest flat out, then `detect --until-end` over all 60 chunks (default batching):
   wall time including JVM start, against the plain-Python reference (tests/reference_rules.py) on the
   same chunks in the same run.
4. cost per chunk (1× and 10×): a backlog run one chunk per batch; per-chunk batch time against chunk
   index (the plot shows whether cost grows with the customers accumulated), and Y's peak RSS.
5. live (1× and 10×): Y launched, X started 8 s later at the real cadence (1 s, 30 chunks): per-chunk
   lag (landed -> committed), start-up included.

Results go to stdout as a Markdown table, to `.local/bench/results.json` and the plot to
`.local/bench/per_chunk_cost.png`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from txnwatch.core import defaults
from txnwatch.core.db import connect, resolve_db_url
from txnwatch.core.paths import local_dir
from txnwatch.core.stats import percentile
from txnwatch.records.progress import chunk_costs
from txnwatch.records.readiness import y_readiness
from txnwatch.records.report import collect_report

ROOT = Path(__file__).resolve().parents[1]

ROWS_1X = defaults.FULL_ROWS  # the real BankSim file's size
ROWS_10X = 10 * defaults.FULL_ROWS


class TreeRss:
    """Peak RSS of a process and of its descendants (the Spark JVM), sampled every 0.2 s."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.proc = psutil.Process(pid)
        self.peak_self = self.peak_tree = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.wait(0.2):
            try:
                own = self.proc.memory_info().rss
                kids = sum(c.memory_info().rss for c in self.proc.children(recursive=True))
            except psutil.Error:
                continue
            self.peak_self = max(self.peak_self, own)
            self.peak_tree = max(self.peak_tree, own + kids)

    def stop(self) -> tuple[int, int]:
        self._stop.set()
        self._thread.join()
        return round(self.peak_self / 2**20), round(self.peak_tree / 2**20)


def _run(cmd: list[str], env: dict[str, str], log: Path) -> tuple[float, int, int]:
    """Run a CLI to completion: (wall seconds, peak RSS MB of the process, of its tree)."""
    started = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        rss = TreeRss(proc.pid)
        code = proc.wait()
    wall = time.monotonic() - started
    own, tree = rss.stop()
    if code != 0:
        raise SystemExit(f"bench: {' '.join(cmd[2:5])} failed; see {log}")
    return wall, own, tree


def reset(db_url: str, schema: str, *folders: Path) -> None:
    """Drop the schema and remove the folders: a run from scratch."""
    with connect(db_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    for f in folders:
        shutil.rmtree(f, ignore_errors=True)


def _report(db_url: str, schema: str) -> dict:
    with connect(db_url) as conn:
        return collect_report(conn, schema)


def wait_ready(db_url: str, schema: str, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    """Until Y's readiness mark is set (SystemExit when Y ends first or the mark does not come)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bench: detect ended early; see {log}")
        try:
            with connect(db_url) as conn:
                marks = y_readiness(conn, schema)
        except Exception:  # noqa: BLE001 - the schema does not exist yet
            marks = None
        if marks is not None and marks.ready_at is not None:
            return
        time.sleep(0.05)
    raise SystemExit(f"bench: no readiness mark after {timeout}s; see {log}")


class Bench:
    def __init__(self, work: Path, db_url: str) -> None:
        self.work, self.db_url = work, db_url
        self.env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "PYTHONUNBUFFERED": "1"}
        self.cli = [sys.executable, "-m", "txnwatch"]

    def generate(self, rows: int) -> Path:
        data = self.work / f"data-{rows}"
        if not (data / "transactions.csv").exists():
            _run([*self.cli, "generate", "--rows", str(rows), "--seed", str(defaults.SEED), "--layout", "banksim",
                  "--out-dir", str(data)], self.env, self.work / f"generate-{rows}.log")
        return data

    def ingest(self, data: Path, landing: Path, schema: str, *extra: str) -> list[str]:
        return [*self.cli, "ingest", "--source", str(data / "transactions.csv"), "--importance",
                str(data / "customer_importance.csv"), "--landing", str(landing), "--db", self.db_url,
                "--schema", schema, *extra]

    def detect(self, landing: Path, output: Path, schema: str, *extra: str) -> list[str]:
        return [*self.cli, "detect", "--landing", str(landing), "--output", str(output), "--db", self.db_url,
                "--schema", schema, *extra]

    def ready(self, name: str, cmd_for, env: dict[str, str] | None = None) -> float:
        """Seconds from launching Y on an empty landing zone to its readiness mark."""
        schema, landing, output = f"bench_ready_{name}", self.work / "ready-landing", self.work / "ready-out"
        reset(self.db_url, schema, landing, output)
        log = self.work / f"ready-{name}.log"
        with open(log, "wb") as out:
            started = time.monotonic()
            proc = subprocess.Popen(cmd_for(landing, output, schema), env=env or self.env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            try:
                wait_ready(self.db_url, schema, proc, log)
                return round(time.monotonic() - started, 2)
            finally:
                os.killpg(proc.pid, signal.SIGTERM)  # spark-submit's Python driver too
                proc.wait(60)

    def backlog(self, data: Path, tag: str, *detect_extra: str, chunks: int | None = None) -> dict:
        schema = f"bench_backlog_{tag}"
        landing, output = self.work / f"backlog-{tag}-landing", self.work / f"backlog-{tag}-output"
        reset(self.db_url, schema, landing, output)
        limit = ["--max-chunks", str(chunks)] if chunks else []
        ingest_s, ingest_rss, _ = _run(self.ingest(data, landing, schema, "--interval", "0", *limit), self.env,
                                       self.work / f"ingest-{tag}.log")
        wall, own, tree = _run(self.detect(landing, output, schema, "--until-end", *detect_extra), self.env,
                               self.work / f"detect-backlog-{tag}.log")
        rep = _report(self.db_url, schema)
        return {"landing": landing, "schema": schema, "ingest_s": round(ingest_s, 2), "ingest_rss_mb": ingest_rss,
                "detect_s": round(wall, 2), "detect_rss_mb": own, "detect_tree_rss_mb": tree,
                "chunks": rep["chunks"], "detections": rep["detections"]}

    def per_chunk_cost(self, schema: str) -> list[tuple[int, float]]:
        with connect(self.db_url) as conn:
            return chunk_costs(conn, schema)

    def live(self, data: Path, tag: str, chunks: int, head_start: float = 8.0) -> dict:
        schema = f"bench_live_{tag}"
        landing, output = self.work / f"live-{tag}-landing", self.work / f"live-{tag}-output"
        reset(self.db_url, schema, landing, output)
        log = self.work / f"detect-live-{tag}.log"
        with open(log, "wb") as out:
            detect = subprocess.Popen(self.detect(landing, output, schema, "--until-end"), env=self.env,
                                      stdout=out, stderr=subprocess.STDOUT)
            rss = TreeRss(detect.pid)
            try:
                time.sleep(head_start)  # launched first, as an operator starts a consumer, not "when ready"
                _run(self.ingest(data, landing, schema, "--interval", "1", "--max-chunks", str(chunks)), self.env,
                     self.work / f"ingest-live-{tag}.log")
                if detect.wait(timeout=600) != 0:
                    raise SystemExit(f"bench: live detect failed; see {log}")
            finally:
                if detect.poll() is None:
                    detect.kill()
        own, tree = rss.stop()
        rep = _report(self.db_url, schema)
        return {"chunks": rep["chunks"], "lag_p50_s": rep["lag_p50_s"], "lag_p95_s": rep["lag_p95_s"],
                "lag_max_s": rep["lag_max_s"], "detect_rss_mb": own, "detect_tree_rss_mb": tree}


def _reference_seconds(landing: Path) -> tuple[float, int]:
    """The plain-Python reference on the same landed chunks, in a child (its time is its own)."""
    out = subprocess.run([sys.executable, "-m", "tools.reference_run", str(landing)], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return round(result["seconds"], 2), result["detections"]


def _plot(costs: dict[str, list[tuple[int, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.5), constrained_layout=True)
    for label, series in costs.items():
        ax.plot([k for k, _ in series], [s for _, s in series], marker=".", linewidth=0.8, markersize=3,
                label=label)
    ax.axhline(1.0, color="tab:red", linestyle="--", linewidth=1, label="1 s (the feed's cadence)")
    ax.set_xlabel("chunk index (10,000 rows each)")
    ax.set_ylabel("Y's batch time per chunk, s (read → commit)")
    ax.set_ylim(bottom=0)
    ax.set_title("Y's cost per chunk against chunk index, one chunk per batch")
    ax.legend(loc="upper right")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _summary(series: list[tuple[int, float]]) -> dict:
    """Median cost over chunks 6-60 (after the JIT's first rounds) and over the last 60 of the run."""
    values = [s for _, s in series]
    return {"median_s_chunks_6_60": round(statistics.median(values[5:60]), 3),
            "median_s_last_60": round(statistics.median(values[-60:]), 3),
            "p95_s": round(percentile(values, 0.95), 3), "chunks": len(values)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--no-10x", action="store_true", help="skip the 10× customers runs")
    parser.add_argument("--live-chunks", type=int, default=30)
    parser.add_argument("--cost-chunks-10x", type=int, default=200,
                        help="chunks of the 10× set in the per-chunk cost run (all: 595)")
    args = parser.parse_args(argv)

    work = local_dir() / "bench"
    work.mkdir(parents=True, exist_ok=True)
    bench = Bench(work, resolve_db_url(None))
    results: dict[str, object] = {"cores": os.cpu_count(), "machine": os.uname().machine}

    data1 = bench.generate(ROWS_1X)
    from txnwatch.airflow.local_spark import spark_submit_command, spark_submit_env

    results["ready_detect_s"] = bench.ready("cli", lambda la, out, s: bench.detect(la, out, s))
    results["ready_spark_submit_s"] = bench.ready(
        "submit", lambda la, out, s: spark_submit_command(str(la), str(out), s),
        env={**spark_submit_env(bench.db_url), "PYTHONUNBUFFERED": "1"})

    b = bench.backlog(data1, "1x")
    ref_s, ref_n = _reference_seconds(b["landing"])
    results.update(backlog_1x_detect_s=b["detect_s"], backlog_1x_chunks=b["chunks"],
                   backlog_1x_detections=b["detections"], reference_1x_s=ref_s,
                   reference_1x_detections=ref_n, backlog_ratio_to_reference=round(b["detect_s"] / ref_s, 2),
                   ingest_1x_s=b["ingest_s"], ingest_1x_rss_mb=b["ingest_rss_mb"])

    costs = {}
    c = bench.backlog(data1, "1x_single", "--max-batch-chunks", "1")
    costs["1× customers (4,112)"] = bench.per_chunk_cost(c["schema"])
    results["cost_1x"] = _summary(costs["1× customers (4,112)"])
    results["live_1x"] = bench.live(data1, "1x", args.live_chunks)

    if not args.no_10x:
        data10 = bench.generate(ROWS_10X)
        c = bench.backlog(data10, "10x_single", "--max-batch-chunks", "1", chunks=args.cost_chunks_10x)
        costs["10× customers (≈41k)"] = bench.per_chunk_cost(c["schema"])
        results["cost_10x"] = _summary(costs["10× customers (≈41k)"])
        results.update(single_10x_detect_s=c["detect_s"], single_10x_chunks=c["chunks"],
                       single_10x_detect_rss_mb=c["detect_rss_mb"], single_10x_tree_rss_mb=c["detect_tree_rss_mb"],
                       single_10x_detections=c["detections"])
        results["live_10x"] = bench.live(data10, "10x", args.live_chunks)
        results["cost_ratio_10x_to_1x"] = round(results["cost_10x"]["median_s_chunks_6_60"]
                                                / results["cost_1x"]["median_s_chunks_6_60"], 2)

    _plot(costs, work / "per_chunk_cost.png")
    (work / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print("| measure | value |\n|---|---|")
    for key, value in results.items():
        print(f"| {key} | {value} |")
    print(f"\nplot: {work / 'per_chunk_cost.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
