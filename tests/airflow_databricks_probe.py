"""Runs DatabricksSubmitRunOperator in a process of its own (under the local Airflow configuration)
against the Jobs API stand-in, for the failure and on_kill tests. Prints one JSON line: RESULT:{...}.

usage: python airflow_databricks_probe.py fail|kill PAYLOAD_JSON
"""

from __future__ import annotations

import json
import sys
import threading
import time


def main() -> None:
    mode, payload = sys.argv[1], json.loads(sys.argv[2])
    from airflow.providers.databricks.operators.databricks import DatabricksSubmitRunOperator

    op = DatabricksSubmitRunOperator(task_id="run_detect_databricks", json=payload,
                                     databricks_conn_id="databricks_default", polling_period_seconds=1,
                                     do_xcom_push=False, durable=False, databricks_retry_limit=1)
    result: dict = {"mode": mode}

    def run() -> None:
        try:
            op.execute(context={})
            result["outcome"] = "success"
        except Exception as e:  # the task would fail with this error
            result["outcome"] = "failed"
            result["error"] = f"{type(e).__name__}: {e}"

    t = threading.Thread(target=run)
    t.start()
    if mode == "kill":
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if op.run_id and op._hook.get_run_state_lifecycle(op.run_id) == "RUNNING":
                break
            time.sleep(0.2)
        result["state_before_kill"] = op._hook.get_run_state_lifecycle(op.run_id) if op.run_id else None
        op.on_kill()
    t.join(300)
    result["run_id"] = op.run_id
    if op.run_id:
        result["final_state"] = op._hook.get_run_state_str(op.run_id)
    print("RESULT:" + json.dumps(result))


if __name__ == "__main__":
    main()
