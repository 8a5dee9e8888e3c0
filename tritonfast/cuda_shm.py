"""Deprecated: ``tritonfast.utils.cuda_shared_memory``, tritonclient's module path
(``tritonclient.utils.cuda_shared_memory``), under its old name for one release."""

from tritonfast._deprecated import alias_module

alias_module(__name__, "tritonfast.utils.cuda_shared_memory")
