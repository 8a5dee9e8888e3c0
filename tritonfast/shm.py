"""Deprecated: use ``tritonfast.utils.shared_memory``, tritonclient's module path
(``tritonclient.utils.shared_memory``). This name stays for one release as the
same module object, and warns when imported."""

import sys
import warnings

from tritonfast.utils import shared_memory as _module


warnings.warn(
    "tritonfast.shm is deprecated and goes in the next release: "
    "import tritonfast.utils.shared_memory (tritonclient's module path) instead",
    DeprecationWarning,
    stacklevel=2,  # warnings skips importlib's frames: this names the import statement
)
sys.modules[__name__] = _module
