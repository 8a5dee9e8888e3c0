"""Pools of shared-memory regions registered with one Triton server: the
regions behind ``ModelClient(shared_memory=...)``.

A pool belongs to one client. It creates regions on demand (sizes rounded up to
a power of two, at least ``MIN_REGION_BYTES``), registers each with the server
once, and leases each to one request at a time; concurrent requests lease
different regions. A request writes its inputs into its region (64-byte
aligned, back to back) and the server writes the outputs after them.

When a lease ends:

* no output views handed out (error, BYTES or HTTP outputs only): when the
  request returns, through :meth:`RegionPool.give_back`;
* the request may still be running on the server (timeout, broken connection):
  never reused; unregistered and unlinked as soon as the server lets go of it
  (Triton refuses to unregister a region in use), by close() at the latest;
* numeric outputs handed out as views: when the last of them is gone. Every
  view's chain of ``.base`` ends in one :class:`_Anchor` per lease (numpy
  collapses view chains down to the first object that is not an array, so a
  slice of a slice still holds the anchor); the anchor's ``__del__`` returns the
  region. So a later request never writes over a result the caller still holds.
  ``__del__`` may run in any thread, inside a garbage collection, so it only
  appends to a deque that the pool drains under its lock.

Names: ``tritonfast_<pid>_<random>_<n>``, keys ``/tritonfast_<pid>_<random>_<n>``
(the file ``/dev/shm/tritonfast_<pid>_<random>_<n>``). Each live region's file
is also held open with a shared ``flock``, which the kernel drops when the
process dies. A pool's start removes what killed clients left: files and
server registrations named ``tritonfast_<pid>_*`` whose pid is not alive and
whose file nobody holds locked (the lock guards against pid reuse and against
clients in another pid namespace sharing this /dev/shm).

Cleanup: :meth:`RegionPool.close` (from ``ModelClient.close``) unregisters every
region from the server (waiting up to ``IN_USE_WAIT_S`` for requests still
using one) and unlinks it; the same runs, bounded by ``CLOSE_BUDGET_S``, when a
pool is garbage-collected unclosed and at interpreter exit
(``weakref.finalize``). A region that fails to register is unlinked at once.
Unlinking leaves the mapping valid, so outputs the caller still holds stay
readable after close. Idle regions beyond ``MAX_IDLE_REGION_BYTES`` are
unregistered and unlinked as they come back.

Copies (system shared memory): numeric inputs, one memcpy into the region;
BYTES inputs, serialized straight into it; numeric outputs, none (views over
the region); BYTES outputs, one decode into Python objects, as over HTTP.
"""

from __future__ import annotations

import collections
import fcntl
import itertools
import logging
import os
import re
import secrets
import threading
import time
import weakref
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple

import numpy as np

from tritonfast._shm import api as _shm_api
from tritonfast.utils import cuda_shared_memory as cuda_shm
from tritonfast.utils import shared_memory as shm
from tritonfast.exceptions import PyTritonClientClosedError, SharedMemoryError

_LOGGER = logging.getLogger("tritonfast.client")

REGION_PREFIX = "tritonfast_"
# Smallest region: below this a region per size class would mean many
# registrations for small requests, and untouched tmpfs pages cost nothing.
MIN_REGION_BYTES = 1 << 20
# Offset alignment of every tensor in a region: a cache line, and enough for
# any numpy dtype, so outputs are aligned views.
TENSOR_ALIGNMENT = 64
# Idle regions a pool keeps registered; beyond this the oldest are unregistered
# and unlinked (their pages, once written, hold memory). The region just
# returned is always kept, so one request larger than this is not re-registered
# every time. Same bound as the transport's idle receive buffers.
MAX_IDLE_REGION_BYTES = 1 << 30
# Time a pool closed at interpreter exit or by the garbage collector may spend
# unregistering its regions from the server (unlinking is local and always done).
CLOSE_BUDGET_S = 2.0
# How long close() waits for the server to finish requests still using a region
# (ones that timed out here), and how often it asks meanwhile.
IN_USE_WAIT_S = 5.0
IN_USE_POLL_S = 0.05
# Where glibc's shm_open keeps the objects named by keys.
SHM_DIR = "/dev/shm"

_LEFTOVER_NAME = re.compile(r"^tritonfast_(\d+)_")


def region_size(nbytes: int) -> int:
    """The size of the region leased for ``nbytes``: a power of two, at least MIN_REGION_BYTES."""
    return max(MIN_REGION_BYTES, 1 << max(0, nbytes - 1).bit_length())


def align(offset: int) -> int:
    return (offset + TENSOR_ALIGNMENT - 1) & ~(TENSOR_ALIGNMENT - 1)


def _shm_path(key: str) -> str:
    return os.path.join(SHM_DIR, key.lstrip("/"))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return stat[stat.rindex(b")") + 2:][:1] not in (b"Z", b"X")  # a zombie holds no regions
    except (OSError, ValueError):
        return True


def _lock_shared(path: str) -> Optional[int]:
    """An fd holding a shared flock on ``path`` (None where that is not possible)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _abandoned(name: str, key: Optional[str] = None) -> bool:
    """True when ``name`` is a tritonfast region whose creator is dead and whose file,
    if it still exists, nobody holds locked."""
    match = _LEFTOVER_NAME.match(name)
    if match is None or _pid_alive(int(match.group(1))):
        return False
    try:
        fd = os.open(_shm_path(key or name), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    except OSError:
        return False  # not ours to judge (another user's file)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False  # a live process holds it
    finally:
        os.close(fd)


class Region:
    """One registered region: its handle, name and key (system) and, for system
    regions, a uint8 view of all of it and that view's address."""

    __slots__ = ("name", "key", "size", "handle", "base", "address", "lock_fd")

    def __init__(self, name: str, key: str, size: int, handle: Any, lock_fd: Optional[int] = None):
        self.name = name
        self.key = key
        self.size = size
        self.handle = handle
        self.lock_fd = lock_fd
        self.base: Optional[np.ndarray] = None
        self.address = 0

    def map_views(self) -> None:
        # The view keeps the mapping alive for every anchor made from it.
        self.base = self.handle.view(np.uint8, (self.size,), 0)
        self.address = self.base.__array_interface__["data"][0]

    def release_lock(self) -> None:
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None


class _SystemKind:
    """System shared memory: /dev/shm objects; outputs are views of the region."""

    name = "system"
    extension = "system_shared_memory"

    @staticmethod
    def create(name: str, size: int) -> Region:
        key = "/" + name
        handle = shm.create_shared_memory_region(name, key, size, create_only=True)
        region = Region(name, key, size, handle, _lock_shared(_shm_path(key)))
        try:
            region.map_views()
        except BaseException:
            _destroy(region)
            raise
        return region

    @staticmethod
    def register(state: "_PoolState", region: Region) -> None:
        _shm_api.register_system_shared_memory(state.transport, region.name, region.key, region.size,
                                               headers=state.headers, timeout_s=state.timeout_s)

    @staticmethod
    def unregister(state: "_PoolState", name: str, timeout_s: float) -> None:
        _shm_api.unregister_system_shared_memory(state.transport, name, headers=state.headers,
                                                 timeout_s=timeout_s)

    @staticmethod
    def status(state: "_PoolState") -> List[dict]:
        return _shm_api.get_system_shared_memory_status(state.transport, headers=state.headers,
                                                        timeout_s=state.timeout_s)

    @staticmethod
    def abandoned(entry: dict) -> bool:
        return _abandoned(str(entry.get("name", "")), entry.get("key"))


class _CudaKind:
    """CUDA shared memory on device 0: outputs are copied to the host; a dead
    client's device memory is freed with its process, only its registrations stay."""

    name = "cuda"
    extension = "cuda_shared_memory"
    device_id = 0

    @classmethod
    def create(cls, name: str, size: int) -> Region:
        return Region(name, "", size, cuda_shm.create_shared_memory_region(name, size, cls.device_id))

    @classmethod
    def register(cls, state: "_PoolState", region: Region) -> None:
        _shm_api.register_cuda_shared_memory(state.transport, region.name, region.handle.raw_handle(),
                                             cls.device_id, region.size, headers=state.headers,
                                             timeout_s=state.timeout_s)

    @staticmethod
    def unregister(state: "_PoolState", name: str, timeout_s: float) -> None:
        _shm_api.unregister_cuda_shared_memory(state.transport, name, headers=state.headers,
                                               timeout_s=timeout_s)

    @staticmethod
    def status(state: "_PoolState") -> List[dict]:
        return _shm_api.get_cuda_shared_memory_status(state.transport, headers=state.headers,
                                                      timeout_s=state.timeout_s)

    @staticmethod
    def abandoned(entry: dict) -> bool:
        match = _LEFTOVER_NAME.match(str(entry.get("name", "")))
        return match is not None and not _pid_alive(int(match.group(1)))


KINDS: Dict[str, Any] = {"system": _SystemKind, "cuda": _CudaKind}


class _Anchor:
    """The base object of every output view of one lease; returns the lease when the
    last view is gone. Exposes the whole region as ``__array_interface__``."""

    __slots__ = ("__array_interface__", "_base", "_region", "_returned")

    def __init__(self, region: Region, returned: Deque[Region]):
        self.__array_interface__ = {
            "data": (region.address, False),
            "shape": (region.size,),
            "typestr": "|u1",
            "version": 3,
        }
        self._base = region.base  # the mapping stays valid while any view exists
        self._region = region
        self._returned = returned

    def __del__(self) -> None:
        # Any thread, possibly inside a garbage collection: only a deque append
        # (atomic), drained by the pool under its lock.
        self._returned.append(self._region)


class Lease:
    """A region leased to one request. :meth:`view` makes the output views; a lease
    without any ends with :meth:`RegionPool.give_back` (or :meth:`RegionPool.discard`)."""

    __slots__ = ("region", "_returned", "_whole")

    def __init__(self, region: Region, returned: Deque[Region]):
        self.region = region
        self._returned = returned
        self._whole: Optional[np.ndarray] = None

    @property
    def anchored(self) -> bool:
        return self._whole is not None

    def view(self, dtype: np.dtype, shape: Sequence[int], offset: int) -> np.ndarray:
        """A writable numpy view at ``offset``; from the first call on, the region
        returns to the pool only when every such view is gone."""
        whole = self._whole
        if whole is None:
            whole = self._whole = np.asarray(_Anchor(self.region, self._returned))
        return np.ndarray(shape, dtype, whole, offset)

    def drop_views(self) -> None:
        """Lets go of the lease's own reference to the anchor (after handing out the views)."""
        self._whole = None


class _PoolState:
    """What a pool's finalizer needs to clean up: kept apart from the pool so that
    ``weakref.finalize`` does not keep the pool alive."""

    def __init__(self, kind: Any, transport: Any, headers: List[Tuple[str, str]], timeout_s: float):
        self.kind = kind
        self.transport = transport
        self.headers = headers
        self.timeout_s = timeout_s
        self.regions: Dict[str, Region] = {}  # every region this pool created and has not destroyed
        self.lock = threading.Lock()


def _destroy(region: Region) -> None:
    region.release_lock()
    try:
        region.handle.destroy()
    except Exception as e:  # best effort: the name may be gone already
        _LOGGER.debug("destroying shared-memory region %s failed: %s", region.name, e)


def _in_use(error: Exception) -> bool:
    """Triton refuses to unregister a region a request is still using (2.51: HTTP 500
    "Cannot unregister shared memory region '...', it is currently in use.")."""
    return getattr(error, "status", None) is not None and "in use" in str(error)


def _close_state(state: _PoolState, budget_s: Optional[float]) -> None:
    """Unregisters and unlinks every region of a pool. A region still in use on the
    server (a request that timed out here still runs there) is retried for up to
    IN_USE_WAIT_S; ``budget_s`` bounds the whole (at exit, in a finalizer)."""
    with state.lock:
        pending, state.regions = list(state.regions.values()), {}
    start = time.monotonic()
    wait_until = start + (IN_USE_WAIT_S if budget_s is None else min(budget_s, IN_USE_WAIT_S))
    stop_at = None if budget_s is None else start + budget_s
    server_answers = True
    while True:
        in_use = []
        for region in pending:
            if server_answers:
                timeout = state.timeout_s
                if stop_at is not None:
                    timeout = min(timeout, stop_at - time.monotonic())
                if timeout > 0:
                    try:
                        state.kind.unregister(state, region.name, timeout)
                    except Exception as e:
                        if _in_use(e) and time.monotonic() < wait_until:
                            in_use.append(region)
                            continue
                        _LOGGER.debug("unregistering shared-memory region %s failed: %s", region.name, e)
                        # No answer at all: the server is gone; do not wait on it for every region.
                        server_answers = getattr(e, "status", None) is not None
                else:
                    server_answers = False
            _destroy(region)  # unlinked even when the server kept it: the memory is freed
        if not in_use:
            return
        pending = in_use
        time.sleep(IN_USE_POLL_S)


def _finalize(state: _PoolState) -> None:
    _close_state(state, CLOSE_BUDGET_S)


_live_pools: "weakref.WeakSet[RegionPool]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for pool in list(_live_pools):
        pool._forget_inherited()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class RegionPool:
    """Registered shared-memory regions of one client; thread-safe.

    Args:
        kind: ``"system"`` or ``"cuda"``.
        transport: the client's transport (register/unregister/status calls).
        headers: headers of those calls (the client's access token).
        timeout_s: bound on each of those calls.
    """

    def __init__(self, kind: str, transport: Any, headers: Sequence[Tuple[str, str]], timeout_s: float):
        self.kind = KINDS[kind]
        self._state = _PoolState(self.kind, transport, list(headers), timeout_s)
        self._lock = threading.Lock()
        self._idle: List[Region] = []  # oldest first
        self._idle_bytes = 0
        self._returned: Deque[Region] = collections.deque()
        self._quarantined: List[Region] = []  # maybe still in use by the server; never leased
        self._closed = False
        self._new_names()
        self._finalizer = weakref.finalize(self, _finalize, self._state)
        _live_pools.add(self)

    def _new_names(self) -> None:
        self.prefix = f"{REGION_PREFIX}{os.getpid()}_{secrets.token_hex(4)}_"
        self._numbers = itertools.count()

    # ------------------------------------------------------------------ start

    def start(self) -> None:
        """Checks that the server supports this kind of shared memory (SharedMemoryError
        if not) and removes what killed clients left behind (best effort)."""
        state = self._state
        status, body = state.transport.request("GET", "/v2", state.headers, None, state.timeout_s, True)
        extensions = _extensions(status, body)
        if self.kind.extension not in extensions:
            raise SharedMemoryError(
                f"the server does not support {self.kind.name} shared memory: its /v2 extensions are "
                f"{sorted(extensions) if extensions else '(none)'}"
            )
        if self.kind is _SystemKind:
            self.remove_leftovers()
        try:
            registered = self.kind.status(state)
        except SharedMemoryError as e:
            _LOGGER.debug("listing the server's shared-memory regions failed: %s", e)
            return
        for entry in registered:
            if self.kind.abandoned(entry):
                name = str(entry.get("name"))
                try:
                    self.kind.unregister(state, name, state.timeout_s)
                    _LOGGER.debug("unregistered shared-memory region %s left by a dead client", name)
                except SharedMemoryError as e:
                    _LOGGER.debug("unregistering leftover region %s failed: %s", name, e)

    @staticmethod
    def remove_leftovers() -> None:
        """Unlinks ``/dev/shm/tritonfast_<pid>_*`` files of dead processes that nobody holds."""
        try:
            names = os.listdir(SHM_DIR)
        except OSError:
            return
        for name in names:
            if name.startswith(REGION_PREFIX) and _abandoned(name):
                try:
                    os.unlink(os.path.join(SHM_DIR, name))
                    _LOGGER.debug("removed shared-memory file %s left by a dead client", name)
                except OSError:
                    pass

    # ------------------------------------------------------------------ leases

    def lease(self, nbytes: int) -> Lease:
        """A region of at least ``nbytes``: an idle one, else a new one, registered.
        SharedMemoryError when it cannot be created (no ``.status``) or the server
        refuses to register it (``.status`` set); PyTritonClientClosedError after close()."""
        size = region_size(nbytes)
        with self._lock:
            if self._closed:
                raise PyTritonClientClosedError("ModelClient is closed")
            self._drain_returned()
            best = None
            for i, region in enumerate(self._idle):
                if region.size >= size and (best is None or region.size < self._idle[best].size):
                    best = i
            if best is not None:
                region = self._idle.pop(best)
                self._idle_bytes -= region.size
                return Lease(region, self._returned)
            name = f"{self.prefix}{next(self._numbers)}"
            quarantined = bool(self._quarantined)
        if quarantined:
            self._retry_quarantined()  # a new region costs a registration anyway
        return Lease(self._create(name, size), self._returned)

    def discard(self, lease: Lease) -> None:
        """Ends a lease whose request may still be running on the server (timeout,
        broken connection, interrupt): the region is never reused, so the server's
        late reads and writes cannot meet a later request's tensors. It is
        unregistered and unlinked now if the server lets go of it, else quarantined
        until the next region is created or close()."""
        with self._lock:
            self._quarantined.append(lease.region)
        self._retry_quarantined()

    def _retry_quarantined(self) -> None:
        state = self._state
        with self._lock:
            regions, self._quarantined = self._quarantined, []
        kept = []
        for region in regions:
            try:
                self.kind.unregister(state, region.name, min(state.timeout_s, CLOSE_BUDGET_S))
            except Exception as e:
                _LOGGER.debug("region %s stays quarantined: %s", region.name, e)
                kept.append(region)
                continue
            with state.lock:
                state.regions.pop(region.name, None)
            _destroy(region)
        if kept:
            with self._lock:
                self._quarantined.extend(kept)

    def give_back(self, lease: Lease) -> None:
        """Ends a lease that handed out no views."""
        surplus: List[Region] = []
        region = lease.region
        with self._lock:
            if self._closed or self._state.regions.get(region.name) is not region:
                return  # closed, or inherited across fork: not ours to reuse
            self._idle.append(region)
            self._idle_bytes += region.size
            self._drain_returned()
            # Over the idle bound: unregister the oldest, never the one just returned.
            while self._idle_bytes > MAX_IDLE_REGION_BYTES and len(self._idle) > 1:
                oldest = self._idle.pop(0)
                self._idle_bytes -= oldest.size
                surplus.append(oldest)
        for region in surplus:
            self._discard(region)

    def _drain_returned(self) -> None:
        # Under self._lock: regions whose output views are all gone.
        while self._returned:
            region = self._returned.popleft()
            if not self._closed and self._state.regions.get(region.name) is region:
                self._idle.append(region)
                self._idle_bytes += region.size

    def _create(self, name: str, size: int) -> Region:
        state = self._state
        region = self.kind.create(name, size)
        try:
            self.kind.register(state, region)
        except BaseException:
            _destroy(region)  # a failing registration leaves nothing behind
            raise
        with state.lock:
            closed = self._closed
            if not closed:
                state.regions[name] = region
        if closed:
            self._discard(region)
            raise PyTritonClientClosedError("ModelClient is closed")
        _LOGGER.debug("registered %s shared-memory region %s (%d bytes)", self.kind.name, name, size)
        return region

    def _discard(self, region: Region) -> None:
        """Unregisters and destroys one region (outside the pool lock)."""
        state = self._state
        with state.lock:
            state.regions.pop(region.name, None)
        try:
            self.kind.unregister(state, region.name, state.timeout_s)
        except Exception as e:
            _LOGGER.debug("unregistering shared-memory region %s failed: %s", region.name, e)
        _destroy(region)

    # ------------------------------------------------------------------ lifetime

    @property
    def region_names(self) -> List[str]:
        with self._state.lock:
            return sorted(self._state.regions)

    def close(self) -> None:
        """Unregisters and destroys every region; idempotent. Outputs already handed
        out stay valid (the mapping outlives the name)."""
        with self._lock:
            self._closed = True
            self._idle.clear()
            self._idle_bytes = 0
            self._returned.clear()
            self._quarantined = []
        _live_pools.discard(self)
        self._finalizer.detach()
        _close_state(self._state, None)

    def _forget_inherited(self) -> None:
        """In a forked child: the parent owns every region; start afresh."""
        self._finalizer.detach()
        for region in self._state.regions.values():
            region.release_lock()  # the parent's descriptor keeps the lock
        state = self._state
        self._state = _PoolState(state.kind, state.transport, state.headers, state.timeout_s)
        self._lock = threading.Lock()
        self._idle = []
        self._idle_bytes = 0
        self._returned = collections.deque()
        self._quarantined = []
        self._new_names()
        self._finalizer = weakref.finalize(self, _finalize, self._state)


def _extensions(status: int, body: bytes) -> List[str]:
    import json

    if status != 200:
        raise SharedMemoryError(f"GET /v2 (server metadata) failed with HTTP {status}: {body[:200]!r}")
    try:
        extensions = json.loads(body).get("extensions") or []
    except (ValueError, AttributeError):
        return []
    return [str(e) for e in extensions]
