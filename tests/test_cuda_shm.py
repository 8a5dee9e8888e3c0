"""CUDA shared memory: tritonfast.utils.cuda_shared_memory (tritonclient.utils.cuda_shared_memory's API).

Tests marked ``gpu`` need an NVIDIA GPU, its driver and libcudart; without them
they skip with the reason tritonfast itself gives (which of the three is
missing). The rest run everywhere: the errors without CUDA, and the routing of
numpy arrays, CUDA arrays and DLPack objects to the right copy, against a
stand-in for the native region.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tritonfast.utils.cuda_shared_memory as cudashm
from tritonfast import _core
from tritonfast._shm import api as _shm_api
from tritonfast.exceptions import DecodeError, SharedMemoryError

REPO = Path(__file__).resolve().parent.parent


def _cuda_missing() -> str | None:
    """Why CUDA shared memory cannot work here (None when it can)."""
    try:
        cudashm.check_available()
    except SharedMemoryError as e:
        return str(e)
    return None


CUDA_MISSING = _cuda_missing()


@pytest.fixture
def cuda():
    if CUDA_MISSING is not None:
        pytest.skip(f"CUDA shared memory unavailable: {CUDA_MISSING}")


@pytest.fixture
def region(cuda):
    handle = cudashm.create_shared_memory_region(f"cuda_{secrets.token_hex(4)}", 4096, 0)
    yield handle
    cudashm.destroy_shared_memory_region(handle)


# --- everywhere ------------------------------------------------------------------


@pytest.mark.skipif(CUDA_MISSING is None, reason="CUDA is available here")
def test_without_cuda_create_says_what_is_missing():
    with pytest.raises(SharedMemoryError) as info:
        cudashm.create_shared_memory_region("no_gpu", 64, 0)
    message = str(info.value)
    assert message == CUDA_MISSING
    assert ("CUDA runtime library not found (tried: libcudart.so, " in message
            or message.startswith("no CUDA device: cudaGetDeviceCount "))
    assert message.endswith("CUDA shared memory needs an NVIDIA GPU and libcudart")
    assert cudashm.allocated_shared_memory_regions() == []
    assert cudashm.CudaSharedMemoryException is SharedMemoryError


def test_runtime_not_found_lists_what_was_tried():
    """In a fresh process, so that no runtime is loaded yet."""
    code = (
        "from tritonfast import _core\n"
        "try:\n"
        "    _core.cuda_load_runtime(['/nonexistent/lib'], False)\n"
        "except Exception as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == (
        "SharedMemoryError CUDA runtime library not found (tried: /nonexistent/lib/libcudart.so, "
        "/nonexistent/lib/libcudart.so.13, /nonexistent/lib/libcudart.so.12, "
        "/nonexistent/lib/libcudart.so.11.0); CUDA shared memory needs an NVIDIA GPU and libcudart"
    )


def test_runtime_loading_is_stable():
    try:
        first = cudashm.load_cuda_runtime()
    except SharedMemoryError as e:
        assert "CUDA runtime library not found" in str(e)
        return
    assert cudashm.load_cuda_runtime() == first
    assert "libcudart" in first
    assert all(Path(d).is_dir() for d in cudashm._wheel_runtime_dirs())


class FakeRegion:
    """Stands in for _core.CudaRegion: records the copies it is asked for."""

    size = 1 << 20
    device_id = 0
    ipc_handle = bytes(range(64))

    def __init__(self):
        self.calls = []

    def copy_from_host(self, offset, array):
        self.calls.append(("host", offset, array.tobytes()))
        return array.nbytes

    def write_bytes(self, offset, array):
        wire = _core.serialize_bytes(array)
        self.calls.append(("bytes", offset, wire))
        return len(wire)

    def copy_from_device(self, offset, pointer, nbytes, stream=None):
        self.calls.append(("device", offset, pointer, nbytes, stream))
        return nbytes

    def copy_from_dlpack(self, offset, capsule):
        self.calls.append(("dlpack", offset, capsule))
        return 8


class FakeCudaArray:
    def __init__(self, shape, typestr="<f4", strides=None, stream=None, ptr=0xDEAD000):
        self.__cuda_array_interface__ = {"shape": shape, "typestr": typestr, "data": (ptr, False),
                                         "strides": strides, "version": 3, "stream": stream}


class FakeDLPack:
    def __init__(self, device_type):
        self.device_type = device_type
        self.streams = []

    def __dlpack_device__(self):
        return (self.device_type, 0)

    def __dlpack__(self, stream=None):
        self.streams.append(stream)
        return "capsule"


def fake_handle() -> cudashm.CudaSharedMemoryRegion:
    return cudashm.CudaSharedMemoryRegion("fake", FakeRegion())


def test_numpy_arrays_go_host_to_device_back_to_back():
    handle = fake_handle()
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    strided = np.arange(12, dtype=np.int16)[::2]
    big_endian = np.arange(3, dtype=">i4")
    spans = handle.write([a, strided, big_endian], offset=8)
    assert spans == [(8, 24), (32, 12), (44, 12)]
    calls = handle._region.calls
    assert [c[:2] for c in calls] == [("host", 8), ("host", 32), ("host", 44)]
    assert calls[1][2] == strided.tobytes() and calls[2][2] == np.arange(3, dtype="<i4").tobytes()


def test_bytes_arrays_are_serialized_unless_already():
    from tritonclient.utils import serialize_byte_tensor

    handle = fake_handle()
    x = np.array([b"a\x00", b""], dtype=object)
    handle.write([x, serialize_byte_tensor(x)])
    (kind0, _, wire0), (kind1, off1, wire1) = handle._region.calls
    assert (kind0, kind1, off1) == ("bytes", "host", len(wire0))
    assert wire0 == wire1 == serialize_byte_tensor(x).item()


def test_cuda_arrays_go_device_to_device():
    handle = fake_handle()
    spans = handle.write([FakeCudaArray((4, 2)), FakeCudaArray((3,), "<f8", strides=(8,), stream=7),
                          FakeCudaArray((0, 5))])
    assert spans == [(0, 32), (32, 24), (56, 0)]
    assert handle._region.calls == [("device", 0, 0xDEAD000, 32, None), ("device", 32, 0xDEAD000, 24, 7)]


def test_strided_cuda_arrays_are_refused():
    with pytest.raises(TypeError, match=r"strides \(4, 8\) is not C-contiguous"):
        fake_handle().write([FakeCudaArray((2, 2), strides=(4, 8))])


def test_dlpack_objects_are_taken_on_the_legacy_default_stream():
    handle = fake_handle()
    gpu, cpu = FakeDLPack(2), FakeDLPack(1)
    handle.write([gpu, cpu])
    assert gpu.streams == [1] and cpu.streams == [None]
    assert handle._region.calls == [("dlpack", 0, "capsule"), ("dlpack", 8, "capsule")]
    cudashm.set_shared_memory_region_from_dlpack(handle, [FakeDLPack(2)], offset=100)
    assert handle._region.calls[-1] == ("dlpack", 100, "capsule")
    with pytest.raises(TypeError, match=r"input_values\[0\] \(list\) has no __dlpack__"):
        cudashm.set_shared_memory_region_from_dlpack(handle, [[1, 2]])


def test_other_values_are_type_errors():
    with pytest.raises(TypeError, match="cannot copy a list to CUDA shared memory"):
        fake_handle().write([[1.0, 2.0]])
    with pytest.raises(TypeError, match="list or tuple"):
        cudashm.set_shared_memory_region(fake_handle(), np.zeros(2))
    with pytest.raises(SharedMemoryError, match="offset -4 is negative"):
        fake_handle().write([np.zeros(1)], offset=-4)


def test_raw_handle_is_base64_of_the_64_byte_ipc_handle():
    handle = fake_handle()
    assert cudashm.get_raw_handle(handle) == handle.raw_handle() == base64.b64encode(bytes(range(64)))
    assert (handle.triton_shm_name, handle.byte_size, handle.device_id) == ("fake", 1 << 20, 0)


def test_destroy_is_idempotent_and_a_destroyed_handle_refuses_work():
    handle = fake_handle()
    cudashm.allocated_shm_regions.append(handle)
    cudashm.destroy_shared_memory_region(handle)
    handle.destroy()
    assert handle not in cudashm.allocated_shared_memory_regions()
    with pytest.raises(SharedMemoryError, match="'fake' was destroyed"):
        handle.raw_handle()
    with pytest.raises(SharedMemoryError, match="'fake' was destroyed"):
        cudashm.get_contents_as_numpy(handle, np.float32, [1])


# --- on a GPU ------------------------------------------------------------------------

NUMERIC = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
           "float16", "float32", "float64"]


@pytest.mark.gpu
def test_create_describes_the_region(region):
    assert region.byte_size == 4096 and region.device_id == 0
    assert region in cudashm.allocated_shared_memory_regions()
    raw = cudashm.get_raw_handle(region)
    assert isinstance(raw, bytes) and len(base64.b64decode(raw, validate=True)) == 64
    assert raw == region.raw_handle()


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", NUMERIC)
def test_numeric_round_trip(region, dtype):
    x = (np.arange(24) % 7).astype(dtype).reshape(4, 6)
    cudashm.set_shared_memory_region(region, [x])
    np.testing.assert_array_equal(cudashm.get_contents_as_numpy(region, x.dtype, x.shape), x)
    cudashm.set_shared_memory_region(region, [x[:, ::2]], offset=1000)  # strided, at an offset
    np.testing.assert_array_equal(cudashm.get_contents_as_numpy(region, x.dtype, (4, 3), offset=1000), x[:, ::2])


@pytest.mark.gpu
def test_bf16_round_trip(region):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = np.linspace(-2, 2, 16).astype(ml_dtypes.bfloat16)
    cudashm.set_shared_memory_region(region, [x])
    assert cudashm.get_contents_as_numpy(region, x.dtype, [16]).tobytes() == x.tobytes()


@pytest.mark.gpu
def test_arrays_land_back_to_back(region):
    a = np.arange(4, dtype=np.float32)
    s = np.array([b"a\x00b", b"", b"xyz"], dtype=object)
    b = np.arange(3, dtype=np.int64)
    assert region.write([a, s, b]) == [(0, 16), (16, 19), (35, 24)]
    np.testing.assert_array_equal(cudashm.get_contents_as_numpy(region, np.float32, [4]), a)
    np.testing.assert_array_equal(cudashm.get_contents_as_numpy(region, np.object_, [3], offset=16), s)
    np.testing.assert_array_equal(cudashm.get_contents_as_numpy(region, np.int64, [3], offset=35), b)


@pytest.mark.gpu
def test_pre_serialized_bytes_as_tritonclient_does(region):
    from tritonclient.utils import serialize_byte_tensor

    x = np.array([b"one", b"two"], dtype=object)
    cudashm.set_shared_memory_region(region, [serialize_byte_tensor(x)])
    np.testing.assert_array_equal(cudashm.get_contents_as_numpy(region, np.bytes_, [2]), x)


@pytest.mark.gpu
def test_bounds_errors_name_offset_size_and_region(region):
    with pytest.raises(SharedMemoryError, match="16 bytes at offset 4088 do not fit in CUDA shared memory region "
                                                "of 4096 bytes on device 0"):
        cudashm.set_shared_memory_region(region, [np.zeros(4, np.float32)], offset=4088)
    with pytest.raises(SharedMemoryError, match="at offset 5000 .*past its end"):
        cudashm.get_contents_as_numpy(region, np.uint8, [1], offset=5000)
    cudashm.set_shared_memory_region(region, [np.array([0xFFFF], dtype="<u4")], offset=4092)
    with pytest.raises(DecodeError, match="element 0 at byte 4092 .* length prefix 65535 exceeds the 0 bytes left"):
        cudashm.get_contents_as_numpy(region, np.object_, [1], offset=4092)


@pytest.mark.gpu
def test_numpy_through_dlpack_is_a_host_copy(region):
    x = np.arange(10, dtype=np.float32)
    cudashm.set_shared_memory_region_from_dlpack(region, [x], offset=4)
    np.testing.assert_array_equal(cudashm.get_contents_as_numpy(region, np.float32, [10], offset=4), x)


@pytest.mark.gpu
def test_cupy_arrays_are_copied_device_to_device(region):
    cupy = pytest.importorskip("cupy")
    x = cupy.arange(32, dtype=cupy.float32).reshape(4, 8)
    cudashm.set_shared_memory_region(region, [x, x * 2])
    np.testing.assert_array_equal(cudashm.get_contents_as_numpy(region, np.float32, [4, 8]), cupy.asnumpy(x))
    np.testing.assert_array_equal(cudashm.get_contents_as_numpy(region, np.float32, [4, 8], offset=128),
                                  cupy.asnumpy(x * 2))
    with pytest.raises(TypeError, match="not C-contiguous"):
        cudashm.set_shared_memory_region(region, [x[:, ::2]])
    cudashm.set_shared_memory_region_from_dlpack(region, [x + 1])
    np.testing.assert_array_equal(cudashm.get_contents_as_numpy(region, np.float32, [4, 8]), cupy.asnumpy(x + 1))


@pytest.mark.gpu
def test_torch_tensors_are_copied_device_to_device(region):
    torch = pytest.importorskip("torch")
    x = torch.arange(16, dtype=torch.float32, device="cuda:0")
    cudashm.set_shared_memory_region(region, [x])
    np.testing.assert_array_equal(cudashm.get_contents_as_numpy(region, np.float32, [16]), x.cpu().numpy())
    y = torch.linspace(-1, 1, 8, dtype=torch.bfloat16, device="cuda:0")
    cudashm.set_shared_memory_region_from_dlpack(region, [y], offset=64)
    assert (cudashm.get_contents_as_numpy(region, np.uint16, [8], offset=64).tobytes()
            == y.cpu().view(torch.int16).numpy().tobytes())
    cudashm.set_shared_memory_region(region, [torch.full((4,), 3, dtype=torch.int32)], offset=96)  # CPU tensor
    np.testing.assert_array_equal(cudashm.get_contents_as_numpy(region, np.int32, [4], offset=96), [3, 3, 3, 3])


@pytest.mark.gpu
def test_unknown_device_and_zero_size_are_refused(cuda):
    count = cudashm.check_available()
    with pytest.raises(SharedMemoryError, match=f"CUDA device {count} does not exist: {count} device"):
        cudashm.create_shared_memory_region("nope", 64, count)
    with pytest.raises(SharedMemoryError, match="of 0 bytes"):
        cudashm.create_shared_memory_region("empty", 0, 0)


@pytest.mark.gpu
def test_destroy_frees_and_forgets(cuda):
    handle = cudashm.create_shared_memory_region("gone", 1 << 20, 0)
    cudashm.destroy_shared_memory_region(handle)
    assert handle not in cudashm.allocated_shared_memory_regions()
    with pytest.raises(SharedMemoryError, match="was destroyed"):
        cudashm.set_shared_memory_region(handle, [np.zeros(1)])


@pytest.mark.gpu
def test_infer_add_sub_through_cuda_shared_memory(cuda, triton_server):
    """tritonclient's simple_http_cudashm_client flow through _shm_api and our transport.
    Skipped when the server cannot open the IPC handle (the test server may be CPU-only)."""
    transport = _core.HttpClient("127.0.0.1", triton_server.http_port)
    name = f"cuda_io_{secrets.token_hex(4)}"
    a = np.arange(16, dtype=np.float32).reshape(1, 16)
    b = np.full((1, 16), 2.0, dtype=np.float32)
    n = a.nbytes
    handle = cudashm.create_shared_memory_region(name, 4 * n, 0)
    try:
        cudashm.set_shared_memory_region(handle, [a, b])
        try:
            _shm_api.register_cuda_shared_memory(transport, name, cudashm.get_raw_handle(handle), 0, 4 * n)
        except SharedMemoryError as e:
            pytest.skip(f"the test server cannot open CUDA IPC handles (CPU-only?): {e}")
        try:
            [status] = _shm_api.get_cuda_shared_memory_status(transport, name)
            assert (status["name"], int(status["byte_size"])) == (name, 4 * n)

            def tensor(tensor_name, offset, datatype=True):
                t = {"name": tensor_name, "parameters": {"shared_memory_region": name,
                                                         "shared_memory_byte_size": n,
                                                         "shared_memory_offset": offset}}
                if datatype:
                    t.update(datatype="FP32", shape=[1, 16])
                return t

            request = {"inputs": [tensor("INPUT0", 0), tensor("INPUT1", n)],
                       "outputs": [tensor("OUTPUT0", 2 * n, False), tensor("OUTPUT1", 3 * n, False)]}
            code, body = transport.request("POST", "/v2/models/add_sub/infer", [("Content-Type", "application/json")],
                                           json.dumps(request).encode(), 30.0, False)
            assert code == 200, body
            np.testing.assert_array_equal(cudashm.get_contents_as_numpy(handle, np.float32, [1, 16], offset=2 * n), a + b)
            np.testing.assert_array_equal(cudashm.get_contents_as_numpy(handle, np.float32, [1, 16], offset=3 * n), a - b)
        finally:
            _shm_api.unregister_cuda_shared_memory(transport, name)
    finally:
        cudashm.destroy_shared_memory_region(handle)
        transport.close()
