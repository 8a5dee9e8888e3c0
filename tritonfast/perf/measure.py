"""Measurement windows, perf_analyzer's stability rule, and the figures of one load level.

A level (a concurrency, or a request rate) is measured in consecutive windows
of ``--measurement-interval`` ms. A request belongs to the window in which it
*ended* (as in perf_analyzer). After each window the last ``STABILITY_WINDOWS``
windows are compared: the level is stable when both their throughputs and
their latencies (average, or ``--percentile``) are within
``--stability-percentage`` of each other (max / min <= 1 + p/100), and then
those windows are merged into the level's figures. A level that is not stable
after ``--max-trials`` windows is reported from its last windows too, marked
unstable (perf_analyzer gives up on it instead). With ``--request-count N``
the level is one window holding exactly N requests.

Per window the tool also takes Triton's statistics for the model before and
after (queue, compute input/infer/output, cache hit/miss: time and count), and
this process's CPU time (``time.process_time``: every thread, the kernel's
work for the sockets included).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Dict, List, Optional, Sequence

from tritonfast.perf.errors import PerfError
from tritonfast.perf.load import Record, Load
from tritonfast.perf.server import ServerStats

STABILITY_WINDOWS = 3  # perf_analyzer's stability window
DEFAULT_PERCENTILES = (50, 90, 95, 99)  # perf_analyzer's reported percentiles
# Before a level's first window: every worker has finished a request (its
# connection is open, its thread running), or this long has passed.
SETTLE_TIMEOUT_S = 10.0


@dataclasses.dataclass
class Window:
    duration_ns: int
    latencies_ns: List[int]  # successful requests, sorted
    errors: int
    delayed: int
    cpu_s: float
    server: Optional[ServerStats]

    @property
    def completed(self) -> int:
        return len(self.latencies_ns) + self.errors


def percentile_ns(sorted_ns: Sequence[int], p: float) -> int:
    """perf_analyzer's rule: the element at round(p/100 * (n-1))."""
    if not sorted_ns:
        return 0
    return sorted_ns[int(p / 100.0 * (len(sorted_ns) - 1) + 0.5)]


@dataclasses.dataclass
class LevelResult:
    """The figures of one client at one level (times in ns unless named otherwise)."""

    client: str
    mode: str  # "concurrency" or "request_rate"
    level: float
    batch_size: int
    windows: int
    stable: bool
    interrupted: bool
    duration_ns: int
    requests: int  # successful
    errors: int
    delayed: int
    infer_per_sec: float
    latency_avg_ns: int
    latency_percentiles_ns: Dict[int, int]
    stabilizing_latency_ns: int
    send_ns: int
    recv_ns: int
    cpu_us_per_request: float
    server: Optional[ServerStats]
    error_messages: Dict[str, int]

    @property
    def request_rate(self) -> float:
        """Completed requests (ok or not) per second."""
        return (self.requests + self.errors) / (self.duration_ns / 1e9) if self.duration_ns else 0.0


def summarize(windows: Sequence[Window], *, client: str, mode: str, level: float, batch_size: int,
              percentile: Optional[int], send_ns: int, recv_ns: int, stable: bool, interrupted: bool,
              error_messages: Dict[str, int]) -> LevelResult:
    """Merges windows into one result, as perf_analyzer merges its stable windows."""
    latencies = sorted(ns for w in windows for ns in w.latencies_ns)
    duration = sum(w.duration_ns for w in windows)
    errors = sum(w.errors for w in windows)
    completed = len(latencies) + errors
    server: Optional[ServerStats] = None
    window_stats = [w.server for w in windows if w.server is not None]
    if windows and len(window_stats) == len(windows):  # a window without statistics: none for the level
        server = ServerStats()
        for stats in window_stats:
            server = server + stats
    percentiles = sorted(set(DEFAULT_PERCENTILES) | ({percentile} if percentile else set()))
    avg = sum(latencies) // len(latencies) if latencies else 0
    by_percentile = {p: percentile_ns(latencies, p) for p in percentiles}
    return LevelResult(
        client=client, mode=mode, level=level, batch_size=batch_size, windows=len(windows), stable=stable,
        interrupted=interrupted, duration_ns=duration, requests=len(latencies), errors=errors,
        delayed=sum(w.delayed for w in windows),
        infer_per_sec=len(latencies) * batch_size / (duration / 1e9) if duration else 0.0,
        latency_avg_ns=avg, latency_percentiles_ns=by_percentile,
        stabilizing_latency_ns=by_percentile[percentile] if percentile else avg,
        send_ns=send_ns, recv_ns=recv_ns,
        cpu_us_per_request=sum(w.cpu_s for w in windows) * 1e6 / completed if completed else 0.0,
        server=server, error_messages=dict(error_messages),
    )


def _stabilizing_latency(window: Window, percentile: Optional[int]) -> float:
    if percentile:
        return percentile_ns(window.latencies_ns, percentile)
    return sum(window.latencies_ns) / len(window.latencies_ns)


def is_stable(windows: Sequence[Window], threshold: float, percentile: Optional[int]) -> bool:
    """perf_analyzer's rule over the last STABILITY_WINDOWS windows: throughput and latency
    each within max / min <= 1 + threshold."""
    if len(windows) < STABILITY_WINDOWS:
        return False
    last = windows[-STABILITY_WINDOWS:]
    if any(not w.latencies_ns or w.duration_ns <= 0 for w in last):
        return False
    throughputs = [len(w.latencies_ns) / w.duration_ns for w in last]
    latencies = [_stabilizing_latency(w, percentile) for w in last]
    if min(latencies) <= 0:
        return False
    return (max(throughputs) / min(throughputs) <= 1 + threshold
            and max(latencies) / min(latencies) <= 1 + threshold)


@dataclasses.dataclass
class Settings:
    measurement_interval_ms: int
    stability_threshold: float  # --stability-percentage / 100
    max_trials: int
    percentile: Optional[int]
    request_count: int  # 0: time windows until stable


def _window(records: List[Record], duration_ns: int, cpu_s: float, server: Optional[ServerStats]) -> Window:
    latencies = sorted(end - start for start, end, ok, _ in records if ok)
    return Window(duration_ns=duration_ns, latencies_ns=latencies,
                  errors=sum(1 for r in records if not r[2]), delayed=sum(1 for r in records if r[3]),
                  cpu_s=cpu_s, server=server)


class LevelProfiler:
    """Runs one load and measures it; ``windows`` holds what was measured so far
    (read by the caller after Ctrl-C)."""

    def __init__(self, load: Load, settings: Settings, settle_count: int,
                 server_stats: Optional[Callable[[], ServerStats]],
                 on_window: Callable[[int, Window, bool], None]):
        self.load = load
        self.settings = settings
        self.windows: List[Window] = []
        self.stable = False
        self._settle_count = settle_count
        self._server_stats = server_stats
        self._on_window = on_window

    def _stats(self) -> Optional[ServerStats]:
        """The model's statistics now; None when the server does not answer (the
        window is then reported without a server breakdown, and its failed
        requests as errors)."""
        if self._server_stats is None:
            return None
        try:
            return self._server_stats()
        except PerfError:
            return None

    def run(self) -> None:
        clock = time.perf_counter_ns
        settings = self.settings
        if settings.request_count:  # one window: from the first request's start to the last one's end
            stats0, cpu0 = self._stats(), time.process_time()
            self.load.start()
            try:
                self.load.wait()
            finally:
                self.load.stop()
            cpu1, stats1 = time.process_time(), self._stats()
            server = stats1 - stats0 if stats0 is not None and stats1 is not None else None
            records = self.load.take(0, clock())
            start = min((r[0] for r in records), default=0)
            end = max((r[1] for r in records), default=0)
            self.windows.append(_window(records, end - start, cpu1 - cpu0, server))
            self.stable = True
            self._on_window(1, self.windows[-1], True)
            return
        self.load.start()
        try:
            deadline = time.monotonic() + SETTLE_TIMEOUT_S
            while self.load.completed() < self._settle_count and time.monotonic() < deadline:
                time.sleep(0.001)
            interval_ns = settings.measurement_interval_ms * 1_000_000
            stats_prev, cpu_prev, prev = self._stats(), time.process_time(), clock()
            self.load.take(0, prev)  # the settling requests are not measured
            for trial in range(settings.max_trials):
                remaining = prev + interval_ns - clock()
                if remaining > 0:
                    time.sleep(remaining / 1e9)
                now, cpu = clock(), time.process_time()
                stats = self._stats()
                server = stats - stats_prev if stats is not None and stats_prev is not None else None
                self.windows.append(_window(self.load.take(prev, now), now - prev, cpu - cpu_prev, server))
                self.stable = is_stable(self.windows, settings.stability_threshold, settings.percentile)
                self._on_window(trial + 1, self.windows[-1], self.stable)
                if self.stable:
                    break
                stats_prev, cpu_prev, prev = stats, cpu, now
        finally:
            self.load.stop()

    def measured_windows(self) -> List[Window]:
        """The windows a result is made of: the last STABILITY_WINDOWS (all in count mode)."""
        return self.windows[-STABILITY_WINDOWS:]


__all__ = ["LevelProfiler", "LevelResult", "Settings", "Window", "is_stable", "percentile_ns",
                      "summarize"]
