"""Datatype conversion and the BYTES codec, compatible with ``tritonclient.utils``.

``serialize_byte_tensor`` / ``deserialize_bytes_tensor`` take and return the same
types as tritonclient's and produce byte-identical wire data; the work is done in
C++ (``tritonfast._core``) instead of a per-element Python loop.

A package, like ``tritonclient.utils``: ``tritonfast.utils.shared_memory`` and
``tritonfast.utils.cuda_shared_memory`` are tritonclient's shared-memory
modules, so a tritonclient script ports by changing ``tritonclient`` to
``tritonfast`` in its imports. ``InferenceServerException`` and
``raise_error`` are tritonclient's error and its helper.

Differences from tritonclient, on purpose:

* ``U`` (unicode) arrays are accepted and encoded as UTF-8 (tritonclient raises).
* Object-array elements must be ``bytes`` or ``str`` (their subclasses included,
  so ``np.bytes_`` items keep their raw bytes). tritonclient silently sends
  ``str(x)`` for anything else, e.g. ``b"None"`` for ``None``; we raise
  :class:`~tritonfast.exceptions.EncodeError` naming the element.
* Malformed serialized buffers raise :class:`~tritonfast.exceptions.DecodeError`
  naming the element and byte offset, instead of ``struct.error``.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from tritonfast import _core
from tritonfast.exceptions import EncodeError, InferenceServerException, PyTritonClientValueError

_ml_dtypes: Any
try:  # optional: numpy has no bfloat16 of its own
    import ml_dtypes as _ml_dtypes
except ImportError:  # pragma: no cover - exercised only without ml_dtypes
    _ml_dtypes = None

__all__ = [
    "InferenceServerException",
    "deserialize_bytes_tensor",
    "np_to_triton_dtype",
    "raise_error",
    "serialize_byte_tensor",
    "serialized_byte_size",
    "triton_to_np_dtype",
]

_TRITON_TO_NP = {
    "BOOL": bool,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}
if _ml_dtypes is not None:
    _TRITON_TO_NP["BF16"] = _ml_dtypes.bfloat16

# Keyed by numpy dtype: lookups work for dtype instances and scalar types alike.
_NP_TO_TRITON = {np.dtype(t): name for name, t in _TRITON_TO_NP.items()}

# The wire datatypes the native core knows, with their element sizes (0: BYTES).
DATATYPE_SIZES = dict(_core.datatypes())


def np_to_triton_dtype(np_dtype: Any) -> Optional[str]:
    """Triton datatype name of a numpy dtype or scalar type; None when Triton has none.

    ``S`` and ``U`` string dtypes map to ``"BYTES"`` (tritonclient maps ``U`` to None).
    """
    try:
        dtype = np.dtype(np_dtype)
    except TypeError:
        return None
    if dtype.kind in "SU":
        return "BYTES"
    return _NP_TO_TRITON.get(dtype)


def triton_to_np_dtype(dtype: str) -> Any:
    """numpy scalar type for a Triton datatype name; None when the name is unknown.

    ``"BF16"`` needs the optional ``ml_dtypes`` package and raises
    :class:`~tritonfast.exceptions.PyTritonClientValueError` without it.
    """
    if dtype == "BF16" and _ml_dtypes is None:
        raise PyTritonClientValueError(
            "datatype BF16 needs the optional package ml_dtypes: pip install ml_dtypes"
        )
    return _TRITON_TO_NP.get(dtype)


def serialize_byte_tensor(input_tensor: np.ndarray) -> np.ndarray:
    """Serializes a BYTES tensor the way Triton expects it on the wire.

    Each element becomes a 4-byte little-endian length followed by its bytes, in
    C order. Returns, like tritonclient, a 0-d object array wrapping one ``bytes``
    (use ``.item()``), or an empty 1-D object array for an empty tensor.
    """
    if not isinstance(input_tensor, np.ndarray):
        raise TypeError(f"serialize_byte_tensor needs a numpy array, got {type(input_tensor).__name__}")
    if input_tensor.size == 0:
        return np.empty([0], dtype=np.object_)
    if input_tensor.dtype.kind not in "OSU":
        raise EncodeError(
            f"cannot serialize an array of dtype {input_tensor.dtype} as BYTES: "
            "elements must be bytes or str (object, 'S' or 'U' arrays)"
        )
    result = np.empty((), dtype=np.object_)
    result[()] = _core.serialize_bytes(input_tensor)
    return result


def deserialize_bytes_tensor(encoded_tensor: Any) -> np.ndarray:
    """Splits serialized BYTES (any buffer: bytes, bytearray, memoryview, uint8 array)
    into a 1-D object array of ``bytes``.

    Raises :class:`~tritonfast.exceptions.DecodeError` naming the element and byte
    offset when a length prefix is truncated or runs past the end of the buffer.
    """
    return _core.deserialize_bytes(encoded_tensor)


def serialized_byte_size(tensor_value: np.ndarray) -> int:
    """Payload bytes of a tensor: ``nbytes`` for numeric tensors, and for BYTES
    tensors the sum of element lengths without their 4-byte prefixes (as tritonclient)."""
    if tensor_value.dtype.kind not in "OSU":
        return tensor_value.nbytes
    if tensor_value.size == 0:
        return 0
    return _core.bytes_serialized_size(tensor_value) - 4 * tensor_value.size


def raise_error(msg: str) -> None:
    """Raises :class:`InferenceServerException` with ``msg`` (tritonclient's helper)."""
    raise InferenceServerException(msg=msg) from None
