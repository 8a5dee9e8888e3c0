"""Benchmarks use the test-suite's Triton servers (see tests/conftest.py)."""

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # makes the ``tests`` package importable from bench/

from tests.conftest import pytriton_server, triton_server  # noqa: E402,F401 - re-exported fixtures
