"""`make compose-up` helper: the docker-compose env file with generated secrets (created once, mode 600)."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path


def write_env_file(path: Path) -> bool:
    """Write `path` unless it exists; True when written."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    values = {
        "AIRFLOW_UID": str(os.getuid()) if hasattr(os, "getuid") else "50000",
        "POSTGRES_PASSWORD": secrets.token_urlsafe(18),
        "MINIO_ROOT_USER": "txnwatch",
        "MINIO_ROOT_PASSWORD": secrets.token_urlsafe(18),
        "AIRFLOW_JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW_API_SECRET_KEY": secrets.token_urlsafe(32),
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.writelines(f"{k}={v}\n" for k, v in values.items())
    return True


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else ".local/compose.env")
    print(f"{'wrote' if write_env_file(target) else 'kept'} {target}")
