"""Old module names kept for one release as aliases of their new modules."""

import importlib
import sys
import warnings


def alias_module(old: str, new: str) -> None:
    """Makes module ``old`` (being imported) the module ``new``, with a DeprecationWarning
    that names the importing line."""
    warnings.warn(
        f"{old} is deprecated and goes in the next release: import {new} (tritonclient's module path) instead",
        DeprecationWarning,
        stacklevel=3,  # past this function and the alias module; warnings skips importlib's frames
    )
    sys.modules[old] = importlib.import_module(new)
