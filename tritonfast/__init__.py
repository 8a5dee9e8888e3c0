"""tritonfast: a fast, dependable Python client for NVIDIA Triton Inference Server.

The hot path (BYTES codec, HTTP framing, transport) is C++ in ``tritonfast._core``;
this package is the Python API over it.
"""

from tritonfast import exceptions, utils
from tritonfast._core import __version__

__all__ = [
    "__version__",
    "exceptions",
    "utils",
]
