"""Session-wide Triton servers, started on first use and stopped at session end."""

from __future__ import annotations

from typing import Iterator

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
