"""System shared memory: tritonfast.utils.shared_memory (tritonclient.utils.shared_memory's API),
the C++ regions under it, and the server endpoints in tritonfast._shm.api.

Layers: region lifecycle and /dev/shm cleanliness; bounds and key errors that
name what is wrong; every datatype round trip, cross-checked against
tritonclient's serializer and its own shared-memory module; views that outlive
their region (a segfault with tritonclient); and tritonclient's
simple_http_shm_client flow against a real server, once through
tritonclient.http and once through our own transport and _shm_api.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import tritonfast.utils.shared_memory as shm
from tritonfast import _core
from tritonfast._shm import api as _shm_api
from tritonfast.exceptions import DecodeError, EncodeError, SharedMemoryError

try:  # BF16 is tested where the optional ml_dtypes is installed (the test extras have it)
    import ml_dtypes
except ImportError:  # pragma: no cover
    ml_dtypes = None

SHM_DIR = Path("/dev/shm")
REPO = Path(__file__).resolve().parent.parent


def unique_key() -> str:
    return f"/tritonfast-test-{os.getpid()}-{secrets.token_hex(4)}"


def shm_path(key: str) -> Path:
    return SHM_DIR / key.lstrip("/")


@pytest.fixture
def key():
    """A fresh key; the test fails if its region is still in /dev/shm afterwards."""
    k = unique_key()
    yield k
    leftover = shm_path(k).exists()
    if leftover:
        os.unlink(shm_path(k))
    assert not leftover, f"{k} left in /dev/shm"


@pytest.fixture
def region(key):
    handle = shm.create_shared_memory_region("region", key, 4096)
    yield handle
    shm.destroy_shared_memory_region(handle)


# --- lifecycle ---------------------------------------------------------------


def test_create_maps_a_fresh_region_and_destroy_removes_it(key):
    handle = shm.create_shared_memory_region("data", key, 100)
    assert shm_path(key).stat().st_size == 100
    assert (shm_path(key).stat().st_mode & 0o777) == 0o600
    assert (handle.triton_shm_name, handle.key, handle.byte_size) == ("data", key, 100)
    assert key in shm.mapped_shared_memory_regions()
    assert not handle.view(np.uint8, [100]).any()  # zero-filled, like ftruncate
    shm.destroy_shared_memory_region(handle)
    assert not shm_path(key).exists()
    assert key not in shm.mapped_shared_memory_regions()
    assert handle.destroyed


def test_attaching_shares_the_memory_and_the_last_handle_unlinks(key):
    first = shm.create_shared_memory_region("a", key, 64)
    second = shm.create_shared_memory_region("b", key, 32)  # attaches, whole
    assert second.byte_size == 64
    first.write([np.arange(16, dtype=np.int32)])
    np.testing.assert_array_equal(shm.get_contents_as_numpy(second, np.int32, [16]), np.arange(16))
    shm.destroy_shared_memory_region(first)
    assert shm_path(key).exists(), "another handle of this process still uses the key"
    assert shm.mapped_shared_memory_regions().count(key) == 1
    shm.destroy_shared_memory_region(second)
    assert not shm_path(key).exists()


def test_create_only_refuses_an_existing_region(key, region):
    with pytest.raises(SharedMemoryError, match=f"'{key}'.*exists already"):
        shm.create_shared_memory_region("again", key, 16, create_only=True)


def test_attaching_to_a_smaller_region_names_both_sizes(key):
    handle = shm.create_shared_memory_region("small", key, 100)
    try:
        with pytest.raises(SharedMemoryError, match=f"'{key}' exists with 100 bytes, fewer than the 200"):
            shm.create_shared_memory_region("big", key, 200)
    finally:
        handle.destroy()


def test_a_region_this_process_did_not_create_is_not_unlinked(key):
    other = _core.SystemRegion.create(key, 64, True)  # as another process would
    try:
        handle = shm.create_shared_memory_region("attached", key, 64)
        shm.destroy_shared_memory_region(handle)
        assert shm_path(key).exists()
    finally:
        other.unlink()


def test_destroy_is_idempotent_and_a_destroyed_handle_refuses_work(key):
    handle = shm.create_shared_memory_region("gone", key, 64)
    handle.destroy()
    shm.destroy_shared_memory_region(handle)
    for use in (lambda: handle.byte_size, lambda: handle.write([np.zeros(1)]),
                lambda: handle.view(np.uint8, [1]), lambda: handle.read_bytes(1),
                lambda: shm.get_contents_as_numpy(handle, np.float32, [1])):
        with pytest.raises(SharedMemoryError, match=f"'gone' \\(key '{key}'\\) was destroyed"):
            use()


def test_zero_and_negative_sizes_are_refused(key):
    with pytest.raises(SharedMemoryError, match="of 0 bytes: byte_size must be positive"):
        shm.create_shared_memory_region("empty", key, 0)
    with pytest.raises(SharedMemoryError, match="byte_size -1 is negative"):
        shm.create_shared_memory_region("negative", key, -1)


@pytest.mark.parametrize("given", ["name", "/name", "//name"])
def test_keys_are_normalised_to_one_leading_slash(given):
    suffix = secrets.token_hex(4)
    handle = shm.create_shared_memory_region("n", given + suffix, 8)
    try:
        assert handle.key == "/name" + suffix
        assert shm_path(handle.key).exists()
    finally:
        handle.destroy()
    assert not shm_path(handle.key).exists()


@pytest.mark.parametrize(("bad", "why"), [
    ("/", "needs a name after the leading '/'"),
    ("", "needs a name after the leading '/'"),
    ("/a/b", "only the leading '/' is allowed"),
    ("/a\0b", "NUL"),
    ("/" + "k" * 256, "256 bytes long, more than the 255"),
])
def test_invalid_keys_are_refused(bad, why):
    with pytest.raises(SharedMemoryError, match=why):
        shm.create_shared_memory_region("bad", bad, 8)


def test_longest_key_is_accepted():
    key = "/" + secrets.token_hex(4) + "k" * 247
    handle = shm.create_shared_memory_region("long", key, 8)
    handle.destroy()
    assert not shm_path(key).exists()


def test_handles_are_not_picklable(region):
    import pickle

    with pytest.raises(TypeError, match="per process"):
        pickle.dumps(region)


# --- bounds ------------------------------------------------------------------


def test_view_past_the_end_names_offset_size_and_region(region, key):
    with pytest.raises(SharedMemoryError,
                       match=f"40 bytes at offset 4080 do not fit in shared memory region '{key}' of 4096 bytes "
                             r"\(they would end at byte 4120\)"):
        region.view(np.float64, [5], offset=4080)


def test_offsets_past_the_end_and_overflowing_sizes_are_errors(region):
    with pytest.raises(SharedMemoryError, match=r"at offset 5000 .* \(the offset is past its end\)"):
        region.view(np.uint8, [0], offset=5000)
    with pytest.raises(SharedMemoryError, match=r"offset 18446744073709551615 .*past its end"):
        region.view(np.uint8, [1], offset=2**64 - 1)
    with pytest.raises(SharedMemoryError, match="more than 2\\*\\*64 bytes"):
        region.view(np.float64, [2**62, 2**62])
    with pytest.raises(SharedMemoryError, match="offset -1 is negative"):
        region.view(np.uint8, [1], offset=-1)
    with pytest.raises(ValueError, match="negative dimension"):
        region.view(np.uint8, [-1])


def test_writes_past_the_end_name_the_array(region, key):
    with pytest.raises(SharedMemoryError, match=f"16 bytes at offset 4088 do not fit in shared memory region '{key}'"):
        region.write([np.zeros(4, np.float32)], offset=4088)
    big = np.array([b"x" * 5000], dtype=object)
    with pytest.raises(SharedMemoryError, match="5004 bytes at offset 0 do not fit"):
        shm.set_shared_memory_region(region, [big])
    # The first array fits and is written; the second is refused.
    with pytest.raises(SharedMemoryError, match="at offset 4000"):
        region.write([np.full(1000, 7, np.int32), np.zeros(100, np.int8)])
    assert (region.view(np.int32, [1000]) == 7).all()


def test_exact_fit_and_empty_arrays_at_the_end(region):
    assert region.write([np.ones(1024, np.float32), np.zeros(0, np.float32)]) == [(0, 4096), (4096, 0)]
    assert region.view(np.float32, [0], offset=4096).shape == (0,)


def test_malformed_bytes_are_decode_errors_naming_element_and_offset(region, key):
    region.write([np.array([b"ab", b"cd"], dtype=object)])  # 12 bytes
    np.testing.assert_array_equal(region.read_bytes(2), [b"ab", b"cd"])
    with pytest.raises(DecodeError, match=f"BYTES element 1 at byte 6 of shared memory region '{key}': length prefix 2 "
                                          "exceeds the 1 bytes left"):
        region.read_bytes(2, size=11)
    region.write([np.array([0xFFFFFFF0], dtype="<u4")], offset=4092)
    with pytest.raises(DecodeError, match="element 0 at byte 4092 .* length prefix 4294967280 exceeds the 0 bytes left"):
        region.read_bytes(1, offset=4092)
    with pytest.raises(DecodeError, match="element 2 at byte 12 .* 4-byte length prefix needs more than the 2 bytes"):
        region.read_bytes(3, size=14)
    with pytest.raises(DecodeError, match="1 BYTES elements need at least 1 x 4 bytes but .* holds 2 bytes from offset 4094"):
        region.read_bytes(1, offset=4094)


def test_impossible_element_counts_are_refused_before_allocating(region, key):
    with pytest.raises(DecodeError, match=f"1099511627776 BYTES elements need at least 1099511627776 x 4 bytes but "
                                          f"shared memory region '{key}' holds 4086 bytes from offset 10"):
        region.read_bytes(1 << 40, offset=10)


def test_bytes_reads_take_exactly_the_requested_count(region):
    region.write([np.array([b"a", b"b", b"c"], dtype=object)])
    np.testing.assert_array_equal(shm.get_contents_as_numpy(region, np.object_, [2]), [b"a", b"b"])
    assert shm.get_contents_as_numpy(region, np.object_, [0, 3]).shape == (0, 3)


def test_unsupported_inputs_are_type_or_encode_errors(region):
    with pytest.raises(TypeError, match="list or tuple"):
        shm.set_shared_memory_region(region, np.zeros(3))
    with pytest.raises(TypeError, match=r"input_values\[1\] must be a numpy array, got list"):
        shm.set_shared_memory_region(region, [np.zeros(3), [1, 2]])
    with pytest.raises(EncodeError, match="element 1: unsupported type int"):
        shm.set_shared_memory_region(region, [np.array([b"a", 3], dtype=object)])
    with pytest.raises(TypeError, match="cannot write an array of dtype"):
        shm.set_shared_memory_region(region, [np.zeros(2, dtype=[("a", "i4"), ("b", "f4")])])
    with pytest.raises(TypeError, match="read with read_bytes"):
        region._region.ndarray(np.dtype(object), [1], 0)


# --- datatypes -----------------------------------------------------------------

NUMERIC = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
           "float16", "float32", "float64"] + ([ml_dtypes.bfloat16] if ml_dtypes else [])


def sample(dtype, shape=(3, 5)) -> np.ndarray:
    rng = np.random.default_rng(7)
    dtype = np.dtype(dtype)
    if dtype == bool:
        return rng.integers(0, 2, shape).astype(bool)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
    return (rng.standard_normal(shape) * 1000).astype(dtype)


@pytest.mark.parametrize("dtype", NUMERIC, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("offset", [0, 3])  # 3: misaligned for every multi-byte dtype
def test_numeric_round_trip(region, dtype, offset):
    x = sample(dtype)
    shm.set_shared_memory_region(region, [x], offset=offset)
    y = shm.get_contents_as_numpy(region, np.dtype(dtype), x.shape, offset=offset)
    assert y.dtype == x.dtype and y.shape == x.shape
    np.testing.assert_array_equal(y.view(np.uint8), x.view(np.uint8))
    assert bytes(region.view(np.uint8, [x.nbytes], offset)) == x.tobytes()


@pytest.mark.parametrize("dtype", NUMERIC, ids=lambda d: np.dtype(d).name)
def test_strided_and_big_endian_inputs_land_in_c_order_little_endian(region, dtype):
    x = sample(dtype, (6, 8))[::2, 1::3]  # not contiguous
    assert not x.flags.c_contiguous
    region.write([x])
    assert bytes(region.view(np.uint8, [x.nbytes])) == np.ascontiguousarray(x).tobytes()
    if np.dtype(dtype).itemsize > 1 and np.dtype(dtype).kind in "iuf":
        swapped = x.astype(np.dtype(dtype).newbyteorder(">"))
        region.write([swapped], offset=1000)
        assert bytes(region.view(np.uint8, [x.nbytes], 1000)) == np.ascontiguousarray(x).tobytes()


def test_writes_go_back_to_back_and_report_their_spans(region):
    a, b, c = np.arange(3, dtype=np.int16), np.array([b"xy", b""], dtype=object), np.ones(2, np.float64)
    assert region.write([a, b, c], offset=10) == [(10, 6), (16, 10), (26, 16)]
    np.testing.assert_array_equal(region.view(np.int16, [3], 10), a)
    np.testing.assert_array_equal(region.read_bytes(2, 16, 10), [b"xy", b""])
    np.testing.assert_array_equal(region.view(np.float64, [2], 26), c)


BYTES_CASES = {
    "object": np.array([[b"a\x00b", b""], [b"\x00", b"\xff" * 300]], dtype=object),
    "object_str": np.array(["h\u00e9llo", "", "\u4e16\u754c"], dtype=object),
    "S": np.array([b"ab", b"c", b""], dtype="S4"),
    "U": np.array(["x", "\u00fc\u00df", ""], dtype="U3"),
    "empty": np.array([], dtype=object).reshape(0, 2),
}


@pytest.mark.parametrize("name", list(BYTES_CASES))
def test_bytes_round_trip_matches_tritonclient_serialization(region, name):
    from tritonclient.utils import serialize_byte_tensor

    x = BYTES_CASES[name]
    expected = [v.encode() if isinstance(v, str) else bytes(v) for v in x.reshape(-1).tolist()]
    nbytes = region.write([x], offset=5)[0][1]
    if x.size:
        wire = serialize_byte_tensor(np.array(expected, dtype=object)).item()
        assert bytes(region.view(np.uint8, [nbytes], 5)) == wire
    for datatype in (np.object_, np.bytes_):
        y = shm.get_contents_as_numpy(region, datatype, x.shape, offset=5)
        assert y.dtype == object and y.shape == x.shape
        assert y.reshape(-1).tolist() == expected


def test_pre_serialized_bytes_are_copied_as_is(region):
    """tritonclient's convention: set_shared_memory_region([serialize_byte_tensor(x)])."""
    from tritonclient.utils import serialize_byte_tensor

    x = np.array([b"one", b"\x00two"], dtype=object)
    serialized = serialize_byte_tensor(x)
    assert serialized.ndim == 0
    shm.set_shared_memory_region(region, [serialized])
    np.testing.assert_array_equal(shm.get_contents_as_numpy(region, np.object_, [2]), x)


def test_interoperates_with_tritonclient_shared_memory():
    """tritonclient creates and writes; we attach, read and write; it reads ours."""
    import tritonclient.utils.shared_memory as tc_shm
    from tritonclient.utils import serialize_byte_tensor

    key = unique_key()
    theirs = tc_shm.create_shared_memory_region("theirs", key, 256)
    try:
        floats = np.linspace(0, 1, 8, dtype=np.float32)
        strings = np.array([b"tri", b"", b"ton"], dtype=object)
        tc_shm.set_shared_memory_region(theirs, [floats, serialize_byte_tensor(strings)])
        ours = shm.create_shared_memory_region("ours", key, 256)
        np.testing.assert_array_equal(shm.get_contents_as_numpy(ours, np.float32, [8]), floats)
        np.testing.assert_array_equal(shm.get_contents_as_numpy(ours, np.object_, [3], offset=32), strings)
        shm.set_shared_memory_region(ours, [strings[::-1], -floats], offset=64)
        np.testing.assert_array_equal(tc_shm.get_contents_as_numpy(theirs, np.object_, [3], offset=64), strings[::-1])
        np.testing.assert_array_equal(tc_shm.get_contents_as_numpy(theirs, np.float32, [8], offset=64 + 18), -floats)
        shm.destroy_shared_memory_region(ours)
        assert shm_path(key).exists(), "we attached: tritonclient owns the key"
    finally:
        tc_shm.destroy_shared_memory_region(theirs)
    assert not shm_path(key).exists()


# --- views outlive their region ---------------------------------------------------

VIEW_AFTER_DESTROY = """
import gc
import numpy as np
import tritonfast.utils.shared_memory as shm

key = {key!r}
handle = shm.create_shared_memory_region("r", key, 1 << 20)
shm.set_shared_memory_region(handle, [np.arange(1 << 18, dtype=np.float32)])
view = shm.get_contents_as_numpy(handle, np.float32, [1 << 18])
part = handle.view(np.float32, [4], offset=16)[1:]
shm.destroy_shared_memory_region(handle)
del handle
gc.collect()
import os
assert not os.path.exists("/dev/shm/" + key.lstrip("/")), "destroy unlinks at once"
# tritonclient segfaults here: its views point at unmapped memory.
assert view.sum() == np.arange(1 << 18, dtype=np.float32).sum()
view[:] = 1.0  # still writable, still mapped
assert part.tolist() == [1.0, 1.0, 1.0]
del view
gc.collect()
assert part.tolist() == [1.0, 1.0, 1.0]
del part
gc.collect()
print("ok")
"""


def test_views_from_a_destroyed_region_never_segfault(key):
    code = VIEW_AFTER_DESTROY.format(key=key)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=REPO)
    assert run.returncode == 0, f"exit {run.returncode}:\n{run.stdout}{run.stderr}"
    assert run.stdout.strip() == "ok"


def test_the_mapping_is_released_with_the_last_view(key):
    handle = shm.create_shared_memory_region("r", key, 4096)
    view = handle.view(np.uint8, [16])
    base = view.base
    assert isinstance(base, _core.SystemRegion)
    shm.destroy_shared_memory_region(handle)
    import sys as _sys

    refs = _sys.getrefcount(base)
    del view
    assert _sys.getrefcount(base) == refs - 1  # the view held the only other reference


# --- against the server -----------------------------------------------------------


def test_tritonclient_simple_http_shm_client_flow(triton_server):
    """tritonclient's simple_http_shm_client.py with tritonfast.utils.shared_memory in place of
    tritonclient.utils.shared_memory (add_sub: OUTPUT0 = a + b, OUTPUT1 = a - b)."""
    import tritonclient.http as httpclient
    from tritonclient import utils

    client = httpclient.InferenceServerClient(url=triton_server.http_url.removeprefix("http://"))
    tag = secrets.token_hex(4)
    in_name, out_name = f"input_data_{tag}", f"output_data_{tag}"
    in_key, out_key = unique_key(), unique_key()

    input0_data = np.arange(start=0, stop=16, dtype=np.float32).reshape(1, 16)
    input1_data = np.full((1, 16), 0.5, dtype=np.float32)
    input_byte_size = input0_data.size * input0_data.itemsize
    output_byte_size = input_byte_size

    shm_op_handle = shm.create_shared_memory_region(out_name, out_key, output_byte_size * 2)
    shm_ip_handle = shm.create_shared_memory_region(in_name, in_key, input_byte_size * 2)
    try:
        client.register_system_shared_memory(out_name, out_key, output_byte_size * 2)
        shm.set_shared_memory_region(shm_ip_handle, [input0_data])
        shm.set_shared_memory_region(shm_ip_handle, [input1_data], offset=input_byte_size)
        client.register_system_shared_memory(in_name, in_key, input_byte_size * 2)

        inputs = [httpclient.InferInput("INPUT0", [1, 16], "FP32"), httpclient.InferInput("INPUT1", [1, 16], "FP32")]
        inputs[0].set_shared_memory(in_name, input_byte_size)
        inputs[1].set_shared_memory(in_name, input_byte_size, offset=input_byte_size)
        outputs = [httpclient.InferRequestedOutput("OUTPUT0", binary_data=True),
                   httpclient.InferRequestedOutput("OUTPUT1", binary_data=True)]
        outputs[0].set_shared_memory(out_name, output_byte_size)
        outputs[1].set_shared_memory(out_name, output_byte_size, offset=output_byte_size)

        results = client.infer(model_name="add_sub", inputs=inputs, outputs=outputs)

        output0 = results.get_output("OUTPUT0")
        output1 = results.get_output("OUTPUT1")
        output0_data = shm.get_contents_as_numpy(shm_op_handle, utils.triton_to_np_dtype(output0["datatype"]),
                                                 output0["shape"])
        output1_data = shm.get_contents_as_numpy(shm_op_handle, utils.triton_to_np_dtype(output1["datatype"]),
                                                 output1["shape"], offset=output_byte_size)
        np.testing.assert_array_equal(output0_data, input0_data + input1_data)
        np.testing.assert_array_equal(output1_data, input0_data - input1_data)

        status = client.get_system_shared_memory_status()
        registered = {r["name"]: r for r in status}
        assert registered[in_name]["key"] == in_key
        assert int(registered[in_name]["byte_size"]) == input_byte_size * 2
    finally:
        client.unregister_system_shared_memory(in_name)
        client.unregister_system_shared_memory(out_name)
        client.close()
        shm.destroy_shared_memory_region(shm_ip_handle)
        shm.destroy_shared_memory_region(shm_op_handle)
    assert not shm_path(in_key).exists() and not shm_path(out_key).exists()
    assert in_key not in shm.mapped_shared_memory_regions()


def _shm_tensor(name: str, region: str, byte_size: int, offset: int, datatype: str = "FP32", shape=(1, 16)):
    tensor = {"name": name, "parameters": {"shared_memory_region": region, "shared_memory_byte_size": byte_size,
                                           "shared_memory_offset": offset}}
    if datatype:
        tensor.update(datatype=datatype, shape=list(shape))
    return tensor


def test_same_flow_through_shm_api_and_the_native_transport(triton_server):
    transport = _core.HttpClient("127.0.0.1", triton_server.http_port)
    tag = secrets.token_hex(4)
    name, key = f"io_{tag}", unique_key()
    a = np.arange(16, dtype=np.float32).reshape(1, 16)
    b = np.linspace(-1, 1, 16, dtype=np.float32).reshape(1, 16)
    nbytes = a.nbytes
    handle = shm.create_shared_memory_region(name, key, 4 * nbytes)  # in0, in1, out0, out1
    try:
        assert handle.write([a, b]) == [(0, nbytes), (nbytes, nbytes)]
        _shm_api.register_system_shared_memory(transport, name, key, 4 * nbytes, headers={"X-Test": "1"})
        status = _shm_api.get_system_shared_memory_status(transport, name)
        assert [(s["name"], s["key"], int(s["byte_size"])) for s in status] == [(name, key, 4 * nbytes)]

        request = {
            "inputs": [_shm_tensor("INPUT0", name, nbytes, 0), _shm_tensor("INPUT1", name, nbytes, nbytes)],
            "outputs": [_shm_tensor("OUTPUT0", name, nbytes, 2 * nbytes, datatype=""),
                        _shm_tensor("OUTPUT1", name, nbytes, 3 * nbytes, datatype="")],
        }
        status_code, body = transport.request("POST", "/v2/models/add_sub/infer",
                                              [("Content-Type", "application/json")],
                                              json.dumps(request).encode(), 30.0, False)
        assert status_code == 200, body
        response = json.loads(body)
        outputs = {o["name"]: o for o in response["outputs"]}
        assert "data" not in outputs["OUTPUT0"]
        out0 = shm.get_contents_as_numpy(handle, np.float32, outputs["OUTPUT0"]["shape"], offset=2 * nbytes)
        out1 = handle.view(np.float32, outputs["OUTPUT1"]["shape"], offset=3 * nbytes)
        np.testing.assert_array_equal(out0, a + b)
        np.testing.assert_array_equal(out1, a - b)

        with pytest.raises(SharedMemoryError) as info:  # the name is taken
            _shm_api.register_system_shared_memory(transport, name, key, nbytes)
        assert info.value.status == 400
        assert f"registering system shared memory region '{name}'" in str(info.value)
        assert "failed with HTTP 400: " in str(info.value) and "already" in str(info.value).lower()
    finally:
        _shm_api.unregister_system_shared_memory(transport, name)
        handle.destroy()
        transport.close()
    assert not shm_path(key).exists()


def test_server_refusals_carry_status_and_message(triton_server):
    transport = _core.HttpClient("127.0.0.1", triton_server.http_port)
    key = unique_key()
    handle = shm.create_shared_memory_region("small", key, 8192)
    tag = secrets.token_hex(4)
    try:
        with pytest.raises(SharedMemoryError, match=r"failed with HTTP 400: .*invalid args") as info:
            _shm_api.register_system_shared_memory(transport, f"big_{tag}", key, 16384)  # more than it holds
        assert info.value.status == 400
        with pytest.raises(SharedMemoryError, match="HTTP 500: Unable to open shared memory region") as info:
            _shm_api.register_system_shared_memory(transport, f"none_{tag}", unique_key(), 64)
        assert info.value.status == 500
        with pytest.raises(SharedMemoryError, match="not a multiple of the page size") as info:
            _shm_api.register_system_shared_memory(transport, f"odd_{tag}", key, 32, offset=16)
        assert info.value.status == 400
        with pytest.raises(SharedMemoryError, match=f"HTTP 404: Unable to find system shared memory region: 'x_{tag}'"):
            _shm_api.get_system_shared_memory_status(transport, f"x_{tag}")
        # A page-aligned offset within the object is fine.
        _shm_api.register_system_shared_memory(transport, f"page_{tag}", key, 4096, offset=4096)
        [status] = _shm_api.get_system_shared_memory_status(transport, f"page_{tag}")
        assert (int(status["offset"]), int(status["byte_size"])) == (4096, 4096)
        _shm_api.unregister_system_shared_memory(transport, f"page_{tag}")
        _shm_api.unregister_system_shared_memory(transport, f"never_{tag}")  # unknown names are fine
    finally:
        handle.destroy()
        transport.close()


def test_cuda_endpoints_answer_on_a_cpu_only_server(triton_server):
    """Status works; registering a handle nobody exported is refused with the server's reason."""
    import base64

    transport = _core.HttpClient("127.0.0.1", triton_server.http_port)
    tag = secrets.token_hex(4)
    try:
        assert isinstance(_shm_api.get_cuda_shared_memory_status(transport), list)
        with pytest.raises(SharedMemoryError, match="registering CUDA shared memory region .* failed with HTTP 400") as info:
            _shm_api.register_cuda_shared_memory(transport, f"cuda_{tag}", base64.b64encode(bytes(64)), 0, 64)
        assert info.value.status == 400
        with pytest.raises(SharedMemoryError, match="must be a valid base64 encoded cudaIpcMemHandle_t"):
            _shm_api.register_cuda_shared_memory(transport, f"cuda_{tag}", base64.b64encode(bytes(10)), 0, 64)
        with pytest.raises(SharedMemoryError, match="HTTP 404") as info:
            _shm_api.get_cuda_shared_memory_status(transport, f"cuda_{tag}")
        assert info.value.status == 404
        _shm_api.unregister_cuda_shared_memory(transport, f"never_{tag}")
    finally:
        transport.close()


def test_unsupported_server_answers_are_reported_by_status():
    """A 501 from a server without --allow-client-shm keeps its message and status."""

    class Refusing:
        def request(self, method, target, headers, body, timeout_s, idempotent):
            self.seen = (method, target, headers, body, timeout_s, idempotent)
            return 501, json.dumps({"error": "Client shared memory is disabled. Start the server with "
                                             "'--allow-client-shm=true' to enable."}).encode()

    transport = Refusing()
    with pytest.raises(SharedMemoryError, match="HTTP 501: Client shared memory is disabled") as info:
        _shm_api.register_system_shared_memory(transport, "a b/c", "/k", 64, offset=4096, timeout_s=2.0)
    assert info.value.status == 501
    method, target, headers, body, timeout_s, idempotent = transport.seen
    assert (method, target, timeout_s, idempotent) == ("POST", "/v2/systemsharedmemory/region/a%20b%2Fc/register",
                                                       2.0, False)
    assert ("Content-Type", "application/json") in headers
    assert json.loads(body) == {"key": "/k", "offset": 4096, "byte_size": 64}

    with pytest.raises(SharedMemoryError):
        _shm_api.register_cuda_shared_memory(transport, "c", b"QUJD", 1, 64)
    assert json.loads(transport.seen[3]) == {"raw_handle": {"b64": "QUJD"}, "device_id": 1, "byte_size": 64}
    with pytest.raises(SharedMemoryError):
        _shm_api.unregister_system_shared_memory(transport)
    assert transport.seen[:2] == ("POST", "/v2/systemsharedmemory/unregister") and transport.seen[3] is None
    with pytest.raises(SharedMemoryError):
        _shm_api.get_cuda_shared_memory_status(transport, "r")
    assert transport.seen[:2] == ("GET", "/v2/cudasharedmemory/region/r/status") and transport.seen[5] is True


def test_doc_mentions_every_public_name():
    assert shm.__all__ == sorted(shm.__all__)
    assert shm.SharedMemoryException is SharedMemoryError
    for name in ("triton_shm_name", "key", "byte_size", "write(", "view(", "read_bytes(", "destroy()"):
        assert name in textwrap.dedent(shm.SharedMemoryRegion.__doc__)
