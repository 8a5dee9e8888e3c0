"""PyTriton-compatible clients over tritonfast's native HTTP transport.

``ModelClient`` and ``FuturesModelClient`` take the arguments of
``pytriton.client`` and behave the same way, with these fixes (see the README):
one client is safe to share between threads; timeouts bound every request;
the first lazy call checks readiness once and fetches the config once; an
unknown model raises ``PyTritonClientModelUnavailableError``; ``https://``
works; batches larger than ``max_batch_size`` are split and sent concurrently;
large tensors to a server on this host go through shared memory
(``shared_memory=``, see ``tritonfast._shm_path``).

Plain requests (positional C-contiguous numeric arrays, no parameters or
headers, under the shared-memory threshold) take a fast lane once the model's
config is known: ``_core.InferPlan`` does the whole request in one C++ call
(request rendered from a per-layout template, a repeated response header
compared rather than parsed). It hands anything else back, unsent, to the
general path below, so both behave the same; tests/test_fast_lane.py checks that.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from tritonfast import _core, _fork
from tritonfast._shm_path import MODES as SHM_MODES
from tritonfast._shm_path import SharedMemoryPath, check_cuda_available, is_loopback_literal
from tritonfast._transport import create_transport
from tritonfast._url import TritonUrl
from tritonfast._workers import WorkerPool
from tritonfast.exceptions import (
    ProtocolError,
    PyTritonClientClosedError,
    PyTritonClientConnectionError,
    PyTritonClientInferenceServerError,
    PyTritonClientModelDoesntSupportBatchingError,
    PyTritonClientModelUnavailableError,
    PyTritonClientTimeoutError,
    PyTritonClientValueError,
    TlsError,
    _ServerError,
)
from tritonfast.model_config import TritonModelConfig, parse_model_config

_LOGGER = logging.getLogger("tritonfast.client")

DEFAULT_INFERENCE_TIMEOUT_S = 60.0
DEFAULT_INIT_TIMEOUT_S = 300.0
LATEST_MODEL_VERSION = "<latest>"

# Readiness polling: the first retry comes after this many seconds, each next
# one after twice as long, up to the maximum (PyTriton polls once a second).
POLL_FIRST_S = 0.05
POLL_MAX_S = 1.0
# A model the server reports as unknown for this long, while the server itself
# is ready, is unavailable: a grace period for servers that register models
# after they start (PyTriton binds models once tritonserver is up).
UNKNOWN_MODEL_GRACE_S = 3.0
# Chunks of one oversized batch in flight at once, shared by all clients.
MAX_CHUNK_WORKERS = 16
# Waiting for the chunks of a split batch: their requests' timeouts plus this.
CHUNK_WAIT_SLACK_S = 1.0

_ParamValue = Union[str, int, bool]

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


def _verify_inputs_args(inputs: tuple, named_inputs: dict) -> None:
    if not inputs and not named_inputs:
        raise PyTritonClientValueError("Provide input data")
    if inputs and named_inputs:
        raise PyTritonClientValueError("Use either positional either keyword method arguments convention")


def _verify_parameters(parameters_or_headers: Optional[Dict[str, _ParamValue]]) -> None:
    if parameters_or_headers is None:
        return
    if not isinstance(parameters_or_headers, dict):
        raise PyTritonClientValueError("Parameters and headers must be a dictionary")
    for key, value in parameters_or_headers.items():
        if not isinstance(key, str):
            raise PyTritonClientValueError("Parameter/header key must be a string")
        if not isinstance(value, (str, int, bool)):
            raise PyTritonClientValueError("Parameter/header value must be a string, integer or boolean")


class ModelClient:
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
        self._triton_url = TritonUrl.from_url(url)
        self._url = self._triton_url.with_scheme
        if model_version is not None and not isinstance(model_version, (str, int)):
            raise PyTritonClientValueError(
                f"model_version must be a str, got {type(model_version).__name__}"
            )
        self._model_name = model_name
        self._model_version = None if model_version is None else str(model_version)
        self._init_timeout_s = DEFAULT_INIT_TIMEOUT_S if init_timeout_s is None else init_timeout_s
        self._inference_timeout_s = (
            DEFAULT_INFERENCE_TIMEOUT_S if inference_timeout_s is None else inference_timeout_s
        )
        self._access_token = access_token
        self._auth_headers = {"triton-access-token": access_token} if access_token else {}
        self._auth_header_list = list(self._auth_headers.items())
        self._split_large_batches = split_large_batches
        self._ssl_context = ssl_context
        self._model_config = model_config
        # True once the model was seen ready and its config is cached.
        self._model_ready = model_config is not None and not ensure_model_is_ready
        self._init_lock = threading.Lock()
        self._request_ids = _core.RequestIds()  # "0", "1", ... as PyTriton
        version = self._model_version or ""
        self._model_path = _core.model_target(model_name, version, "")
        self._infer_target = _core.model_target(model_name, version, "/infer")
        if max_response_body_bytes is not None and (
                not isinstance(max_response_body_bytes, int) or max_response_body_bytes <= 0):
            raise PyTritonClientValueError(
                f"max_response_body_bytes must be a positive int, got {max_response_body_bytes!r}")
        self._max_response_body_bytes = max_response_body_bytes
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
        if self._model_config is None:
            self._ensure_ready()
        return self._model_config

    @property
    def is_batching_supported(self) -> bool:
        return self.model_config.max_batch_size > 0

    def wait_for_server(self, timeout_s: float) -> None:
        """Waits until the server is live and ready; PyTritonClientTimeoutError after ``timeout_s``."""
        self._check_open()
        deadline = time.monotonic() + timeout_s
        delay = POLL_FIRST_S
        while not self._server_ready(deadline):
            if not self._sleep_until_retry(deadline, delay):
                raise PyTritonClientTimeoutError(
                    f"Waiting for server to be ready timed out. ({self._url}, {timeout_s} s)"
                )
            delay = min(2 * delay, POLL_MAX_S)

    def wait_for_model(self, timeout_s: float) -> None:
        """Waits until the model is ready; PyTritonClientTimeoutError after ``timeout_s``,
        PyTritonClientModelUnavailableError when the server does not know it."""
        self._check_open()
        self._wait_for_model(time.monotonic() + timeout_s)

    def load_model(self, config: Optional[str] = None, files: Optional[dict] = None) -> None:
        """Asks the server to load the model (repository API), optionally with a config
        JSON string and ``{"<version>/<file name>": bytes}`` files."""
        self._check_open()
        parameters: Dict[str, Any] = {}
        if config is not None:
            parameters["config"] = config
        for path, content in (files or {}).items():
            parameters[f"file:{path}"] = base64.b64encode(content).decode("ascii")
        self._post_repository("load", {"parameters": parameters})

    def unload_model(self) -> None:
        """Asks the server to unload the model (repository API)."""
        self._check_open()
        self._post_repository("unload", {"parameters": {"unload_dependents": False}})

    def infer_sample(
        self,
        *inputs: np.ndarray,
        parameters: Optional[Dict[str, _ParamValue]] = None,
        headers: Optional[Dict[str, _ParamValue]] = None,
        **named_inputs: np.ndarray,
    ) -> Dict[str, np.ndarray]:
        """Infers one sample: on a batching model, a batch axis is added to every input
        and taken off every output."""
        fast = self._fast
        if fast is not None and parameters is None and headers is None and not named_inputs:
            try:
                result = fast.infer(inputs, True)
            except (_ServerError, PyTritonClientTimeoutError) as e:
                raise self._infer_error(e) from e
            if result is not None:
                return result
        _verify_inputs_args(inputs, named_inputs)
        _verify_parameters(parameters)
        _verify_parameters(headers)
        config = self._ensure_ready()
        batching = config.max_batch_size > 0
        if batching:
            inputs = tuple(x[np.newaxis, ...] for x in inputs)
            named_inputs = {name: x[np.newaxis, ...] for name, x in named_inputs.items()}
        result = self._infer(self._name_inputs(config, inputs, named_inputs), parameters, headers)
        if batching:
            result = {name: _first_row(name, out) for name, out in result.items()}
        return result

    def infer_batch(
        self,
        *inputs: np.ndarray,
        parameters: Optional[Dict[str, _ParamValue]] = None,
        headers: Optional[Dict[str, _ParamValue]] = None,
        **named_inputs: np.ndarray,
    ) -> Dict[str, np.ndarray]:
        """Infers a batch (the first axis of every input); a batch larger than the
        model's ``max_batch_size`` is split into chunks sent concurrently."""
        fast = self._fast
        if fast is not None and parameters is None and headers is None and not named_inputs:
            try:
                result = fast.infer(inputs, False)
            except (_ServerError, PyTritonClientTimeoutError) as e:
                raise self._infer_error(e) from e
            if result is not None:
                return result
        _verify_inputs_args(inputs, named_inputs)
        _verify_parameters(parameters)
        _verify_parameters(headers)
        config = self._ensure_ready()
        if config.max_batch_size <= 0:
            raise PyTritonClientModelDoesntSupportBatchingError(
                f"Model {config.model_name} doesn't support batching - use infer_sample method instead"
            )
        named = self._name_inputs(config, inputs, named_inputs)
        if self._split_large_batches:
            chunks = _split_batch(named, config.max_batch_size)
            if chunks is not None:
                return self._infer_chunks(chunks, parameters, headers)
        return self._infer(named, parameters, headers)

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
                                self._auth_header_list, self._inference_timeout_s, self._describe_model())

    def _describe_model(self) -> str:
        return f"{self._model_name}/{self._model_version or LATEST_MODEL_VERSION}"

    def _ensure_ready(self) -> TritonModelConfig:
        """Waits for the model and fetches its config, once per client."""
        if self._model_ready:
            return self._model_config
        with self._init_lock:
            if not self._model_ready:
                self._check_open()
                deadline = time.monotonic() + self._init_timeout_s
                self._wait_for_model(deadline)
                self._model_config = self._fetch_config(deadline)
                self._model_ready = True
                self._make_fast()
        return self._model_config

    def _make_fast(self) -> None:
        """Sets up the fast lane for plain requests: positional numeric arrays, no
        parameters or headers (see ``_core.InferPlan``; it hands anything else back)."""
        config, shm = self._model_config, self._shm
        self._fast = None
        if self._closed or config is None or config.decoupled or not config.inputs:
            return
        if not isinstance(self._transport, _core.HttpClient):
            return  # https: the TLS transport is Python
        limits = (0, 0) if shm is None else shm.fast_lane_limits(config)
        if limits is None:
            return
        max_bytes, fixed_output_bytes = limits
        self._fast = _core.InferPlan(
            self._transport, self._infer_target, self._auth_header_list,
            [spec.name for spec in config.inputs], config.max_batch_size, max_bytes,
            fixed_output_bytes, self._request_ids, self._inference_timeout_s,
        )

    def _request(self, method: str, target: str, deadline: float, body: Optional[bytes] = None,
                 idempotent: bool = True) -> Tuple[int, bytes]:
        """One management request, bounded by the inference timeout and ``deadline``."""
        timeout = max(0.0, min(self._inference_timeout_s, deadline - time.monotonic()))
        headers = list(self._auth_headers.items())
        return self._transport.request(method, target, headers, body, timeout, idempotent)

    def _poll(self, target: str, deadline: float) -> Optional[Tuple[int, bytes]]:
        """A readiness request; None when the server is not reachable (yet)."""
        try:
            return self._request("GET", target, deadline)
        except TlsError:
            raise  # an untrusted certificate stays untrusted: no point waiting
        except PyTritonClientTimeoutError:  # refused, reset, or no answer in time
            return None

    def _server_ready(self, deadline: float) -> bool:
        response = self._poll("/v2/health/ready", deadline)
        return response is not None and response[0] == 200

    def _model_known(self, deadline: float) -> Optional[bool]:
        """False when the server says it has no such model or version; None if unsure."""
        response = self._poll(self._model_path, deadline)
        if response is None:
            return None
        status, body = response
        if status == 200:
            return True
        message = _error_message(body).lower()
        if "unknown model" in message or "not found" in message:
            return False
        return None

    def _wait_for_model(self, deadline: float) -> None:
        delay = POLL_FIRST_S
        unknown_since: Optional[float] = None
        server_seen = False
        while True:
            response = self._poll(f"{self._model_path}/ready", deadline)
            status = None if response is None else response[0]
            server_seen = server_seen or response is not None
            if status == 200:
                return
            if status is not None and self._server_ready(deadline):
                if self._model_known(deadline) is False:
                    now = time.monotonic()
                    unknown_since = now if unknown_since is None else unknown_since
                    if now - unknown_since >= UNKNOWN_MODEL_GRACE_S:
                        raise PyTritonClientModelUnavailableError(
                            f"Model {self._describe_model()} is not available on {self._url}: "
                            "the server does not know this model or version"
                        )
                else:
                    unknown_since = None
            if not self._sleep_until_retry(deadline, delay):
                if not server_seen:
                    raise PyTritonClientTimeoutError(
                        f"Waiting for server to be ready timed out. ({self._url})"
                    )
                raise PyTritonClientTimeoutError(
                    f"Waiting for model {self._describe_model()} to be ready timed out. ({self._url})"
                )
            delay = min(2 * delay, POLL_MAX_S)

    @staticmethod
    def _sleep_until_retry(deadline: float, delay: float) -> bool:
        """Sleeps before the next poll; False when the deadline has passed."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(delay, remaining))
        return True

    def _fetch_config(self, deadline: float) -> TritonModelConfig:
        status, body = self._request("GET", f"{self._model_path}/config", deadline)
        if status != 200:
            raise PyTritonClientInferenceServerError(
                f"Fetching the config of model {self._describe_model()} from {self._url} failed "
                f"with HTTP {status}: {_error_message(body)}"
            )
        return parse_model_config(json.loads(body))

    def _post_repository(self, action: str, payload: dict) -> None:
        target = _core.model_target(self._model_name, "", "").replace("/v2/models/", "/v2/repository/models/", 1)
        deadline = time.monotonic() + self._inference_timeout_s
        status, body = self._request("POST", f"{target}/{action}", deadline,
                                     json.dumps(payload).encode(), idempotent=False)
        if status != 200:
            raise PyTritonClientInferenceServerError(
                f"{action} of model {self._model_name} on {self._url} failed with HTTP {status}: "
                f"{_error_message(body)}"
            )

    @staticmethod
    def _name_inputs(config: TritonModelConfig, inputs: tuple, named_inputs: dict) -> Dict[str, Any]:
        if named_inputs:
            return named_inputs
        # PyTriton's rule: positional inputs follow the config's order; extras are dropped.
        return {spec.name: x for spec, x in zip(config.inputs or (), inputs)}

    def _infer(self, inputs: Dict[str, Any], parameters: Optional[dict],
               headers: Optional[dict]) -> Dict[str, np.ndarray]:
        self._check_open()
        if self._model_config is not None and self._model_config.decoupled:
            raise PyTritonClientInferenceServerError(
                "Model config is decoupled. Use DecoupledModelClient instead."
            )
        if headers:
            header_list = [(k, str(v)) for k, v in {**self._auth_headers, **headers}.items()]
        else:
            header_list = self._auth_header_list
        request_id = self._request_ids.next()
        try:
            shm = self._shm
            if shm is not None:
                result = shm.infer(self._transport, self._infer_target, header_list, request_id,
                                   inputs, parameters, self._inference_timeout_s, self._model_config)
                if result is not None:
                    return result
                if shm.disabled:
                    self._shm = None
                    self._make_fast()  # without shared memory's threshold
            return self._transport.infer(self._infer_target, header_list, request_id,
                                         list(inputs.items()), None, parameters,
                                         self._inference_timeout_s)
        except (_ServerError, PyTritonClientTimeoutError) as e:
            raise self._infer_error(e) from e

    def _infer_error(self, e: Exception) -> Exception:
        """The PyTriton exception for a failed inference request."""
        if isinstance(e, _ServerError):
            message = e.message
            if "unknown model" in message.lower():
                return PyTritonClientModelUnavailableError(
                    f"Model {self._describe_model()} is not available on {self._url}: {message}"
                )
            return PyTritonClientInferenceServerError(
                f"Error occurred during inference request. Message: {message}"
            )
        _LOGGER.error("inference of %s on %s failed: %s", self._describe_model(), self._url, e)
        # PyTriton's wording for timeouts; a broken connection says what it is.
        what = "Connection failed" if isinstance(e, PyTritonClientConnectionError) else "Timeout occurred"
        return type(e)(
            f"{what} during inference request. Timeout: {self._inference_timeout_s} s "
            f"Message: {e} (model {self._describe_model()})"
        )

    def _infer_chunks(self, chunks: List[Dict[str, Any]], parameters: Optional[dict],
                      headers: Optional[dict]) -> Dict[str, np.ndarray]:
        pool = _chunk_workers()
        futures = [pool.submit(self._infer, chunk, parameters, headers) for chunk in chunks]
        # Each chunk's request is bounded by the inference timeout; chunks beyond the
        # pool's workers wait their turn. The wait itself is bounded too, so that no
        # state of a worker (a fork, a bug) can hang the caller.
        rounds = -(-len(chunks) // MAX_CHUNK_WORKERS)
        deadline = time.monotonic() + rounds * self._inference_timeout_s + CHUNK_WAIT_SLACK_S
        results = []
        for future in futures:
            try:
                results.append(future.result(timeout=max(0.0, deadline - time.monotonic())))
            except FutureTimeoutError:
                for f in futures:
                    f.cancel()
                raise PyTritonClientTimeoutError(
                    f"Timeout occurred during inference request. Timeout: {self._inference_timeout_s} s "
                    f"Message: {len(chunks)} chunks of a split batch did not finish in time "
                    f"(model {self._describe_model()})"
                ) from None
        return {name: np.concatenate([r[name] for r in results]) for name in results[0]}


def _split_batch(inputs: Dict[str, Any], max_batch_size: int) -> Optional[List[Dict[str, Any]]]:
    """Chunks of at most ``max_batch_size`` rows, or None when no split is needed
    (or possible: inputs disagree on their batch size)."""
    batch = None
    for x in inputs.values():
        if not isinstance(x, np.ndarray) or x.ndim == 0 or x.shape[0] <= max_batch_size:
            return None
        if batch is None:
            batch = x.shape[0]
        elif x.shape[0] != batch:
            return None
    return [
        {name: x[start:start + max_batch_size] for name, x in inputs.items()}
        for start in range(0, batch, max_batch_size)
    ]


def _unpickle_client(cls: type, kwargs: Dict[str, Any]) -> Any:
    return cls(**kwargs)


def _first_row(name: str, out: Any) -> Any:
    """PyTriton's ``out[0]`` for infer_sample on a batching model; an output without
    a row to take is the server's fault (as in the fast lane, csrc/bindings.cpp)."""
    shape = getattr(out, "shape", None)
    if shape is None or len(shape) == 0 or shape[0] < 1:
        shape_list = list(shape) if shape is not None else []
        raise ProtocolError(
            f"output '{name}' has shape {shape_list}: infer_sample on a batching model takes the "
            "first row of every output, and this one has "
            + ("no batch axis" if not shape_list else "an empty batch axis")
        )
    return out[0]


def _error_message(body: bytes) -> str:
    try:
        return str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return body.decode("utf-8", "replace") or "(empty response)"
