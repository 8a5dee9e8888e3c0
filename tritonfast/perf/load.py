"""Load generators: N requests always in flight (closed loop), or requests
issued at target times (open loop, constant or Poisson arrivals).

Closed loop: N worker threads each send a request, wait for its response and
send the next. Open loop: a scheduler thread computes each request's target
time and hands it to a bounded pool of worker threads; a request that no worker
could start within ``DELAY_TOLERANCE_NS`` of its target time counts as delayed
(perf_analyzer's "delayed" requests: the load asked for more than the pool, or
this process, could issue on time).

Workers record ``(start_ns, end_ns, ok, delayed)`` per request in a list of
their own (``time.perf_counter_ns``; one tuple and one ``append`` of Python
work per request besides the client call); the measuring thread takes the
records of a window with :meth:`Load.take`. Errors are counted, with their
messages, never raised.
"""

from __future__ import annotations

import collections
import itertools
import queue
import random
import re
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

Record = Tuple[int, int, bool, bool]  # start_ns, end_ns, ok, delayed
Call = Callable[[Any], Any]

# An open-loop request started later than this after its target time is
# "delayed". perf_analyzer counts any lateness; Python threads wake up tens to
# hundreds of microseconds after they are signalled, so that would count nearly
# every request here.
DELAY_TOLERANCE_NS = 1_000_000
# How long stop() waits for each worker to finish its request in flight.
JOIN_TIMEOUT_S = 5.0
# The scheduler re-checks for stop() this often while the worker queue is full.
SCHEDULER_POLL_S = 0.05
# Distinct error messages kept per load (the error counts themselves are always complete).
MAX_ERROR_MESSAGES = 20
ERROR_MESSAGE_CHARS = 300
# Triton puts "[request id: N] " in its messages; without it, one error is one message.
_REQUEST_ID = re.compile(r"\[request id: [^\]]*\]\s*")


class Load:
    """Worker threads running requests; the measuring thread takes their records."""

    def __init__(self, make_call: Callable[[], Call], requests: Sequence[Any], workers: int,
                 budget: Optional[int], name: str):
        self._make_call = make_call
        self._requests = list(requests)
        self._workers = workers
        self._budget = budget  # requests to send in all; None: until stop()
        self._issued = itertools.count()
        self._name = name
        self._threads: List[threading.Thread] = []
        self._records: List[List[Record]] = []
        self._carry: List[Record] = []
        self._running = False
        self._stopped = threading.Event()  # set by stop(): interrupts the scheduler's sleep
        self._error_lock = threading.Lock()
        self.error_messages: Dict[str, int] = collections.OrderedDict()

    # ------------------------------------------------------------------ control

    def start(self) -> None:
        self._running = True
        for i in range(self._workers):
            records: List[Record] = []
            self._records.append(records)
            thread = threading.Thread(target=self._run, args=(i, records),
                                      name=f"tritonfast-perf-{self._name}-{i}", daemon=True)
            self._threads.append(thread)
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stops issuing; waits (bounded) for the requests in flight."""
        self._running = False
        self._stopped.set()
        self._wake_workers()
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def wait(self, timeout_s: Optional[float] = None) -> bool:
        """Waits for a budgeted load to send all its requests; True when done."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for thread in self._threads:
            while thread.is_alive():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                # Short joins, so that Ctrl-C reaches the main thread promptly.
                thread.join(0.1 if remaining is None else min(0.1, remaining))
        return True

    def completed(self) -> int:
        """Requests finished (or failed) and not yet taken."""
        return len(self._carry) + sum(len(r) for r in self._records)

    def take(self, since_ns: int, until_ns: int) -> List[Record]:
        """Records of requests that ended in (since_ns, until_ns]; earlier ones are dropped,
        later ones kept for the next window."""
        taken = self._carry
        for records in self._records:
            n = len(records)
            taken.extend(records[:n])
            del records[:n]  # one operation under the GIL: appends after len() stay
        self._carry = [r for r in taken if r[1] > until_ns]
        return [r for r in taken if since_ns < r[1] <= until_ns]

    # ------------------------------------------------------------------ workers

    def _wake_workers(self) -> None:
        pass

    def _run(self, index: int, records: List[Record]) -> None:
        # The call is made on the worker's own thread: tritonclient wants a client per thread.
        try:
            call = self._make_call()
        except Exception as e:  # noqa: BLE001 - counted like a failed request
            self._record_error(e)
            return
        self._work(call, index, records)

    def _work(self, call: Call, index: int, records: List[Record]) -> None:
        raise NotImplementedError

    def _next_allowed(self) -> bool:
        return self._budget is None or next(self._issued) < self._budget

    def _record_error(self, error: BaseException) -> None:
        text = _REQUEST_ID.sub("", f"{type(error).__name__}: {error}".replace("\n", " "))
        message = text[:ERROR_MESSAGE_CHARS]
        with self._error_lock:
            if message in self.error_messages or len(self.error_messages) < MAX_ERROR_MESSAGES:
                self.error_messages[message] = self.error_messages.get(message, 0) + 1


class ClosedLoop(Load):
    """``concurrency`` workers, each with one request in flight at a time."""

    def __init__(self, make_call: Callable[[], Call], requests: Sequence[Any], concurrency: int,
                 budget: Optional[int] = None):
        super().__init__(make_call, requests, concurrency, budget, "concurrency")

    def _work(self, call: Call, index: int, records: List[Record]) -> None:
        clock = time.perf_counter_ns
        append = records.append
        requests = self._requests
        n = len(requests)
        i = index  # workers start at different payloads when there are several
        while self._running and self._next_allowed():
            payload = requests[i % n]
            i += 1
            start = clock()
            try:
                call(payload)
            except Exception as e:  # noqa: BLE001 - counted, reported with its message
                append((start, clock(), False, False))
                self._record_error(e)
                continue
            append((start, clock(), True, False))


class RequestRate(Load):
    """A scheduler thread issuing ``rate`` requests per second onto ``workers`` threads.

    ``distribution``: ``constant`` (every 1/rate s) or ``poisson`` (exponential
    gaps with mean 1/rate s, seeded so runs repeat).
    """

    def __init__(self, make_call: Callable[[], Call], requests: Sequence[Any], rate: float, distribution: str,
                 workers: int, budget: Optional[int] = None, seed: int = 0):
        super().__init__(make_call, requests, workers, budget, "rate")
        self._rate = rate
        self._distribution = distribution
        self._seed = seed
        # Bounded: when every worker is busy and this many requests wait, the
        # scheduler waits too, and the requests it hands over late count as delayed.
        self._queue: "queue.Queue[Optional[int]]" = queue.Queue(maxsize=workers)
        self._scheduler: Optional[threading.Thread] = None
        self.scheduled = 0

    def start(self) -> None:
        super().start()
        self._scheduler = threading.Thread(target=self._schedule, name="tritonfast-perf-scheduler", daemon=True)
        self._scheduler.start()

    def _wake_workers(self) -> None:
        if self._scheduler is not None:
            self._scheduler.join(JOIN_TIMEOUT_S)
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        for _ in self._threads:
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                break

    def _schedule(self) -> None:
        clock = time.perf_counter_ns
        rng = random.Random(self._seed)
        poisson = self._distribution == "poisson"
        gap_ns = 1e9 / self._rate
        target = float(clock())
        sent = 0
        while self._running and (self._budget is None or sent < self._budget):
            target += rng.expovariate(1.0) * gap_ns if poisson else gap_ns
            wait_ns = target - clock()
            if wait_ns > 0 and self._stopped.wait(wait_ns / 1e9):
                break
            while self._running:
                try:
                    self._queue.put(int(target), timeout=SCHEDULER_POLL_S)
                    break
                except queue.Full:
                    continue
            sent += 1
        self.scheduled = sent
        if self._budget is not None:  # all handed over: let the workers finish and exit
            for _ in self._threads:
                while self._running:  # after stop(), stop() itself wakes the workers
                    try:
                        self._queue.put(None, timeout=SCHEDULER_POLL_S)
                        break
                    except queue.Full:
                        continue

    def _work(self, call: Call, index: int, records: List[Record]) -> None:
        clock = time.perf_counter_ns
        append = records.append
        get = self._queue.get
        requests = self._requests
        n = len(requests)
        i = index
        while True:
            target = get()
            if target is None or not self._running:
                return
            payload = requests[i % n]
            i += 1
            start = clock()
            delayed = start - target > DELAY_TOLERANCE_NS
            try:
                call(payload)
            except Exception as e:  # noqa: BLE001 - counted, reported with its message
                append((start, clock(), False, delayed))
                self._record_error(e)
                continue
            append((start, clock(), True, delayed))


def run_sequential(call: Call, requests: Sequence[Any], count: int) -> None:
    """Sends ``count`` requests one after another (the warm-up); raises the first error."""
    for i in range(count):
        call(requests[i % len(requests)])


__all__ = ["ClosedLoop", "DELAY_TOLERANCE_NS", "Record", "RequestRate", "run_sequential"]
