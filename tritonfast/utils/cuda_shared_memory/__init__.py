"""CUDA shared memory, a drop-in for ``tritonclient.utils.cuda_shared_memory``.

Port tritonclient code by changing the import::

    import tritonfast.utils.cuda_shared_memory as cudashm   # was: import tritonclient.utils.cuda_shared_memory as cudashm

    handle = cudashm.create_shared_memory_region("input_data", 64, 0)
    cudashm.set_shared_memory_region(handle, [input0, input1])
    client.register_cuda_shared_memory("input_data", cudashm.get_raw_handle(handle), 0, 64)

Needs no ``cuda-python`` and nothing CUDA at install time: the CUDA runtime
(``libcudart``) is loaded when the first region is created, from the system
or from the ``nvidia-cuda-runtime-cu12`` wheel (which PyTorch installs).
Without a runtime or a GPU, :func:`create_shared_memory_region` raises
:class:`CudaSharedMemoryException` saying which is missing.

Copies (tritonclient's in brackets): numpy -> region 1 host-to-device copy
straight from the array [a host copy first, then one]; a CuPy array or PyTorch
tensor (``__cuda_array_interface__``) or any ``__dlpack__`` object -> region
1 device-to-device copy, no host round trip [numpy only, or the DLPack
function]; region -> numpy 1 device-to-host copy of only the requested bytes
[the whole region, then a second copy].

Other differences: ``set_shared_memory_region`` takes device arrays and
serializes BYTES arrays itself (a 0-d object array holding ``bytes`` is taken as
already serialized, tritonclient's convention); ``get_contents_as_numpy`` takes
an ``offset``; device memory is freed by :func:`destroy_shared_memory_region`
once no other reference to the handle is left (tritonclient: when the handle is
garbage-collected).
"""

from __future__ import annotations

import base64
import importlib.util
import math
import os
import threading
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from tritonfast import _core
from tritonfast.exceptions import SharedMemoryError
from tritonfast.utils.shared_memory import _offset, _shape  # the same argument checks as system regions

__all__ = [
    "CudaSharedMemoryException",
    "CudaSharedMemoryRegion",
    "allocated_shared_memory_regions",
    "check_available",
    "create_shared_memory_region",
    "destroy_shared_memory_region",
    "get_contents_as_numpy",
    "get_raw_handle",
    "load_cuda_runtime",
    "set_shared_memory_region",
    "set_shared_memory_region_from_dlpack",
]

#: tritonclient's name for the error; the same class as SharedMemoryError.
CudaSharedMemoryException = SharedMemoryError

# DLPack device types (dlpack.h) we can copy from.
_DL_CPU, _DL_CUDA, _DL_CUDA_HOST, _DL_CUDA_MANAGED = 1, 2, 3, 13
# What __dlpack__(stream=...) is given for CUDA data: the legacy default stream,
# on which our copies run, so the producer orders its pending work before them.
_DLPACK_LEGACY_STREAM = 1

allocated_shm_regions: List["CudaSharedMemoryRegion"] = []
_regions_lock = threading.Lock()


def _wheel_runtime_dirs() -> List[str]:
    """lib directories of the pip-installed CUDA runtimes (nvidia-cuda-runtime-cu12/-cu13)."""
    try:
        spec = importlib.util.find_spec("nvidia")
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    dirs = []
    for root in spec.submodule_search_locations:
        for sub in ("cuda_runtime", "cu13"):
            lib = os.path.join(root, sub, "lib")
            if os.path.isdir(lib):
                dirs.append(lib)
    return dirs


def load_cuda_runtime() -> str:
    """Loads libcudart (once per process) and returns what was loaded.

    Raises :class:`CudaSharedMemoryException` listing every name and directory
    tried when none loads.
    """
    return _core.cuda_load_runtime(_wheel_runtime_dirs())


def check_available() -> int:
    """Number of visible CUDA devices; :class:`CudaSharedMemoryException` saying
    what is missing (the runtime library, the driver or a device) when CUDA
    shared memory cannot work in this process."""
    load_cuda_runtime()
    return _core.cuda_device_count()


class CudaSharedMemoryRegion:
    """Handle of a CUDA shared-memory region, from :func:`create_shared_memory_region`.

    ``triton_shm_name`` (str), ``byte_size`` (int), ``device_id`` (int)
        The registered name, the size and the GPU of the allocation.
    ``raw_handle() -> bytes``
        Base64 of the 64-byte ``cudaIpcMemHandle_t``, as :func:`get_raw_handle`
        (what ``register_cuda_shared_memory`` sends).
    ``write(values, offset=0) -> list of (offset, nbytes)``
        Copies numpy arrays (host to device; BYTES ones serialized), CUDA
        arrays (``__cuda_array_interface__``) and ``__dlpack__`` objects (device
        to device) back to back from ``offset``; C-contiguous device data only.
    ``read(dtype, shape, offset=0) -> numpy.ndarray``
        A new host array of numeric data (one device-to-host copy of just
        those bytes).
    ``read_bytes(count, offset=0, size=None) -> numpy.ndarray``
        1-D object array of ``count`` BYTES elements from ``[offset, offset +
        size)`` (``size=None``: to the end of the region, which is copied to
        the host).
    ``destroy()``
        Same as :func:`destroy_shared_memory_region`; idempotent.

    Out-of-range offsets and sizes raise ``CudaSharedMemoryException``.
    """

    __slots__ = ("_triton_shm_name", "_region", "_byte_size", "_device_id", "__weakref__")

    def __init__(self, triton_shm_name: str, region: Any) -> None:
        self._triton_shm_name = triton_shm_name
        self._region: Optional[Any] = region  # _core.CudaRegion; None once destroyed
        self._byte_size: int = region.size
        self._device_id: int = region.device_id

    def __repr__(self) -> str:
        state = " destroyed" if self._region is None else ""
        return (f"<CudaSharedMemoryRegion {self._triton_shm_name!r} {self._byte_size} bytes "
                f"on device {self._device_id}{state}>")

    def __reduce__(self):
        raise TypeError("a CUDA shared memory handle cannot be pickled: send get_raw_handle() instead")

    @property
    def triton_shm_name(self) -> str:
        return self._triton_shm_name

    @property
    def byte_size(self) -> int:
        return self._byte_size

    @property
    def device_id(self) -> int:
        return self._device_id

    def _live(self) -> Any:
        region = self._region
        if region is None:
            raise SharedMemoryError(f"CUDA shared memory region {self._triton_shm_name!r} was destroyed")
        return region

    def raw_handle(self) -> bytes:
        return base64.b64encode(self._live().ipc_handle)

    def write(self, values: Sequence[Any], offset: int = 0) -> List[Tuple[int, int]]:
        region = self._live()
        if not isinstance(values, (list, tuple)):
            raise TypeError(f"values must be a list or tuple of arrays, got {type(values).__name__}")
        offset = _offset(offset)
        spans = []
        for value in values:
            nbytes = _write_one(region, value, offset)
            spans.append((offset, nbytes))
            offset += nbytes
        return spans

    def read(self, dtype: Any, shape: Sequence[int], offset: int = 0) -> np.ndarray:
        region = self._live()
        dt = np.dtype(dtype)
        if dt.hasobject:
            raise TypeError("BYTES data is read with read_bytes")
        out = np.empty(_shape(shape), dtype=dt)
        region.copy_to_host(_offset(offset), out)
        return out

    def read_bytes(self, count: int, offset: int = 0, size: Optional[int] = None) -> np.ndarray:
        return self._live().read_bytes(_offset(count, "count"), _offset(offset),
                                       None if size is None else _offset(size, "size"))

    def destroy(self) -> None:
        destroy_shared_memory_region(self)


def _cuda_array_interface(value: Any) -> Optional[dict]:
    try:
        return value.__cuda_array_interface__
    except AttributeError:
        return None
    except (RuntimeError, TypeError):  # e.g. a PyTorch tensor that requires grad
        return None


def _write_cai(region: Any, cai: dict, offset: int) -> int:
    """Device-to-device copy from a ``__cuda_array_interface__`` (v2/v3) dict."""
    if cai.get("mask") is not None:
        raise TypeError("masked CUDA arrays are not supported")
    shape = tuple(int(d) for d in cai["shape"])
    itemsize = int(str(cai["typestr"])[2:])
    strides = cai.get("strides")
    if strides is not None:
        expected = itemsize
        for dim, stride in zip(reversed(shape), reversed(tuple(strides))):
            if dim > 1 and stride != expected:
                raise TypeError(
                    f"CUDA array of shape {shape} with strides {tuple(strides)} is not C-contiguous: "
                    "make it contiguous first (e.g. .contiguous() or cupy.ascontiguousarray)"
                )
            expected *= dim
    nbytes = math.prod(shape) * itemsize
    pointer = int(cai["data"][0])
    stream = cai.get("stream")  # v3: synchronise on the producer's stream first
    if nbytes == 0:
        return 0
    return region.copy_from_device(offset, pointer, nbytes, int(stream) if stream else None)


def _dlpack_capsule(value: Any) -> Any:
    device_type = value.__dlpack_device__()[0] if hasattr(value, "__dlpack_device__") else _DL_CPU
    if device_type in (_DL_CUDA, _DL_CUDA_MANAGED):
        try:
            return value.__dlpack__(stream=_DLPACK_LEGACY_STREAM)
        except TypeError:  # a producer without the stream argument
            return value.__dlpack__()
    return value.__dlpack__()


def _write_one(region: Any, value: Any, offset: int) -> int:
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "OSU":
            if value.dtype == np.object_ and value.ndim == 0 and isinstance(value.item(), bytes):
                return region.copy_from_host(offset, np.frombuffer(value.item(), dtype=np.uint8))
            return region.write_bytes(offset, value)
        if value.dtype.hasobject or (value.dtype.kind == "V" and value.dtype.names is not None):
            raise TypeError(f"cannot write an array of dtype {value.dtype} to CUDA shared memory")
        native = value.dtype.newbyteorder("=") if value.dtype.byteorder == ">" else value.dtype
        # One host copy only when the array is strided or big-endian.
        return region.copy_from_host(offset, np.ascontiguousarray(value, dtype=native))
    cai = _cuda_array_interface(value)
    if cai is not None:
        return _write_cai(region, cai, offset)
    if hasattr(value, "__dlpack__"):
        return region.copy_from_dlpack(offset, _dlpack_capsule(value))
    raise TypeError(
        f"cannot copy a {type(value).__name__} to CUDA shared memory: pass numpy arrays, CUDA "
        "arrays (__cuda_array_interface__) or __dlpack__ objects"
    )


def create_shared_memory_region(triton_shm_name: str, byte_size: int, device_id: int) -> CudaSharedMemoryRegion:
    """Allocates ``byte_size`` bytes on GPU ``device_id`` (cudaMalloc) for Triton to open by IPC.

    The calling thread's current CUDA device is left as it was. Raises
    :class:`CudaSharedMemoryException` when the CUDA runtime is missing, there
    is no such device, or the allocation fails.
    """
    load_cuda_runtime()
    handle = CudaSharedMemoryRegion(triton_shm_name, _core.CudaRegion(_offset(byte_size, "byte_size"), int(device_id)))
    with _regions_lock:
        allocated_shm_regions.append(handle)
    return handle


def get_raw_handle(cuda_shm_handle: CudaSharedMemoryRegion) -> bytes:
    """Base64 (``bytes``) of the region's 64-byte ``cudaIpcMemHandle_t``, as tritonclient."""
    return cuda_shm_handle.raw_handle()


def set_shared_memory_region(
    cuda_shm_handle: CudaSharedMemoryRegion, input_values: Sequence[Any], offset: int = 0
) -> None:
    """Copies ``input_values`` back to back into the region from ``offset``.

    numpy arrays go host to device (BYTES ones serialized first; a 0-d object
    array holding ``bytes`` is copied as is). Objects with
    ``__cuda_array_interface__`` (CuPy, Numba, PyTorch CUDA tensors) or
    ``__dlpack__`` go device to device, with no host round trip.
    """
    if not isinstance(input_values, (list, tuple)):
        raise TypeError("input_values must be a list or tuple of arrays")
    cuda_shm_handle.write(input_values, offset)


def set_shared_memory_region_from_dlpack(
    cuda_shm_handle: CudaSharedMemoryRegion, input_values: Sequence[Any], offset: int = 0
) -> None:
    """Copies ``__dlpack__`` objects (C-contiguous) back to back into the region from ``offset``."""
    if not isinstance(input_values, (list, tuple)):
        raise TypeError("input_values must be a list or tuple of DLPack objects")
    region = cuda_shm_handle._live()
    offset = _offset(offset)
    for i, value in enumerate(input_values):
        if not hasattr(value, "__dlpack__"):
            raise TypeError(f"input_values[{i}] ({type(value).__name__}) has no __dlpack__")
        offset += region.copy_from_dlpack(offset, _dlpack_capsule(value))


def get_contents_as_numpy(
    cuda_shm_handle: CudaSharedMemoryRegion, datatype: Any, shape: Sequence[int], offset: int = 0
) -> np.ndarray:
    """A new host array of ``shape`` read from the region at ``offset``; copies
    only those bytes. ``np.object_`` / ``np.bytes_``: BYTES, ``prod(shape)`` elements."""
    dims = _shape(shape)
    dtype = np.dtype(datatype)
    if dtype.kind in "OSU":
        return cuda_shm_handle.read_bytes(math.prod(dims), offset).reshape(dims)
    return cuda_shm_handle.read(dtype, dims, offset)


def allocated_shared_memory_regions() -> List[CudaSharedMemoryRegion]:
    """Handles created and not yet destroyed (a copy of the list)."""
    with _regions_lock:
        return list(allocated_shm_regions)


def destroy_shared_memory_region(cuda_shm_handle: CudaSharedMemoryRegion) -> None:
    """Forgets the handle and frees its device memory (cudaFree) once nothing else
    references it. Unregister it from the server first. Idempotent."""
    with _regions_lock:
        region, cuda_shm_handle._region = cuda_shm_handle._region, None
        if region is None:
            return
        try:
            allocated_shm_regions.remove(cuda_shm_handle)
        except ValueError:
            pass
    del region  # the last reference: cudaFree runs here
