"""Driver JVM options for a local Spark master: what makes Y ready sooner on two cores.

A cold local Spark spends seconds loading and verifying the classes of the JVM, Spark and Catalyst.
Class data sharing (CDS) cuts that: a dynamic archive of the classes a detection run loads, built once
per installation (`python -m txnwatch.detect.jvm_startup`, i.e. `make spark-cds`, which `make test` and
`make bench` depend on; run it once before `make demo` for a faster Y start there) and mapped by every
later JVM instead of parsing the same jars again (measured on 2 cores: the session starts in ≈4 s
instead of ≈6-10 s). It changes no result. The C1-only compiler (`-XX:TieredStopAtLevel=1`) was
measured too and left out: it starts faster but runs the steady per-chunk job ≈30% slower. A cluster
(Databricks) is not touched: its JVM is up before the job starts. `TXNWATCH_SPARK_JAVA_OPTS` replaces
these options (empty: none).
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

log = logging.getLogger("txnwatch.detect")

def archive_path() -> Path:
    """One archive per pyspark installation (its jars are the class path the archive is valid for)."""
    import pyspark

    from txnwatch.core.paths import local_dir

    where = hashlib.sha256(pyspark.__file__.encode()).hexdigest()[:12]
    return local_dir() / "spark-cds" / f"pyspark-{pyspark.__version__}-{where}.jsa"


def driver_java_options() -> str:
    if "TXNWATCH_SPARK_JAVA_OPTS" in os.environ:
        return os.environ["TXNWATCH_SPARK_JAVA_OPTS"]
    archive = archive_path()
    if not archive.exists():
        return ""
    # -Xshare:auto: a JVM whose class path does not match simply runs without the archive.
    return f"-XX:SharedArchiveFile={archive} -Xshare:auto -Xlog:cds=off -Xlog:cds+dynamic=off"


def build_archive() -> Path | None:
    """Run a representative detection start-up in a child JVM that dumps its classes at exit, then move
    the archive into place atomically (concurrent JVMs only ever see a complete file)."""
    target = archive_path()
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        partial = Path(tmp) / "archive.jsa"
        env = dict(os.environ, TXNWATCH_SPARK_JAVA_OPTS=f"-XX:ArchiveClassesAtExit={partial}")
        code = ("from txnwatch.detect.spark_session import get_spark; from txnwatch.detect.warmup import warm_up; "
                "s = get_spark(app_name='txnwatch-cds'); warm_up(s, rounds=1); s.stop()")
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        if done.returncode != 0 or not partial.exists():
            log.warning("no class data sharing archive (start-up stays slower): %s",
                        (done.stderr.strip().splitlines() or ["the JVM wrote none"])[-1])
            return None
        os.replace(partial, target)
    return target


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    built = build_archive()
    print(f"class data sharing archive: {built}" if built else "class data sharing archive: not available")
