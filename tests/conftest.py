"""Session-wide Triton servers, started on first use and stopped at session end.

``TRITONFAST_SANITIZED_CORE=<path to an ASan/UBSan build of _core>`` runs the
tests over that extension instead of the installed one (``.ci/run`` builds it
and preloads the ASan runtime: see ``tests/sanitize.sh``).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Iterator


def _load_sanitized_core(path: str) -> None:
    spec = importlib.util.spec_from_file_location("tritonfast._core", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"TRITONFAST_SANITIZED_CORE={path} is not an extension module")
    module = importlib.util.module_from_spec(spec)
    sys.modules["tritonfast._core"] = module  # `from tritonfast import _core` finds it here
    spec.loader.exec_module(module)


if os.environ.get("TRITONFAST_SANITIZED_CORE"):
    _load_sanitized_core(os.environ["TRITONFAST_SANITIZED_CORE"])

import pytest

from tests.triton_server import PyTritonServer, TritonServer, write_model_repository


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """The bundled tritonserver on the raw model repository of ``tests.triton_server.MODELS``."""
    root = tmp_path_factory.mktemp("triton_server")
    repository = write_model_repository(root / "models")
    with TritonServer(repository, work_dir=root / "server") as server:
        yield server


@pytest.fixture(scope="session")
def pytriton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PyTritonServer]:
    """``tests/pytriton_app.py``: PyTriton's AddSub, Identity and ParamsAndHeaders models."""
    with PyTritonServer(work_dir=tmp_path_factory.mktemp("pytriton_server")) as server:
        yield server


def pytest_report_header(config: pytest.Config) -> str:
    from tritonfast import _core

    return f"tritonfast._core: {_core.__file__}"
