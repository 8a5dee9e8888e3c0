"""PyTriton-compatible clients over tritonfast's native HTTP transport.

``ModelClient`` and ``FuturesModelClient`` take the arguments of
``pytriton.client`` and behave the same way, with these fixes (see the README):
one client is safe to share between threads; timeouts bound every request;
the first lazy call checks readiness once and fetches the config once; an
unknown model raises ``PyTritonClientModelUnavailableError``; ``https://``
works; batches larger than ``max_batch_size`` are split and sent concurrently;
large tensors to a server on this host go through shared memory
(``shared_memory=``, see ``tritonfast._shm.path``).

Plain requests (positional C-contiguous numeric arrays, no parameters or
headers, under the shared-memory threshold) take a fast lane once the model's
config is known: ``_core.InferPlan`` does the whole request in one C++ call
(request rendered from a per-layout template, a repeated response header
compared rather than parsed). It hands anything else back, unsent, to the
general path below, so both behave the same; tests/test_fast_lane.py checks that.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import Any, Callable, Dict, List, Optional, Tuple, cast

import numpy as np

from tritonfast import _core, _fork, _pipeline
from tritonfast._pipeline import DEFAULT_INFERENCE_TIMEOUT_S, DEFAULT_INIT_TIMEOUT_S, ModelClientState, ParamValue, Request
from tritonfast._shm.path import MODES as SHM_MODES
from tritonfast._shm.path import SharedMemoryPath, check_cuda_available, is_loopback_literal
from tritonfast._transport import create_transport, is_native
from tritonfast._workers import WorkerPool
from tritonfast.exceptions import (
    PyTritonClientClosedError,
    PyTritonClientTimeoutError,
    PyTritonClientValueError,
    _ServerError,
)
from tritonfast.model_config import TritonModelConfig

_LOGGER = logging.getLogger("tritonfast.client")

# Chunks of one oversized batch in flight at once, shared by all clients.
MAX_CHUNK_WORKERS = 16

_chunk_pool_lock = threading.Lock()
_chunk_pool: Optional[WorkerPool] = None


def _chunk_workers() -> WorkerPool:
    global _chunk_pool
    with _chunk_pool_lock:
        if _chunk_pool is None:
            _chunk_pool = WorkerPool(MAX_CHUNK_WORKERS, name="tritonfast-chunk")
        return _chunk_pool


def _chunk_pool_after_fork() -> None:
    global _chunk_pool, _chunk_pool_lock
    _chunk_pool_lock = threading.Lock()  # another thread may have held it at the fork
    _chunk_pool = None  # its workers are the parent's; the next split starts new ones


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_chunk_pool_after_fork)


_INFER_RETURNS = """
    Returns ``{output name: numpy array}``: every output of the model (numeric
    outputs as zero-copy views of the response, BYTES outputs as object arrays
    of ``bytes``; through shared memory, views of a region that is reused only
    once every view of it is gone).

    Raises:
        PyTritonClientValueError: no inputs, positional and named inputs mixed,
            or parameters/headers that are not a dict of str to str/int/bool.
        EncodeError: an input that cannot be sent (names the input and element).
        PyTritonClientModelUnavailableError: the server does not know the model.
        PyTritonClientInferenceServerError: the server answered with an error.
        PyTritonClientTimeoutError: no answer within ``inference_timeout_s``
            (``PyTritonClientConnectionError`` when the connection failed).
        ProtocolError: a response that breaks the protocol or does not answer
            the request (another request's id, a missing requested output).
        PyTritonClientClosedError: the client was closed.
"""


def _infer_method(sample: bool, doc: str) -> Callable[..., Dict[str, np.ndarray]]:
    """``infer_sample`` or ``infer_batch``: the fast lane's one dispatch, then the
    general path. (One factory for both, so the hot path costs no extra call.)"""

    def infer(self: ModelClient, *inputs: np.ndarray, parameters: Optional[Dict[str, ParamValue]] = None,
              headers: Optional[Dict[str, ParamValue]] = None,
              **named_inputs: np.ndarray) -> Dict[str, np.ndarray]:
        fast = self._fast
        if fast is not None and parameters is None and headers is None and not named_inputs:
            try:
                result = fast.infer(inputs, sample)
            except (_ServerError, PyTritonClientTimeoutError) as e:
                raise self._infer_error(e) from e
            if result is not None:
                return result
        return self._infer_general(sample, inputs, named_inputs, parameters, headers)

    infer.__name__ = "infer_sample" if sample else "infer_batch"
    infer.__qualname__ = "ModelClient." + infer.__name__
    infer.__doc__ = inspect.cleandoc(doc) + "\n\n" + inspect.cleandoc(_INFER_RETURNS)
    return infer


class ModelClient(ModelClientState):
    """Synchronous client of one model; thread-safe.

    Args:
        url: ``[http|https://]host[:port]``; http and port 8000 by default.
        model_name: name of the model.
        model_version: version to use; the server's latest when None.
        lazy_init: wait for the model and fetch its config on first use (True)
            or in the constructor (False).
        init_timeout_s: bound on waiting for the server and model (300 s).
        inference_timeout_s: bound on each request, inference or not (60 s).
        model_config: a config to use instead of fetching one.
        ensure_model_is_ready: with ``model_config``, still wait for the model
            (and refresh the config from the server) before the first inference.
        access_token: sent as the ``triton-access-token`` header.
        split_large_batches: split a batch larger than the model's
            ``max_batch_size`` into chunks sent concurrently (tritonfast only).
        ssl_context: for ``https://`` urls; ``ssl.create_default_context()``
            when None (tritonfast only).
        shared_memory: ``"auto"`` (default): system shared memory for requests
            of at least 128 KiB (in or out) to a server on this host, plain HTTP
            otherwise or where the server cannot use it; ``"system"``: always
            (``SharedMemoryError`` when the server refuses); ``"cuda"``: CUDA
            shared memory (``SharedMemoryError`` here when CUDA is missing);
            ``None``: never (tritonfast only). Numeric outputs that came through
            shared memory are views of a region that is reused only once every
            view of it is gone.
        max_response_body_bytes: responses larger than this are refused with
            ``ProtocolError`` before they are received (16 GiB; tritonfast only).

    A client pickles as its configuration (url, model, version, timeouts and
    options, never its connections) and connects lazily where it is unpickled,
    as Dask, Ray and Spark workers need. After ``os.fork()`` the child uses
    connections, locks and shared-memory regions of its own, never the parent's.
    """

    _LOGGER = _LOGGER  # failed requests are logged here (ModelClientState._infer_error)

    def __init__(
        self,
        url: str,
        model_name: str,
        model_version: Optional[str] = None,
        *,
        lazy_init: bool = True,
        init_timeout_s: Optional[float] = None,
        inference_timeout_s: Optional[float] = None,
        model_config: Optional[TritonModelConfig] = None,
        ensure_model_is_ready: bool = True,
        access_token: Optional[str] = None,
        split_large_batches: bool = True,
        ssl_context: Any = None,
        shared_memory: Optional[str] = "auto",
        max_response_body_bytes: Optional[int] = None,
    ):
        self._init_state(url, model_name, model_version, init_timeout_s, inference_timeout_s, model_config,
                         ensure_model_is_ready, access_token, split_large_batches, ssl_context,
                         max_response_body_bytes)
        self._init_lock = threading.Lock()
        self._shared_memory = shared_memory
        self._shm_path = self._make_shm_path(shared_memory)
        # The hot path's one check: None where shared memory does not apply.
        self._shm: Optional[SharedMemoryPath] = self._shm_path
        self._transport = create_transport(self._triton_url, ssl_context, max_response_body_bytes)
        self._closed = False
        _fork.register(self)
        # The native fast lane (_core.InferPlan) once the config is known; None before.
        self._fast: Any = None
        if self._model_ready:
            self._make_fast()
        if not lazy_init:
            self._ensure_ready()

    # ------------------------------------------------------------------ PyTriton API

    @classmethod
    def from_existing_client(cls, existing_client: "ModelClient") -> "ModelClient":
        """A new client with the settings and cached config of ``existing_client``."""
        return cls(**existing_client._config_kwargs(), ensure_model_is_ready=False,
                   ssl_context=existing_client._ssl_context)

    def __reduce__(self) -> Any:
        """Pickles as configuration: the unpickled client connects on first use."""
        if self._ssl_context is not None:
            raise TypeError(
                "a ModelClient with an ssl_context cannot be pickled (ssl.SSLContext cannot): "
                "create the client in the worker, or leave ssl_context=None to use the default"
            )
        # A config this client saw ready is used as it is (no readiness round trip
        # per worker); one given but not yet checked is checked where it is unpickled.
        kwargs = dict(self._config_kwargs(), ensure_model_is_ready=not self._model_ready)
        return (_unpickle_client, (type(self), kwargs))

    def _config_kwargs(self) -> Dict[str, Any]:
        """The constructor's arguments for a client like this one (lazy; the cached
        config is reused) but for ``ensure_model_is_ready`` and ``ssl_context``."""
        return dict(
            url=self._url,
            model_name=self._model_name,
            model_version=self._model_version,
            init_timeout_s=self._init_timeout_s,
            inference_timeout_s=self._inference_timeout_s,
            model_config=self._model_config,
            access_token=self._access_token,
            split_large_batches=self._split_large_batches,
            shared_memory=self._shared_memory,
            max_response_body_bytes=self._max_response_body_bytes,
        )

    def _after_fork(self) -> None:
        # In a forked child (see tritonfast._fork): another thread of the parent may
        # have held the lock. The native transport renews its own state.
        self._init_lock = threading.Lock()

    def __enter__(self) -> "ModelClient":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def close(self) -> None:
        """Closes the connections and frees idle buffers; idempotent."""
        if not self._closed:
            self._closed = True
            self._fast = None
            self._shm = None
            if self._shm_path is not None:
                self._shm_path.close()
            self._transport.close()

    @property
    def model_config(self) -> TritonModelConfig:
        """The model's config, fetched once (waiting for the model) and cached."""
        config = self._model_config
        return self._ensure_ready() if config is None else config

    @property
    def is_batching_supported(self) -> bool:
        """Whether the model batches (``max_batch_size > 0``), from its config
        (fetched first if need be, waiting for the model)."""
        return self.model_config.max_batch_size > 0

    def wait_for_server(self, timeout_s: float) -> None:
        """Waits until the server is live and ready; PyTritonClientTimeoutError after ``timeout_s``."""
        self._check_open()
        self._run(_pipeline.wait_for_server(self._url, timeout_s))

    def wait_for_model(self, timeout_s: float) -> None:
        """Waits until the model is ready; PyTritonClientTimeoutError after ``timeout_s``,
        PyTritonClientModelUnavailableError when the server does not know it."""
        self._check_open()
        self._run(_pipeline.wait_for_model(self._model, time.monotonic() + timeout_s))

    def load_model(self, config: Optional[str] = None, files: Optional[dict] = None) -> None:
        """Asks the server to load the model (repository API), optionally with a config
        JSON string and ``{"<version>/<file name>": bytes}`` files."""
        self._check_open()
        self._repository("load", _pipeline.load_payload(config, files))

    def unload_model(self) -> None:
        """Asks the server to unload the model (repository API)."""
        self._check_open()
        self._repository("unload", {"parameters": {"unload_dependents": False}})

    infer_sample = _infer_method(True, """Infers one sample: on a batching model, a batch axis is added to every input
        and taken off every output.

        Inputs are numpy arrays, positional (in the config's input order) or by
        name; ``parameters`` go with the request, ``headers`` as HTTP headers.
""")

    infer_batch = _infer_method(False, """Infers a batch (the first axis of every input); a batch larger than the
        model's ``max_batch_size`` is split into chunks sent concurrently.

        Inputs are numpy arrays, positional (in the config's input order) or by
        name; ``parameters`` go with the request, ``headers`` as HTTP headers.
        Raises ``PyTritonClientModelDoesntSupportBatchingError`` on a model
        without batching (use ``infer_sample``).
""")

    # ------------------------------------------------------------------ internals

    def _check_open(self) -> None:
        if self._closed:
            raise PyTritonClientClosedError("ModelClient is closed")

    def _make_shm_path(self, mode: Optional[str]) -> Optional[SharedMemoryPath]:
        if mode not in SHM_MODES:
            raise PyTritonClientValueError(
                f"shared_memory must be one of {SHM_MODES}, got {mode!r}"
            )
        if mode is None:
            return None
        if mode == "cuda":
            check_cuda_available()
        elif mode == "auto" and is_loopback_literal(self._triton_url.hostname) is False:
            return None  # a remote address: decided here, no per-request cost
        return SharedMemoryPath(mode, self._triton_url.hostname, self._triton_url.port,
                                self._auth_header_list, self._inference_timeout_s, self._model.describe())

    def _ensure_ready(self) -> TritonModelConfig:
        """Waits for the model and fetches its config, once per client."""
        if self._model_ready:
            return cast(TritonModelConfig, self._model_config)
        with self._init_lock:
            if not self._model_ready:
                self._check_open()
                deadline = time.monotonic() + self._init_timeout_s
                self._model_config = self._run(_pipeline.ready_config(self._model, deadline))
                self._model_ready = True
                self._make_fast()
        return cast(TritonModelConfig, self._model_config)

    def _make_fast(self) -> None:
        """Sets up the fast lane for plain requests: positional numeric arrays, no
        parameters or headers (see ``_core.InferPlan``; it hands anything else back)."""
        config, shm = self._model_config, self._shm
        self._fast = None
        if self._closed or config is None or config.decoupled or not config.inputs:
            return
        if not is_native(self._transport):
            return  # https: the TLS transport is Python
        limits = (0, 0) if shm is None else shm.fast_lane_limits(config)
        if limits is None:
            return
        max_bytes, fixed_output_bytes = limits
        self._fast = _core.InferPlan(
            self._transport, self._model.infer_target, self._auth_header_list,
            [spec.name for spec in config.inputs], config.max_batch_size, max_bytes,
            fixed_output_bytes, self._request_ids, self._inference_timeout_s,
        )

    def _run(self, exchange: _pipeline.Exchange) -> Any:
        """Drives one of the pipeline's management exchanges over the transport."""
        return _pipeline.run(exchange, self._request)

    def _request(self, step: Request) -> Tuple[int, bytes]:
        """One management request, bounded by the inference timeout and its deadline."""
        return self._transport.request(step.method, step.target, self._auth_header_list, step.body,
                                       self._request_timeout(step), step.idempotent)

    def _repository(self, action: str, payload: dict) -> None:
        deadline = time.monotonic() + self._inference_timeout_s
        self._run(_pipeline.repository(self._model, action, payload, deadline))

    def _infer_general(self, sample: bool, inputs: tuple, named_inputs: dict, parameters: Optional[dict],
                       headers: Optional[dict]) -> Dict[str, np.ndarray]:
        """Every request the fast lane does not take: named inputs, parameters or
        headers, shared memory, BYTES, split batches, https."""
        _pipeline.check_call(inputs, named_inputs, parameters, headers)
        plan = _pipeline.plan_infer(sample, self._ensure_ready(), inputs, named_inputs, self._split_large_batches)
        if plan.split:
            results = self._infer_chunks(plan.parts, parameters, headers)
        else:
            results = [self._infer(plan.parts[0], parameters, headers)]
        return _pipeline.finish_infer(plan, results)

    def _infer(self, inputs: Dict[str, Any], parameters: Optional[dict],
               headers: Optional[dict]) -> Dict[str, np.ndarray]:
        """One inference request over shared memory or plain HTTP."""
        self._check_open()
        _pipeline.check_not_decoupled(self._model_config)
        header_list = _pipeline.request_headers(self._auth_headers, self._auth_header_list, headers)
        request_id = self._request_ids.next()
        target, timeout_s = self._model.infer_target, self._inference_timeout_s
        try:
            shm = self._shm
            if shm is not None:
                route = shm.route(inputs, self._model_config)
                if route is not None:
                    result = shm.infer(route, self._transport, target, header_list, request_id,
                                       inputs, parameters, timeout_s)
                    if result is not None:
                        return result
                if shm.disabled:
                    self._shm = None
                    self._make_fast()  # without shared memory's threshold
            return self._transport.infer(target, header_list, request_id, list(inputs.items()), None,
                                         parameters, timeout_s)
        except (_ServerError, PyTritonClientTimeoutError) as e:
            raise self._infer_error(e) from e

    def _infer_chunks(self, chunks: List[Dict[str, Any]], parameters: Optional[dict],
                      headers: Optional[dict]) -> List[Dict[str, np.ndarray]]:
        """The chunks of a split batch, concurrently on the shared chunk pool."""
        pool = _chunk_workers()
        futures = [pool.submit(self._infer, chunk, parameters, headers) for chunk in chunks]
        deadline = _pipeline.chunks_deadline(len(chunks), MAX_CHUNK_WORKERS, self._inference_timeout_s)
        results = []
        for future in futures:
            try:
                results.append(future.result(timeout=max(0.0, deadline - time.monotonic())))
            except FutureTimeoutError:
                for f in futures:
                    f.cancel()
                raise _pipeline.chunks_timeout_error(len(chunks), self._model, self._inference_timeout_s) from None
        return results


def _unpickle_client(cls: type, kwargs: Dict[str, Any]) -> Any:
    return cls(**kwargs)
