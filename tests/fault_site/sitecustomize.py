"""Arms the fault point TXNWATCH_TEST_FAULT names (tests/fault_points.py) in a `txnwatch detect` subprocess.

Python imports this at start-up from PYTHONPATH. The point is armed right after `txnwatch.detect.job` is
imported, so processes that never import it (Spark's Python workers) are untouched.
"""

import importlib.abc
import importlib.util
import os
import sys

_TARGET = "txnwatch.detect.job"


class _ArmAfterImport(importlib.abc.MetaPathFinder):
    def __init__(self) -> None:
        self._looking = False  # find_spec below asks the other finders: not this one again

    def find_spec(self, name, path=None, target=None):
        if name != _TARGET or self._looking:
            return None
        self._looking = True
        try:
            spec = importlib.util.find_spec(name)  # the CLI only looks (is the module there?), or imports it
        finally:
            self._looking = False
        loader = spec.loader
        original = loader.exec_module

        def exec_module(module):
            original(module)
            if self in sys.meta_path:  # armed once, by the import that runs the module
                sys.meta_path.remove(self)
            root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
            if root not in sys.path:
                sys.path.append(root)
            from tests.fault_points import die_at

            die_at(os.environ["TXNWATCH_TEST_FAULT"])

        loader.exec_module = exec_module
        return spec


if os.environ.get("TXNWATCH_TEST_FAULT"):
    sys.meta_path.insert(0, _ArmAfterImport())
