"""A local stand-in of the Databricks Jobs API (runs/submit, runs/get, runs/get-output, runs/cancel under
/api/2.1/jobs/ and /api/2.2/jobs/) that really runs the submitted `spark_python_task` with the venv's
`spark-submit`.

- `python_file` (a dbfs:/ or workspace path) maps to the repo's spark_jobs/<same file name>; the wheel
  library is checked for presence but not installed (the venv already has the package).
- `{{secrets/<scope>/<key>}}` references in `new_cluster.spark_env_vars` are resolved from a local map,
  as Databricks resolves them on the cluster; an unknown reference fails the run (INTERNAL_ERROR).
- States follow Databricks: PENDING -> RUNNING -> TERMINATED with result_state SUCCESS | FAILED |
  CANCELED, TIMEDOUT past `timeout_seconds`. `idempotency_token` returns the existing run.
- Bearer-token auth; every request is recorded in `calls`.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

ROOT = Path(__file__).resolve().parents[1]
_SECRET = re.compile(r"\{\{secrets/([^/}]+)/([^}]+)\}\}")


@dataclass
class Run:
    run_id: int
    payload: dict
    life_cycle_state: str = "PENDING"
    result_state: str = ""
    state_message: str = "Waiting for cluster"
    proc: subprocess.Popen | None = None
    log: list[str] = field(default_factory=list)
    cancel_requested: bool = False
    started: float = field(default_factory=time.monotonic)
    log_file: Path | None = None

    def state(self) -> dict:
        s = {"life_cycle_state": self.life_cycle_state, "state_message": self.state_message}
        if self.result_state:
            s["result_state"] = self.result_state
        return s


class DatabricksStandin:
    def __init__(self, token: str, secrets: dict[str, str], log_dir: Path, python_env: dict | None = None):
        self.token = token
        self.secrets = secrets
        self.log_dir = Path(log_dir)
        self.python_env = python_env or {}
        self.runs: dict[int, Run] = {}
        self.by_token: dict[str, int] = {}
        self.calls: list[tuple[str, str, dict]] = []
        self._ids = itertools.count(1001)
        self._lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    # ---- HTTP ---------------------------------------------------------------------------------------
    def start(self, port: int = 0) -> int:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _reply(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                url = urlparse(self.path)
                # GET parameters come in the query string (requests) or as a JSON body (the provider's
                # async client, aiohttp); Databricks accepts both.
                body = {k: v[0] for k, v in parse_qs(url.query).items()}
                n = int(self.headers.get("Content-Length") or 0)
                if n:
                    body.update(json.loads(self.rfile.read(n) or b"{}"))
                standin.calls.append((method, url.path, body))
                if self.headers.get("Authorization") != f"Bearer {standin.token}":
                    return self._reply(401, {"error_code": "UNAUTHENTICATED", "message": "bad token"})
                m = re.fullmatch(r"/api/2\.[12]/jobs/(runs/[a-z-]+)", url.path)
                if not m:
                    return self._reply(404, {"error_code": "ENDPOINT_NOT_FOUND", "message": url.path})
                code, reply = standin.dispatch(method, m.group(1), body)
                self._reply(code, reply)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self.server.server_address[1]

    def stop(self) -> None:
        for run in list(self.runs.values()):
            self._kill(run)
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def endpoints_called(self) -> list[str]:
        return [f"{m} {p}" for m, p, _ in self.calls]

    # ---- Jobs API ------------------------------------------------------------------------------------
    def dispatch(self, method: str, op: str, body: dict) -> tuple[int, dict]:
        if (method, op) == ("POST", "runs/submit"):
            return self.submit(body)
        if (method, op) in (("GET", "runs/get"), ("GET", "runs/get-output"), ("POST", "runs/cancel")):
            # Runs get ids that are multiples of 10; the run's one task is run_id + 1 (runs/get-output).
            run_id = int(body.get("run_id", 0))
            run = self.runs.get(run_id // 10 * 10 if op == "runs/get-output" else run_id)
            if run is None:
                return 400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "Run does not exist"}
            if op == "runs/get":
                return 200, self.describe(run)
            if op == "runs/get-output":
                return 200, {"metadata": self.describe(run), "error": run.state_message if run.result_state
                             == "FAILED" else None, "error_trace": "\n".join(run.log[-30:])}
            run.cancel_requested = True
            self._kill(run)
            return 200, {}
        return 404, {"error_code": "ENDPOINT_NOT_FOUND", "message": f"{method} {op}"}

    def describe(self, run: Run) -> dict:
        # One-time runs (runs/submit) get a job id of their own, as on Databricks.
        return {"run_id": run.run_id, "job_id": run.run_id // 10, "run_name": run.payload.get("run_name"),
                "state": run.state(), "start_time": int(run.started * 1000),
                "run_page_url": f"http://standin/#job/runs/{run.run_id}",
                "tasks": [{"run_id": run.run_id + 1, "task_key": "detect", "state": run.state()}]}

    def submit(self, payload: dict) -> tuple[int, dict]:
        task = payload.get("spark_python_task") or {}
        problems = []
        if not task.get("python_file"):
            problems.append("spark_python_task.python_file is required")
        if not (payload.get("new_cluster") or payload.get("existing_cluster_id")):
            problems.append("one of new_cluster or existing_cluster_id is required")
        token = payload.get("idempotency_token")
        if token is not None and len(token) > 64:
            problems.append("idempotency_token is longer than 64 characters")
        if problems:
            return 400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "; ".join(problems)}
        with self._lock:
            if token and token in self.by_token:
                return 200, {"run_id": self.by_token[token]}
            run = Run(run_id=next(self._ids) * 10, payload=payload)
            self.runs[run.run_id] = run
            if token:
                self.by_token[token] = run.run_id
        threading.Thread(target=self._execute, args=(run,), daemon=True).start()
        return 200, {"run_id": run.run_id}

    # ---- execution ----------------------------------------------------------------------------------
    def _resolve(self, value: str) -> str:
        def one(m: re.Match) -> str:
            key = f"{m.group(1)}/{m.group(2)}"
            if key not in self.secrets:
                raise KeyError(f"secret {key} does not exist")
            return self.secrets[key]

        return _SECRET.sub(one, value)

    def _execute(self, run: Run) -> None:
        task = run.payload["spark_python_task"]
        script = ROOT / "spark_jobs" / Path(task["python_file"].split(":", 1)[-1]).name
        try:
            env_vars = {k: self._resolve(str(v)) for k, v in
                        ((run.payload.get("new_cluster") or {}).get("spark_env_vars") or {}).items()}
        except KeyError as e:
            run.life_cycle_state, run.state_message = "INTERNAL_ERROR", str(e)
            return
        if not script.exists():
            run.life_cycle_state, run.result_state = "TERMINATED", "FAILED"
            run.state_message = f"{task['python_file']} does not exist"
            return
        env = dict(os.environ, **self.python_env, **env_vars)
        env.pop("PYSPARK_PYTHON", None)
        env["PYSPARK_PYTHON"] = sys.executable
        spark_submit = Path(sys.executable).parent / "spark-submit"
        cmd = [str(spark_submit), "--master", "local[2]", "--conf", "spark.ui.enabled=false", str(script),
               *[str(p) for p in task.get("parameters", [])]]
        if run.cancel_requested:
            run.life_cycle_state, run.result_state, run.state_message = "TERMINATED", "CANCELED", "Canceled"
            return
        run.log_file = self.log_dir / f"run_{run.run_id}.log"
        with open(run.log_file, "wb") as out:
            run.proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        run.life_cycle_state, run.state_message = "RUNNING", "In run"
        timeout = int(run.payload.get("timeout_seconds") or 0)
        while run.proc.poll() is None:
            if timeout and time.monotonic() - run.started > timeout:
                self._kill(run)
                run.life_cycle_state, run.result_state = "TERMINATED", "TIMEDOUT"
                run.state_message = f"Run timed out after {timeout} seconds"
                return
            time.sleep(0.1)
        run.log = run.log_file.read_text(errors="replace").splitlines()
        if run.cancel_requested:
            run.life_cycle_state, run.result_state, run.state_message = "TERMINATED", "CANCELED", \
                "Run cancelled by the user"
        elif run.proc.returncode == 0:
            run.life_cycle_state, run.result_state, run.state_message = "TERMINATED", "SUCCESS", ""
        else:
            run.life_cycle_state, run.result_state = "TERMINATED", "FAILED"
            run.state_message = f"Python script exited with code {run.proc.returncode}"

    def _kill(self, run: Run) -> None:
        proc = run.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
