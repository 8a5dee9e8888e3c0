"""A pool of daemon worker threads over a bounded queue.

Unlike ``concurrent.futures.ThreadPoolExecutor``, whose workers the interpreter
joins at exit, these threads never hold up interpreter exit: a forgotten
``close()`` costs nothing. Workers start on demand, one each time work arrives
and no worker is idle, up to ``max_workers``; an idle worker is claimed by the
submission that will wake it, so a burst starts as many workers as it needs.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from typing import Any, Callable, List, Optional

_STOP = object()


class WorkerPool:
    def __init__(self, max_workers: int, max_queue_size: Optional[int] = None, name: str = "tritonfast"):
        self._max_workers = max_workers
        # A C-level queue (queue.Queue's Python conditions cost a request several
        # microseconds per hand-over); the bound is a semaphore of free slots.
        self._queue: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self._slots = threading.BoundedSemaphore(max_queue_size) if max_queue_size else None
        self._name = name
        self._lock = threading.Lock()
        self._threads: List[threading.Thread] = []
        # One permit per idle worker; a submission takes one or starts a worker.
        self._idle = threading.Semaphore(0)
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], *args: Any, block: bool = True,
               timeout: Optional[float] = None, **kwargs: Any) -> Future:
        """Queues ``fn(*args, **kwargs)``; ``queue.Full`` when the queue stays full."""
        future: Future = Future()
        if self._slots is not None and not self._slots.acquire(block, timeout if block else None):
            raise queue.Full
        self._queue.put((future, fn, args, kwargs))
        if self._idle.acquire(blocking=False):
            return future
        with self._lock:
            if len(self._threads) < self._max_workers and not self._shutdown:
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
        return future

    def shutdown(self, wait: bool = True) -> None:
        """Lets queued work finish, then stops every worker; joins them if ``wait``."""
        with self._lock:
            if self._shutdown:
                threads = []
            else:
                self._shutdown = True
                threads = list(self._threads)
        for _ in threads:
            self._queue.put(_STOP)
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self._slots is not None:
                self._slots.release()  # taken off the queue: a slot is free
            future, fn, args, kwargs = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as e:  # noqa: BLE001 - handed to the caller through the future
                    future.set_exception(e)
            del item, future, fn, args, kwargs
            self._idle.release()
