"""The datatype table against tritonclient.utils, and the package version."""

from __future__ import annotations

import tomllib
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
import tritonclient.utils as tc

import tritonfast
import tritonfast.utils as tf

TRITON_NAMES = [
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BF16",
    "BYTES",
]

# Numpy scalar types (and Python's bool) that have a Triton datatype.
KNOWN_TYPES = [
    bool,
    np.bool_,
    np.uint8,
    np.uint16,
    np.uint32,
    np.uint64,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.float16,
    np.float32,
    np.float64,
    ml_dtypes.bfloat16,
    np.object_,
    np.bytes_,
]

# Types that have none: both libraries answer None.
UNKNOWN_TYPES = [
    np.complex64,
    np.complex128,
    np.longdouble,
    np.void,
    np.datetime64,
    np.timedelta64,
    ml_dtypes.float8_e4m3fn,
    ml_dtypes.int4,
]


def _id(t):
    return getattr(t, "__name__", str(t))


@pytest.mark.parametrize("name", TRITON_NAMES)
def test_triton_to_np_dtype_matches_tritonclient(name):
    theirs = tc.triton_to_np_dtype(name)
    ours = tf.triton_to_np_dtype(name)
    assert theirs is not None
    assert ours is theirs


@pytest.mark.parametrize("name", TRITON_NAMES)
def test_name_round_trip(name):
    assert tf.np_to_triton_dtype(tf.triton_to_np_dtype(name)) == name
    assert tf.np_to_triton_dtype(np.dtype(tf.triton_to_np_dtype(name))) == name


@pytest.mark.parametrize(
    "name", ["", "bool", "int32", "FP8", "BF8", "STRING", "TYPE_INT32", "Bytes", "INT128", " INT8"]
)
def test_unknown_triton_name(name):
    assert tc.triton_to_np_dtype(name) is None
    assert tf.triton_to_np_dtype(name) is None


@pytest.mark.parametrize("np_type", KNOWN_TYPES + UNKNOWN_TYPES, ids=_id)
def test_np_to_triton_dtype_instances_match_tritonclient(np_type):
    dtype = np.dtype(np_type)
    assert tf.np_to_triton_dtype(dtype) == tc.np_to_triton_dtype(dtype)


@pytest.mark.parametrize("np_type", KNOWN_TYPES + UNKNOWN_TYPES, ids=_id)
def test_np_to_triton_dtype_scalar_types(np_type):
    # tritonclient only handles some scalar types (np.bytes_, np.bool_ raise
    # AttributeError there), so the reference is its answer for the dtype.
    expected = tc.np_to_triton_dtype(np.dtype(np_type))
    assert tf.np_to_triton_dtype(np_type) == expected
    if np_type in KNOWN_TYPES:
        assert expected is not None
    else:
        assert expected is None


# tritonclient raises AttributeError for the scalar types np.bool_ and np.bytes_.
@pytest.mark.parametrize(
    "np_type", [t for t in KNOWN_TYPES if t not in (np.bool_, np.bytes_)], ids=_id
)
def test_np_to_triton_dtype_scalar_types_tritonclient_accepts(np_type):
    # Where tritonclient takes the scalar type itself, the answers match directly.
    assert tf.np_to_triton_dtype(np_type) == tc.np_to_triton_dtype(np_type)


@pytest.mark.parametrize("spec", ["S", "S1", "S17", "|S5"])
def test_fixed_bytes_dtypes_are_bytes(spec):
    assert tc.np_to_triton_dtype(np.dtype(spec)) == "BYTES"
    assert tf.np_to_triton_dtype(np.dtype(spec)) == "BYTES"


@pytest.mark.parametrize("spec", ["U", "U1", "U9", np.str_])
def test_unicode_dtype_is_bytes(spec):
    # Divergence on purpose: tritonclient answers None.
    assert tc.np_to_triton_dtype(np.dtype(spec)) is None
    assert tf.np_to_triton_dtype(np.dtype(spec)) == "BYTES"
    assert tf.np_to_triton_dtype(np.str_) == "BYTES"


def test_table_covers_every_triton_name():
    # Every name maps to a distinct numpy type, and every known type to a name.
    mapped = [tf.triton_to_np_dtype(n) for n in TRITON_NAMES]
    assert len({np.dtype(t) for t in mapped}) == len(TRITON_NAMES)
    assert {tf.np_to_triton_dtype(np.dtype(t)) for t in KNOWN_TYPES} == set(TRITON_NAMES)


def test_version_matches_pyproject():
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    with pyproject.open("rb") as f:
        expected = tomllib.load(f)["project"]["version"]
    assert isinstance(tritonfast.__version__, str)
    assert tritonfast.__version__ == expected
