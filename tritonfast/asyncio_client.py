"""``AsyncioModelClient``: PyTriton's asyncio client over tritonfast's asyncio transport.

The same request pipeline as ``ModelClient`` (``tritonfast._pipeline``): the
argument checks, naming, batch axis, chunk planning, headers and error mapping
are its steps, and readiness and config are its sans-I/O exchanges driven by
``_pipeline.run_async``. Only the I/O call differs: ``await`` on
``tritonfast._transport.aio.AioTransport``.

PyTriton's behaviour (``pytriton.client.AsyncioModelClient``) with its bugs fixed:

* readiness is checked once, on first use (PyTriton re-checks it on every call
  with ``lazy_init=False`` or a given config);
* a closed client raises ``PyTritonClientClosedError`` (not aiohttp's ``RuntimeError``);
* an unknown model fails fast with ``PyTritonClientModelUnavailableError``;
* batches larger than ``max_batch_size`` are split and their chunks sent concurrently;
* ``from_existing_client`` works (PyTriton's raises ``TypeError``), and
  ``access_token`` is accepted; ``wait_for_server``, ``load_model`` and
  ``unload_model`` are there as on ``ModelClient``;
* readiness polls back off from 50 ms (PyTriton waits 10% of ``init_timeout_s``).

Loop rules: a client may be created outside any running loop; it binds to the
loop it is first used on (which may run in any thread). Used from another loop
while that one is still open, it raises ``PyTritonClientValueError``; once that
loop is closed (``asyncio.run`` returned), another loop may take the client over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Dict, List, Optional, Tuple, cast

import numpy as np

from tritonfast import _pipeline
from tritonfast._pipeline import ModelClientState, ParamValue, Request
from tritonfast._transport.aio import MAX_CONNECTIONS, AioTransport
from tritonfast._transport.limits import DEFAULT_MAX_RESPONSE_BODY_BYTES
from tritonfast.exceptions import (
    PyTritonClientClosedError,
    PyTritonClientTimeoutError,
    PyTritonClientValueError,
    _ServerError,
)
from tritonfast.model_config import TritonModelConfig

_LOGGER = logging.getLogger("tritonfast.asyncio_client")

__all__ = ["AsyncioModelClient", "MAX_CONNECTIONS"]


class AsyncioModelClient(ModelClientState):
    """asyncio client of one model (PyTriton's ``AsyncioModelClient``).

    Args:
        url: ``[http|https://]host[:port]``; http and port 8000 by default.
        model_name: name of the model.
        model_version: version to use; the server's latest when None.
        lazy_init: wait for the model and fetch its config on first use (True)
            or in ``async with`` (False; the constructor never does I/O).
        init_timeout_s: bound on waiting for the server and model (300 s).
        inference_timeout_s: deadline of each request, inference or not (60 s):
            waiting for a free connection, connecting, sending and receiving.
        model_config: a config to use instead of fetching one.
        ensure_model_is_ready: with ``model_config``, still wait for the model
            (and refresh the config from the server) before the first inference.
        access_token: sent as the ``triton-access-token`` header.
        split_large_batches: split a batch larger than the model's
            ``max_batch_size`` into chunks sent concurrently (tritonfast only).
        ssl_context: for ``https://`` urls; ``ssl.create_default_context()``
            when None (tritonfast only).
        shared_memory: only ``None`` (plain HTTP): shared memory is not
            supported by the asyncio client yet (tritonfast only).
        max_response_body_bytes: responses larger than this are refused with
            ``ProtocolError`` before they are received (16 GiB; tritonfast only).
        max_connections: connections kept open at most; requests beyond them
            wait in order (``MAX_CONNECTIONS``, 64; tritonfast only).
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
        shared_memory: Optional[str] = None,
        max_response_body_bytes: Optional[int] = None,
        max_connections: int = MAX_CONNECTIONS,
    ):
        if shared_memory is not None:
            raise PyTritonClientValueError(
                f"shared_memory={shared_memory!r} is not supported yet in the asyncio client: "
                "leave it None (plain HTTP), or use ModelClient for shared memory"
            )
        self._init_state(url, model_name, model_version, init_timeout_s, inference_timeout_s, model_config,
                         ensure_model_is_ready, access_token, split_large_batches, ssl_context,
                         max_response_body_bytes)
        self._lazy_init = lazy_init
        self._init_lock: Optional[asyncio.Lock] = None  # made on the loop of first use
        self._init_loop: Optional[asyncio.AbstractEventLoop] = None
        max_body = DEFAULT_MAX_RESPONSE_BODY_BYTES if max_response_body_bytes is None else max_response_body_bytes
        self._transport = AioTransport(self._triton_url, ssl_context, max_body, max_connections)
        self._closed = False

    # ------------------------------------------------------------------ PyTriton API

    @classmethod
    def from_existing_client(cls, existing_client: Any) -> "AsyncioModelClient":
        """A new client with the settings and cached config of ``existing_client`` (an
        ``AsyncioModelClient`` or a ``ModelClient``)."""
        existing = existing_client
        return cls(
            existing._url,
            existing._model_name,
            existing._model_version,
            init_timeout_s=existing._init_timeout_s,
            inference_timeout_s=existing._inference_timeout_s,
            model_config=existing._model_config,
            ensure_model_is_ready=False,
            access_token=existing._access_token,
            split_large_batches=existing._split_large_batches,
            ssl_context=existing._ssl_context,
            max_response_body_bytes=existing._max_response_body_bytes,
            max_connections=getattr(existing, "max_connections", MAX_CONNECTIONS),
        )

    @property
    def max_connections(self) -> int:
        return self._transport.max_connections

    async def __aenter__(self) -> "AsyncioModelClient":
        if not self._lazy_init:
            try:
                await self._ensure_ready()
            except BaseException:
                await self.close()
                raise
        return self

    async def __aexit__(self, *_: Any) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes the connections (in-flight requests finish first); idempotent."""
        self._closed = True
        await self._transport.aclose()

    @property
    def model_config(self) -> Awaitable[TritonModelConfig]:
        """``await client.model_config``: the model's config, fetched once (waiting
        for the model) and cached."""
        return self._get_model_config()

    async def _get_model_config(self) -> TritonModelConfig:
        config = self._model_config
        return await self._ensure_ready() if config is None else config

    async def wait_for_server(self, timeout_s: float) -> None:
        """Waits until the server is live and ready; PyTritonClientTimeoutError after ``timeout_s``."""
        self._check_open()
        await self._run(_pipeline.wait_for_server(self._url, timeout_s))

    async def wait_for_model(self, timeout_s: float) -> None:
        """Waits until the model is ready; PyTritonClientTimeoutError after ``timeout_s``,
        PyTritonClientModelUnavailableError when the server does not know it."""
        self._check_open()
        await self._run(_pipeline.wait_for_model(self._model, time.monotonic() + timeout_s))

    async def load_model(self, config: Optional[str] = None, files: Optional[dict] = None) -> None:
        """Asks the server to load the model (repository API), optionally with a config
        JSON string and ``{"<version>/<file name>": bytes}`` files (as ``ModelClient``'s)."""
        self._check_open()
        await self._repository("load", _pipeline.load_payload(config, files))

    async def unload_model(self) -> None:
        """Asks the server to unload the model (repository API)."""
        self._check_open()
        await self._repository("unload", {"parameters": {"unload_dependents": False}})

    async def infer_sample(self, *inputs: np.ndarray, parameters: Optional[Dict[str, ParamValue]] = None,
                           headers: Optional[Dict[str, ParamValue]] = None,
                           **named_inputs: np.ndarray) -> Dict[str, np.ndarray]:
        """Infers one sample: on a batching model, a batch axis is added to every input
        and taken off every output (as ``ModelClient.infer_sample``)."""
        return await self._infer_general(True, inputs, named_inputs, parameters, headers)

    async def infer_batch(self, *inputs: np.ndarray, parameters: Optional[Dict[str, ParamValue]] = None,
                          headers: Optional[Dict[str, ParamValue]] = None,
                          **named_inputs: np.ndarray) -> Dict[str, np.ndarray]:
        """Infers a batch (the first axis of every input); a batch larger than the
        model's ``max_batch_size`` is split into chunks sent concurrently
        (as ``ModelClient.infer_batch``)."""
        return await self._infer_general(False, inputs, named_inputs, parameters, headers)

    # ------------------------------------------------------------------ internals

    def _check_open(self) -> None:
        if self._closed:
            raise PyTritonClientClosedError("AsyncioModelClient is closed")

    async def _ensure_ready(self) -> TritonModelConfig:
        """Waits for the model and fetches its config, once per client."""
        if self._model_ready:
            return cast(TritonModelConfig, self._model_config)
        loop = self._transport.bind()  # the clear error on a second open loop, before any wait
        if self._init_lock is None or self._init_loop is not loop:
            # asyncio.Lock binds to a loop: a lock of its own on each loop the client
            # is handed over to (the transport refuses two open loops at once).
            self._init_lock, self._init_loop = asyncio.Lock(), loop
        async with self._init_lock:
            if not self._model_ready:
                self._check_open()
                deadline = time.monotonic() + self._init_timeout_s
                self._model_config = await self._run(_pipeline.ready_config(self._model, deadline))
                self._model_ready = True
        return cast(TritonModelConfig, self._model_config)

    async def _run(self, exchange: _pipeline.Exchange) -> Any:
        """Drives one of the pipeline's management exchanges over the transport."""
        return await _pipeline.run_async(exchange, self._request)

    async def _request(self, step: Request) -> Tuple[int, bytes]:
        """One management request, bounded by the inference timeout and its deadline."""
        return await self._transport.request(step.method, step.target, self._auth_header_list, step.body,
                                             self._request_timeout(step), step.idempotent)

    async def _repository(self, action: str, payload: dict) -> None:
        deadline = time.monotonic() + self._inference_timeout_s
        await self._run(_pipeline.repository(self._model, action, payload, deadline))

    async def _infer_general(self, sample: bool, inputs: tuple, named_inputs: dict, parameters: Optional[dict],
                             headers: Optional[dict]) -> Dict[str, np.ndarray]:
        self._check_open()
        _pipeline.check_call(inputs, named_inputs, parameters, headers)
        config = self._model_config if self._model_ready else await self._ensure_ready()
        assert config is not None
        plan = _pipeline.plan_infer(sample, config, inputs, named_inputs, self._split_large_batches)
        if plan.split:
            results = await self._infer_chunks(plan.parts, parameters, headers)
        else:
            results = [await self._infer(plan.parts[0], parameters, headers)]
        return _pipeline.finish_infer(plan, results)

    async def _infer(self, inputs: Dict[str, Any], parameters: Optional[dict],
                     headers: Optional[dict]) -> Dict[str, np.ndarray]:
        """One inference request."""
        self._check_open()
        for name, x in inputs.items():
            if not isinstance(x, np.ndarray):  # PyTriton's asyncio check (its sync client has none)
                raise PyTritonClientValueError(f"Input {name} is not a numpy array. Got {type(x)} instead.")
        _pipeline.check_not_decoupled(self._model_config)
        header_list = _pipeline.request_headers(self._auth_headers, self._auth_header_list, headers)
        request_id = self._request_ids.next()
        try:
            return await self._transport.infer(self._model.infer_target, header_list, request_id,
                                               list(inputs.items()), None, parameters, self._inference_timeout_s)
        except (_ServerError, PyTritonClientTimeoutError) as e:
            raise self._infer_error(e) from e

    async def _infer_chunks(self, chunks: List[Dict[str, Any]], parameters: Optional[dict],
                            headers: Optional[dict]) -> List[Dict[str, np.ndarray]]:
        """The chunks of a split batch, concurrently; the first failure cancels the rest.
        Each chunk's request has its own deadline (the transport's), so no extra bound."""
        tasks = [asyncio.ensure_future(self._infer(chunk, parameters, headers)) for chunk in chunks]
        try:
            results = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            raise
        return list(results)
