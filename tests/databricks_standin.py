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
  as Databricks resolves them on the cluster; an unknown reference fails the run (INTERNAL_ERROR). The
  same map answers the Secrets API (`GET /api/2.0/secrets/get`), which a serverless job reads through
  databricks-sdk; the job gets DATABRICKS_HOST/DATABRICKS_TOKEN as a runtime's native auth would give.
- Compute, as Databricks runs it (https://docs.databricks.com/aws/en/compute/access-mode-limitations,
  https://docs.databricks.com/aws/en/jobs/run-serverless-jobs):
  - a cluster without a Unity Catalog access mode (no `data_security_mode`, NONE or a LEGACY_ mode, and no
    cluster policy that sets one) cannot read volumes: a `/Volumes` library or script fails the run;
  - dedicated access mode runs the script with a classic driver (`spark-submit`);
  - standard access mode and serverless tasks run it as a Spark Connect client (`SPARK_REMOTE`) of a
    local Spark Connect server the stand-in starts (serverless: ANSI SQL on, session time zone UTC, as
    serverless defaults are), so the job meets Connect's limits: no sparkContext, no JVM;
  - a serverless task needs an `environment_key` naming an `environments` entry (its dependencies are
    installed, a missing wheel fails the run), and may carry neither `libraries` nor a cluster.
- The job sees volumes as local paths, as on Databricks: `/Volumes/<catalog>` on this machine links to the
  stand-in's folder while it runs (root needed), and DATABRICKS_RUNTIME_VERSION is set.
- States follow Databricks: PENDING -> RUNNING -> TERMINATED with result_state SUCCESS | FAILED |
  CANCELED, TIMEDOUT past `timeout_seconds`. `idempotency_token` returns the existing run.
- Bearer-token auth; every request is recorded in `calls`. One task per run (all txnwatch submits).
"""

from __future__ import annotations

import base64
import dataclasses
import inspect
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from databricks.sdk.service.compute import DataSecurityMode
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
# Serverless environment version -> the Spark its Connect client speaks (environment 4: Spark 4).
SERVERLESS_ENVIRONMENTS = {"2": "3.5.2", "3": "3.5.2", "4": "4.0.0"}
WORKSPACE_ID = "1234567890123456"
LIBRARY_KINDS = ("whl", "jar", "egg", "requirements")
ACCESS_MODES = {m.value for m in DataSecurityMode}
UNITY_CATALOG_MODES = {"DATA_SECURITY_MODE_STANDARD", "USER_ISOLATION", "DATA_SECURITY_MODE_DEDICATED", "SINGLE_USER",
                       "DATA_SECURITY_MODE_AUTO"}
CONNECT_MODES = {"DATA_SECURITY_MODE_STANDARD", "USER_ISOLATION", "DATA_SECURITY_MODE_AUTO"}
NO_VOLUMES = ("Unity Catalog volumes are not supported on compute without a Unity Catalog access mode "
              "(data_security_mode {mode}): use standard or dedicated access mode")


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
    mode: str = ""  # how the job ran: classic (spark-submit) or connect (a Spark Connect client)

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
                 volumes: set[str] = frozenset({"/Volumes/main/txnwatch/artifacts"}),
                 policies: dict[str, str] | None = None, clusters: dict[str, str] | None = None):
        # policies: cluster policy id -> the data_security_mode it sets; clusters: existing cluster id ->
        # its data_security_mode.
        self.policies = dict(policies or {})
        self.clusters = dict(clusters or {})
        self._connect: subprocess.Popen | None = None
        self._connect_port: int | None = None
        self._connect_lock = threading.Lock()
        self._linked: list[Path] = []
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
                if url.path == "/api/2.0/secrets/get" and method == "GET":
                    code, reply = standin.get_secret(body.get("scope", ""), body.get("key", ""))
                    return self._reply(code, reply, method)
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

            def do_DELETE(self):
                self._handle("DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self._link_volumes()
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        for run in list(self.runs.values()):
            self._kill(run)
        if self._connect is not None and self._connect.poll() is None:
            os.killpg(self._connect.pid, signal.SIGKILL)
            self._connect.wait(30)
        for link in self._linked:
            if link.is_symlink():
                link.unlink()
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def _link_volumes(self) -> None:
        """/Volumes/<catalog> -> the stand-in's folder: the driver's view of volumes as local paths."""
        for catalog in sorted({v.strip("/").split("/")[1] for v in self.files.volumes}):
            link, target = Path("/Volumes") / catalog, self.files.root / "Volumes" / catalog
            target.mkdir(parents=True, exist_ok=True)
            link.parent.mkdir(exist_ok=True)
            if link.is_symlink():
                link.unlink()  # left by an earlier stand-in
            link.symlink_to(target, target_is_directory=True)
            self._linked.append(link)

    def get_secret(self, scope: str, key: str) -> tuple[int, dict]:
        value = self.secrets.get(f"{scope}/{key}")
        if value is None:
            return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"Secret {scope}/{key} does not exist"}
        return 200, {"key": key, "value": base64.b64encode(value.encode()).decode()}

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

    def refusals(self, payload: dict) -> list[str]:
        """What Databricks refuses in a runs/submit body (Jobs API 2.2), as 400 messages."""
        problems = [f"Unknown field {k!r} in the request" for k in sorted(set(payload) - SUBMIT_FIELDS)]
        tasks = payload.get("tasks")
        if not tasks or not isinstance(tasks, list):
            return problems + ["tasks is required: a list of one or more tasks"]
        if len(tasks) != 1:
            problems.append("the stand-in runs one task per run")
        environments = {e.get("environment_key"): e for e in payload.get("environments") or []}
        for key, env in environments.items():
            version = str((env.get("spec") or {}).get("environment_version") or "")
            if version not in SERVERLESS_ENVIRONMENTS:
                problems.append(f"environments[{key!r}]: unknown environment_version {version!r}")
        for i, task in enumerate(tasks):
            problems += [f"Unknown field {k!r} in tasks[{i}]" for k in sorted(set(task) - TASK_FIELDS)]
            if not task.get("task_key"):
                problems.append(f"tasks[{i}].task_key is required")
            if not (task.get("spark_python_task") or {}).get("python_file"):
                problems.append(f"tasks[{i}].spark_python_task.python_file is required")
            cluster = task.get("new_cluster")
            existing = task.get("existing_cluster_id")
            if not (cluster or existing):  # serverless
                if not task.get("environment_key"):
                    problems.append(f"tasks[{i}]: a Python script task on serverless compute needs environment_key "
                                    "(or one of new_cluster, existing_cluster_id)")
                elif task["environment_key"] not in environments:
                    problems.append(f"tasks[{i}]: environment_key {task['environment_key']!r} names no entry "
                                    "of environments")
                if task.get("libraries"):
                    problems.append(f"tasks[{i}]: libraries are not supported for serverless tasks; list them "
                                    "in the environment's dependencies")
            if existing and existing not in self.clusters:
                problems.append(f"Cluster {existing} does not exist")
            if cluster:
                if cluster.get("spark_version") not in RUNTIMES:
                    problems.append(f"Invalid spark version {cluster.get('spark_version')!r}")
                mode = cluster.get("data_security_mode")
                if mode is not None and mode not in ACCESS_MODES:
                    problems.append(f"Invalid data_security_mode {mode!r}")
                policy = cluster.get("policy_id")
                if policy is not None and policy not in self.policies:
                    problems.append(f"Cluster policy {policy} does not exist")
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

    def access_mode(self, task: dict) -> str | None:
        """The data_security_mode the task's compute runs in ("SERVERLESS" for a serverless task)."""
        if task.get("existing_cluster_id"):
            return self.clusters.get(task["existing_cluster_id"])
        cluster = task.get("new_cluster")
        if not cluster:
            return "SERVERLESS"
        return cluster.get("data_security_mode") or self.policies.get(cluster.get("policy_id"))

    def _install(self, paths: list[tuple[str, str]], runtime: str, site: Path, mode: str | None) -> str | None:
        """Install (kind, path) libraries into `site`; the reason they cannot be, as Databricks words it."""
        runtime_version = tuple(int(x) for x in runtime.split(".")[:2]) if runtime[0].isdigit() else (99, 0)
        for kind, path in paths:
            where = f"Library installation failed for library due to user error for {kind}: {path!r}."
            if (path.startswith("dbfs:/") and not path.startswith("dbfs:/Volumes/")
                    and runtime_version >= (15, 1)):
                return (f"{where} Error messages: Libraries stored in the DBFS root are deprecated and disabled "
                        f"by default from Databricks Runtime 15.1; store them in Unity Catalog volumes or "
                        f"workspace files")
            if path.startswith(("/Volumes/", "dbfs:/Volumes/")) and mode not in UNITY_CATALOG_MODES | {"SERVERLESS"}:
                return f"{where} Error messages: " + NO_VOLUMES.format(mode=mode or "not set")
            local = self.files.local_path(path)
            if local is None or not local.is_file():
                return f"{where} Error messages: {path} does not exist"
            if kind == "whl":
                with zipfile.ZipFile(local) as whl:  # a pure-Python wheel installs by unpacking
                    whl.extractall(site)
        return None

    def _libraries(self, run: Run) -> list[tuple[str, str]]:
        task = run.task
        if task.get("environment_key"):
            env = next(e for e in run.payload["environments"] if e["environment_key"] == task["environment_key"])
            # Paths (a wheel in a volume) are installed; requirement specifiers come with the stand-in's venv.
            return [("whl", d) for d in env["spec"].get("dependencies") or [] if d.startswith(("/", "dbfs:"))]
        return [(k, lib[k]) for lib in task.get("libraries") or [] for k in LIBRARY_KINDS if k in lib]

    def connect_server(self) -> int:
        """The port of the stand-in's Spark Connect server (serverless and standard access mode), started once."""
        with self._connect_lock:
            if self._connect is None or self._connect.poll() is not None:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", 0))
                    port = sock.getsockname()[1]
                spark_submit = Path(sys.executable).parent / "spark-submit"
                cmd = [str(spark_submit), "--class", "org.apache.spark.sql.connect.service.SparkConnectServer",
                       "--master", "local[2]", "--conf", f"spark.connect.grpc.binding.port={port}",
                       "--conf", "spark.connect.grpc.binding.address=127.0.0.1", "--conf", "spark.ui.enabled=false",
                       # serverless defaults: ANSI SQL on, UTC
                       "--conf", "spark.sql.ansi.enabled=true", "--conf", "spark.sql.session.timeZone=UTC",
                       "spark-internal"]
                log = open(self.log_dir / "connect_server.log", "wb")  # noqa: SIM115 - the server's lifetime
                self._connect = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                                 env=dict(os.environ, SPARK_LOCAL_IP="127.0.0.1",
                                                          PYSPARK_PYTHON=sys.executable))
                deadline = time.monotonic() + 180
                while time.monotonic() < deadline and self._connect.poll() is None:
                    try:
                        socket.create_connection(("127.0.0.1", port), timeout=1).close()
                        break
                    except OSError:
                        time.sleep(0.3)
                else:
                    raise RuntimeError("the Spark Connect server did not start: see connect_server.log")
                self._connect_port = port
            return self._connect_port

    def _execute(self, run: Run) -> None:
        task = run.task
        cluster = task.get("new_cluster") or {}
        mode = self.access_mode(task)
        if mode == "SERVERLESS":
            env_key = task["environment_key"]
            spec = next(e for e in run.payload["environments"] if e["environment_key"] == env_key)["spec"]
            runtime = f"client.{spec['environment_version']}"
            spark_version = SERVERLESS_ENVIRONMENTS[str(spec["environment_version"])]
        else:
            runtime = cluster.get("spark_version") or EXISTING_CLUSTER_RUNTIME
            spark_version = RUNTIMES[runtime]
        run_dir = self.log_dir / f"run_{run.run_id}"
        site = run_dir / "site-packages"
        site.mkdir(parents=True, exist_ok=True)
        try:
            env_vars = {k: self._resolve(str(v)) for k, v in (cluster.get("spark_env_vars") or {}).items()}
        except KeyError as e:
            run.life_cycle_state, run.result_state, run.state_message = "INTERNAL_ERROR", "FAILED", str(e)
            return
        failure = self._install(self._libraries(run), runtime, site, mode)
        python_file = task["spark_python_task"]["python_file"]
        if not failure and python_file.startswith("/Volumes/") and mode not in UNITY_CATALOG_MODES | {"SERVERLESS"}:
            failure = f"Cannot read {python_file}: " + NO_VOLUMES.format(mode=mode or "not set")
        if failure:
            run.life_cycle_state, run.result_state, run.state_message = "INTERNAL_ERROR", "FAILED", failure
            return
        script = self.files.local_path(python_file)
        if script is None or not script.is_file():
            run.life_cycle_state, run.result_state = "TERMINATED", "FAILED"
            run.state_message = f"{python_file} does not exist"
            return
        env = dict(os.environ, **self.python_env, **env_vars)
        # The cluster's Python: the installed libraries, pyspark reporting the runtime's Spark, none of the
        # repo's editable install, and the ambient Databricks identity a runtime gives its jobs.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), str(CLUSTER_PYTHON), env.get("PYTHONPATH"))
                                            if p)
        env.update(TXNWATCH_TEST_RUNTIME_SPARK=spark_version, TXNWATCH_TEST_HIDE_EDITABLE="1",
                   PYSPARK_PYTHON=sys.executable, DATABRICKS_RUNTIME_VERSION=runtime,
                   DATABRICKS_HOST=self.url, DATABRICKS_TOKEN=self.token)
        env.pop("SPARK_REMOTE", None)
        params = [str(p) for p in task["spark_python_task"].get("parameters", [])]
        if mode in CONNECT_MODES | {"SERVERLESS"}:
            try:
                env["SPARK_REMOTE"] = f"sc://127.0.0.1:{self.connect_server()}"
            except RuntimeError as e:
                run.life_cycle_state, run.result_state, run.state_message = "INTERNAL_ERROR", "FAILED", str(e)
                return
            cmd = [sys.executable, str(script), *params]
        else:
            spark_submit = Path(sys.executable).parent / "spark-submit"
            cmd = [str(spark_submit), "--master", "local[2]", "--conf", "spark.ui.enabled=false", str(script), *params]
        run.mode = "connect" if "SPARK_REMOTE" in env else "classic"
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
