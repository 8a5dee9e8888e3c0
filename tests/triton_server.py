"""Real Triton Inference Server processes for the tests and benchmarks.

Both servers run the ``tritonserver`` binary bundled in the ``nvidia-pytriton``
wheel, so neither a container nor a system-wide Triton install is needed. The
machinery (model repository writer, environment, backend directory, process
management) is ``tritonfast._example_server``'s, which ``tritonfast
example-server`` runs too; this module adds the tests' models and PyTriton:

* :class:`TritonServer` runs the bare binary on a raw Python-backend model
  repository; :func:`write_model_repository` writes one holding the models
  listed in :data:`MODELS`.
* :class:`PyTritonServer` runs ``tests/pytriton_app.py``, which binds models
  with PyTriton (``Triton.bind``); it is the reference for PyTriton parity. Its
  restricted endpoints (statistics, repository, shared memory, ...) take
  :attr:`PyTritonServer.access_token`.

Each server runs in its own process group on free loopback ports, is ready
(server and every model) when its constructor returns, and ``stop()`` (also
run by ``with`` and at interpreter exit) shuts it down in order, then kills
whatever is left of its process tree, so no ``tritonserver`` or
``triton_python_backend_stub`` process and no shared memory outlives it.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import Iterable

from tritonfast._example_server import (  # noqa: F401 - re-exported for the tests and benchmarks
    LOOPBACK,
    READY_TIMEOUT_S,
    SHM_DIR,
    ManagedServer,
    ModelSpec,
    ServerError,
    TensorSpec,
    TritonServer,
    build_backend_directory,
    child_environment,
    free_ports,
    identity,
    process_family,
    tritonserver_binary,
)
from tritonfast._example_server import write_model_repository as _write_model_repository

# PyTriton stops its tritonserver before unloading its models, so there the
# exit timeout must cover idle connections *and* unloading (~3 s for 3 models).
PYTRITON_EXIT_TIMEOUT_S = 8
PYTRITON_HEADER_FORWARD_PATTERN = "header.*"  # PyTriton's use_parameters_and_headers example

RAISES_MESSAGE = "intentional failure in model 'raises'"
PYTRITON_APP = Path(__file__).with_name("pytriton_app.py")
PYTRITON_MODEL_NAMES = ("AddSub", "Identity", "ParamsAndHeaders")  # bound by pytriton_app.py


# =============================================================================
# Model repository
# =============================================================================

# Datatypes with an identity_<datatype lowercase> model. BF16 works because the
# identity passes tensors through DLPack; the model never needs a numpy bf16.
IDENTITY_DATATYPES = (
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "BF16", "FP32", "FP64", "BYTES",
)  # fmt: skip


def _model_specs() -> tuple[ModelSpec, ...]:
    fp32_in, fp32_out = TensorSpec("INPUT0", "FP32"), TensorSpec("OUTPUT0", "FP32")
    return (
        *(identity(f"identity_{dt.lower()}", dt) for dt in IDENTITY_DATATYPES),
        identity("identity_fp32_cached", "FP32", response_cache=True),
        identity("identity_bytes_cached", "BYTES", response_cache=True),
        identity("batch2", "FP32", max_batch_size=2),
        identity("nobatch", "FP32", max_batch_size=0),
        ModelSpec(
            "add_sub", "add_sub", 16,
            (fp32_in, TensorSpec("INPUT1", "FP32")),
            (fp32_out, TensorSpec("OUTPUT1", "FP32")),
        ),
        ModelSpec(
            "slow", "sleep_echo", 0,
            (TensorSpec("SECONDS", "FP32", (1,)),), (TensorSpec("OUTPUT0", "FP32", (1,)),),
            instance_count=4,  # lets several slow requests run at once
        ),
        ModelSpec("raises", "fail", 16, (fp32_in,), (fp32_out,)),
        ModelSpec("tile4", "tile4", 16, (fp32_in,), (fp32_out,)),  # 4x the input's bytes out
        ModelSpec("echo_params", "echo_params", 0, (fp32_in,), (TensorSpec("PARAMS", "BYTES", (1,)),)),
        # OUTPUT0 holds LENGTH[0] elements whatever INPUT0's shape: an output that
        # grows while the input shapes stay the same (generative, detection models).
        ModelSpec("grow", "grow", 0, (fp32_in, TensorSpec("LENGTH", "INT32", (1,))), (fp32_out,)),
    )  # fmt: skip


MODELS: tuple[ModelSpec, ...] = _model_specs()
MODELS_BY_NAME: dict[str, ModelSpec] = {spec.name: spec for spec in MODELS}

# The tests' behaviours besides tritonfast._example_server.BEHAVIOURS (identity_dlpack,
# identity_numpy, add_sub): bodies of ``TritonPythonModel._respond(self, request)``.
TEST_BEHAVIOURS = {
    "tile4": """
        return _response(pb_utils.Tensor("OUTPUT0", np.tile(_input(request, "INPUT0").as_numpy(), 4)))
    """,
    "sleep_echo": """
        seconds = _input(request, "SECONDS").as_numpy()
        time.sleep(float(seconds[0]))
        return _response(pb_utils.Tensor("OUTPUT0", seconds))
    """,
    "fail": f"""
        return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError({RAISES_MESSAGE!r}))
    """,
    "grow": """
        length = int(_input(request, "LENGTH").as_numpy()[0])
        return _response(pb_utils.Tensor("OUTPUT0", np.full(length, 1.5, np.float32)))
    """,
    "echo_params": """
        params = np.array([request.parameters().encode("utf-8")], dtype=np.object_)
        return _response(pb_utils.Tensor("PARAMS", params))
    """,
}


def write_model_repository(path: str | os.PathLike, models: Iterable[ModelSpec] = MODELS) -> Path:
    """Write a Python-backend model repository (``<model>/config.pbtxt``, ``<model>/1/model.py``)."""
    return _write_model_repository(path, models, TEST_BEHAVIOURS)


# =============================================================================
# PyTriton
# =============================================================================


class PyTritonServer(ManagedServer):
    """``tests/pytriton_app.py`` (models bound with PyTriton); ready when constructed.

    PyTriton starts its own tritonserver child inside this process group, so
    :meth:`stop` takes it down too. ``work_dir`` receives the log and PyTriton's
    workspace. ``access_token`` opens PyTriton's restricted endpoints (its
    ``TritonSecurityConfig``; a fresh random one when omitted, as PyTriton does).
    """

    description = "PyTriton app"

    def __init__(
        self,
        *,
        work_dir: str | os.PathLike | None = None,
        ready_timeout_s: float = READY_TIMEOUT_S,
        access_token: str | None = None,
    ) -> None:
        self.access_token = secrets.token_urlsafe(16) if access_token is None else access_token
        super().__init__(work_dir, PYTRITON_MODEL_NAMES, ready_timeout_s)
        self._start()

    def _shm_prefix(self, pid: int) -> str:
        return f"pytrtion{pid}-"  # PyTriton's own naming (sic), from its Triton._shm_prefix()

    def _command(self) -> list[str]:
        return [
            sys.executable,
            str(PYTRITON_APP),
            f"--address={LOOPBACK}",
            f"--http-port={self.http_port}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-port={self.metrics_port}",
            f"--header-forward-pattern={PYTRITON_HEADER_FORWARD_PATTERN}",
            f"--exit-timeout-secs={PYTRITON_EXIT_TIMEOUT_S}",
            f"--workspace={self.work_dir / 'workspace'}",
            f"--access-token={self.access_token}",
        ]
