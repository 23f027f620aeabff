"""Runs DatabricksSubmitRunOperator in a process of its own (under the local Airflow configuration)
against the Jobs API stand-in, for the failure, on_kill and worker-death tests. Prints one JSON line:
RESULT:{...}.

usage: python airflow_databricks_probe.py fail|kill PAYLOAD_JSON
       python airflow_databricks_probe.py resume PAYLOAD_JSON STATE_FILE
`resume` runs the operator's durable (resumable) execution with a task state store kept in STATE_FILE,
as Airflow keeps one per task instance across tries: a process killed mid-run and started again with the
same file finds its run there.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path


class FileStateStore:
    """The task state store's get/set, kept in a JSON file that outlives the process."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def get(self, key: str):
        return json.loads(self.path.read_text()).get(key) if self.path.exists() else None

    def set(self, key: str, value) -> None:
        data = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.path.write_text(json.dumps({**data, key: value}))


def main() -> None:
    mode, payload = sys.argv[1], json.loads(sys.argv[2])
    from airflow.providers.databricks.operators.databricks import DatabricksSubmitRunOperator

    op = DatabricksSubmitRunOperator(task_id="run_detect_databricks", json=payload,
                                     databricks_conn_id="databricks_default", polling_period_seconds=1,
                                     do_xcom_push=False, durable=mode == "resume", databricks_retry_limit=1)
    result: dict = {"mode": mode}
    context = {"task_state_store": FileStateStore(sys.argv[3])} if mode == "resume" else {}

    def run() -> None:
        try:
            op.execute(context=context)
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
