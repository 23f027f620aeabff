"""A local stand-in of a Databricks workspace: the Jobs API (runs/submit, runs/get, runs/get-output,
runs/cancel under /api/2.1/jobs/ and /api/2.2/jobs/), and the Files and Workspace APIs
(databricks_files.py) that `txnwatch databricks deploy` uploads through. It really runs the submitted
`spark_python_task` with the venv's `spark-submit`, from what was uploaded.

- runs/submit takes the Jobs API 2.2 form and refuses, with 400 INVALID_PARAMETER_VALUE, what Databricks
  refuses: an unknown top-level field or task field (the schema is the official databricks-sdk's:
  `JobsAPI.submit`'s arguments, `SubmitTask`'s fields), no `tasks`, a task without `task_key` or compute, an unknown
  `spark_version`, an idempotency token over 64 characters.
- A run installs its libraries on its "cluster" first, as Databricks does: a library in the DBFS root on a
  runtime >= 15.1, or one that does not exist, fails the run (INTERNAL_ERROR, library installation
  failed). A wheel is installed by unpacking it onto the job's PYTHONPATH, and the project's editable
  install is hidden from the job, so the job runs the deployed wheel and nothing else of the repo.
- The job's Python reports the runtime's Spark version (`pyspark.__version__`, see
  cluster_python/sitecustomize.py), so a runtime older than the job supports fails the run through the
  job's own start-up check.
- `{{secrets/<scope>/<key>}}` references in `new_cluster.spark_env_vars` are resolved from a local map,
  as Databricks resolves them on the cluster; an unknown reference fails the run (INTERNAL_ERROR).
- States follow Databricks: PENDING -> RUNNING -> TERMINATED with result_state SUCCESS | FAILED |
  CANCELED, TIMEDOUT past `timeout_seconds`. `idempotency_token` returns the existing run.
- Bearer-token auth; every request is recorded in `calls`. One task per run (all txnwatch submits).
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from databricks.sdk.service.jobs import JobsAPI, SubmitTask

from tests.databricks_files import WorkspaceFiles

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_PYTHON = ROOT / "tests" / "cluster_python"
_SECRET = re.compile(r"\{\{secrets/([^/}]+)/([^}]+)\}\}")
SUBMIT_FIELDS = set(inspect.signature(JobsAPI.submit).parameters) - {"self"}
TASK_FIELDS = {f.name for f in dataclasses.fields(SubmitTask)}
# spark_version key -> the Apache Spark it ships (Databricks Runtime release notes).
RUNTIMES = {
    "17.3.x-scala2.13": "4.0.0",
    "16.4.x-scala2.13": "3.5.2",
    "16.4.x-scala2.12": "3.5.2",
    "15.4.x-scala2.12": "3.5.0",
    "14.3.x-scala2.12": "3.5.0",
}
EXISTING_CLUSTER_RUNTIME = "17.3.x-scala2.13"
WORKSPACE_ID = "1234567890123456"
LIBRARY_KINDS = ("whl", "jar", "egg", "requirements")


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

    @property
    def task(self) -> dict:
        return (self.payload.get("tasks") or [{}])[0]

    def state(self) -> dict:
        s = {"life_cycle_state": self.life_cycle_state, "state_message": self.state_message}
        if self.result_state:
            s["result_state"] = self.result_state
        return s


class DatabricksStandin:
    def __init__(self, token: str, secrets: dict[str, str], log_dir: Path, python_env: dict | None = None,
                 volumes: set[str] = frozenset({"/Volumes/main/txnwatch/artifacts"})):
        self.token = token
        self.secrets = secrets
        self.log_dir = Path(log_dir)
        self.python_env = python_env or {}
        self.files = WorkspaceFiles(self.log_dir / "workspace", set(volumes))
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

            def _send(self, code: int, headers: dict[str, str], data: bytes, method: str) -> None:
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v)
                if "Content-Length" not in headers:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if method != "HEAD":
                    self.wfile.write(data)

            def _reply(self, code: int, body: dict, method: str = "POST") -> None:
                self._send(code, {"Content-Type": "application/json"}, json.dumps(body).encode(), method)

            def _handle(self, method: str) -> None:
                url = urlparse(self.path)
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                content_type = self.headers.get("Content-Type") or ""
                if url.path == "/.well-known/databricks-config":
                    # The host metadata the SDK reads before anything else (served without auth).
                    standin.calls.append((method, url.path, {}))
                    host = f"http://127.0.0.1:{standin.server.server_address[1]}"
                    return self._reply(200, {"oidc_endpoint": f"{host}/oidc", "workspace_id": WORKSPACE_ID,
                                             "cloud": "aws"}, method)
                if standin.files.handles(url.path):
                    standin.calls.append((method, url.path, {"bytes": len(raw)}))
                    if self.headers.get("Authorization") != f"Bearer {standin.token}":
                        return self._reply(401, {"error_code": "UNAUTHENTICATED", "message": "bad token"}, method)
                    code, headers, data = standin.files.dispatch(method, url.path, url.query, raw, content_type)
                    return self._send(code, headers, data, method)
                # GET parameters come in the query string (requests) or as a JSON body (the provider's
                # async client, aiohttp); Databricks accepts both.
                body = {k: v[0] for k, v in parse_qs(url.query).items()}
                if raw:
                    body.update(json.loads(raw or b"{}"))
                standin.calls.append((method, url.path, body))
                if self.headers.get("Authorization") != f"Bearer {standin.token}":
                    return self._reply(401, {"error_code": "UNAUTHENTICATED", "message": "bad token"}, method)
                m = re.fullmatch(r"/api/2\.[12]/jobs/(runs/[a-z-]+)", url.path)
                if not m:
                    return self._reply(404, {"error_code": "ENDPOINT_NOT_FOUND", "message": url.path}, method)
                code, reply = standin.dispatch(method, m.group(1), body)
                self._reply(code, reply, method)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def do_PUT(self):
                self._handle("PUT")

            def do_HEAD(self):
                self._handle("HEAD")

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

    def submitted(self) -> list[dict]:
        """The bodies of every runs/submit request, in order."""
        return [body for _, path, body in self.calls if path.endswith("/jobs/runs/submit")]

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
                "tasks": [{"run_id": run.run_id + 1, "task_key": run.task.get("task_key"), "state": run.state()}]}

    @staticmethod
    def refusals(payload: dict) -> list[str]:
        """What Databricks refuses in a runs/submit body (Jobs API 2.2), as 400 messages."""
        problems = [f"Unknown field {k!r} in the request" for k in sorted(set(payload) - SUBMIT_FIELDS)]
        tasks = payload.get("tasks")
        if not tasks or not isinstance(tasks, list):
            return problems + ["tasks is required: a list of one or more tasks"]
        if len(tasks) != 1:
            problems.append("the stand-in runs one task per run")
        for i, task in enumerate(tasks):
            problems += [f"Unknown field {k!r} in tasks[{i}]" for k in sorted(set(task) - TASK_FIELDS)]
            if not task.get("task_key"):
                problems.append(f"tasks[{i}].task_key is required")
            if not (task.get("spark_python_task") or {}).get("python_file"):
                problems.append(f"tasks[{i}].spark_python_task.python_file is required")
            cluster = task.get("new_cluster")
            if not (cluster or task.get("existing_cluster_id")):
                problems.append(f"tasks[{i}]: one of new_cluster or existing_cluster_id is required")
            if cluster and cluster.get("spark_version") not in RUNTIMES:
                problems.append(f"Invalid spark version {cluster.get('spark_version')!r}")
        token = payload.get("idempotency_token")
        if token is not None and len(token) > 64:
            problems.append("idempotency_token is longer than 64 characters")
        return problems

    def submit(self, payload: dict) -> tuple[int, dict]:
        problems = self.refusals(payload)
        if problems:
            return 400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "; ".join(problems)}
        token = payload.get("idempotency_token")
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

    def _install_libraries(self, run: Run, runtime: str, site: Path) -> str | None:
        """Install the task's libraries into `site`; the reason they cannot be, as Databricks words it."""
        runtime_version = tuple(int(x) for x in runtime.split(".")[:2])
        for lib in run.task.get("libraries") or []:
            kind = next((k for k in LIBRARY_KINDS if k in lib), None)
            if kind is None:
                continue  # pypi / maven / cran: the stand-in's runtime (the venv) already has them
            path = lib[kind]
            where = f"Library installation failed for library due to user error for {kind}: {path!r}."
            if (path.startswith("dbfs:/") and not path.startswith("dbfs:/Volumes/")
                    and runtime_version >= (15, 1)):
                return (f"{where} Error messages: Libraries stored in the DBFS root are deprecated and disabled "
                        f"by default from Databricks Runtime 15.1; store them in Unity Catalog volumes or "
                        f"workspace files")
            local = self.files.local_path(path)
            if local is None or not local.is_file():
                return f"{where} Error messages: {path} does not exist"
            if kind == "whl":
                with zipfile.ZipFile(local) as whl:  # a pure-Python wheel installs by unpacking
                    whl.extractall(site)
        return None

    def _execute(self, run: Run) -> None:
        task = run.task
        cluster = task.get("new_cluster") or {}
        runtime = cluster.get("spark_version") or EXISTING_CLUSTER_RUNTIME
        run_dir = self.log_dir / f"run_{run.run_id}"
        site = run_dir / "site-packages"
        site.mkdir(parents=True, exist_ok=True)
        try:
            env_vars = {k: self._resolve(str(v)) for k, v in (cluster.get("spark_env_vars") or {}).items()}
        except KeyError as e:
            run.life_cycle_state, run.result_state, run.state_message = "INTERNAL_ERROR", "FAILED", str(e)
            return
        failure = self._install_libraries(run, runtime, site)
        if failure:
            run.life_cycle_state, run.result_state, run.state_message = "INTERNAL_ERROR", "FAILED", failure
            return
        python_file = task["spark_python_task"]["python_file"]
        script = self.files.local_path(python_file)
        if script is None or not script.is_file():
            run.life_cycle_state, run.result_state = "TERMINATED", "FAILED"
            run.state_message = f"{python_file} does not exist"
            return
        env = dict(os.environ, **self.python_env, **env_vars)
        # The cluster's Python: the installed libraries, pyspark reporting the runtime's Spark, and none
        # of the repo's editable install.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), str(CLUSTER_PYTHON), env.get("PYTHONPATH"))
                                            if p)
        env["TXNWATCH_TEST_RUNTIME_SPARK"] = RUNTIMES[runtime]
        env["TXNWATCH_TEST_HIDE_EDITABLE"] = "1"
        env["PYSPARK_PYTHON"] = sys.executable
        spark_submit = Path(sys.executable).parent / "spark-submit"
        cmd = [str(spark_submit), "--master", "local[2]", "--conf", "spark.ui.enabled=false", str(script),
               *[str(p) for p in task["spark_python_task"].get("parameters", [])]]
        if run.cancel_requested:
            run.life_cycle_state, run.result_state, run.state_message = "TERMINATED", "CANCELED", "Canceled"
            return
        run.log_file = self.log_dir / f"run_{run.run_id}.log"
        with open(run.log_file, "wb") as out:
            run.proc = subprocess.Popen(cmd, env=env, cwd=run_dir, stdout=out, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        run.life_cycle_state, run.state_message = "RUNNING", "In run"
        timeouts = [int(t) for t in (run.payload.get("timeout_seconds"), task.get("timeout_seconds")) if t]
        timeout = min(timeouts) if timeouts else 0
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
