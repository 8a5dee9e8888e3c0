"""``FuturesModelClient``: PyTriton's futures API over one shared, thread-safe
``ModelClient`` and a pool of daemon worker threads."""

from __future__ import annotations

import atexit
import queue
import threading
import weakref
from concurrent.futures import Future
from typing import Any, Callable, Dict, Optional

from tritonfast import _fork
from tritonfast.client import ModelClient, _unpickle_client
from tritonfast._workers import WorkerPool
from tritonfast.exceptions import PyTritonClientClosedError, PyTritonClientQueueFullError

_open_clients: "weakref.WeakSet[FuturesModelClient]" = weakref.WeakSet()


@atexit.register
def _close_open_clients() -> None:
    for client in list(_open_clients):
        client.close(wait=False)


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

    The workers are daemon threads sharing one client (and its connection pool),
    so requests run in parallel (the GIL is released during I/O) and a client
    that was never closed does not hold up interpreter exit.

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

    def _after_fork(self) -> None:
        self._close_lock = threading.Lock()  # another thread of the parent may have held it

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

    def infer_sample(self, *inputs: Any, parameters: Optional[Dict[str, Any]] = None,
                     headers: Optional[Dict[str, Any]] = None, **named_inputs: Any) -> Future:
        """Future of ``ModelClient.infer_sample``'s ``{output name: numpy array}``
        (one sample; a batch axis added and taken off on a batching model); its
        ``result()`` raises that method's errors. Raises
        ``PyTritonClientQueueFullError`` here when the queue is full (at once with
        ``non_blocking=True``, else after ``inference_timeout_s``) and
        ``PyTritonClientClosedError`` after ``close()``."""
        return self._execute(self._client.infer_sample, *inputs, parameters=parameters,
                             headers=headers, **named_inputs)

    def infer_batch(self, *inputs: Any, parameters: Optional[Dict[str, Any]] = None,
                    headers: Optional[Dict[str, Any]] = None, **named_inputs: Any) -> Future:
        """Future of ``ModelClient.infer_batch``'s ``{output name: numpy array}``
        (a batch larger than ``max_batch_size`` split and sent concurrently); its
        ``result()`` raises that method's errors. Raises
        ``PyTritonClientQueueFullError`` here when the queue is full (at once with
        ``non_blocking=True``, else after ``inference_timeout_s``) and
        ``PyTritonClientClosedError`` after ``close()``."""
        return self._execute(self._client.infer_batch, *inputs, parameters=parameters,
                             headers=headers, **named_inputs)

    def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        if self._closed:
            raise PyTritonClientClosedError("FutureModelClient is already closed")
        try:
            if self._non_blocking:
                return self._pool.submit(fn, *args, block=False, **kwargs)
            return self._pool.submit(fn, *args, timeout=self._inference_timeout_s, **kwargs)
        except queue.Full:
            raise PyTritonClientQueueFullError("Queue is full") from None
