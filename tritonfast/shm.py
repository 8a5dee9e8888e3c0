"""Deprecated: ``tritonfast.utils.shared_memory``, tritonclient's module path
(``tritonclient.utils.shared_memory``), under its old name for one release."""

from tritonfast._deprecated import alias_module

alias_module(__name__, "tritonfast.utils.shared_memory")
