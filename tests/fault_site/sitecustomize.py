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
    def find_spec(self, name, path=None, target=None):
        if name != _TARGET:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        loader = spec.loader
        original = loader.exec_module

        def exec_module(module):
            original(module)
            root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
            if root not in sys.path:
                sys.path.append(root)
            from tests.fault_points import die_at

            die_at(os.environ["TXNWATCH_TEST_FAULT"])

        loader.exec_module = exec_module
        return spec


if os.environ.get("TXNWATCH_TEST_FAULT"):
    sys.meta_path.insert(0, _ArmAfterImport())
