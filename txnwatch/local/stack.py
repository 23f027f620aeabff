"""The local stack as one process group: Y's standing Spark (a warm Spark Connect server,
txnwatch.local.spark_server) and the Airflow services (API server, scheduler, DAG processor, triggerer);
and the signal handling that stops that group whichever way its owner is told to stop."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from txnwatch.local.airflow_home import LocalAirflow

SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer")
SPARK_SERVER = "spark-server"


class AirflowStack:
    def __init__(self, la: LocalAirflow, log_dir: Path) -> None:
        self.la = la
        self.log_dir = Path(log_dir)
        self.procs: dict[str, subprocess.Popen] = {}
        self.pgid: int | None = None

    @property
    def spark_ready_file(self) -> Path:
        return self.log_dir / f"{SPARK_SERVER}.ready.json"

    def migrate(self, say=None) -> bool:
        """Migrate the metadata database if it needs it (once, under a lock); True if it did."""
        from txnwatch.local.metadata_db import ensure_migrated

        return ensure_migrated(self.la, say=say)

    def start(self) -> None:
        """Start every service in one new process group (the first service leads it).

        The group is apart from the caller's, so the caller survives `killpg` and a terminal's Ctrl-C
        reaches the caller only, which then stops the group cleanly. The Spark server starts first: its
        JVM and warm-up take longest, and overlap the Airflow services' start.
        """
        from txnwatch.core.errors import TxnwatchError

        self.log_dir.mkdir(parents=True, exist_ok=True)
        if not port_free(self.la.spark_port):
            raise TxnwatchError(f"port {self.la.spark_port} (Y's standing Spark) is in use, by another stack "
                                "or a Spark Connect server: stop it, or set TXNWATCH_SPARK_PORT")
        self.spark_ready_file.unlink(missing_ok=True)  # a stale one (a killed stack's) would read as warm
        self._spawn(SPARK_SERVER, [sys.executable, "-m", "txnwatch", "spark-server",
                                   "--port", str(self.la.spark_port), "--ready-file", str(self.spark_ready_file)])
        for name in SERVICES:
            self._spawn(name, [self.la.airflow_executable(), name])

    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = open(self.log_dir / f"{name}.log", "ab")
        kwargs = {"process_group": 0 if self.pgid is None else self.pgid}
        proc = subprocess.Popen(cmd, env=self.la.env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, **kwargs)
        log.close()
        if self.pgid is None:
            self.pgid = proc.pid
        self.procs[name] = proc

    def wait_spark(self, timeout: float = 300.0) -> dict:
        """Wait until the standing Spark is warm; what its ready file says (address, seconds to warm)."""
        from txnwatch.local.spark_server import wait_until_warm

        return wait_until_warm(self.spark_ready_file, self.procs[SPARK_SERVER],
                               self.log_dir / f"{SPARK_SERVER}.log", timeout)

    def dead(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.poll() is not None]

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM the whole group (services and every child they spawned), SIGKILL what is left.

        A stop signal arriving meanwhile does not cut this short (see `stop_on_signals`)."""
        global _stopping
        _stopping += 1
        try:
            self._stop(grace)
        finally:
            _stopping -= 1

    def _stop(self, grace: float) -> None:
        if self.pgid is None:
            return
        try:
            os.killpg(self.pgid, signal.SIGTERM)
        except ProcessLookupError:
            self.pgid = None
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            for p in self.procs.values():
                p.poll()
            if not _group_alive(self.pgid):
                break
            time.sleep(0.3)
        if _group_alive(self.pgid):
            try:
                os.killpg(self.pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in self.procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self.pgid = None

    def __enter__(self) -> AirflowStack:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class StopRequested(BaseException):
    """Raised in the main thread by SIGINT, SIGTERM or SIGHUP (a BaseException, like KeyboardInterrupt,
    so no `except Exception` on the way swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_stopping = 0  # > 0 while a stack is being stopped: a stop signal then has nothing left to ask for


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGINT (Ctrl-C), SIGTERM (service managers, `timeout`, `kill`) and SIGHUP (a closed terminal)
    into one `StopRequested`, so the caller's `finally` stops what it started.

    Only the first signal raises, and none while a stack is being stopped: a signal during the clean-up
    is ignored instead of cutting it short (the group is SIGKILLed after its grace period anyway).
    """
    raised = False

    def handler(signum, _frame):
        nonlocal raised
        if not raised and not _stopping:
            raised = True
            raise StopRequested(signum)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def exit_code(stop: StopRequested) -> int:
    """The shell's convention for a process ended by a signal: 128 + its number."""
    return 128 + stop.signum


def port_free(port: int) -> bool:
    """Whether nothing listens on `port` of the loopback address (this process could bind it)."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def main() -> int:
    """`make airflow-up`: the local Airflow in the foreground for the UI flow until SIGINT (Ctrl-C),
    SIGTERM or SIGHUP, each of which stops every process it started."""
    from txnwatch.airflow.airflow_api import AirflowAPI
    from txnwatch.airflow.settings import X_DAG_ID, Y_DAG_ID
    from txnwatch.core.errors import TxnwatchError
    from txnwatch.local.airflow_home import ADMIN_USER, local_airflow

    with stop_on_signals():
        try:
            la = local_airflow()
            stack = AirflowStack(la, la.home / "logs" / "services")
            stack.migrate(say=lambda msg: print(msg, flush=True))
        except StopRequested as stop:
            return exit_code(stop)
        except TxnwatchError as e:
            print(f"error: {e}", flush=True)
            return 1
        try:
            stack.start()
            AirflowAPI(la.api_url, ADMIN_USER, la.admin_password()).wait_ready([X_DAG_ID, Y_DAG_ID])
            spark = stack.wait_spark()
            print(f"Airflow UI: {la.api_url}  user {ADMIN_USER}, password in {la.password_file}\n"
                  f"Y's standing Spark: {spark['remote']} (warm)\n"
                  f"service logs: {stack.log_dir}\nCtrl-C (or SIGTERM, SIGHUP) stops every process of the stack.",
                  flush=True)
            while not stack.dead():
                time.sleep(1)
            print(f"a service stopped: {stack.dead()} (see {stack.log_dir})", flush=True)
            return 1
        except StopRequested as stop:
            print(f"{stop}: stopping", flush=True)
            return 0 if stop.signum == signal.SIGINT else exit_code(stop)
        except TxnwatchError as e:
            print(f"error: {e} (service logs: {stack.log_dir})", flush=True)
            return 1
        finally:
            print("stopping Airflow ...", flush=True)
            stack.stop()
            print("every Airflow process stopped", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
