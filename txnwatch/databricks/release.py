"""A release of the Databricks library: which files ship, the version that names them, where they live.

A release is versioned by the package version plus a hash of the shipped content
(`0.1.0+h3f9a0c12b4de`): the wheel, its folder and the entry script next to it all carry it. The Y DAG
computes the same version from the code it runs with, so a DAG run submits exactly the library built
from that code, and `txnwatch databricks deploy` of other code can never change what it runs.

The wheel holds the library Y needs on a cluster (`LIBRARY`): the shared core, Y, the CLI (which offers
only the commands whose modules it holds) and the DDL. X, the read side, the generator, the Airflow and
local tooling and this deploy tooling stay out.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

import txnwatch
from txnwatch.databricks.config import DETECT_ENTRY_SCRIPT, REPO_ROOT

PACKAGE_DIR = Path(txnwatch.__file__).resolve().parent
# What Y needs on a cluster: the shared core, Y itself, the CLI and the DDL. Not X, the read side, the
# generator, the Airflow and local tooling, nor this deploy tooling (the CLI offers only what is held).
LIBRARY = ("__init__.py", "__main__.py", "cli.py", "core", "detect", "sql")
# Developer pieces inside those: the embedded PostgreSQL (a job is always given its database) and the
# read side's SQL.
LEFT_OUT = ("core/embedded_pg.py", "sql/records.sql")
SHIPPED_SUFFIXES = (".py", ".sql")
ENTRY_SCRIPT_NAME = DETECT_ENTRY_SCRIPT.name
MANIFEST_NAME = "release.json"


def library_files() -> list[tuple[str, Path]]:
    """(name inside the wheel, file) of every library file, sorted by name."""
    files = []
    # followlinks: txnwatch/sql is a link to the repo's sql/ folder, and the DDL must ship (db.init_schema).
    for folder, dirs, names in os.walk(PACKAGE_DIR, followlinks=True):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in names:
            path = Path(folder) / name
            rel = path.relative_to(PACKAGE_DIR)
            if path.suffix in SHIPPED_SUFFIXES and rel.parts[0] in LIBRARY and rel.as_posix() not in LEFT_OUT:
                files.append((f"txnwatch/{rel.as_posix()}", path))
    return sorted(files)


def content_hash() -> str:
    """12 hex digits of sha256 over the library files and the entry script (names and bytes)."""
    digest = hashlib.sha256()
    for name, path in [*library_files(), (f"spark_jobs/{ENTRY_SCRIPT_NAME}", DETECT_ENTRY_SCRIPT)]:
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def package_version() -> str:
    pyproject = REPO_ROOT / "pyproject.toml"
    if pyproject.exists():
        return tomllib.loads(pyproject.read_text())["project"]["version"]
    from importlib.metadata import version

    return version("txnwatch")


@dataclass(frozen=True)
class Release:
    version: str  # PEP 440 with a local label: 0.1.0+h3f9a0c12b4de

    @property
    def folder_name(self) -> str:
        return f"txnwatch-{self.version}"

    @property
    def wheel_name(self) -> str:
        return f"txnwatch-{self.version}-py3-none-any.whl"

    def folder(self, root: str) -> str:
        return f"{root.rstrip('/')}/{self.folder_name}"

    def wheel_path(self, root: str) -> str:
        return f"{self.folder(root)}/{self.wheel_name}"

    def entry_script_path(self, root: str) -> str:
        return f"{self.folder(root)}/{ENTRY_SCRIPT_NAME}"

    def manifest_path(self, root: str) -> str:
        return f"{self.folder(root)}/{MANIFEST_NAME}"


def current_release() -> Release:
    """The release of the code this process runs (the 'h' keeps an all-digit hash a label, not a number)."""
    return Release(f"{package_version()}+h{content_hash()}")
