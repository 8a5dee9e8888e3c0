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
from typing import Any, Callable, List, Optional, Set

from tritonfast import _fork
from tritonfast.exceptions import PyTritonClientError

_STOP = object()


class ForkedError(PyTritonClientError):
    """The work was queued or running in the parent process when this process forked:
    its result belongs to the parent, and the child has none of its threads."""


def fail_forked(future: Future) -> None:
    """In a forked child: fails a future the parent had queued or in flight."""
    if not future.done():
        try:
            future.set_exception(ForkedError(
                "the request was queued or in flight in the parent process when this process "
                "forked: its result belongs to the parent; submit it again here"))
        except Exception:  # noqa: BLE001 - a future in a state the parent left it in
            pass


class WorkerPool:
    def __init__(self, max_workers: int, max_queue_size: Optional[int] = None, name: str = "tritonfast"):
        self._max_workers = max_workers
        self._max_queue_size = max_queue_size
        self._name = name
        self._shutdown = False
        self._fresh_state()
        _fork.register(self)

    def _fresh_state(self) -> None:
        # A C-level queue (queue.Queue's Python conditions cost a request several
        # microseconds per hand-over); the bound is a semaphore of free slots.
        self._queue: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self._slots = threading.BoundedSemaphore(self._max_queue_size) if self._max_queue_size else None
        self._lock = threading.Lock()
        self._threads: List[threading.Thread] = []
        # One permit per idle worker; a submission takes one or starts a worker.
        self._idle = threading.Semaphore(0)
        # Queued or running: failed in a forked child, where no worker will run them.
        self._pending: Set[Future] = set()

    def _after_fork(self) -> None:
        """In a forked child: the workers are gone and the queued work is the parent's."""
        pending = list(self._pending)
        self._fresh_state()
        for future in pending:
            fail_forked(future)

    def submit(self, fn: Callable[..., Any], *args: Any, block: bool = True,
               timeout: Optional[float] = None, **kwargs: Any) -> Future:
        """Queues ``fn(*args, **kwargs)``; ``queue.Full`` when the queue stays full."""
        future: Future = Future()
        if self._slots is not None and not self._slots.acquire(block, timeout if block else None):
            raise queue.Full
        self._pending.add(future)
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
                    result = fn(*args, **kwargs)
                except BaseException as e:  # noqa: BLE001 - handed to the caller through the future
                    self._pending.discard(future)
                    future.set_exception(e)
                else:
                    self._pending.discard(future)
                    future.set_result(result)
            else:
                self._pending.discard(future)
            del item, future, fn, args, kwargs
            self._idle.release()
