"""Soak: X replays faster than real time while Y keeps up (or not). A developer tool: not shipped.

For each rate (seconds between chunks, default 1, 0.5, 0.2: the real cadence, 2× and 5×), Y is
started, X is started once Y is ready (steady state is the point here; start-up is `make bench`'s),
and X lands `--chunks` chunks of 10,000 rows of the full-size BankSim-shaped set at that rate. The
lag of each chunk (landed -> committed) is read from y_chunk_metrics.

The lag is *bounded* when it does not grow chunk after chunk: the worst lag of the last quarter of
the chunks is at most the worst of the second quarter plus one interval-independent allowance
(GROWTH_ALLOWANCE_S, for batching's sawtooth). A detector slower than the feed fails this however
long the run, since its lag then grows by (cost - interval) every chunk.

`python -m tools.soak` prints a Markdown table and writes `.local/soak/results-<rows>.json`;
tests/test_soak.py runs the same check briefly in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tools.bench import ROWS_1X, ROWS_10X, Bench, reset, wait_ready
from txnwatch.core.db import connect, resolve_db_url
from txnwatch.core.paths import local_dir
from txnwatch.core.stats import percentile
from txnwatch.records.progress import chunk_lags, progress

GROWTH_ALLOWANCE_S = 1.0


@dataclass
class SoakResult:
    interval_s: float
    chunks: int
    lags: list[float]
    detections: int
    schema: str
    landing: str
    output: str

    @property
    def quarters(self) -> tuple[float, float]:
        """Worst lag of the second quarter and of the last quarter of the chunks."""
        q = max(1, len(self.lags) // 4)
        return max(self.lags[q:2 * q]), max(self.lags[-q:])

    @property
    def bounded(self) -> bool:
        second, last = self.quarters
        return last <= second + GROWTH_ALLOWANCE_S

    def summary(self) -> dict:
        second, last = self.quarters
        return {"interval_s": self.interval_s, "chunks_per_s": round(1 / self.interval_s, 2), "chunks": self.chunks,
                "lag_p50_s": round(percentile(self.lags, 0.5), 3),
                "lag_p95_s": round(percentile(self.lags, 0.95), 3),
                "lag_max_second_quarter_s": round(second, 3), "lag_max_last_quarter_s": round(last, 3),
                "bounded": self.bounded, "detections": self.detections}


def soak(bench: Bench, data: Path, interval: float, chunks: int, tag: str) -> SoakResult:
    """One run at one rate: Y first, X once Y is ready, until Y has processed the last chunk."""
    schema = f"soak_{tag}"
    landing, output = bench.work / f"soak-{tag}-landing", bench.work / f"soak-{tag}-output"
    reset(bench.db_url, schema, landing, output)
    log = bench.work / f"soak-detect-{tag}.log"
    with open(log, "wb") as out:
        y = subprocess.Popen(bench.detect(landing, output, schema, "--until-end"), env=bench.env, stdout=out,
                             stderr=subprocess.STDOUT)
        try:
            wait_ready(bench.db_url, schema, y, log)
            x = subprocess.run(bench.ingest(data, landing, schema, "--interval", str(interval), "--max-chunks",
                                            str(chunks)), env=bench.env, capture_output=True, timeout=3600)
            if x.returncode != 0:
                raise SystemExit(f"soak: ingest failed: {x.stderr.decode()[-2000:]}")
            if y.wait(timeout=3600) != 0:
                raise SystemExit(f"soak: detect failed; see {log}")
        finally:
            if y.poll() is None:
                y.kill()
                y.wait()
    with connect(bench.db_url) as conn:
        lags = [float(v) for v in chunk_lags(conn, schema)]
        detections = progress(conn, schema).detections
    return SoakResult(interval, chunks, lags, detections, schema, str(landing), str(output))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=60, help="chunks per rate (60: the whole 1× set)")
    parser.add_argument("--rows", type=int, default=ROWS_1X,
                        help=f"rows of the generated set (default {ROWS_1X:,}; {ROWS_10X:,} for 10× the customers "
                             "and 595 chunks)")
    parser.add_argument("--intervals", type=float, nargs="+", default=[1.0, 0.5, 0.2])
    args = parser.parse_args(argv)
    work = local_dir() / "soak"
    work.mkdir(parents=True, exist_ok=True)
    bench = Bench(work, resolve_db_url(None))
    data = bench.generate(args.rows)
    results = [soak(bench, data, i, args.chunks, f"i{str(i).replace('.', '_')}").summary() for i in args.intervals]
    fastest = [r for r in results if r["bounded"]]
    out = {"cores": os.cpu_count(), "rows": args.rows, "runs": results,
           "highest_bounded_chunks_per_s": max((r["chunks_per_s"] for r in fastest), default=None)}
    (work / f"results-{args.rows}.json").write_text(json.dumps(out, indent=2) + "\n")
    keys = list(results[0])
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for r in results:
        print("| " + " | ".join(str(r[k]) for k in keys) + " |")
    print(f"\nhighest rate with bounded lag: {out['highest_bounded_chunks_per_s']} chunks/s "
          f"({os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

