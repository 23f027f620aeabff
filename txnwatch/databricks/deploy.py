"""`txnwatch databricks build|deploy`: the release wheel of this code, uploaded with the official databricks-sdk.

`deploy` builds the wheel (version `<package version>+h<content hash>`, see release.py), then uploads it and
the entry script into `<artifacts root>/txnwatch-<version>/` through the Files API (Unity Catalog volume,
`/Volumes/...`) or the Workspace API (workspace files, `/Workspace/...`), and writes `release.json` last:
a release folder with its manifest is complete. Deploying the same code again rewrites the same folder;
other code goes to another folder, so runs already pinned to a release keep what they run.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from txnwatch.core.errors import TxnwatchError, first_line
from txnwatch.databricks.config import DETECT_ENTRY_SCRIPT, REPO_ROOT, databricks_config
from txnwatch.databricks.release import (
    ENTRY_SCRIPT_NAME,
    Release,
    current_release,
    library_files,
)

# setuptools' PEP 517 backend, run in the staging folder (setuptools is pinned in requirements.txt).
_BUILD = "import sys, setuptools.build_meta as b; print(b.build_wheel(sys.argv[1]))"


def build_wheel(release: Release, out_dir: Path) -> Path:
    """Build the release wheel from the library files only, into `out_dir`; returns its path."""
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="txnwatch-wheel-") as tmp:
        stage = Path(tmp)
        for name, path in library_files():
            (stage / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, stage / name)
        pyproject = (REPO_ROOT / "pyproject.toml").read_text()
        pyproject, n = re.subn(r'(?m)^version = "[^"]*"$', f'version = "{release.version}"', pyproject, count=1)
        if n != 1:
            raise TxnwatchError("pyproject.toml has no `version = \"...\"` line to stamp the release version on")
        (stage / "pyproject.toml").write_text(pyproject)
        shutil.copyfile(REPO_ROOT / "README.md", stage / "README.md")
        out = subprocess.run([sys.executable, "-c", _BUILD, str(out_dir)], cwd=stage, capture_output=True,
                             text=True, timeout=300)
        if out.returncode != 0:
            tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
            raise TxnwatchError(f"building the wheel failed: {tail}")
    wheel = out_dir / release.wheel_name
    if not wheel.exists():
        raise TxnwatchError(f"the build did not produce {release.wheel_name} (got {out.stdout.strip()})")
    return wheel


class _Folder:
    """Files under one artifacts root, through the API Databricks serves that kind of path with."""

    def __init__(self, client: Any, root: str):
        self.client = client
        if root.startswith("/Volumes/") and len(root.strip("/").split("/")) >= 4:
            self.kind = "volume"
        elif root.startswith("/Workspace/"):
            self.kind = "workspace"
        else:
            raise TxnwatchError(f"artifacts root {root} must be a Unity Catalog volume path "
                                "(/Volumes/<catalog>/<schema>/<volume>/...) or a workspace folder (/Workspace/...)")

    @staticmethod
    def _workspace_path(path: str) -> str:
        return path[len("/Workspace"):]  # the Workspace API names /Workspace/Shared/x as /Shared/x

    def mkdirs(self, folder: str) -> None:
        if self.kind == "volume":
            self.client.files.create_directory(folder)
        else:
            self.client.workspace.mkdirs(self._workspace_path(folder))

    def upload(self, path: str, data: bytes) -> None:
        if self.kind == "volume":
            self.client.files.upload(path, io.BytesIO(data), overwrite=True)
        else:
            from databricks.sdk.service.workspace import ImportFormat

            # AUTO keeps a .py without the notebook header a plain workspace file, as spark_python_task needs.
            self.client.workspace.upload(self._workspace_path(path), data, format=ImportFormat.AUTO,
                                         overwrite=True)

    def exists(self, path: str) -> bool:
        from databricks.sdk.errors import NotFound

        try:
            if self.kind == "volume":
                self.client.files.get_metadata(path)
            else:
                self.client.workspace.get_status(self._workspace_path(path))
        except NotFound:
            return False
        return True


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def deploy_release(client: Any, root: str, release: Release, wheel: Path) -> dict:
    """Upload the wheel and the entry script of `release`, then its manifest; returns the manifest."""
    folder = _Folder(client, root)
    wheel_bytes, script_bytes = wheel.read_bytes(), DETECT_ENTRY_SCRIPT.read_bytes()
    folder.mkdirs(release.folder(root))
    folder.upload(release.wheel_path(root), wheel_bytes)
    folder.upload(release.entry_script_path(root), script_bytes)
    manifest = {"version": release.version, "wheel": release.wheel_path(root),
                "wheel_sha256": _sha256(wheel_bytes), "entry_script": release.entry_script_path(root),
                "entry_script_sha256": _sha256(script_bytes),
                "deployed_at": datetime.now(UTC).isoformat(timespec="seconds")}
    folder.upload(release.manifest_path(root), json.dumps(manifest, indent=2).encode())
    return manifest


def release_deployed(client: Any, root: str, release: Release) -> bool:
    """Whether `release` is completely deployed under `root` (its manifest is written last)."""
    return _Folder(client, root).exists(release.manifest_path(root))


def _databricks_call(what: str, fn, *args, **kwargs):
    """Run an SDK call, turning its errors (auth, permission, missing volume) into one line."""
    from databricks.sdk.errors import DatabricksError

    try:
        return fn(*args, **kwargs)
    except (DatabricksError, ValueError) as e:
        raise TxnwatchError(f"{what}: {first_line(e, 300)}") from None


def command(args) -> int:
    release = current_release()
    if args.databricks_command == "build":
        wheel = build_wheel(release, Path(args.out))
        print(wheel)
        return 0
    from databricks.sdk import WorkspaceClient

    root = args.artifacts or databricks_config().artifacts_root
    _Folder(None, root)  # a bad root fails before the build
    with tempfile.TemporaryDirectory(prefix="txnwatch-dist-") as tmp:
        wheel = build_wheel(release, Path(tmp))
        client = _databricks_call("Databricks authentication", WorkspaceClient,
                                  **({"profile": args.profile} if args.profile else {}))
        manifest = _databricks_call(f"uploading to {root}", deploy_release, client, root, release, wheel)
    print(f"deployed txnwatch {release.version}")
    print(f"  wheel        {manifest['wheel']}")
    print(f"  entry script {manifest['entry_script']}")
    print(f"The mechanism_y_detect DAG submits this release while it runs the same code "
          f"(artifacts root {root}; {ENTRY_SCRIPT_NAME} and the wheel are pinned by version).")
    return 0
