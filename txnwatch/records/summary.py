"""The human summary of a run, shared by the Y DAG's report task and `make demo`."""

from __future__ import annotations


def _fmt(value) -> str:
    return "-" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))


def format_summary(report: dict) -> str:
    detections = report.get("detections") or {}
    total = sum(int(v) for v in detections.values())
    by_pattern = ", ".join(f"{k}={v}" for k, v in sorted(detections.items())) or "none"
    return "\n".join([
        f"chunks processed : {_fmt(report.get('chunks'))}",
        f"rows processed   : {_fmt(report.get('rows'))}",
        f"detections       : {total} ({by_pattern})",
        f"lag per chunk (s): p50 {_fmt(report.get('lag_p50_s'))}  p95 {_fmt(report.get('lag_p95_s'))}  "
        f"max {_fmt(report.get('lag_max_s'))}",
        *([f"Y start-up (s)   : {_fmt(report['y_startup_s'])} (run start -> readiness mark)"]
          if report.get("y_startup_s") is not None else []),
    ])
