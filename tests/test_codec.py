"""Tests of the BYTES tensor codec against tritonclient.utils.

Wire format of a BYTES tensor: every element is ``<uint32 little-endian
length><raw bytes>``, elements concatenated in C (row-major) order.

tritonclient.utils is the reference: for everything tritonclient accepts,
tritonfast must produce byte-identical wire bytes and decode identically.
The deliberate divergences (strict element types, U arrays, DecodeError
instead of struct.error) are tested on their own below.
"""

from __future__ import annotations

import re
import struct

import numpy as np
import pytest
import tritonclient.utils as tc
from hypothesis import given, settings
from hypothesis import strategies as st

import tritonfast._core as core
import tritonfast.utils as tf
from tritonfast.exceptions import DecodeError, EncodeError, PyTritonClientError

# --------------------------------------------------------------------------- helpers

MAX_ELEMENTS = 50
MAX_ELEMENT_BYTES = 64

HYPOTHESIS = settings(deadline=None, max_examples=200)


def obj_array(nested, order="C"):
    """An object array holding exactly the given Python objects.

    ``np.array(..., dtype=object)`` treats bytes/str as scalars, so the shape
    comes from the list nesting only; ``order`` picks the memory layout.
    """
    arr = np.array(nested, dtype=object)
    return np.asarray(arr, order=order) if order != "C" else arr


def reference_serialize(arr):
    """tritonclient's serialization of ``arr``; U arrays go through np.char.encode."""
    if arr.dtype.kind != "U":
        return tc.serialize_byte_tensor(arr)
    if arr.size == 0:
        # np.char.encode loses the shape and dtype of empty arrays; this is what
        # tritonclient answers for every empty tensor.
        return np.empty([0], dtype=np.object_)
    return tc.serialize_byte_tensor(np.char.encode(arr, "utf-8"))


def wire_bytes(serialized):
    """The bytes of a serialize_byte_tensor() result (b"" for the empty form)."""
    return serialized.item() if serialized.size else b""


def assert_bytes_array(arr, expected_list):
    assert type(arr) is np.ndarray
    assert arr.dtype == np.object_
    assert arr.ndim == 1
    assert arr.shape == (len(expected_list),)
    got = arr.tolist()
    assert all(type(x) is bytes for x in got), [type(x) for x in got]
    assert got == expected_list


def assert_same_serialization(arr):
    """tritonfast's serialize of ``arr`` is indistinguishable from tritonclient's.

    Also checks the native HTTP-path entry points and that both decoders agree
    on the result. Returns the wire bytes.
    """
    theirs = reference_serialize(arr)
    ours = tf.serialize_byte_tensor(arr)

    assert type(ours) is np.ndarray
    assert ours.dtype == theirs.dtype == np.object_
    assert ours.shape == theirs.shape
    if theirs.size == 0:
        assert ours.shape == (0,)
        expected = b""
    else:
        assert ours.shape == ()
        assert type(ours.item()) is bytes
        expected = theirs.item()
        assert ours.item() == expected

    # Native entry points used by the HTTP request builder.
    assert core.bytes_serialized_size(arr) == len(expected)
    out = bytearray(b"\xa5" * (len(expected) + 8))
    written = core.serialize_bytes_into(arr, out, 3)
    assert written == len(expected)
    assert bytes(out[3 : 3 + written]) == expected
    assert out[:3] == b"\xa5" * 3 and out[3 + written :] == b"\xa5" * 5

    # Both decoders agree on the bytes, whichever encoder made them.
    ref_decoded = tc.deserialize_bytes_tensor(expected).tolist()
    assert_bytes_array(tf.deserialize_bytes_tensor(wire_bytes(ours)), ref_decoded)
    assert_bytes_array(tf.deserialize_bytes_tensor(expected), ref_decoded)
    return expected


def c_order_bytes(arr):
    """The elements of ``arr`` in C order, as tritonclient would send them."""
    return [x if isinstance(x, bytes) else str(x).encode("utf-8") for x in arr.ravel(order="C")]


def has_word(msg, word):
    return re.search(r"(?<![\w])" + re.escape(word) + r"(?![\w])", msg) is not None


# --------------------------------------------------------------------------- strategies


@st.composite
def shapes(draw):
    """0-4 dims, zero-size included, at most MAX_ELEMENTS elements."""
    ndim = draw(st.integers(0, 4))
    dims, budget = [], MAX_ELEMENTS
    for _ in range(ndim):
        d = draw(st.integers(0, min(budget, 7)))
        dims.append(d)
        budget //= max(d, 1)
    return tuple(dims)


binary_elements = st.one_of(
    st.binary(max_size=MAX_ELEMENT_BYTES),
    st.sampled_from([b"", b"\x00", b"\x00\x00", b"a\x00b", b"\xff", b"\xff\xfe\x00\xff", b"\x00a"]),
)

text_elements = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=MAX_ELEMENT_BYTES // 4),
    st.sampled_from(["", "é", "😀", "日本語", "a\x00b", "\x00", "naïve 🤖 test", "\u0800\uffff"]),
)

# 'S' items keep interior NULs, drop trailing ones (numpy does, and so does tritonclient).
s_elements = binary_elements
# 'U' items: any code point but surrogates.
u_elements = text_elements


@st.composite
def layouts(draw, arr):
    """Re-lay ``arr`` out in memory: Fortran order, transposes, negative
    strides, strided views, zero strides. The contents may be permuted: every
    test compares both implementations on the same (final) array."""
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["F", "T", "flip", "strided", "broadcast", "swap"]))
        if op == "F":
            arr = np.asfortranarray(arr)
        elif op == "T":
            arr = arr.T
        elif op == "flip" and arr.ndim:
            arr = np.flip(arr, axis=draw(st.integers(0, arr.ndim - 1)))
        elif op == "strided":
            # Every other item of a doubled array: a non-contiguous view.
            arr = np.stack([arr, arr], axis=-1)[..., 0]
        elif op == "broadcast" and arr.size <= MAX_ELEMENTS // 2:
            arr = np.broadcast_to(arr, (2,) + arr.shape)  # stride 0, read-only
        elif op == "swap" and arr.ndim >= 2:
            arr = np.swapaxes(arr, 0, arr.ndim - 1)
    return arr


def build_object_array(values, shape):
    arr = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        arr[i] = v
    return arr.reshape(shape)


@st.composite
def object_arrays(draw, elements):
    shape = draw(shapes())
    n = int(np.prod(shape, dtype=np.int64))
    values = draw(st.lists(elements, min_size=n, max_size=n))
    return draw(layouts(build_object_array(values, shape)))


@st.composite
def fixed_arrays(draw, kind):
    shape = draw(shapes())
    n = int(np.prod(shape, dtype=np.int64))
    values = draw(st.lists(s_elements if kind == "S" else u_elements, min_size=n, max_size=n))
    arr = np.array(values, dtype=kind)
    if arr.dtype.itemsize == 0:  # np.array([], dtype="S") is S1 on numpy 1.26, but be safe
        arr = arr.astype(kind + "1")
    return draw(layouts(arr.reshape(shape)))


# --------------------------------------------------------------------------- exceptions


def test_exception_hierarchy():
    for cls in (EncodeError, DecodeError):
        assert issubclass(cls, ValueError)
        assert issubclass(cls, PyTritonClientError)
    assert not issubclass(EncodeError, DecodeError)
    assert not issubclass(DecodeError, EncodeError)


# --------------------------------------------------------------------------- differential


@HYPOTHESIS
@given(object_arrays(binary_elements))
def test_differential_object_bytes(arr):
    expected = assert_same_serialization(arr)
    # Round trip: deserialize(serialize(x)) is x in C order.
    assert_bytes_array(tf.deserialize_bytes_tensor(expected), c_order_bytes(arr))
    assert tf.serialized_byte_size(arr) == tc.serialized_byte_size(arr)


@HYPOTHESIS
@given(object_arrays(text_elements))
def test_differential_object_str(arr):
    expected = assert_same_serialization(arr)
    assert_bytes_array(tf.deserialize_bytes_tensor(expected), c_order_bytes(arr))


@HYPOTHESIS
@given(object_arrays(st.one_of(binary_elements, text_elements)))
def test_differential_object_mixed(arr):
    assert_same_serialization(arr)


@HYPOTHESIS
@given(fixed_arrays("S"))
def test_differential_s_array(arr):
    expected = assert_same_serialization(arr)
    # numpy's own item access drops trailing NULs; the wire has the same items.
    assert_bytes_array(tf.deserialize_bytes_tensor(expected), [x for x in arr.ravel().tolist()])


@HYPOTHESIS
@given(fixed_arrays("U"))
def test_differential_u_array(arr):
    # tritonclient rejects U arrays; the reference is np.char.encode(arr, "utf-8").
    expected = assert_same_serialization(arr)
    assert_bytes_array(
        tf.deserialize_bytes_tensor(expected), [s.encode("utf-8") for s in arr.ravel().tolist()]
    )


def test_tritonclient_rejects_u_arrays():
    # Documents why the U reference goes through np.char.encode: if tritonclient
    # ever starts accepting them, the comparison above should be made direct.
    with pytest.raises(tc.InferenceServerException):
        tc.serialize_byte_tensor(np.array(["a"]))


@pytest.mark.parametrize(
    "arr",
    [
        pytest.param(np.array(b"abc", dtype=object), id="0d-object-bytes"),
        pytest.param(np.array("héllo", dtype=object), id="0d-object-str"),
        pytest.param(np.array(b"ab\x00\x00", dtype="S4"), id="0d-S-trailing-nul"),
        pytest.param(np.array("日本", dtype="U"), id="0d-U"),
        pytest.param(np.empty([0], dtype=object), id="empty-object"),
        pytest.param(np.empty([3, 0, 2], dtype=object), id="empty-3d-object"),
        pytest.param(np.empty([0], dtype="S3"), id="empty-S"),
        pytest.param(np.empty([2, 0], dtype="U3"), id="empty-U"),
        pytest.param(np.array([b"", b"", b""], dtype=object), id="all-empty-elements"),
        pytest.param(np.array([b"\x00", b"\x00\x00\x00", b"a\x00"], dtype=object), id="nuls-object"),
        pytest.param(np.array([b"\x00a\x00", b"\x00\x00"], dtype="S3"), id="nuls-S"),
        pytest.param(obj_array([[b"a", b"bb"], [b"ccc", b""]], order="F"), id="fortran-object"),
        pytest.param(obj_array([[b"a", b"bb"], [b"ccc", b""]]).T, id="transposed-object"),
        pytest.param(obj_array([b"a", b"b", b"c", b"d", b"e"])[::-2], id="negative-stride"),
        pytest.param(np.array([[b"ab", b"c"], [b"d", b"efg"]], dtype="S3", order="F"), id="fortran-S"),
        pytest.param(np.array([["é", "b"], ["😀", ""]], dtype="U", order="F")[:, ::-1], id="strided-U"),
        pytest.param(np.arange(24).reshape(2, 3, 4).astype(str).astype(object)[:, ::2, 1:3], id="3d-view"),
    ],
)
def test_edge_arrays(arr):
    assert_same_serialization(arr)


@pytest.mark.parametrize(
    "arr",
    [
        pytest.param(np.empty([0], dtype=np.int32), id="int32"),
        pytest.param(np.empty([2, 0], dtype=np.float64), id="float64-2d"),
        pytest.param(np.empty([0], dtype=bool), id="bool"),
    ],
)
def test_empty_numeric_array_like_tritonclient(arr):
    # tritonclient checks the size before the dtype: an empty tensor of any dtype
    # serializes to the empty object array. "Identical for everything tritonclient
    # accepts" covers this.
    ours = tf.serialize_byte_tensor(arr)
    theirs = tc.serialize_byte_tensor(arr)
    assert ours.dtype == theirs.dtype == np.object_
    assert ours.shape == theirs.shape == (0,)


# --------------------------------------------------------------------------- golden wire bytes

# (tensor value, expected wire bytes as hex). A value is a (nested) list of
# elements; str elements are sent as UTF-8. The same table drives the encoder
# and the decoder tests.
GOLDEN = [
    pytest.param([b""], "00000000", id="empty-bytes"),
    pytest.param([""], "00000000", id="empty-str"),
    pytest.param([b"a"], "0100000061", id="a"),
    pytest.param([b"\x00"], "0100000000", id="nul"),
    pytest.param([b"a\x00b\x00"], "0400000061006200", id="nul-inside-and-trailing"),
    pytest.param([b"ab", b"c"], "020000006162" "0100000063", id="two-elements"),
    pytest.param([b"", b""], "00000000" "00000000", id="two-empty"),
    pytest.param(["é"], "02000000c3a9", id="utf8-e-acute"),
    pytest.param(["😀"], "04000000f09f9880", id="utf8-emoji"),
    pytest.param([b"\xff\xfe"], "02000000fffe", id="high-bytes"),
    pytest.param([b"x" * 300], "2c010000" + "78" * 300, id="300-bytes"),
    pytest.param(
        [[b"a", b"bc"], [b"", b"d"]],
        "0100000061" "020000006263" "00000000" "0100000064",
        id="2x2-c-order",
    ),
]


def _flat_c(nested):
    flat = obj_array(nested).ravel(order="C").tolist()
    return [v.encode("utf-8") if isinstance(v, str) else v for v in flat]


@pytest.mark.parametrize(("value", "wire_hex"), GOLDEN)
@pytest.mark.parametrize("order", ["C", "F"])
def test_golden_encode(value, wire_hex, order):
    arr = obj_array(value, order=order)
    # The table itself agrees with tritonclient.
    assert tc.serialize_byte_tensor(arr).item().hex() == wire_hex
    ours = tf.serialize_byte_tensor(arr)
    assert ours.shape == () and ours.dtype == np.object_
    assert ours.item().hex() == wire_hex

    out = np.zeros(len(wire_hex) // 2, dtype=np.uint8)
    assert core.serialize_bytes_into(arr, out) == len(out)
    assert out.tobytes().hex() == wire_hex
    assert core.bytes_serialized_size(arr) == len(wire_hex) // 2


def _fixed_width_kind(value):
    """'S' for rows of bytes that numpy 'S' can hold (no trailing NUL), 'U' for rows of str."""
    flat = obj_array(value).ravel().tolist()
    if all(isinstance(v, bytes) and not v.endswith(b"\x00") for v in flat):
        return "S"
    if all(isinstance(v, str) for v in flat):
        return "U"
    return None


GOLDEN_FIXED_WIDTH = [p for p in GOLDEN if _fixed_width_kind(p.values[0])]


@pytest.mark.parametrize(("value", "wire_hex"), GOLDEN_FIXED_WIDTH)
def test_golden_encode_fixed_width(value, wire_hex):
    # The same wire bytes from 'S' arrays (bytes rows) and 'U' arrays (str rows).
    arr = np.array(value, dtype=_fixed_width_kind(value))
    assert arr.dtype.kind in "SU"
    assert tf.serialize_byte_tensor(arr).item().hex() == wire_hex
    assert core.bytes_serialized_size(arr) == len(wire_hex) // 2


@pytest.mark.parametrize(("value", "wire_hex"), GOLDEN)
@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview", "uint8"])
def test_golden_decode(value, wire_hex, kind):
    raw = bytes.fromhex(wire_hex)
    buf = {
        "bytes": raw,
        "bytearray": bytearray(raw),
        "memoryview": memoryview(raw),
        "uint8": np.frombuffer(raw, dtype=np.uint8),
    }[kind]
    expected = _flat_c(value)
    assert tc.deserialize_bytes_tensor(raw).tolist() == expected
    assert_bytes_array(tf.deserialize_bytes_tensor(buf), expected)


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview", "uint8"])
def test_decode_empty_buffer(kind):
    buf = {
        "bytes": b"",
        "bytearray": bytearray(),
        "memoryview": memoryview(b""),
        "uint8": np.empty(0, dtype=np.uint8),
    }[kind]
    ours = tf.deserialize_bytes_tensor(buf)
    theirs = tc.deserialize_bytes_tensor(b"")
    assert ours.dtype == theirs.dtype == np.object_
    assert ours.shape == theirs.shape == (0,)


def test_decode_result_owns_its_bytes():
    # The decoded elements must not alias the input buffer.
    buf = bytearray(bytes.fromhex("0300000061626301000000" + "7a"))
    out = tf.deserialize_bytes_tensor(buf)
    buf[4:7] = b"XYZ"
    buf[-1:] = b"Q"
    assert out.tolist() == [b"abc", b"z"]


# --------------------------------------------------------------------------- malformed buffers

ONE = bytes.fromhex("0100000061")  # one valid element b"a", 5 bytes

MALFORMED = [
    # (buffer, element index, byte offset, further text the message must contain)
    pytest.param(b"\x01", 0, 0, "truncated length prefix", id="prefix-1-byte"),
    pytest.param(b"\x01\x00", 0, 0, "truncated length prefix", id="prefix-2-bytes"),
    pytest.param(b"\x01\x00\x00", 0, 0, "truncated length prefix", id="prefix-3-bytes"),
    pytest.param(
        b"\x05\x00\x00\x00ab", 0, 0, "length prefix 5 exceeds the 2 bytes left", id="prefix-too-large"
    ),
    pytest.param(
        b"\x01\x00\x00\x00", 0, 0, "length prefix 1 exceeds the 0 bytes left", id="prefix-no-payload"
    ),
    pytest.param(
        b"\xff\xff\xff\xff", 0, 0, "length prefix 4294967295 exceeds the 0 bytes left", id="prefix-max"
    ),
    pytest.param(
        b"\xff\xff\xff\xffabc", 0, 0, "length prefix 4294967295 exceeds the 3 bytes left", id="prefix-max-3-left"
    ),
    pytest.param(ONE + b"\x00", 1, 5, "truncated length prefix", id="trailing-1"),
    pytest.param(ONE + b"\x00\x00", 1, 5, "truncated length prefix", id="trailing-2"),
    pytest.param(ONE + b"\x00\x00\x00", 1, 5, "truncated length prefix", id="trailing-3"),
    pytest.param(
        ONE + b"\x02\x00\x00\x00x", 1, 5, "length prefix 2 exceeds the 1 bytes left", id="second-overruns"
    ),
    pytest.param(
        ONE + ONE + b"\x09\x00\x00\x00", 2, 10, "length prefix 9 exceeds the 0 bytes left", id="third-overruns"
    ),
    pytest.param(b"\x00\x00\x00\x00" + b"\x07", 1, 4, "truncated length prefix", id="after-empty-element"),
    pytest.param(
        ONE + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x01" + b"z" * 100,
        2,
        9,
        "length prefix 16777216 exceeds the 100 bytes left",
        id="big-endian-prefix",
    ),
]


@pytest.mark.parametrize(("buf", "index", "offset", "text"), MALFORMED)
@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview", "uint8"])
def test_malformed_raises_decode_error(buf, index, offset, text, kind):
    # The reference rejects it too (with struct.error).
    with pytest.raises(struct.error):
        tc.deserialize_bytes_tensor(buf)
    arg = {
        "bytes": buf,
        "bytearray": bytearray(buf),
        "memoryview": memoryview(buf),
        "uint8": np.frombuffer(buf, dtype=np.uint8),
    }[kind]
    with pytest.raises(ValueError) as info:
        tf.deserialize_bytes_tensor(arg)
    assert type(info.value) is DecodeError
    msg = str(info.value)
    assert f"element {index} at byte {offset}" in msg, msg
    assert text in msg, msg


def _check_decode_against_reference(buf):
    try:
        theirs = tc.deserialize_bytes_tensor(buf)
    except struct.error:
        theirs = None
    if theirs is None:
        # Any other exception type propagates and fails the test.
        with pytest.raises(DecodeError, match=r"element \d+ at byte \d+"):
            tf.deserialize_bytes_tensor(buf)
    else:
        assert_bytes_array(tf.deserialize_bytes_tensor(buf), theirs.tolist())


@HYPOTHESIS
@given(st.binary(max_size=48))
def test_fuzz_decode_random_bytes(buf):
    _check_decode_against_reference(buf)


@st.composite
def damaged_encodings(draw):
    """A valid encoding, cut at a random point and/or with junk appended, or
    with one byte overwritten: mostly small, plausible length prefixes."""
    elements = draw(st.lists(st.binary(max_size=12), max_size=6))
    raw = b"".join(struct.pack("<I", len(e)) + e for e in elements)
    cut = draw(st.integers(0, len(raw)))
    raw = raw[:cut] + draw(st.binary(max_size=6))
    if raw and draw(st.booleans()):
        i = draw(st.integers(0, len(raw) - 1))
        raw = raw[:i] + bytes([draw(st.integers(0, 255))]) + raw[i + 1 :]
    return raw


@HYPOTHESIS
@given(damaged_encodings())
def test_fuzz_decode_damaged_encodings(buf):
    _check_decode_against_reference(buf)


# --------------------------------------------------------------------------- serialize errors


def _encode_error(arr):
    with pytest.raises(EncodeError) as info:
        tf.serialize_byte_tensor(arr)
    return str(info.value)


@pytest.mark.parametrize(
    ("values", "index", "type_name"),
    [
        pytest.param([b"a", b"b", "c", 5], 3, "int", id="int"),
        pytest.param([None], 0, "NoneType", id="none"),
        pytest.param([b"a", 1.5, b"c"], 1, "float", id="float"),
        pytest.param(["x", bytearray(b"x")], 1, "bytearray", id="bytearray"),
        pytest.param([memoryview(b"x"), b"y"], 0, "memoryview", id="memoryview"),
        pytest.param([b"a", [b"b"]], 1, "list", id="list"),
        pytest.param([b"a"] * 11 + [np.int64(3)], 11, "int64", id="numpy-int"),
    ],
)
def test_unsupported_element_type(values, index, type_name):
    arr = build_object_array(values, (len(values),))
    for call in (
        tf.serialize_byte_tensor,
        core.bytes_serialized_size,
        lambda a: core.serialize_bytes_into(a, bytearray(1 << 12)),
    ):
        with pytest.raises(EncodeError) as info:
            call(arr)
        msg = str(info.value)
        assert has_word(msg, f"element {index}"), msg
        assert has_word(msg, type_name), msg


def test_unsupported_element_index_is_flat_c_index():
    # Fortran-ordered 2x3 array; the bad element is at [1, 0]: C index 3, but
    # memory index 1.
    values = [[b"a", b"b", b"c"], [7, b"e", b"f"]]
    arr = obj_array(values, order="F")
    assert arr.flags.f_contiguous and not arr.flags.c_contiguous
    msg = _encode_error(arr)
    assert has_word(msg, "element 3"), msg
    assert has_word(msg, "int"), msg


def test_lone_surrogate_object_str():
    arr = build_object_array(["ok", "é", "bad\ud800"], (3,))
    msg = _encode_error(arr)
    assert has_word(msg, "element 2"), msg
    with pytest.raises(EncodeError):
        core.bytes_serialized_size(arr)


def test_lone_surrogate_u_array():
    arr = np.array([["a", "b"], ["\udfff", "d"]], dtype="U")
    msg = _encode_error(arr)
    assert has_word(msg, "element 2"), msg


@pytest.mark.parametrize(
    "dtype", [np.int32, np.uint8, np.float64, np.float16, bool, np.complex64, "V4", "M8[s]"]
)
def test_numeric_dtype_rejected(dtype):
    arr = np.zeros(3, dtype=dtype)
    with pytest.raises(tc.InferenceServerException):
        tc.serialize_byte_tensor(arr)
    with pytest.raises(EncodeError):
        tf.serialize_byte_tensor(arr)
    with pytest.raises(EncodeError):
        core.bytes_serialized_size(arr)
    with pytest.raises(EncodeError):
        core.serialize_bytes_into(arr, bytearray(64))


# --------------------------------------------------------------------------- serialize_bytes_into

SAMPLE = obj_array([b"ab", b"", "é", b"\x00xyz"])
SAMPLE_WIRE = tc.serialize_byte_tensor(SAMPLE).item()


def test_serialized_size_matches_wire():
    assert core.bytes_serialized_size(SAMPLE) == len(SAMPLE_WIRE) == 4 * 4 + 2 + 0 + 2 + 4
    assert core.bytes_serialized_size(np.empty([0], dtype=object)) == 0


@pytest.mark.parametrize("offset", [0, 1, 7])
@pytest.mark.parametrize("kind", ["bytearray", "uint8"])
def test_serialize_into_at_offset(offset, kind):
    n = len(SAMPLE_WIRE)
    size = offset + n + 9
    out = bytearray(b"\xaa" * size) if kind == "bytearray" else np.full(size, 0xAA, dtype=np.uint8)
    written = core.serialize_bytes_into(SAMPLE, out, offset)
    assert written == n
    data = bytes(out)
    assert data[:offset] == b"\xaa" * offset
    assert data[offset : offset + n] == SAMPLE_WIRE
    assert data[offset + n :] == b"\xaa" * 9


def test_serialize_into_default_offset_exact_size():
    out = bytearray(len(SAMPLE_WIRE))
    assert core.serialize_bytes_into(SAMPLE, out) == len(SAMPLE_WIRE)
    assert bytes(out) == SAMPLE_WIRE


def test_serialize_into_keyword_offset():
    out = bytearray(len(SAMPLE_WIRE) + 2)
    assert core.serialize_bytes_into(SAMPLE, out, offset=2) == len(SAMPLE_WIRE)
    assert bytes(out[2:]) == SAMPLE_WIRE


def test_serialize_into_empty_tensor():
    out = bytearray(b"\xaa" * 4)
    assert core.serialize_bytes_into(np.empty([0, 3], dtype=object), out, 2) == 0
    assert out == b"\xaa" * 4


@pytest.mark.parametrize("offset", [0, 5])
@pytest.mark.parametrize("short_by", [1, 4, len(SAMPLE_WIRE)])
def test_serialize_into_too_small(offset, short_by):
    n = len(SAMPLE_WIRE)
    # `out` is a window on a larger buffer, so a write past its end shows up in
    # the guard bytes that follow it.
    backing = np.full(offset + n + 32, 0xAA, dtype=np.uint8)
    out = backing[: offset + n - short_by]
    available = len(out) - offset
    with pytest.raises(EncodeError) as info:
        core.serialize_bytes_into(SAMPLE, out, offset)
    msg = str(info.value)
    assert has_word(msg, str(n)), msg
    # "available": either the bytes left after `offset`, or the offset and the
    # buffer's size from which they follow.
    assert has_word(msg, str(available)) or (
        has_word(msg, str(offset)) and has_word(msg, str(len(out)))
    ), msg
    # Nothing written past the end of `out`, nor before `offset`.
    assert (backing[len(out) :] == 0xAA).all()
    assert (backing[:offset] == 0xAA).all()


def test_serialize_into_offset_past_end():
    backing = np.full(64, 0xAA, dtype=np.uint8)
    out = backing[:8]
    with pytest.raises(ValueError):
        core.serialize_bytes_into(SAMPLE, out, 9)
    assert (backing == 0xAA).all()


def test_serialize_into_negative_offset():
    backing = np.full(64, 0xAA, dtype=np.uint8)
    out = backing[16:]
    with pytest.raises((TypeError, ValueError, OverflowError, IndexError)):
        core.serialize_bytes_into(SAMPLE, out, -4)
    assert (backing == 0xAA).all()


@pytest.mark.parametrize(
    "make_out",
    [
        pytest.param(lambda n: bytes(n), id="bytes"),
        pytest.param(lambda n: memoryview(bytes(n)), id="memoryview-of-bytes"),
        pytest.param(lambda n: np.frombuffer(bytes(n), dtype=np.uint8), id="numpy-readonly-frombuffer"),
        pytest.param(lambda n: _readonly_zeros(n), id="numpy-writeable-false"),
    ],
)
def test_serialize_into_read_only_buffer(make_out):
    out = make_out(len(SAMPLE_WIRE) + 4)
    before = bytes(out)
    with pytest.raises((TypeError, BufferError, ValueError)):
        core.serialize_bytes_into(SAMPLE, out)
    assert bytes(out) == before


def _readonly_zeros(n):
    a = np.zeros(n, dtype=np.uint8)
    a.flags.writeable = False
    return a


# --------------------------------------------------------------------------- large elements

MIB = 1 << 20


def _random_bytes(n, seed):
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


@pytest.mark.parametrize("count", [1, 10])
def test_large_elements_round_trip(count):
    values = [_random_bytes(MIB, seed) for seed in range(count)]
    arr = build_object_array(values, (count,))
    theirs = tc.serialize_byte_tensor(arr).item()
    assert len(theirs) == count * (4 + MIB)
    assert theirs[:4] == b"\x00\x00\x10\x00"  # 1 MiB, little-endian

    ours = tf.serialize_byte_tensor(arr).item()
    assert ours == theirs
    assert core.bytes_serialized_size(arr) == len(theirs)
    out = np.empty(len(theirs), dtype=np.uint8)
    assert core.serialize_bytes_into(arr, out) == len(theirs)
    assert out.tobytes() == theirs

    decoded = tf.deserialize_bytes_tensor(ours)
    assert_bytes_array(decoded, values)
    assert_bytes_array(tf.deserialize_bytes_tensor(out), tc.deserialize_bytes_tensor(theirs).tolist())
    assert tf.serialized_byte_size(arr) == tc.serialized_byte_size(arr) == count * MIB


def test_large_s_and_u_elements():
    big = _random_bytes(MIB, 99).replace(b"\x00", b"\x01")
    s_arr = np.array([big, b"tail"], dtype="S")
    assert tf.serialize_byte_tensor(s_arr).item() == tc.serialize_byte_tensor(s_arr).item()
    u_arr = np.array(["é" * (MIB // 2), "x"], dtype="U")
    expected = tc.serialize_byte_tensor(np.char.encode(u_arr, "utf-8")).item()
    assert len(expected) == 4 + MIB + 4 + 1
    assert tf.serialize_byte_tensor(u_arr).item() == expected
