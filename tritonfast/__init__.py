"""tritonfast: a fast, dependable Python client for NVIDIA Triton Inference Server.

A drop-in for PyTriton's client: ``from tritonfast import ModelClient`` where
you had ``from pytriton.client import ModelClient``. The hot path (BYTES codec,
HTTP framing, transport) is C++ in ``tritonfast._core``.
"""

from typing import TYPE_CHECKING, Any, List

from tritonfast import exceptions, utils
from tritonfast._core import __version__
from tritonfast.client import ModelClient
from tritonfast.futures import FuturesModelClient
from tritonfast.model_config import TritonModelConfig

if TYPE_CHECKING:
    from tritonfast.asyncio_client import AsyncioModelClient

__all__ = [
    "AsyncioModelClient",
    "FuturesModelClient",
    "ModelClient",
    "TritonModelConfig",
    "__version__",
    "exceptions",
    "utils",
]


def __getattr__(name: str) -> Any:
    # AsyncioModelClient loads asyncio (~25 ms, more with ssl): only for those who use it.
    if name == "AsyncioModelClient":
        from tritonfast.asyncio_client import AsyncioModelClient

        return AsyncioModelClient
    raise AttributeError(f"module 'tritonfast' has no attribute {name!r}")


def __dir__() -> List[str]:
    return sorted(set(globals()) | {"AsyncioModelClient"})
