"""Named fault points in Mechanism Y, injected from the tests: the library has no hook for them.

Each point wraps the library function it sits beside, so a test can act exactly there (cut a proxy, or die
as if killed -9):

- `after_spark_read`: the batch's chunks are read and collected (`batch.read_deltas` returned);
- `after_rules`: the rules ran, inside the batch's transaction (`LiveState.apply_batch` returned);
- `before_commit`: everything is written, the transaction is not yet committed (`state.commit_batch` returned);
- `after_commit`: the batch committed (`Batches.run` returned having advanced to the batch's last chunk);
- `before_file` / `after_file`: around the PUT of a detection file (`Store.put` of `detections_*`).

In-process tests arm a point with `arm(point, action, monkeypatch.setattr)`. A test that runs `txnwatch
detect` as a subprocess sets TXNWATCH_TEST_FAULT=<point>:<n> and puts `tests/fault_site` on PYTHONPATH: its
sitecustomize arms the point to `os._exit(137)` on the n-th visit (see `die_at`).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable

POINTS = ("after_spark_read", "after_rules", "before_commit", "after_commit", "before_file", "after_file")
ENV = "TXNWATCH_TEST_FAULT"
SITE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fault_site")


def _after(func: Callable, action: Callable[[], None], when: Callable[..., bool] = lambda *a, **k: True):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        result = func(*args, **kwargs)
        if when(*args, **kwargs):
            action()
        return result

    return wrapper


def _detection_file(_store, key: str, *_args, **_kwargs) -> bool:
    return key.startswith("detections_")


def _put(func: Callable, action: Callable[[], None], before: bool):
    @functools.wraps(func)
    def wrapper(self, key, *args, **kwargs):
        if before and _detection_file(self, key):
            action()
        result = func(self, key, *args, **kwargs)
        if not before and _detection_file(self, key):
            action()
        return result

    return wrapper


def arm(point: str, action: Callable[[], None], setattr_: Callable = setattr) -> None:
    """Run `action` each time Y reaches `point`. `setattr_` does the patching (pytest's monkeypatch.setattr
    undoes it after the test; the plain `setattr` lasts for the process)."""
    from txnwatch.core import storage
    from txnwatch.detect import batch, state
    from txnwatch.detect.live_state import LiveState

    if point == "after_spark_read":
        setattr_(batch, "read_deltas", _after(batch.read_deltas, action))
    elif point == "after_rules":
        setattr_(LiveState, "apply_batch", _after(LiveState.apply_batch, action))
    elif point == "before_commit":
        setattr_(state, "commit_batch", _after(state.commit_batch, action))
    elif point == "after_commit":
        committed = lambda _self, chunks, summary, **_: summary.last_chunk == chunks[-1]  # noqa: E731
        setattr_(batch.Batches, "run", _after(batch.Batches.run, action, committed))
    elif point in ("before_file", "after_file"):
        for cls in (storage.LocalStore, storage.S3Store):
            setattr_(cls, "put", _put(cls.put, action, before=point == "before_file"))
    else:
        raise ValueError(f"unknown fault point {point!r}; known: {', '.join(POINTS)}")


def die_at(spec: str) -> None:
    """`point:n`: die with exit status 137 (as if killed -9) the n-th time the process reaches the point."""
    point, _, nth = spec.partition(":")
    visits = [0]
    n = int(nth or 1)

    def die() -> None:
        visits[0] += 1
        if visits[0] == n:
            sys.stderr.write(f"txnwatch: injected fault at {point} (visit {n})\n")
            sys.stderr.flush()
            os._exit(137)

    arm(point, die)


def subprocess_env(env: dict[str, str], spec: str | None) -> dict[str, str]:
    """`env` for a `txnwatch detect` subprocess that dies at `spec` (None: no fault)."""
    env = {k: v for k, v in env.items() if k != ENV}
    if spec:
        env[ENV] = spec
        env["PYTHONPATH"] = os.pathsep.join(p for p in (SITE_DIR, env.get("PYTHONPATH")) if p)
    return env
