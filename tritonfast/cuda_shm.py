"""Deprecated: use ``tritonfast.utils.cuda_shared_memory``, tritonclient's module path
(``tritonclient.utils.cuda_shared_memory``). This name stays for one release as the
same module object, and warns when imported."""

import sys
import warnings

from tritonfast.utils import cuda_shared_memory as _module


warnings.warn(
    "tritonfast.cuda_shm is deprecated and goes in the next release: "
    "import tritonfast.utils.cuda_shared_memory (tritonclient's module path) instead",
    DeprecationWarning,
    stacklevel=2,  # warnings skips importlib's frames: this names the import statement
)
sys.modules[__name__] = _module
