"""``FuturesModelClient``: PyTriton's futures API over one shared, thread-safe
``ModelClient``.

Two lanes. Plain requests (those ``ModelClient``'s native fast lane takes:
positional numeric arrays, no parameters or headers, inputs up to
``ENGINE_MAX_INPUT_BYTES``) are sent by the calling thread itself and their
futures completed by one reactor thread (``_core.InferEngine``), so a request
costs no hand-off to a worker thread and the reactor completes a batch of
futures per wake-up. Everything else (the first request, which fetches the
config; named inputs, parameters, headers, BYTES, shared memory, large inputs,
https) runs in a pool of daemon worker threads, as ``ModelClient`` calls.
"""

from __future__ import annotations

import atexit
import functools
import inspect
import queue
import threading
import time
import weakref
from concurrent.futures import Future, _base
from typing import Any, Callable, Dict, Optional

import numpy as np

from tritonfast import _core, _fork
from tritonfast._transport import is_native
from tritonfast._workers import WorkerPool, fail_forked
from tritonfast.client import ModelClient, _unpickle_client
from tritonfast.exceptions import (
    PyTritonClientClosedError,
    PyTritonClientQueueFullError,
    PyTritonClientTimeoutError,
    _ServerError,
)

# Inputs larger than this take the worker pool: the caller's thread sends what
# the reactor lane takes, and a large send would hold it up (PyTriton's
# infer_batch returns at once), while for a large request a hand-off is cheap.
ENGINE_MAX_INPUT_BYTES = 64 * 1024
# The reactor thread ends after this long with nothing in flight (the next
# request starts another): an unused or forgotten client holds no thread.
REACTOR_IDLE_S = 1.0
_NOT_TAKEN, _TAKEN, _TAKEN_START_REACTOR, _FULL = 0, 1, 2, 3

_open_clients: "weakref.WeakSet[FuturesModelClient]" = weakref.WeakSet()


@atexit.register
def _close_open_clients() -> None:
    for client in list(_open_clients):
        client.close(wait=False)


_CONDITION_LOCK = threading.Lock()  # makes each _LaneFuture's Condition once


class _LaneFuture(Future):
    """A ``concurrent.futures.Future`` of the reactor lane, sent and so running.

    It differs from a plain Future in one way: its Condition (``_condition``,
    about a third of a Future's cost) is made the first time anything needs it:
    a thread that waits (``result()`` before the result, ``exception()``,
    ``concurrent.futures.wait`` / ``as_completed``), a done-callback, ``cancel()``,
    ``done()``. The reactor completes a future that has none yet by setting its
    result and state with the GIL held (``_core.InferEngine``); one that has
    one through ``set_result``, which notifies. Either way every method sees a
    finished Future. (It relies on ``concurrent.futures._base``'s attribute
    names, the same since Python 3.2; tests/test_futures_lane.py checks
    every public use.)
    """

    def __init__(self) -> None:  # noqa: D107 - Future.__init__ would make the Condition now
        self._state = _base.RUNNING  # sent at once: cancel() cannot stop it
        self._result = None
        self._exception: Optional[BaseException] = None
        self._waiters: list = []
        self._done_callbacks: list = []

    def __getattr__(self, name: str) -> Any:
        if name != "_condition":
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        with _CONDITION_LOCK:
            condition = self.__dict__.get("_condition")
            if condition is None:
                condition = self.__dict__["_condition"] = threading.Condition()
        return condition

    def result(self, timeout: Optional[float] = None) -> Any:
        """As ``Future.result``; a finished one returns without making a Condition."""
        if self._state == _base.FINISHED and self._exception is None:
            return self._result
        return super().result(timeout)


def _fail(client: ModelClient, future: Future, error: BaseException) -> None:
    """Completes a reactor-lane future with the error ``ModelClient`` would raise."""
    if isinstance(error, (_ServerError, PyTritonClientTimeoutError)):
        mapped = client._infer_error(error)
        mapped.__cause__ = error
        error = mapped
    future.set_exception(error)


def _submit_method(sample: bool, doc: str) -> Callable[..., Future]:
    """``infer_sample`` or ``infer_batch``: the reactor lane's one dispatch, then
    the worker pool. (One factory for both, so the hot path costs no extra call.)"""

    def infer(self: FuturesModelClient, *inputs: np.ndarray, parameters: Optional[Dict[str, Any]] = None,
              headers: Optional[Dict[str, Any]] = None, **named_inputs: np.ndarray) -> Future:
        plan = self._client._fast
        if plan is not None and parameters is None and headers is None and not named_inputs:
            engine = self._engine
            if engine is not None:
                future = _LaneFuture()
                taken = engine.submit(plan, inputs, sample, future)
                if taken == _TAKEN:
                    return future
                if taken == _TAKEN_START_REACTOR:
                    self._start_reactor()
                    return future
                if taken == _FULL and self._submit_when_room(plan, inputs, sample, future):
                    return future
        method = self._client.infer_sample if sample else self._client.infer_batch
        return self._execute(method, *inputs, parameters=parameters, headers=headers, **named_inputs)

    infer.__name__ = "infer_sample" if sample else "infer_batch"
    infer.__qualname__ = "FuturesModelClient." + infer.__name__
    infer.__doc__ = inspect.cleandoc(doc)
    return infer


class FuturesModelClient:
    """Runs inferences in worker threads and returns ``concurrent.futures.Future``s.

    Args:
        url, model_name, model_version, init_timeout_s, inference_timeout_s: as
            for :class:`~tritonfast.ModelClient`.
        max_workers: worker threads at most (started on demand).
        max_queue_size: requests waiting for a worker at most; None: unlimited.
        non_blocking: when the queue is full, raise PyTritonClientQueueFullError at
            once instead of waiting up to ``inference_timeout_s``.
        client_kwargs: further ``ModelClient`` keyword arguments, e.g.
            ``shared_memory=`` or ``ssl_context=``.

    Once the model's config is known, plain requests (positional numeric
    arrays of up to 64 KiB, no parameters or headers) are sent by the calling
    thread and completed by one reactor thread, with no hand-off to a worker;
    at most ``max_workers`` are in flight and ``max_queue_size`` more wait.
    Everything else runs in daemon worker threads sharing one client (and its
    connection pool). Either way requests run in parallel (the GIL is released
    during I/O), and a client that was never closed does not hold up
    interpreter exit. Futures are ``concurrent.futures.Future``s; the reactor
    lane's are sent (running) when returned, so their ``cancel()`` returns
    False, where a worker's can be cancelled while it waits in the queue.

    Pickles as its configuration, like ModelClient. In a forked child, futures
    the parent had queued or running fail with ``ForkedError`` (their requests
    are the parent's) and new requests start workers of the child's own.
    """

    def __init__(
        self,
        url: str,
        model_name: str,
        model_version: Optional[str] = None,
        *,
        max_workers: int = 128,
        max_queue_size: int = 128,
        non_blocking: bool = False,
        init_timeout_s: Optional[float] = None,
        inference_timeout_s: Optional[float] = None,
        **client_kwargs: Any,
    ):
        if max_workers is not None and max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if max_queue_size is not None and max_queue_size <= 0:
            raise ValueError("max_queue_size must be greater than 0")
        self._config = dict(url=url, model_name=model_name, model_version=model_version,
                            max_workers=max_workers, max_queue_size=max_queue_size,
                            non_blocking=non_blocking, init_timeout_s=init_timeout_s,
                            inference_timeout_s=inference_timeout_s, **client_kwargs)
        self._client = ModelClient(
            url,
            model_name,
            model_version,
            lazy_init=True,
            init_timeout_s=init_timeout_s,
            inference_timeout_s=inference_timeout_s,
            **client_kwargs,
        )
        self._inference_timeout_s = inference_timeout_s
        self._non_blocking = non_blocking
        self._pool = WorkerPool(max_workers or 128, max_queue_size, name="tritonfast-futures")
        self._engine = self._make_engine(max_workers or 128, max_queue_size or 0)
        self._reactor: Optional[threading.Thread] = None  # the latest reactor thread
        self._closed = False
        self._close_lock = threading.Lock()
        _open_clients.add(self)
        _fork.register(self)

    def __reduce__(self) -> Any:
        """Pickles as configuration: the unpickled client connects on first use."""
        if self._config.get("ssl_context") is not None:
            raise TypeError(
                "a FuturesModelClient with an ssl_context cannot be pickled (ssl.SSLContext cannot): "
                "create the client in the worker, or leave ssl_context=None to use the default"
            )
        config = dict(self._config)
        return (_unpickle_client, (type(self), config))

    def _make_engine(self, max_in_flight: int, max_queued: int) -> Any:
        """The reactor lane, where the transport is the native one (not https)."""
        transport = self._client._transport
        if not is_native(transport):
            return None
        try:
            return _core.InferEngine(transport, max_in_flight, max_queued, ENGINE_MAX_INPUT_BYTES,
                                     functools.partial(_fail, self._client))
        except RuntimeError:  # no epoll (not Linux): the worker pool takes every request
            return None

    def _after_fork(self) -> None:
        self._close_lock = threading.Lock()  # another thread of the parent may have held it
        if self._engine is not None:
            for future in self._engine.after_fork():
                fail_forked(future)

    def __enter__(self) -> "FuturesModelClient":
        return self

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        self.close()

    def close(self, wait: bool = True) -> None:
        """Lets queued requests finish, then stops the workers and closes the connections.
        With ``wait=False`` it returns at once; queued requests still run, and the
        connections close when the client is garbage-collected."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        _open_clients.discard(self)
        if self._engine is not None:
            # Not from the reactor itself (a done-callback calling close()): it
            # would wait for its own thread.
            self._engine.close(wait and threading.current_thread() is not self._reactor)
        self._pool.shutdown(wait=wait)
        if wait:
            self._client.close()

    def wait_for_model(self, timeout_s: float) -> Future:
        """Future that is done once the model is ready (``ModelClient.wait_for_model``
        in a worker); its ``result()`` raises that method's errors."""
        return self._execute(self._client.wait_for_model, timeout_s)

    def model_config(self) -> Future:
        """Future of the model's :class:`~tritonfast.model_config.TritonModelConfig`
        (a method here, a property on ModelClient, as in PyTriton)."""
        return self._execute(lambda: self._client.model_config)

    infer_sample = _submit_method(True, """Future of ``ModelClient.infer_sample``'s ``{output name: numpy array}``
        (one sample; a batch axis added and taken off on a batching model); its
        ``result()`` raises that method's errors. Raises
        ``PyTritonClientQueueFullError`` here when the queue is full (at once with
        ``non_blocking=True``, else after ``inference_timeout_s``) and
        ``PyTritonClientClosedError`` after ``close()``.""")

    infer_batch = _submit_method(False, """Future of ``ModelClient.infer_batch``'s ``{output name: numpy array}``
        (a batch larger than ``max_batch_size`` split and sent concurrently); its
        ``result()`` raises that method's errors. Raises
        ``PyTritonClientQueueFullError`` here when the queue is full (at once with
        ``non_blocking=True``, else after ``inference_timeout_s``) and
        ``PyTritonClientClosedError`` after ``close()``.""")

    def _submit_when_room(self, plan: Any, inputs: tuple, sample: bool, future: Future) -> bool:
        """The reactor lane's queue was full: waits for room as the worker pool's
        queue would (``PyTritonClientQueueFullError`` when it stays full); False
        when the lane hands the request back meanwhile."""
        engine = self._engine
        if self._non_blocking:
            raise PyTritonClientQueueFullError("Queue is full")
        timeout_s = self._inference_timeout_s
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not engine.wait_room(left):
                raise PyTritonClientQueueFullError("Queue is full")
            taken = engine.submit(plan, inputs, sample, future)
            if taken == _TAKEN_START_REACTOR:
                self._start_reactor()
            if taken != _FULL:
                return taken != _NOT_TAKEN

    def _start_reactor(self) -> None:
        thread = threading.Thread(target=self._engine.run, args=(REACTOR_IDLE_S,),
                                  name="tritonfast-futures-reactor", daemon=True)
        self._reactor = thread
        thread.start()

    def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        if self._closed:
            raise PyTritonClientClosedError("FutureModelClient is already closed")
        try:
            if self._non_blocking:
                return self._pool.submit(fn, *args, block=False, **kwargs)
            return self._pool.submit(fn, *args, timeout=self._inference_timeout_s, **kwargs)
        except queue.Full:
            raise PyTritonClientQueueFullError("Queue is full") from None
