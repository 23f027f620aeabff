"""A real HTTP server in a thread: serves files by path, and stands in for Google Drive's `/uc?id=`."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse


@contextmanager
def serve(files: dict[str, Path], drive: dict[str, Path] | None = None) -> Iterator[tuple[str, list[str]]]:
    """Yield (base URL, request log). `files` maps URL paths to files; `drive` maps Drive ids to files."""
    requests: list[str] = []
    drive = drive or {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            requests.append(self.path)
            url = urlparse(self.path)
            if url.path == "/uc":
                path = drive.get(parse_qs(url.query).get("id", [""])[0])
                name = path.name if path else ""
                disposition = f'attachment; filename="{name}"'
            else:
                path = files.get(url.path)
                disposition = None
            if path is None:
                self.send_error(404, "Not Found")
                return
            body = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "text/csv")
            self.send_header("Content-Length", str(len(body)))
            if disposition:
                self.send_header("Content-Disposition", disposition)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()
