"""tritonfast: a fast, dependable Python client for NVIDIA Triton Inference Server.

A drop-in for PyTriton's client: ``from tritonfast import ModelClient`` where
you had ``from pytriton.client import ModelClient``. The hot path (BYTES codec,
HTTP framing, transport) is C++ in ``tritonfast._core``.
"""

from tritonfast import exceptions, utils
from tritonfast._core import __version__
from tritonfast.asyncio_client import AsyncioModelClient
from tritonfast.client import ModelClient
from tritonfast.futures import FuturesModelClient
from tritonfast.model_config import TritonModelConfig

__all__ = [
    "AsyncioModelClient",
    "FuturesModelClient",
    "ModelClient",
    "TritonModelConfig",
    "__version__",
    "exceptions",
    "utils",
]
