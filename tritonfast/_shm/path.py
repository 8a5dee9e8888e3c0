"""The shared-memory path of ``ModelClient(shared_memory=...)``: which requests
take it, how their regions are laid out, and how outputs come back.

Modes: ``"auto"`` uses system shared memory for a server on this host (a
loopback address, or a name that resolves only to loopback addresses) when a
request's input bytes or its expected output bytes reach ``AUTO_THRESHOLD_BYTES``;
``"system"`` always uses it; ``"cuda"`` uses CUDA regions (see
``tritonfast.utils.cuda_shared_memory``).

Output sizes. An output whose config dims (with the batch dim taken from the
inputs) are all known gets exactly its size. Any other output (a -1 dim, or
BYTES) has no size known up front:

* ``"auto"`` receives it over HTTP, always: a model whose output grows while
  its input shapes stay the same (generative and detection models) would
  outgrow any size learned from an earlier request, and "auto" must never fail
  a request that plain HTTP completes. The first request with a given
  input-shape signature goes wholly over HTTP (so a one-off round trip holds
  1x its payload in memory, not its inputs in a region plus its outputs in a
  receive buffer); later ones send their inputs through shared memory.
* ``"system"`` and ``"cuda"`` learn it: the first request with a given
  input-shape signature receives it over HTTP and remembers its byte size;
  later requests with that signature get ``VARIABLE_OUTPUT_HEADROOM`` times
  that. When the server says a region is too small, the request fails with a
  clear ``PyTritonClientInferenceServerError`` (never run twice behind the
  caller's back) and the learned size is forgotten, so the next such request
  takes HTTP.

Fallback. In ``"auto"`` mode a server that cannot use the client's regions
(the extension is missing, or registering is refused: another IPC namespace
gives 500 "Unable to open shared memory region", a server started without
client shared memory 501) turns the path off for the client's life, logged at
DEBUG on ``tritonfast.client``; ``"system"`` raises ``SharedMemoryError`` with
the server's reason.

Cost when the path does not apply: a remote server or ``shared_memory=None``
costs the client one attribute check per request (``ModelClient._shm is None``);
a small request to a local server costs a sum over its inputs' ``nbytes``.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import threading
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from tritonfast import _core
from tritonfast.utils import cuda_shared_memory as cuda_shm
from tritonfast._shm.pool import Lease, RegionPool, align
from tritonfast.exceptions import PyTritonClientInferenceServerError, SharedMemoryError, _ServerError
from tritonfast.utils import _NP_TO_TRITON, _TRITON_TO_NP

_LOGGER = logging.getLogger("tritonfast.client")

MODES = ("auto", "system", "cuda", None)

# "auto" takes shared memory from this many input (or expected output) bytes of
# one request on. Measured with bench/shm_threshold.py (sequential (1, n) FP32
# requests to the test server's identity_fp32, the tensor in and back out; 2-vCPU
# VM shared with the server; medians of interleaved batches), HTTP / shm:
#   each way   4K    16K   32K   64K   128K  256K  512K  1M    4M
#   wall     0.91  0.99  1.06  1.12  1.32  1.54  2.36  3.16  2.05
#   CPU      0.68  0.79  0.89  0.94  1.17  1.48  2.52  3.70  2.89
# Shared memory's wall time wins from 32 KiB on, its client CPU from 128 KiB
# (below that its fixed cost, ~10 us of Python per request, is not yet paid back
# by the socket copies it saves). Four runs on a busier machine agreed within noise.
AUTO_THRESHOLD_BYTES = 128 * 1024
# A learned output (variable dims or BYTES) gets this many times the size seen
# last time for the same input shapes: the same shapes usually give the same
# size, BYTES contents vary, and untouched region pages cost no memory.
VARIABLE_OUTPUT_HEADROOM = 2
# Input-shape signatures whose output sizes a client remembers (then it forgets
# them all: signatures that vary without bound must not grow memory).
MAX_LEARNED_SIGNATURES = 1024

# Triton's message (HTTP 500, 2.51, provoked by tests/test_client_shm.py) when an
# output does not fit its span: "shared memory size specified with the request
# for output 'OUTPUT0' (100 bytes) should be at least 4000 bytes to hold the results".
_TOO_SMALL = re.compile(r"for output '(.*)' \((\d+) bytes\) should be at least (\d+) bytes")

# A request's inputs as (name, shape, dtype) each: the key of learned output
# sizes and of cached layouts.
_Signature = Tuple[Tuple[str, Tuple[int, ...], np.dtype], ...]
# Most regions whose argument lists one layout keeps (regions are few; their
# names only change when the pool trims and re-creates them).
MAX_ARGS_PER_LAYOUT = 64


def is_loopback_literal(hostname: str) -> Optional[bool]:
    """Whether ``hostname`` is ``localhost`` or a loopback address; None for other names."""
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return None


def is_loopback(hostname: str, port: int) -> bool:
    """True when ``hostname`` is a loopback address or resolves only to loopback ones."""
    literal = is_loopback_literal(hostname)
    if literal is not None:
        return literal
    try:
        infos = socket.getaddrinfo(hostname, port, type=socket.SOCK_STREAM)
    except OSError:
        return False
    addresses = {str(info[4][0]).split("%")[0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


class _OutputSpec:
    __slots__ = ("name", "itemsize", "dims", "fixed_bytes")

    def __init__(self, name: str, dtype: Any, dims: Tuple[int, ...]):
        self.name = name
        self.dims = dims
        is_bytes = dtype is np.bytes_ or np.dtype(dtype).kind in "OSU"
        self.itemsize = 0 if is_bytes else np.dtype(dtype).itemsize
        # Bytes per batch row (or in all, without batching); None when not known up front.
        known = not is_bytes and all(d >= 0 for d in dims)
        self.fixed_bytes = int(np.prod(dims, dtype=np.int64)) * self.itemsize if known else None


class _Plan:
    """What a model's config says about its outputs, computed once per config."""

    def __init__(self, config: Any):
        self.batching = config.max_batch_size > 0
        self.outputs: Optional[List[_OutputSpec]] = None
        if config.outputs:
            self.outputs = [_OutputSpec(s.name, s.dtype, tuple(s.shape)) for s in config.outputs]
        fixed = [o.fixed_bytes for o in self.outputs or () if o.fixed_bytes is not None]
        self.fixed_bytes = sum(fixed)  # per batch row with batching
        self.has_learned = self.outputs is None or len(fixed) < len(self.outputs)


class _Layout:
    """Where one signature's tensors go in a region: the inputs back to back, then
    the shared-memory outputs, each at a 64-byte boundary."""

    __slots__ = ("inputs", "outputs", "over_http", "nbytes", "_args")

    def __init__(self, inputs: List[Tuple[str, str, List[int], int, int, Optional[np.ndarray]]],
                 outputs: Dict[str, Tuple[int, int]], over_http: Optional[List[str]], nbytes: int):
        self.inputs = inputs  # (name, datatype, shape, offset, bytes, empty array or None)
        self.outputs = outputs  # name -> (offset, bytes allotted)
        self.over_http = over_http  # outputs received over HTTP (sizes to learn); None: all of them
        self.nbytes = nbytes
        self._args: Dict[str, Tuple[list, Optional[list]]] = {}

    def args(self, region: str) -> Tuple[list, Optional[list]]:
        """The transport's ``inputs`` and ``outputs`` arguments for a region (cached)."""
        args = self._args.get(region)
        if args is None:
            # The server refuses empty shared-memory spans: empty tensors go inline (0 body bytes).
            inputs = [(name, datatype, shape, (region, nbytes, offset)) if nbytes else (name, empty)
                      for name, datatype, shape, offset, nbytes, empty in self.inputs]
            outputs: Optional[list] = None
            if self.over_http is not None:
                outputs = [*self.over_http]
                outputs += [(name, (region, size, offset)) for name, (offset, size) in self.outputs.items()]
            if len(self._args) >= MAX_ARGS_PER_LAYOUT:
                self._args.clear()
            args = self._args[region] = (inputs, outputs)
        return args


class Route(NamedTuple):
    """A request for the shared-memory path: its input signature and region
    layout (None: received over HTTP once to learn its output sizes)."""

    signature: _Signature
    layout: Optional[_Layout]


class SharedMemoryPath:
    """Per client: decides per request, owns the pool, remembers learned sizes."""

    def __init__(self, mode: str, hostname: str, port: int, headers: List[Tuple[str, str]],
                 timeout_s: float, model: str):
        self.mode = mode
        self.disabled = False  # set once the path can never apply again (the client drops it)
        self._hostname, self._port = hostname, port
        self._local: Optional[bool] = True if mode != "auto" else None
        self._threshold = AUTO_THRESHOLD_BYTES if mode == "auto" else 0
        self._headers = headers
        self._timeout_s = timeout_s
        self._model = model
        self._pool: Optional[RegionPool] = None
        self._start_lock = threading.Lock()
        self._closed = False
        self._plan: Optional[_Plan] = None
        self._plan_config: Any = None
        self._learned: Dict[_Signature, Dict[str, int]] = {}
        self._layouts: Dict[_Signature, _Layout] = {}  # numeric inputs only (BYTES sizes vary)

    def fast_lane_limits(self, config: Any) -> Optional[Tuple[int, int]]:
        """``(max_bytes, fixed_output_bytes)`` for ``_core.InferPlan``: requests under
        the threshold (inputs, and the outputs known up front) stay plain HTTP; None
        when every request is this path's (``"system"``, ``"cuda"``)."""
        if self.mode != "auto":
            return None
        plan = self._plan_for(config)
        return self._threshold, plan.fixed_bytes

    # ------------------------------------------------------------------ request

    def route(self, inputs: Dict[str, Any], config: Any) -> Optional["Route"]:
        """Where a request goes, decided without I/O: None for plain HTTP, else a
        :class:`Route` for :meth:`infer`. (The first call of an "auto" path for a
        host name resolves it once, to learn whether it is this host.)"""
        if self._local is not True:
            if self._local is None:
                self._local = is_loopback(self._hostname, self._port)
            if not self._local:
                self.disabled = True
                return None
        plan = self._plan_for(config)
        try:
            if self._threshold:
                in_bytes = 0
                for x in inputs.values():
                    in_bytes += x.nbytes if x.dtype.kind != "O" else _core.bytes_serialized_size(x)
                if in_bytes < self._threshold and not self._expect_large_output(plan, inputs):
                    return None
            signature = _signature(inputs)
            if plan.batching:
                signature[0][1][0]  # noqa: B018 - IndexError without a batch axis
        except (AttributeError, IndexError, StopIteration):
            return None  # not arrays, no inputs or no batch axis: the plain path reports it
        if self._threshold and plan.has_learned and signature not in self._learned:
            # "auto", outputs of unknown size: this signature's first request goes plain
            # HTTP (received straight into the outputs' buffer): a one-off large request
            # holds 1x its payload, not its inputs in a region plus its outputs in a
            # receive buffer. The next ones send their inputs through shared memory.
            return Route(signature, None)
        layout = self._layouts.get(signature)
        if layout is None:
            layout = self._make_layout(signature, inputs, plan)
            if layout is None:
                return None
        return Route(signature, layout)

    def infer(self, route: "Route", transport: Any, target: str, headers: List[Tuple[str, str]],
              request_id: str, inputs: Dict[str, Any], parameters: Optional[dict],
              timeout_s: float) -> Optional[Dict[str, Any]]:
        """The outputs of a request :meth:`route` sent here, or None when it should
        take the plain HTTP path after all (the pool cannot start or is full)."""
        if route.layout is None:
            result = transport.infer(target, headers, request_id, list(inputs.items()), None,
                                     parameters, timeout_s)
            self._learn(route.signature, result)
            return result
        pool = self._pool if self._pool is not None else self._start(transport)
        if pool is None:
            return None
        return self._infer_shm(pool, route.layout, transport, target, headers, request_id, inputs,
                               parameters, timeout_s, route.signature)

    def _expect_large_output(self, plan: _Plan, inputs: Dict[str, Any]) -> bool:
        """Whether the outputs known up front reach the threshold ("auto")."""
        expected = plan.fixed_bytes
        if expected and plan.batching:
            expected *= next(iter(inputs.values())).shape[0]
        return expected >= self._threshold

    def _make_layout(self, signature: _Signature, inputs: Dict[str, Any], plan: _Plan) -> Optional[_Layout]:
        offset = 0
        placed_inputs = []
        cacheable = True
        for name, x in inputs.items():
            if x.dtype.kind in "OSU":
                datatype = "BYTES"
                nbytes = _core.bytes_serialized_size(x)
                cacheable = False  # the next tensor of this shape may hold more bytes
            else:
                known = _NP_TO_TRITON.get(x.dtype.newbyteorder("="))
                if known is None or known == "BYTES":
                    return None  # no Triton datatype: the plain path raises EncodeError
                datatype = known
                nbytes = x.nbytes
            empty = None if nbytes else np.empty(x.shape, x.dtype)
            placed_inputs.append((name, datatype, list(x.shape), offset, nbytes, empty))
            offset = align(offset + nbytes)

        # Output regions are sized from what the config fixes, or from what earlier
        # requests returned ("system" and "cuda" only). A model whose output grows
        # while its input shapes stay the same outgrows a learned size, and the
        # server then fails the request: "auto" must never fail where plain HTTP
        # succeeds, so it receives every output of unknown size over HTTP.
        learned = self._learned.get(signature) if plan.has_learned and not self._threshold else None
        outputs: Dict[str, Tuple[int, int]] = {}
        over_http: List[str] = []
        all_over_http = False
        if plan.outputs is None:
            # The config lists no outputs: all over HTTP until their sizes are learned.
            if learned is None:
                all_over_http = True
            else:
                for name, size in learned.items():
                    if not size:
                        over_http.append(name)
                        continue
                    outputs[name] = (offset, size * VARIABLE_OUTPUT_HEADROOM)
                    offset = align(offset + size * VARIABLE_OUTPUT_HEADROOM)
        else:
            batch = signature[0][1][0] if plan.batching else 1
            for spec in plan.outputs:
                if spec.fixed_bytes is not None:
                    size = spec.fixed_bytes * batch
                elif learned is not None and spec.name in learned:
                    size = learned[spec.name] * VARIABLE_OUTPUT_HEADROOM
                else:
                    size = None  # over HTTP: its size gets learned from this response
                if not size:  # unknown, or empty (the server refuses empty spans)
                    over_http.append(spec.name)
                    continue
                outputs[spec.name] = (offset, size)
                offset = align(offset + size)
        layout = _Layout(placed_inputs, outputs, None if all_over_http else over_http, offset)
        if cacheable:
            if len(self._layouts) >= MAX_LEARNED_SIGNATURES:
                self._layouts.clear()
            self._layouts[signature] = layout
        return layout

    def _infer_shm(self, pool: RegionPool, layout: _Layout, transport: Any, target: str,
                   headers: List[Tuple[str, str]], request_id: str, inputs: Dict[str, Any],
                   parameters: Optional[dict], timeout_s: float,
                   signature: _Signature) -> Optional[Dict[str, Any]]:
        lease = self._lease(pool, layout.nbytes)
        if lease is None:
            return None
        region = lease.region
        in_flight = False
        try:
            write = region.handle.write
            for x, placed in zip(inputs.values(), layout.inputs):
                if placed[4]:  # not empty
                    write([x], placed[3])
            shm_inputs, requested = layout.args(region.name)
            in_flight = True
            try:
                response = transport.infer(target, headers, request_id, shm_inputs, requested,
                                           parameters, timeout_s)
            except _ServerError as e:
                in_flight = False  # the server answered: it is done with the region
                self._raise_if_too_small(e, signature)
                raise
            in_flight = False
            result = self._collect(response, lease, layout)
            if layout.over_http != []:
                self._learn(signature, {k: v for k, v in result.items() if k not in layout.outputs})
            return result
        finally:
            if in_flight:
                pool.discard(lease)  # the server may still read or write it
            elif lease.anchored:
                lease.drop_views()  # the views now hold the lease
            else:
                pool.give_back(lease)

    def _collect(self, response: Dict[str, Any], lease: Lease, layout: _Layout) -> Dict[str, Any]:
        for name, value in response.items():
            if type(value) is not tuple:
                continue  # came over HTTP
            datatype, shape = value
            offset, allotted = layout.outputs[name]
            if datatype == "BYTES":
                count = 1
                for d in shape:
                    count *= d
                response[name] = lease.region.handle.read_bytes(count, offset, allotted).reshape(shape)
                continue
            dtype = _DTYPES[datatype] if datatype in _DTYPES else _numpy_dtype(datatype)
            if lease.region.base is None:  # CUDA: one device-to-host copy
                response[name] = lease.region.handle.read(dtype, shape, offset)
                continue
            count = 1
            for d in shape:
                count *= d
            if count * dtype.itemsize > allotted:
                raise PyTritonClientInferenceServerError(
                    f"Output '{name}' of model {self._model}: the server reports shape "
                    f"{tuple(shape)} ({count * dtype.itemsize} bytes) in a shared-memory span of "
                    f"{allotted} bytes"
                )
            response[name] = lease.view(dtype, shape, offset)
        return response

    def _raise_if_too_small(self, error: _ServerError, signature: _Signature) -> None:
        match = _TOO_SMALL.search(error.message)
        if match is None:
            return
        name, given, needed = match.group(1), int(match.group(2)), int(match.group(3))
        self._forget(signature)
        raise PyTritonClientInferenceServerError(
            f"Output '{name}' of model {self._model} needs at least {needed} bytes but "
            f"its shared-memory region holds {given} bytes (sized from an earlier request with the "
            "same input shapes). The inference was not retried; that size is now forgotten, so the "
            f"next request with these input shapes receives '{name}' over HTTP. "
            f"Server message: {error.message}"
        ) from error

    def _learn(self, signature: _Signature, outputs: Dict[str, Any]) -> None:
        sizes = {}
        for name, y in outputs.items():
            if not isinstance(y, np.ndarray):
                return
            sizes[name] = _core.bytes_serialized_size(y) if y.dtype.kind in "OSU" else y.nbytes
        if len(self._learned) >= MAX_LEARNED_SIGNATURES:
            self._learned.clear()
        known = self._learned.get(signature)
        merged = {**known, **sizes} if known else sizes
        if merged != known:
            self._learned[signature] = merged
            self._layouts.pop(signature, None)  # laid out again with the new sizes

    def _forget(self, signature: _Signature) -> None:
        self._learned.pop(signature, None)
        self._layouts.pop(signature, None)

    # ------------------------------------------------------------------ pool

    def _plan_for(self, config: Any) -> _Plan:
        plan = self._plan
        return plan if plan is not None and self._plan_config is config else self._make_plan(config)

    def _make_plan(self, config: Any) -> _Plan:
        plan = _Plan(config)
        self._plan, self._plan_config = plan, config
        return plan

    def _start(self, transport: Any) -> Optional[RegionPool]:
        with self._start_lock:
            if self._pool is None and not self.disabled:
                if self._closed:
                    return None
                kind = "cuda" if self.mode == "cuda" else "system"
                pool = RegionPool(kind, transport, self._headers, self._timeout_s)
                try:
                    pool.start()
                except SharedMemoryError as e:
                    pool.close()
                    self._refused(e)
                    return None
                except BaseException:
                    pool.close()
                    raise
                self._pool = pool
            return self._pool

    def _lease(self, pool: RegionPool, nbytes: int) -> Optional[Lease]:
        try:
            return pool.lease(nbytes)
        except SharedMemoryError as e:
            if getattr(e, "status", None) is None and self.mode == "auto":
                # Created nothing here (e.g. /dev/shm is full): plain HTTP this time only.
                _LOGGER.debug("no shared-memory region of %d bytes (%s); this request uses HTTP", nbytes, e)
                return None
            self._refused(e)
            return None

    def _refused(self, error: SharedMemoryError) -> None:
        """The server cannot use our regions: plain HTTP from now on ("auto"), or raise."""
        if self.mode != "auto":
            raise error
        _LOGGER.debug(
            "shared memory with %s:%s is not possible (%s); this client uses plain HTTP from now on",
            self._hostname, self._port, error,
        )
        self.disabled = True

    @property
    def region_names(self) -> List[str]:
        return [] if self._pool is None else self._pool.region_names

    def close(self) -> None:
        with self._start_lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()


def _signature(inputs: Dict[str, Any]) -> _Signature:
    return tuple([(name, x.shape, x.dtype) for name, x in inputs.items()])


def check_cuda_available() -> None:
    """SharedMemoryError saying what is missing when CUDA shared memory cannot work here."""
    try:
        cuda_shm.check_available()
    except SharedMemoryError as e:
        raise SharedMemoryError(
            f"shared_memory='cuda' needs the CUDA runtime and a GPU on this host: {e}. "
            "Use shared_memory='system' or 'auto' (system shared memory) or None instead."
        ) from e


_DTYPES = {name: np.dtype(t) for name, t in _TRITON_TO_NP.items() if name != "BYTES"}


def _numpy_dtype(datatype: str) -> np.dtype:
    """The error for an output datatype outside _DTYPES (the server's fault, or no ml_dtypes)."""
    if datatype == "BF16":
        raise PyTritonClientInferenceServerError(
            "output datatype BF16 needs the optional package ml_dtypes: pip install ml_dtypes"
        )
    raise PyTritonClientInferenceServerError(f"unknown output datatype '{datatype}'")
