"""The file side of the Databricks stand-in: the Files API (Unity Catalog volumes, /api/2.0/fs/) and the
Workspace API (workspace files, /api/2.0/workspace/) over a folder on disk, as the databricks-sdk calls them.

Paths are Databricks paths: `/Volumes/<catalog>/<schema>/<volume>/...` and `/Workspace/...` (the Workspace
API names the latter without the `/Workspace` prefix). A volume must exist (`volumes`) before files go in,
as on Unity Catalog; a workspace import needs its parent folder, as Databricks does. `local_path` gives a
job path's file on disk, for the Jobs stand-in that runs what was uploaded.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import json
from email.utils import formatdate
from pathlib import Path
from urllib.parse import parse_qs, unquote

Reply = tuple[int, dict[str, str], bytes]


def _json(code: int, body: dict) -> Reply:
    return code, {"Content-Type": "application/json"}, json.dumps(body).encode()


def _error(code: int, error_code: str, message: str) -> Reply:
    return _json(code, {"error_code": error_code, "message": message})


class WorkspaceFiles:
    def __init__(self, root: Path, volumes: set[str]):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.volumes = {v.rstrip("/") for v in volumes}
        for folder in ("Workspace/Shared", "Workspace/Users"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)

    # ---- paths -------------------------------------------------------------------------------------
    def local_path(self, path: str) -> Path | None:
        """The file on disk behind a job's path (`/Volumes/...`, `/Workspace/...`, `dbfs:/Volumes/...`)."""
        if path.startswith("dbfs:/Volumes/"):
            path = path[len("dbfs:"):]
        if not path.startswith(("/Volumes/", "/Workspace/")) or ".." in path.split("/"):
            return None
        return self.root / path.lstrip("/")

    def _volume_of(self, path: str) -> str | None:
        parts = path.strip("/").split("/")
        return "/" + "/".join(parts[:4]) if len(parts) >= 4 and parts[0] == "Volumes" else None

    # ---- dispatch ----------------------------------------------------------------------------------
    def handles(self, path: str) -> bool:
        return path.startswith(("/api/2.0/fs/", "/api/2.0/workspace/"))

    def dispatch(self, method: str, url_path: str, query: str, body: bytes, content_type: str) -> Reply:
        if url_path.startswith("/api/2.0/fs/files/"):
            return self._file(method, unquote(url_path[len("/api/2.0/fs/files"):]), parse_qs(query), body)
        if url_path.startswith("/api/2.0/fs/directories/"):
            return self._directory(method, unquote(url_path[len("/api/2.0/fs/directories"):]))
        if url_path.startswith("/api/2.0/workspace/"):
            return self._workspace(method, url_path[len("/api/2.0/workspace/"):], query, body, content_type)
        return _error(404, "ENDPOINT_NOT_FOUND", url_path)

    # ---- Files API -----------------------------------------------------------------------------------
    def _file(self, method: str, path: str, query: dict, body: bytes) -> Reply:
        volume = self._volume_of(path)
        if volume is None:
            return _error(400, "INVALID_PARAMETER_VALUE", f"{path} is not a path in a Unity Catalog volume")
        if volume not in self.volumes:
            return _error(404, "NOT_FOUND", f"Volume {volume[len('/Volumes/'):].replace('/', '.')} does not exist")
        local = self.local_path(path)
        if method == "PUT":
            if local.is_dir():
                return _error(409, "ALREADY_EXISTS", f"{path} is a directory")
            if local.exists() and query.get("overwrite", ["true"])[0].lower() == "false":
                return _error(409, "ALREADY_EXISTS", f"The file being created already exists: {path}")
            local.parent.mkdir(parents=True, exist_ok=True)  # the Files API creates missing parents
            tmp = local.with_name(f".{local.name}.upload")
            tmp.write_bytes(body)
            tmp.replace(local)  # an upload appears whole: a job reading the volume never sees half a file
            return 204, {}, b""
        if not local.is_file():
            return _error(404, "NOT_FOUND", f"The file {path} does not exist")
        if method == "DELETE":
            local.unlink()
            return 204, {}, b""
        stat = local.stat()
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(stat.st_size),
                   "Last-Modified": formatdate(stat.st_mtime, usegmt=True)}
        if method == "HEAD":
            return 200, headers, b""
        if method == "GET":
            return 200, headers, local.read_bytes()
        return _error(405, "METHOD_NOT_ALLOWED", method)

    def _directory(self, method: str, path: str) -> Reply:
        volume = self._volume_of(path) or self._volume_of(path + "/x")
        if volume is None:
            return _error(400, "INVALID_PARAMETER_VALUE", f"{path} is not a path in a Unity Catalog volume")
        if volume not in self.volumes:
            return _error(404, "NOT_FOUND", f"Volume {volume[len('/Volumes/'):].replace('/', '.')} does not exist")
        local = self.local_path(path.rstrip("/") + "/")
        if method == "PUT":
            if local.is_file():
                return _error(409, "ALREADY_EXISTS", f"{path} is a file")
            local.mkdir(parents=True, exist_ok=True)
            return 204, {}, b""
        if not local.is_dir():
            return _error(404, "NOT_FOUND", f"The directory {path} does not exist")
        if method == "HEAD":
            return 200, {}, b""
        if method == "GET":
            contents = [{"path": f"{path.rstrip('/')}/{p.name}", "name": p.name, "is_directory": p.is_dir(),
                         **({} if p.is_dir() else {"file_size": p.stat().st_size})} for p in sorted(local.iterdir())
                        if not p.name.startswith(".")]
            return _json(200, {"contents": contents})
        return _error(405, "METHOD_NOT_ALLOWED", method)

    # ---- Workspace API -------------------------------------------------------------------------------
    def _workspace(self, method: str, op: str, query: str, body: bytes, content_type: str) -> Reply:
        if (method, op) == ("GET", "get-status"):
            path = parse_qs(query).get("path", [""])[0]
            local = self.local_path("/Workspace" + path)
            if local is None or not local.exists():
                return _error(404, "RESOURCE_DOES_NOT_EXIST", f"Path ({path}) doesn't exist.")
            info = {"path": path, "object_type": "DIRECTORY" if local.is_dir() else "FILE"}
            if local.is_file():
                info["size"] = local.stat().st_size
            return _json(200, info)
        if (method, op) == ("POST", "mkdirs"):
            path = json.loads(body or b"{}").get("path", "")
            local = self.local_path("/Workspace" + path)
            if local is None:
                return _error(400, "INVALID_PARAMETER_VALUE", f"Path ({path}) is not valid.")
            if local.is_file():
                return _error(400, "RESOURCE_ALREADY_EXISTS", f"Path ({path}) already exists as a file.")
            local.mkdir(parents=True, exist_ok=True)
            return _json(200, {})
        if (method, op) == ("POST", "import"):
            fields = self._import_fields(body, content_type)
            path = fields.get("path", b"").decode()
            local = self.local_path("/Workspace" + path)
            if local is None:
                return _error(400, "INVALID_PARAMETER_VALUE", f"Path ({path}) is not valid.")
            if not local.parent.is_dir():
                return _error(404, "RESOURCE_DOES_NOT_EXIST", f"The parent folder of ({path}) does not exist.")
            if local.exists() and fields.get("overwrite", b"false").decode().lower() != "true":
                return _error(400, "RESOURCE_ALREADY_EXISTS", f"Path ({path}) already exists.")
            if fields.get("format", b"SOURCE").decode() not in ("AUTO", "RAW"):
                # SOURCE imports a notebook, which spark_python_task and libraries cannot use.
                return _error(400, "INVALID_PARAMETER_VALUE", "Only AUTO or RAW import a workspace file")
            local.write_bytes(fields.get("content", b""))
            return _json(200, {})
        return _error(404, "ENDPOINT_NOT_FOUND", f"{method} workspace/{op}")

    @staticmethod
    def _import_fields(body: bytes, content_type: str) -> dict[str, bytes]:
        """The form of workspace/import: multipart (what the SDK's upload sends) or JSON with base64 content."""
        if content_type.startswith("multipart/form-data"):
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
            return {part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
                    for part in message.iter_parts()}
        data = json.loads(body or b"{}")
        fields = {k: str(v).encode() for k, v in data.items() if k != "content"}
        fields["content"] = base64.b64decode(data.get("content", ""))
        return fields
