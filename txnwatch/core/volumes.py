"""Unity Catalog volumes as a store, through the Files API of the official databricks-sdk.

On Databricks every Unity Catalog compute sees volumes as local paths (`/Volumes/<catalog>/<schema>/
<volume>/...`), so a job there uses them as a local folder. Anywhere else (Mechanism X on an Airflow
worker, say) a volume path goes through the Files API (https://docs.databricks.com/api/workspace/files),
with the SDK's unified authentication (DATABRICKS_HOST and DATABRICKS_TOKEN, a profile, OAuth...). A file
upload is one PUT, so a chunk appears whole, as the landing contract requires.
"""

from __future__ import annotations

import io
import os
from typing import Any

from txnwatch.core.errors import TxnwatchError, first_line

PREFIXES = ("/Volumes/", "dbfs:/Volumes/")


def is_volume_path(url: str) -> bool:
    return url.startswith(PREFIXES)


def on_databricks() -> bool:
    """Databricks sets DATABRICKS_RUNTIME_VERSION on its compute, where volumes are local paths."""
    return bool(os.environ.get("DATABRICKS_RUNTIME_VERSION"))


def volume_root(url: str) -> str:
    """`/Volumes/<catalog>/<schema>/<volume>/<folder...>` without `dbfs:` or a trailing slash; refuses a path
    that is not inside a volume, in one line."""
    path = url[len("dbfs:"):] if url.startswith("dbfs:") else url
    parts = [p for p in path.split("/") if p]
    if len(parts) < 4 or ".." in parts:
        raise TxnwatchError(f"{url} is not a path in a Unity Catalog volume: use "
                            "/Volumes/<catalog>/<schema>/<volume>/<folder>")
    return "/" + "/".join(parts)


class VolumeStore:
    """A folder of a volume, through the Files API (off Databricks)."""

    def __init__(self, url: str, client: Any | None = None) -> None:
        self.root = volume_root(url)
        self._client = client

    @property
    def url(self) -> str:
        return self.root

    @property
    def client(self) -> Any:
        if self._client is None:
            from databricks.sdk import WorkspaceClient

            try:
                self._client = WorkspaceClient()
            except Exception as e:  # noqa: BLE001 - no credentials configured: one line
                raise TxnwatchError(f"cannot reach Databricks for {self.root}: {first_line(e, 300)}") from None
        return self._client

    def _path(self, key: str) -> str:
        return f"{self.root}/{key.lstrip('/')}"

    def put(self, key: str, data: bytes) -> None:
        self.client.files.upload(self._path(key), io.BytesIO(data), overwrite=True)

    def get(self, key: str) -> bytes:
        from databricks.sdk.errors import NotFound

        try:
            return self.client.files.download(self._path(key)).contents.read()
        except NotFound:
            raise TxnwatchError(f"{self.uri(key)} does not exist") from None

    def _metadata(self, key: str) -> Any | None:
        from databricks.sdk.errors import NotFound

        try:
            return self.client.files.get_metadata(self._path(key))
        except NotFound:
            return None

    def exists(self, key: str) -> bool:
        return self._metadata(key) is not None

    def delete(self, key: str) -> None:
        from databricks.sdk.errors import NotFound

        try:
            self.client.files.delete(self._path(key))
        except NotFound:
            pass

    def list(self, prefix: str = "") -> list[str]:
        from databricks.sdk.errors import NotFound

        out, folders = [], [self.root]
        while folders:
            folder = folders.pop()
            try:
                entries = list(self.client.files.list_directory_contents(folder))
            except NotFound:
                continue
            for entry in entries:
                rel = entry.path[len(self.root) + 1:]
                if entry.is_directory:
                    folders.append(entry.path)
                elif rel.startswith(prefix) and not entry.name.startswith("."):
                    out.append(rel)
        return sorted(out)

    def uri(self, key: str) -> str:
        return self._path(key)

    def local_path(self, key: str) -> str | None:
        return None

    def mtime(self, key: str) -> float | None:
        meta = self._metadata(key)
        if meta is None or not meta.last_modified:
            return None
        from email.utils import parsedate_to_datetime

        return parsedate_to_datetime(meta.last_modified).timestamp()
