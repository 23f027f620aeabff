"""The project's benchmark (`make bench`): the figures README.md and docs/benchmarks.md quote, at three scales.

A developer tool, not shipped.

Every step runs the real CLI in its own process against PostgreSQL, as a user would. The scales (`--scales`):
1× is the full-size BankSim-shaped set (594,643 rows, 4,112 customers, 60 chunks); 10× has 10× the rows and
the customers (5,946,430 rows, 41,120 customers; the runs take only the chunks they need); 100× is a bank's
shape, 411,200 customers over 3 steps (983,000 rows, 99 chunks, ≈2.4 rows per customer). At each scale:
- ready: launch -> readiness mark (y_checkpoint.ready_at) of `txnwatch detect`, in the backlog run (its
  landing zone holds the scale's importance file). Once, on an empty landing zone, also `txnwatch detect` and
  `spark-submit spark_jobs/detect_job.py` (the README's start-up figures).
- backlog: X flat out, then `detect --until-end` (default batching): wall time including JVM start, against
  the plain-Python reference (tests/reference_rules.py) on the same chunks in the same run, and whether the
  detections are the reference's.
- cost: a backlog run one chunk per batch: each chunk's batch time against chunk index (one plot, a line per
  scale). Y's driver RSS (the Python process, not the JVM) is sampled meanwhile; against the (customer,
  merchant) pairs of the chunks committed by then, its least-squares slope is the bytes per pair.
- live: Y launched, X started 8 s later at 1 chunk/s: lag landed -> committed per chunk, and whether the
  detections are the reference's on those chunks.
- restart: Y, then X at 1 chunk/s once Y is ready; Y is killed (SIGKILL to its process group) once chunk K
  is committed (K=80 of 99 chunks; 48 of 60 at 1×) while X keeps landing a chunk a second, and relaunched
  at once: relaunch -> readiness mark, the first batch's cost against the steady median before the kill,
  the lag of the chunks the new run commits, relaunch -> caught up (the first chunk it commits with lag
  < 1 s), and whether the detections are still exactly the reference's (nothing lost, nothing twice).
The rule thresholds are the SPEC's defaults at 1× and 10×; at 100× the two bars that count rows or customers
are scaled to the set (generate.scaled_thresholds: merchant volume 82,655, female customers 10,000).

`--standing-spark` runs every Y as the local stack runs it: a Spark Connect client (SPARK_REMOTE) of one
standing, warm `txnwatch spark-server` started before the first measurement (its own start is reported
apart, as `spark_server_up_s`, and is not in any Y figure).

Results go to stdout as a Markdown table, to `.local/bench/results.json` and the plot to
`.local/bench/per_chunk_cost.png`. `--quick` runs every step on tiny data (tests/test_bench.py) into
`.local/bench-quick/`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from txnwatch.core import defaults
from txnwatch.core.db import check_schema, connect, resolve_db_url
from txnwatch.core.paths import local_dir
from txnwatch.core.stats import percentile
from txnwatch.local.spark_server import wait_until_warm
from txnwatch.records.progress import chunk_costs, progress
from txnwatch.records.readiness import y_readiness
from txnwatch.records.report import collect_report

ROOT = Path(__file__).resolve().parents[1]

ROWS_1X = defaults.FULL_ROWS  # the real BankSim file's size
ROWS_10X = 10 * defaults.FULL_ROWS
ROWS_100X = 983_000  # 411,200 customers over 3 steps: ≈2.4 rows per customer
HEAD_START_S = 8.0  # Y is launched this long before X, as an operator starts a consumer (not "when ready")


@dataclass(frozen=True)
class Scale:
    name: str  # "1x", "10x", "100x": the tag of its schemas, folders and results
    label: str  # the plot's legend
    rows: int
    customers: int | None = None  # None: the generator's count for the rows
    steps: int | None = None  # None: the generator's 180
    live_chunks: int = 40
    backlog_chunks: int | None = None  # None: all of them
    cost_chunks: int | None = None
    restart_chunks: int = 99
    kill_after: int = 80  # restart: Y is killed once this chunk is committed
    scaled: bool = False  # rule thresholds scaled to the set (generate.scaled_thresholds), not the SPEC's

    def threshold_args(self) -> list[str]:
        """`--threshold NAME=VALUE` arguments for Y and the reference: none where the SPEC's defaults apply."""
        from txnwatch.generate import scaled_thresholds

        scaled = scaled_thresholds(self.rows, self.customers) if self.scaled else {}
        return [a for name, value in scaled.items() for a in ("--threshold", f"{name}={value}")]


SCALES = {
    1: Scale("1x", "1× customers (4,112)", ROWS_1X, live_chunks=30, restart_chunks=60, kill_after=48),
    10: Scale("10x", "10× customers (41,120)", ROWS_10X, backlog_chunks=100, cost_chunks=200),
    100: Scale("100x", "100× customers (411,200), 3 steps", ROWS_100X, customers=411_200, steps=3, scaled=True),
}
# --quick: every step of a scale on tiny data (chunks of 1,000 rows; 100×: 100× the customers of 1×), in about
# a minute a scale on an idle machine; the start-up on an empty landing zone is left out.
QUICK_ROWS_PER_CHUNK = 1_000
QUICK_SCALES = {
    1: Scale("1x", "1× (quick)", 15_000, live_chunks=3, restart_chunks=15, kill_after=3),
    10: Scale("10x", "10× (quick)", 150_000, live_chunks=3, backlog_chunks=15, cost_chunks=15, restart_chunks=15,
              kill_after=3),
    100: Scale("100x", "100× (quick)", 15_000, customers=10_400, steps=3, live_chunks=3, restart_chunks=15,
               kill_after=3, scaled=True),
}


class TreeRss:
    """Peak RSS of a process and of its descendants (the Spark JVM), sampled every 0.2 s; with keep, every
    sample as (unix time, own bytes, tree bytes)."""

    def __init__(self, pid: int, keep: bool = False) -> None:
        import psutil

        self.proc = psutil.Process(pid)
        self.peak_self = self.peak_tree = 0
        self.samples: list[tuple[float, int, int]] | None = [] if keep else None
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
            if self.samples is not None:
                self.samples.append((time.time(), own, own + kids))

    def stop(self) -> tuple[int, int]:
        self._stop.set()
        self._thread.join()
        return round(self.peak_self / 2**20), round(self.peak_tree / 2**20)


@dataclass
class Run:
    """A CLI run to completion: when it started (UTC), its wall seconds, its peak RSS and the tree's (MB)."""
    started: datetime
    wall_s: float
    rss_mb: int
    tree_rss_mb: int
    samples: list[tuple[float, int, int]] | None = field(default=None, repr=False)


def _run(cmd: list[str], env: dict[str, str], log: Path, keep_samples: bool = False) -> Run:
    """Run a CLI to completion (SystemExit when it fails)."""
    started, t0 = datetime.now(UTC), time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        rss = TreeRss(proc.pid, keep=keep_samples)
        code = proc.wait()
    wall = time.monotonic() - t0
    own, tree = rss.stop()
    if code != 0:
        raise SystemExit(f"bench: {' '.join(cmd[2:5])} failed; see {log}")
    return Run(started, wall, own, tree, rss.samples)


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


def wait_committed(db_url: str, schema: str, chunk: int, proc: subprocess.Popen, log: Path,
                   timeout: float = 600) -> None:
    """Until Y has committed `chunk` (SystemExit when Y ends first or it does not come); one connection."""
    deadline = time.monotonic() + timeout
    with connect(db_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"bench: detect ended before chunk {chunk}; see {log}")
            if progress(conn, schema).y_last_chunk >= chunk:
                return
            time.sleep(0.05)
    raise SystemExit(f"bench: chunk {chunk} not committed after {timeout}s; see {log}")


def last_committed(db_url: str, schema: str) -> int:
    with connect(db_url) as conn:
        return progress(conn, schema).y_last_chunk


def launch_seconds(db_url: str, schema: str, launched: datetime) -> float | None:
    """Seconds from `launched` to the readiness mark of Y's latest run in `schema`."""
    with connect(db_url) as conn:
        marks = y_readiness(conn, schema)
    return None if marks is None or marks.ready_at is None else round((marks.ready_at - launched).total_seconds(), 2)


def chunk_rows(db_url: str, schema: str) -> list[tuple[int, float | None, float, float, int]]:
    """Per committed chunk: (chunk, landed and committed as unix times, its batch's seconds, batch size)."""
    s = check_schema(schema)
    with connect(db_url) as conn:
        return [(k, None if landed is None else float(landed), float(committed), float(cost), size)
                for k, landed, committed, cost, size in conn.execute(
                    f"SELECT chunk, extract(epoch FROM landed_at), extract(epoch FROM committed_at), batch_seconds, "
                    f"batch_size FROM {s}.y_chunk_metrics ORDER BY chunk").fetchall()]


class Bench:
    def __init__(self, work: Path, db_url: str, rows_per_chunk: int = defaults.ROWS_PER_CHUNK,
                 prefix: str = "bench", head_start: float = HEAD_START_S) -> None:
        self.work, self.db_url, self.rows_per_chunk = work, db_url, rows_per_chunk
        self.prefix, self.head_start = prefix, head_start
        self.threshold_args: list[str] = []  # the scale's, for every detect command
        self.env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "PYTHONUNBUFFERED": "1"}
        self.cli = [sys.executable, "-m", "txnwatch"]

    def generate(self, rows: int, customers: int | None = None, steps: int | None = None) -> Path:
        shape = "".join(f"-{k}{v}" for k, v in (("c", customers), ("s", steps)) if v)
        data = self.work / f"data-{rows}{shape}"
        extra = [a for k, v in (("--customers", customers), ("--steps", steps)) if v for a in (k, str(v))]
        if not (data / "transactions.csv").exists():
            _run([*self.cli, "generate", "--rows", str(rows), "--seed", str(defaults.SEED), "--layout", "banksim",
                  *extra, "--out-dir", str(data)], self.env, self.work / f"generate-{rows}{shape}.log")
        return data

    def ingest(self, data: Path, landing: Path, schema: str, *extra: str) -> list[str]:
        return [*self.cli, "ingest", "--source", str(data / "transactions.csv"), "--importance",
                str(data / "customer_importance.csv"), "--landing", str(landing), "--db", self.db_url,
                "--schema", schema, "--rows-per-chunk", str(self.rows_per_chunk), *extra]

    def detect(self, landing: Path, output: Path, schema: str, *extra: str) -> list[str]:
        return [*self.cli, "detect", "--landing", str(landing), "--output", str(output), "--db", self.db_url,
                "--schema", schema, *self.threshold_args, *extra]

    def place(self, kind: str, tag: str) -> tuple[str, Path, Path]:
        """A run's schema, landing zone and output folder, emptied."""
        schema = f"{self.prefix}_{kind}_{tag}"
        landing, output = self.work / f"{kind}-{tag}-landing", self.work / f"{kind}-{tag}-output"
        reset(self.db_url, schema, landing, output)
        return schema, landing, output

    def spawn_detect(self, cmd: list[str], log: Path) -> subprocess.Popen:
        """Y in its own process group (its JVM with it), appending to `log`."""
        with open(log, "ab") as out:
            return subprocess.Popen(cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def ready(self, name: str, cmd_for, env: dict[str, str] | None = None) -> float:
        """Seconds from launching Y on an empty landing zone to its readiness mark."""
        schema, landing, output = self.place("ready", name)
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

    def backlog(self, data: Path, tag: str, *detect_extra: str, chunks: int | None = None,
                keep_samples: bool = False) -> dict:
        schema, landing, output = self.place("backlog", tag)
        limit = ["--max-chunks", str(chunks)] if chunks else []
        ingest = _run(self.ingest(data, landing, schema, "--interval", "0", *limit), self.env,
                      self.work / f"ingest-{tag}.log")
        y = _run(self.detect(landing, output, schema, "--until-end", *detect_extra), self.env,
                 self.work / f"detect-backlog-{tag}.log", keep_samples)
        rep = _report(self.db_url, schema)
        return {"landing": landing, "output": output, "schema": schema, "ingest_s": round(ingest.wall_s, 2),
                "ingest_rss_mb": ingest.rss_mb, "detect_s": round(y.wall_s, 2), "detect_rss_mb": y.rss_mb,
                "detect_tree_rss_mb": y.tree_rss_mb, "ready_s": launch_seconds(self.db_url, schema, y.started),
                "chunks": rep["chunks"], "detections": rep["detections"], "samples": y.samples}

    def per_chunk_cost(self, schema: str) -> list[tuple[int, float]]:
        with connect(self.db_url) as conn:
            return chunk_costs(conn, schema)

    def live(self, data: Path, tag: str, chunks: int) -> dict:
        schema, landing, output = self.place("live", tag)
        log = self.work / f"detect-live-{tag}.log"
        log.unlink(missing_ok=True)
        detect = self.spawn_detect(self.detect(landing, output, schema, "--until-end"), log)
        rss = TreeRss(detect.pid)
        try:
            time.sleep(self.head_start)
            _run(self.ingest(data, landing, schema, "--interval", "1", "--max-chunks", str(chunks)), self.env,
                 self.work / f"ingest-live-{tag}.log")
            if detect.wait(timeout=600) != 0:
                raise SystemExit(f"bench: live detect failed; see {log}")
        finally:
            _end(detect)
        own, tree = rss.stop()
        rep = _report(self.db_url, schema)
        return {"output": output, "schema": schema, "chunks": rep["chunks"], "lag_p50_s": rep["lag_p50_s"],
                "lag_p95_s": rep["lag_p95_s"], "lag_max_s": rep["lag_max_s"], "detections": rep["detections"],
                "detect_rss_mb": own, "detect_tree_rss_mb": tree}

    def restart(self, data: Path, tag: str, chunks: int, kill_after: int) -> dict:
        """Y, then X at 1 chunk/s once Y is ready; Y killed (-9) once `kill_after` is committed and relaunched
        at once while X lands on."""
        schema, landing, output = self.place("restart", tag)
        log = self.work / f"detect-restart-{tag}.log"
        log.unlink(missing_ok=True)
        cmd = self.detect(landing, output, schema, "--until-end")
        first = self.spawn_detect(cmd, log)
        x = second = None
        try:
            wait_ready(self.db_url, schema, first, log)  # the kill is the point here, in Y's steady state
            x = subprocess.Popen(self.ingest(data, landing, schema, "--interval", "1", "--max-chunks", str(chunks)),
                                 env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            wait_committed(self.db_url, schema, kill_after, first, log)
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(60)
            killed_after = last_committed(self.db_url, schema)
            relaunched = datetime.now(UTC)
            second = self.spawn_detect(cmd, log)
            if second.wait(timeout=600) != 0 or x.wait(timeout=600) != 0:
                raise SystemExit(f"bench: restart run failed; see {log}")
        finally:
            for proc in (first, second, x):
                _end(proc)
        rep = _report(self.db_url, schema)
        return {"output": output, "chunks": rep["chunks"], "detections": rep["detections"],
                **restart_figures(chunk_rows(self.db_url, schema), killed_after, relaunched.timestamp()),
                "relaunch_ready_s": launch_seconds(self.db_url, schema, relaunched)}


def _end(proc: subprocess.Popen | None) -> None:
    """Kill what is still running of a process we started (its process group when it has its own)."""
    if proc is None or proc.poll() is not None:
        return
    try:
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except ProcessLookupError:
        pass
    proc.wait(60)


def restart_figures(rows: list[tuple[int, float | None, float, float, int]], killed_after: int,
                    relaunched: float) -> dict:
    """What the restart cost: the first batch of the new run against the steady median before the kill, the lag
    of the chunks the new run committed, and relaunch -> the first of them committed with lag < 1 s."""
    before = ([cost for k, _, _, cost, _ in rows if 5 < k <= killed_after]
              or [cost for k, _, _, cost, _ in rows if k <= killed_after])
    after = [r for r in rows if r[0] > killed_after]
    lags = [committed - landed for _, landed, committed, _, _ in after if landed is not None]
    caught = next((committed for _, landed, committed, _, _ in after
                   if landed is not None and committed - landed < 1.0), None)
    first = after[0] if after else None
    steady = statistics.median(before) if before else None
    return {
        "killed_after_chunk": killed_after,
        "steady_median_cost_s": None if steady is None else round(steady, 3),
        "first_batch_cost_s": None if first is None else round(first[3], 3),
        "first_batch_chunks": None if first is None else first[4],
        "first_batch_to_steady": None if first is None or not steady else round(first[3] / steady, 2),
        "chunks_after_restart": len(after),
        "lag_after_p50_s": round(percentile(lags, 0.5), 3) if lags else None,
        "lag_after_p95_s": round(percentile(lags, 0.95), 3) if lags else None,
        "lag_after_max_s": round(max(lags), 3) if lags else None,
        "caught_up_s": None if caught is None else round(caught - relaunched, 2),
    }


@dataclass(frozen=True)
class Reference:
    """The plain-Python reference's run over a landing zone: its seconds, the chunks it read and its detections
    in order as (patternId, ActionType, customerName, merchantId, chunk)."""
    seconds: float
    chunks: int
    detections: list[tuple]

    def matches(self, output: Path, chunks: int, detections: dict[str, int]) -> bool | None:
        """Whether Y's files and its detections table hold exactly the reference's detections of the first
        `chunks` chunks, in order (None when the reference did not read that many)."""
        from tests.y_data import flat, read_output
        from txnwatch.core.storage import open_store

        if chunks > self.chunks:
            return None
        expected = [tuple(d[:4]) for d in self.detections if d[4] <= chunks]
        return flat(read_output(open_store(str(output)))) == expected and sum(detections.values()) == len(expected)


def reference(landing: Path, out: Path, threshold_args: list[str]) -> Reference:
    """The plain-Python reference on the landed chunks, in a child (its time is its own)."""
    proc = subprocess.run([sys.executable, "-m", "tools.reference_run", str(landing), "--out", str(out),
                           *threshold_args], cwd=ROOT, capture_output=True, text=True, check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return Reference(round(result["seconds"], 2), result["chunks"], [tuple(d) for d in json.loads(out.read_text())])


def cumulative_pairs(landing: Path, chunks: int) -> list[int]:
    """Distinct (customer, merchant) pairs after each of the first `chunks` landed chunks: what Y holds then."""
    import pandas as pd

    from txnwatch.core.landing import chunk_key

    seen: set[tuple[str, str]] = set()
    counts = []
    for k in range(1, chunks + 1):
        part = pd.read_csv(landing / chunk_key(k), usecols=["customerId", "merchantId"], dtype=str)
        seen.update(zip(part["customerId"], part["merchantId"], strict=True))
        counts.append(len(seen))
    return counts


def _pairs_in_state(db_url: str, schema: str) -> int | None:
    try:
        with connect(db_url) as conn:
            return conn.execute(f"SELECT count(*) FROM {check_schema(schema)}.customer_txn_stats").fetchone()[0]
    except Exception:  # noqa: BLE001 - Y keeps its pairs elsewhere: the landed chunks' count stands alone
        return None


def memory_figures(samples: list[tuple[float, int, int]], rows: list[tuple], pairs: list[int],
                   skip_chunks: int = 5) -> dict:
    """Y's RSS against the pairs it holds: each sample is matched with the last chunk committed by then (the
    first `skip_chunks` left out: start-up and the weights loading), and a least-squares line is fitted."""
    import numpy as np

    commits = [(committed, k) for k, _, committed, _, _ in rows]
    points = []
    for t, own, tree in samples:
        k = max((k for committed, k in commits if committed <= t), default=0)
        if k > skip_chunks:
            points.append((pairs[k - 1], own, tree - own))
    if len({p for p, _, _ in points}) < 2:
        return {"samples": len(points), "driver_bytes_per_pair": None, "pairs_per_gb": None}
    x, own, jvm = (np.array(v, dtype=float) for v in zip(*points, strict=True))
    slope, jvm_slope = np.polyfit(x, own, 1)[0], np.polyfit(x, jvm, 1)[0]
    return {"samples": len(points), "pairs_from": int(x.min()), "pairs_to": int(x.max()),
            "driver_bytes_per_pair": round(float(slope), 1),
            "pairs_per_gb": round(2**30 / slope) if slope > 0 else None,
            "jvm_bytes_per_pair": round(float(jvm_slope), 1),
            "driver_rss_mb_at_end": round(own[-1] / 2**20), "jvm_rss_mb_at_end": round(jvm[-1] / 2**20)}


def state_bytes_per_pair(log: Path) -> dict:
    """The state's own account at the end of a run (its summary line): the bytes of its arrays per pair.
    Exact where the RSS slope is not: freed memory (the weights' load) is reused by the growing state."""
    found = re.findall(r"state (\d+) pairs in (\d+) bytes", log.read_text(errors="replace"))
    if not found or not int(found[-1][0]):
        return {"state_bytes_per_pair": None}
    pairs, size = map(int, found[-1])
    return {"state_bytes_per_pair": round(size / pairs, 1), "state_mb_at_end": round(size / 2**20, 1)}


def _plot(costs: dict[str, list[tuple[int, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.5), constrained_layout=True)
    for label, series in costs.items():
        ax.plot([k for k, _ in series], [s for _, s in series], marker=".", linewidth=0.8, markersize=3,
                label=label)
    ax.axhline(1.0, color="tab:red", linestyle="--", linewidth=1, label="1 s (the feed's cadence)")
    ax.set_xlabel("chunk index")
    ax.set_ylabel("Y's batch time per chunk, s (read → commit)")
    ax.set_ylim(bottom=0)
    ax.set_title("Y's cost per chunk against chunk index, one chunk per batch")
    ax.legend(loc="upper right")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _summary(series: list[tuple[int, float]]) -> dict:
    """Median cost over chunks 6-60 (after the JIT's first rounds) and over the last 60 of the run."""
    values = [s for _, s in series]
    return {"median_s_chunks_6_60": round(statistics.median(values[5:60] or values), 3),
            "median_s_last_60": round(statistics.median(values[-60:]), 3),
            "p95_s": round(percentile(values, 0.95), 3), "chunks": len(values)}


def _lags(run: dict) -> dict:
    return {k: run[k] for k in ("chunks", "lag_p50_s", "lag_p95_s", "lag_max_s")}


def measure_backlog(bench: Bench, data: Path, scale: Scale) -> tuple[dict, Reference]:
    b = bench.backlog(data, scale.name, chunks=scale.backlog_chunks)
    ref = reference(b["landing"], bench.work / f"reference-{scale.name}.json", bench.threshold_args)
    return {"chunks": b["chunks"], "detect_s": b["detect_s"], "reference_s": ref.seconds,
            "ratio_to_reference": round(b["detect_s"] / ref.seconds, 2) if ref.seconds else None,
            "matches_reference": ref.matches(b["output"], b["chunks"], b["detections"]),
            "detections": b["detections"], "ready_s": b["ready_s"], "ingest_s": b["ingest_s"],
            "detect_rss_mb": b["detect_rss_mb"], "detect_tree_rss_mb": b["detect_tree_rss_mb"]}, ref


def measure_cost(bench: Bench, data: Path, scale: Scale) -> tuple[dict, dict, list[tuple[int, float]]]:
    """One chunk per batch: (the cost summary, the memory figures, the per-chunk series)."""
    c = bench.backlog(data, f"{scale.name}_single", "--max-batch-chunks", "1", chunks=scale.cost_chunks,
                      keep_samples=True)
    series = bench.per_chunk_cost(c["schema"])
    pairs = cumulative_pairs(c["landing"], c["chunks"])
    memory = {**memory_figures(c["samples"], chunk_rows(bench.db_url, c["schema"]), pairs),
              **state_bytes_per_pair(bench.work / f"detect-backlog-{scale.name}_single.log"),
              "pairs_at_end": pairs[-1] if pairs else 0, "pairs_in_state": _pairs_in_state(bench.db_url, c["schema"]),
              "driver_peak_mb": c["detect_rss_mb"], "tree_peak_mb": c["detect_tree_rss_mb"]}
    return _summary(series), memory, series


def run_scale(bench: Bench, scale: Scale) -> tuple[dict, list[tuple[int, float]]]:
    """Every measure at one scale: (its results, its per-chunk cost series)."""
    from txnwatch.generate import STEPS, customer_count

    data = bench.generate(scale.rows, scale.customers, scale.steps)
    bench.threshold_args = scale.threshold_args()
    out: dict = {"rows": scale.rows, "customers": customer_count(scale.rows, scale.customers),
                 "steps": scale.steps or STEPS, "thresholds": " ".join(bench.threshold_args[1::2]) or "SPEC defaults"}
    out["backlog"], ref = measure_backlog(bench, data, scale)
    out["ready_s"] = out["backlog"].pop("ready_s")
    out["cost"], out["memory"], series = measure_cost(bench, data, scale)
    live = bench.live(data, scale.name, scale.live_chunks)
    out["live"] = {**_lags(live), "matches_reference": ref.matches(live["output"], live["chunks"],
                                                                   live["detections"])}
    r = bench.restart(data, scale.name, scale.restart_chunks, scale.kill_after)
    out["restart"] = {"kill_after": scale.kill_after, **{k: v for k, v in r.items() if k not in
                                                         ("output", "detections")},
                      "matches_reference": ref.matches(r["output"], r["chunks"], r["detections"])}
    return out, series


def measure_ready(bench: Bench) -> dict:
    """Launch -> readiness mark on an empty landing zone: `txnwatch detect` and spark-submit (only the
    former with a standing Spark: spark-submit starts its own)."""
    from txnwatch.airflow.local_spark import spark_submit_command, spark_submit_env

    if "SPARK_REMOTE" in bench.env:
        return {"ready_detect_s": bench.ready("cli", lambda la, o, s: bench.detect(la, o, s))}
    return {"ready_detect_s": bench.ready("cli", lambda la, o, s: bench.detect(la, o, s)),
            "ready_spark_submit_s": bench.ready("submit", lambda la, o, s: spark_submit_command(str(la), str(o), s),
                                                env={**spark_submit_env(bench.db_url), "PYTHONUNBUFFERED": "1"})}


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) and k != "detections" else {f"{prefix}{k}": v})
    return out


def table(results: dict) -> str:
    """The results as Markdown: the machine and the start-up on an empty landing zone, then a measure a row
    and a scale a column."""
    head = {k: v for k, v in results.items() if k != "scales"}
    lines = ["| measure | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in head.items()), ""]
    scales = {name: _flat(r) for name, r in results["scales"].items()}
    keys = list(dict.fromkeys(k for r in scales.values() for k in r))
    lines += ["| measure | " + " | ".join(scales) + " |", "|---|" + "---|" * len(scales)]
    lines += [f"| {k} | " + " | ".join(str(r.get(k, "")) for r in scales.values()) + " |" for k in keys]
    return "\n".join(lines)


def _cost_ratios(scales: dict) -> None:
    base = scales.get("1x", {}).get("cost", {}).get("median_s_chunks_6_60")
    for r in scales.values():
        if base:
            r["cost"]["ratio_to_1x"] = round(r["cost"]["median_s_chunks_6_60"] / base, 2)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="1,10,100", help="which scales, of 1, 10 and 100 (default: all three)")
    parser.add_argument("--quick", action="store_true",
                        help="every step on tiny data (chunks of 1,000 rows), into .local/bench-quick: a smoke test")
    parser.add_argument("--live-chunks", type=int, help="chunks of each live run (default 30 at 1×, 40 else)")
    parser.add_argument("--cost-chunks-10x", type=int, help="chunks of the 10× per-chunk cost run (default 200)")
    parser.add_argument("--backlog-chunks-10x", type=int, help="chunks of the 10× backlog run (default 100)")
    parser.add_argument("--work", type=Path, help="folder for data, logs and results (default .local/bench)")
    parser.add_argument("--schema-prefix", default="bench", help="PostgreSQL schemas are <prefix>_<run>_<scale>")
    parser.add_argument("--standing-spark", action="store_true",
                        help="run Y as a Spark Connect client of a standing server, as the local stack does")
    return parser


def _scales(args: argparse.Namespace) -> list[Scale]:
    import dataclasses

    table_ = QUICK_SCALES if args.quick else SCALES
    try:
        picked = [table_[int(s)] for s in args.scales.split(",")]
    except (KeyError, ValueError):
        raise SystemExit(f"bench: --scales takes 1, 10 and 100, comma-separated; got {args.scales!r}") from None
    overrides = {"live_chunks": args.live_chunks}
    picked = [dataclasses.replace(s, **{k: v for k, v in overrides.items() if v}) for s in picked]
    tenfold = {"cost_chunks": args.cost_chunks_10x, "backlog_chunks": args.backlog_chunks_10x}
    return [dataclasses.replace(s, **{k: v for k, v in tenfold.items() if v}) if s.name == "10x" else s
            for s in picked]


@contextlib.contextmanager
def standing_spark(bench: Bench) -> Iterator[float]:
    """A `txnwatch spark-server` for the bench's Y runs (bench.env's SPARK_REMOTE); yields its seconds to warm."""
    ready = bench.work / "spark-server.ready.json"
    ready.unlink(missing_ok=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    with open(bench.work / "spark-server.log", "wb") as out:
        server = subprocess.Popen([*bench.cli, "spark-server", "--port", str(port), "--ready-file", str(ready)],
                                  env=bench.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        bench.env["SPARK_REMOTE"] = wait_until_warm(ready, server, bench.work / "spark-server.log")["remote"]
        yield round(time.monotonic() - started, 2)
    finally:
        bench.env.pop("SPARK_REMOTE", None)
        server.terminate()
        server.wait(60)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    scales = _scales(args)
    work = args.work or local_dir() / ("bench-quick" if args.quick else "bench")
    work.mkdir(parents=True, exist_ok=True)
    bench = Bench(work, resolve_db_url(None), prefix=args.schema_prefix,
                  rows_per_chunk=QUICK_ROWS_PER_CHUNK if args.quick else defaults.ROWS_PER_CHUNK,
                  head_start=1.0 if args.quick else HEAD_START_S)
    results: dict = {"cores": os.cpu_count(), "machine": os.uname().machine, "rows_per_chunk": bench.rows_per_chunk,
                     "spark": "standing" if args.standing_spark else "per run", "scales": {}}
    costs = {}
    with standing_spark(bench) if args.standing_spark else contextlib.nullcontext() as server_up_s:
        if server_up_s is not None:
            results["spark_server_up_s"] = server_up_s
        if not args.quick:
            results.update(measure_ready(bench))
        for scale in scales:
            results["scales"][scale.name], costs[scale.label] = run_scale(bench, scale)
    _cost_ratios(results["scales"])
    _plot(costs, work / "per_chunk_cost.png")
    (work / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(table(results))
    print(f"\nresults: {work / 'results.json'}\nplot: {work / 'per_chunk_cost.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
