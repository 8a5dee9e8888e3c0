"""System shared memory, a drop-in for ``tritonclient.utils.shared_memory``.

Port tritonclient code by changing the import::

    import tritonfast.utils.shared_memory as shm          # was: import tritonclient.utils.shared_memory as shm

    handle = shm.create_shared_memory_region("input_data", "/input_simple", 64)
    shm.set_shared_memory_region(handle, [input0, input1])
    client.register_system_shared_memory("input_data", "/input_simple", 64)
    ...
    output0 = shm.get_contents_as_numpy(handle_out, np.float32, [1, 16])
    shm.destroy_shared_memory_region(handle)

The regions are POSIX shared memory objects (``/dev/shm``) created and mapped by
the C++ core (``tritonfast._core.SystemRegion``). Copies: a numeric array is
copied into the region once (a ``memcpy`` with the GIL released, or
``numpy.copyto`` into a view for a non-contiguous array); a BYTES tensor is
serialized by the C++ codec straight into the region; ``get_contents_as_numpy``
returns a zero-copy view for numeric data and one ``bytes`` per element for
BYTES.

Differences from tritonclient, on purpose:

* **A view never dangles.** Every numpy view holds a reference to the mapping;
  ``destroy_shared_memory_region`` removes the key from ``/dev/shm`` (when this
  process created it and its last handle goes) and drops the handle's own
  reference, and the memory is unmapped when the last view is gone.
  tritonclient unmaps at once, and touching an older view segfaults.
* Attaching (``create_only=False``) to an existing region smaller than
  ``byte_size`` raises :class:`SharedMemoryException` instead of warning.
* ``set_shared_memory_region`` serializes BYTES arrays (object, ``S``, ``U``)
  itself; a 0-d object array holding ``bytes`` (what
  ``tritonclient.utils.serialize_byte_tensor`` and
  :func:`tritonfast.utils.serialize_byte_tensor` return) is taken as already
  serialized and copied as is, so tritonclient code keeps working.
* ``get_contents_as_numpy`` for BYTES reads exactly ``prod(shape)`` elements and
  raises :class:`~tritonfast.exceptions.DecodeError` naming the element and byte
  offset when a length runs past the region (tritonclient raises
  ``struct.error`` or returns garbage).
* Keys are normalised to one leading ``/`` (``"k"``, ``"/k"`` and ``"//k"`` all
  name ``/dev/shm/k``, as they do for tritonclient once glibc has stripped the
  slashes); ``mapped_shared_memory_regions`` lists normalised keys.
* No ``multiprocessing.resource_tracker``: it cannot unlink a region behind
  your back or warn about "leaked" ones at exit.
* Passing something other than a list of numpy arrays is a ``TypeError``.
"""

from __future__ import annotations

import math
import threading
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from tritonfast import _core
from tritonfast.exceptions import SharedMemoryError

__all__ = [
    "SharedMemoryException",
    "SharedMemoryRegion",
    "create_shared_memory_region",
    "destroy_shared_memory_region",
    "get_contents_as_numpy",
    "mapped_shared_memory_regions",
    "set_shared_memory_region",
]

#: tritonclient's name for the error; the same class as SharedMemoryError.
SharedMemoryException = SharedMemoryError

# key -> {"needs_unlink": created by this process, "active_handle_count": live handles}
_key_mapping: Dict[str, Dict[str, Any]] = {}
_key_lock = threading.Lock()


class SharedMemoryRegion:
    """Handle of a system shared-memory region, from :func:`create_shared_memory_region`.

    Attributes and methods (the contract the client integration codes against):

    ``triton_shm_name`` (str)
        The name the region is registered under with the server.
    ``key`` (str)
        The shared-memory key, normalised to one leading ``/`` (e.g. ``"/input0"``).
    ``byte_size`` (int)
        Bytes mapped: the requested size, or the whole existing object when
        an existing one was attached.
    ``write(arrays, offset=0) -> list of (offset, nbytes)``
        Writes numpy arrays back to back from ``offset``: numeric ones as raw
        bytes in C order (byte-swapped to little-endian if needed), BYTES ones
        (object, ``S`` or ``U``) serialized with 4-byte length prefixes.
        Returns where each one landed. ``SharedMemoryError`` naming the offset,
        size and region size when one does not fit (arrays before it are
        written); ``EncodeError`` naming a BYTES element that is not bytes/str;
        ``TypeError`` for anything but numpy arrays.
    ``view(dtype, shape, offset=0) -> numpy.ndarray``
        Writable zero-copy view of numeric data (BF16 needs ml_dtypes); it keeps
        the mapping alive, even past :meth:`destroy`. ``SharedMemoryError`` when
        the range is outside the region.
    ``read_bytes(count, offset=0, size=None) -> numpy.ndarray``
        1-D object array of ``count`` BYTES elements (``bytes``) decoded from
        ``[offset, offset + size)`` (``size=None``: to the end of the region);
        elements must fit in that span, trailing bytes are ignored.
        ``DecodeError`` names the element and byte offset of malformed data.
    ``destroy()``
        Same as :func:`destroy_shared_memory_region`; idempotent. Afterwards
        ``byte_size``, ``write``, ``view`` and ``read_bytes`` raise
        ``SharedMemoryError``; views already handed out stay valid.
    ``destroyed`` (bool)
        Whether :meth:`destroy` was called.

    Methods are thread-safe; handles are not picklable (a mapping is per process).
    """

    __slots__ = ("_triton_shm_name", "_key", "_region", "__weakref__")

    def __init__(self, triton_shm_name: str, region: Any) -> None:
        self._triton_shm_name = triton_shm_name
        self._key: str = region.key
        self._region: Optional[Any] = region  # _core.SystemRegion; None once destroyed

    def __repr__(self) -> str:
        state = "destroyed" if self._region is None else f"{self.byte_size} bytes"
        return f"<SharedMemoryRegion {self._triton_shm_name!r} key={self._key!r} {state}>"

    def __reduce__(self):
        raise TypeError("a shared memory handle is per process: pass the key and open it again")

    @property
    def triton_shm_name(self) -> str:
        return self._triton_shm_name

    @property
    def key(self) -> str:
        return self._key

    @property
    def byte_size(self) -> int:
        return self._live().size

    @property
    def destroyed(self) -> bool:
        return self._region is None

    def _live(self) -> Any:
        region = self._region
        if region is None:
            raise SharedMemoryError(
                f"shared memory region {self._triton_shm_name!r} (key {self._key!r}) was destroyed"
            )
        return region

    def write(self, arrays: Sequence[np.ndarray], offset: int = 0) -> List[Tuple[int, int]]:
        region = self._live()
        if isinstance(arrays, np.ndarray) or not isinstance(arrays, (list, tuple)):
            raise TypeError(f"arrays must be a list or tuple of numpy arrays, got {type(arrays).__name__}")
        offset = _offset(offset)
        spans = []
        for i, array in enumerate(arrays):
            if not isinstance(array, np.ndarray):
                raise TypeError(f"arrays[{i}] must be a numpy array, got {type(array).__name__}")
            nbytes = _write_one(region, array, offset)
            spans.append((offset, nbytes))
            offset += nbytes
        return spans

    def view(self, dtype: Any, shape: Sequence[int], offset: int = 0) -> np.ndarray:
        return self._live().ndarray(np.dtype(dtype), _shape(shape), _offset(offset))

    def read_bytes(self, count: int, offset: int = 0, size: Optional[int] = None) -> np.ndarray:
        return self._live().read_bytes(_offset(count, "count"), _offset(offset),
                                       None if size is None else _offset(size, "size"))

    def destroy(self) -> None:
        destroy_shared_memory_region(self)


def _offset(offset: Any, what: str = "offset") -> int:
    """A non-negative int offset or size; SharedMemoryError otherwise."""
    value = int(offset)
    if value < 0:
        raise SharedMemoryError(f"{what} {value} is negative")
    return value


def _shape(shape: Any) -> List[int]:
    if isinstance(shape, (int, np.integer)):
        return [int(shape)]
    return [int(d) for d in shape]


def _write_one(region: Any, array: np.ndarray, offset: int) -> int:
    kind = array.dtype.kind
    if kind in "OSU":
        return region.write_bytes(offset, array)
    if array.dtype.hasobject or (kind == "V" and array.dtype.names is not None):
        raise TypeError(f"cannot write an array of dtype {array.dtype} to shared memory")
    native = array.dtype.newbyteorder("=") if array.dtype.byteorder == ">" else array.dtype
    if array.flags.c_contiguous and native is array.dtype:
        return region.write(offset, array)  # one memcpy, GIL released
    # Strided or big-endian: numpy copies (and swaps) straight into the region.
    np.copyto(region.ndarray(native, list(array.shape), offset), array, casting="equiv")
    return array.nbytes


def create_shared_memory_region(
    triton_shm_name: str, shm_key: str, byte_size: int, create_only: bool = False
) -> SharedMemoryRegion:
    """Creates the shared-memory object ``shm_key`` of ``byte_size`` bytes and maps it.

    If it exists already and ``create_only`` is False, it is attached instead
    (whole), as tritonclient does; ``SharedMemoryException`` if it is smaller
    than ``byte_size``. With ``create_only`` an existing object is an error.
    """
    region = _core.SystemRegion.create(shm_key, _offset(byte_size, "byte_size"), bool(create_only))
    with _key_lock:
        entry = _key_mapping.setdefault(region.key, {"needs_unlink": False, "active_handle_count": 0})
        if region.owner:
            entry["needs_unlink"] = True
        entry["active_handle_count"] += 1
    return SharedMemoryRegion(triton_shm_name, region)


def set_shared_memory_region(
    shm_handle: SharedMemoryRegion, input_values: Sequence[np.ndarray], offset: int = 0
) -> None:
    """Writes ``input_values`` (numpy arrays) back to back into the region from ``offset``.

    Numeric arrays are written as raw bytes; BYTES arrays (object, ``S``, ``U``)
    are serialized; a 0-d object array holding ``bytes`` is taken as already
    serialized (tritonclient's ``serialize_byte_tensor`` output) and copied as is.
    """
    if not isinstance(input_values, (list, tuple)):
        raise TypeError("input_values must be a list or tuple of numpy arrays")
    values = []
    for i, value in enumerate(input_values):
        if not isinstance(value, np.ndarray):
            raise TypeError(f"input_values[{i}] must be a numpy array, got {type(value).__name__}")
        if value.dtype == np.object_ and value.ndim == 0 and isinstance(value.item(), bytes):
            value = np.frombuffer(value.item(), dtype=np.uint8)  # pre-serialized BYTES
        values.append(value)
    shm_handle.write(values, offset)


def get_contents_as_numpy(
    shm_handle: SharedMemoryRegion, datatype: Any, shape: Sequence[int], offset: int = 0
) -> np.ndarray:
    """Array of ``shape`` read from the region at ``offset``.

    Numeric ``datatype``: a writable zero-copy view that keeps the mapping
    alive. ``np.object_`` or ``np.bytes_`` (BYTES): an object array of ``bytes``
    decoded from exactly ``prod(shape)`` elements.
    """
    dims = _shape(shape)
    dtype = np.dtype(datatype)
    if dtype.kind in "OSU":
        return shm_handle.read_bytes(math.prod(dims), offset).reshape(dims)
    return shm_handle.view(dtype, dims, offset)


def mapped_shared_memory_regions() -> List[str]:
    """Keys of the regions this process created or attached and has not destroyed."""
    with _key_lock:
        return list(_key_mapping)


def destroy_shared_memory_region(shm_handle: SharedMemoryRegion) -> None:
    """Releases the handle; when it is the last one for its key and this process
    created the region, the key is removed from ``/dev/shm``.

    The memory stays mapped while numpy views of it exist, so they stay valid.
    Destroying a handle twice does nothing.
    """
    with _key_lock:
        region, shm_handle._region = shm_handle._region, None
        if region is None:
            return
        entry = _key_mapping.get(region.key)
        if entry is None:
            return
        entry["active_handle_count"] -= 1
        if entry["active_handle_count"] > 0:
            return
        del _key_mapping[region.key]
        if entry["needs_unlink"]:
            region.unlink()
