"""Runs MechanismXProducerOperator in a process of its own (local Airflow configuration on the path):
`kill` stops it with on_kill after two chunks, `run` runs it to the end. Prints RESULT:{...}.

usage: python airflow_producer_probe.py kill|run SOURCE IMPORTANCE LANDING SCHEMA
"""

from __future__ import annotations

import json
import sys
import threading
import time


def main() -> None:
    mode, source, importance, landing, schema = sys.argv[1:6]
    from txnwatch.airflow.operators import MechanismXProducerOperator

    op = MechanismXProducerOperator(task_id="produce_chunks", source=source, importance=importance,
                                    landing=landing, rows_per_chunk=5000,
                                    interval_seconds=1.0 if mode == "kill" else 0.0,
                                    max_chunks=None, schema=schema)
    result: dict = {"mode": mode}

    def run() -> None:
        try:
            result["summary"] = op.execute(context={})
            result["outcome"] = "success"
        except Exception as e:
            result["outcome"] = "failed"
            result["error"] = f"{type(e).__name__}: {e}"

    t = threading.Thread(target=run)
    t.start()
    if mode == "kill":
        from pathlib import Path

        while not (Path(landing) / "chunk_00000002").exists() and t.is_alive():
            time.sleep(0.05)
        t0 = time.monotonic()
        op.on_kill()
        t.join(30)
        result["stop_seconds"] = time.monotonic() - t0
    t.join(300)
    print("RESULT:" + json.dumps(result))


if __name__ == "__main__":
    main()
