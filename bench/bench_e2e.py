"""End to end against one real tritonserver: tritonfast against
``tritonclient.http``, ``tritonclient.grpc`` and PyTriton's ``ModelClient``,
with 1, 4 and 16 requests in flight.

    python -m pytest bench/bench_e2e.py --benchmark-only -p no:cacheprovider \\
        --benchmark-json=.benchmarks/e2e.json
    python bench/report.py .benchmarks/e2e.json      # or: python bench/run_all.py

Payloads (``PAYLOADS``):

* 1x16 FP32 on ``identity_fp32_cached`` (response cache: the server's part is
  small, so the client's cost shows);
* 16 MiB FP32, (1, 4Mi), on ``identity_fp32`` (not cached);
* 100,000 x 16 B and 1,000 x 1 KiB BYTES on ``identity_bytes_cached``: the
  response cache spares the Python backend's per-element work (100,000 Python
  ``bytes`` objects each way), which would otherwise dominate every row.

Rows (one per client, in every cell):

* ``tritonfast``: one ``ModelClient(shared_memory=None)`` shared by the N
  threads (it is thread-safe: a pool of keep-alive connections), so this is
  the plain HTTP path;
* ``tritonfast-shm`` (16 MiB only): the same with ``shared_memory="auto"``;
* ``tritonclient``: ``tritonclient.http``, one ``InferenceServerClient`` per
  thread, created in that thread (its docs: not thread-safe; geventhttpclient
  connections belong to the thread's gevent hub);
* ``tritonclient-grpc``: ``tritonclient.grpc``, one ``InferenceServerClient``
  per thread as well (same shape as the HTTP row; one channel each);
* ``pytriton``: PyTriton's synchronous ``ModelClient`` (HTTP), one per thread,
  created in that thread (it is not thread-safe).

A cell: N threads each make their client (or share tritonfast's), check the
first result against the input, warm up for ``WARMUP_S``, meet at a barrier,
then each sends requests back to back until ``DURATION_S`` has passed *and*
the cell has at least ``min_requests``. Over the timed phase the main thread
records client CPU (``time.process_time`` delta: every thread of this process,
kernel time for its sockets included; the server runs in other processes),
wall time, and minor page faults; each thread records every request's wall
latency. Throughput = requests / wall; CPU per request = CPU / requests.
pytest-benchmark's own statistics are one round of the whole cell (CPU
seconds); the figures are in ``extra_info`` (``kind`` "e2e").

Cells are time-bounded so the file runs in about 5 minutes on 2 cores shared
with the server. p99 over a few dozen requests (the big payloads) is close to
the maximum.
"""

from __future__ import annotations

import math
import resource
import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from bench_http import INPUT, OUTPUT, _hostport, _versions, server_version  # noqa: F401 - fixture
from pytriton.client import ModelClient as PyTritonModelClient
from tritonclient.utils import np_to_triton_dtype

import tritonfast

pytestmark = pytest.mark.benchmark(timer=time.process_time)  # stats are client CPU seconds

DURATION_S = 1.5  # timed phase of a cell, at least
WARMUP_S = 0.3  # untimed, per thread, after the correctness check
IN_FLIGHT = (1, 4, 16)
CLIENTS = ("tritonfast", "tritonfast-shm", "tritonclient", "tritonclient-grpc", "pytriton")


@dataclass(frozen=True)
class Payload:
    name: str
    model: str
    min_requests: int  # per cell, however long it takes
    shm_row: bool = False

    def array(self) -> np.ndarray:
        if self.name == "1x16 FP32":
            return np.arange(16, dtype=np.float32).reshape(1, 16)
        if self.name == "16 MiB FP32":
            return np.arange(4 << 20, dtype=np.float32).reshape(1, -1)
        if self.name == "100,000 x 16 B BYTES":
            return np.array([i.to_bytes(4, "little") * 4 for i in range(100_000)], dtype=object).reshape(1, -1)
        if self.name == "1,000 x 1 KiB BYTES":
            return np.array([bytes([i % 256]) * 1024 for i in range(1_000)], dtype=object).reshape(1, -1)
        raise ValueError(self.name)


PAYLOADS = {
    p.name: p
    for p in (
        Payload("1x16 FP32", "identity_fp32_cached", min_requests=200),
        Payload("16 MiB FP32", "identity_fp32", min_requests=20, shm_row=True),
        Payload("100,000 x 16 B BYTES", "identity_bytes_cached", min_requests=20),
        Payload("1,000 x 1 KiB BYTES", "identity_bytes_cached", min_requests=50),
    )
}
CELLS = [
    (payload, n, impl)
    for payload in PAYLOADS
    for n in IN_FLIGHT
    for impl in CLIENTS
    if impl != "tritonfast-shm" or PAYLOADS[payload].shm_row
]


def _tritonclient_infer(module, client, model: str, x: np.ndarray) -> np.ndarray:
    """tritonclient's documented way (HTTP or gRPC): a fresh InferInput per call, binary in and out."""
    tensor = module.InferInput(INPUT, list(x.shape), np_to_triton_dtype(x.dtype))
    tensor.set_data_from_numpy(x)
    result = client.infer(model, [tensor], outputs=[module.InferRequestedOutput(OUTPUT)])
    return result.as_numpy(OUTPUT)


def _thread_client(impl: str, server, model: str, shared):
    """(infer(x) -> output, close) for one worker thread; made in that thread."""
    if impl.startswith("tritonfast"):
        return (lambda x: shared.infer_batch(x)[OUTPUT]), (lambda: None)
    if impl == "tritonclient":
        client = httpclient.InferenceServerClient(_hostport(server.http_url))
        return (lambda x: _tritonclient_infer(httpclient, client, model, x)), client.close
    if impl == "tritonclient-grpc":
        client = grpcclient.InferenceServerClient(_hostport(server.grpc_url))
        return (lambda x: _tritonclient_infer(grpcclient, client, model, x)), client.close
    if impl == "pytriton":
        client = PyTritonModelClient(server.http_url, model)
        return (lambda x: client.infer_batch(x)[OUTPUT]), client.close
    raise ValueError(impl)


def _shared_client(impl: str, server, model: str):
    if impl == "tritonfast":
        return tritonfast.ModelClient(server.http_url, model, shared_memory=None)
    if impl == "tritonfast-shm":
        return tritonfast.ModelClient(server.http_url, model, shared_memory="auto")
    return None


def _equal(y: np.ndarray, x: np.ndarray) -> bool:
    return y.shape == x.shape and np.array_equal(y, x)


def run_cell(impl: str, server, payload: Payload, in_flight: int) -> dict:
    """Run one cell (see the module docstring); return its figures."""
    x = payload.array()
    shared = _shared_client(impl, server, payload.model)
    per_thread_min = math.ceil(payload.min_requests / in_flight)
    marks: dict[str, float] = {}

    def begin() -> None:  # the barrier's action: runs once, before any thread is released
        marks["faults"] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        marks["cpu"], marks["wall"] = time.process_time(), time.perf_counter()
        marks["deadline"] = marks["wall"] + DURATION_S

    def end() -> None:  # runs once, when every thread has finished its last request
        marks["wall"] = time.perf_counter() - marks["wall"]
        marks["cpu"] = time.process_time() - marks["cpu"]
        marks["faults"] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - marks["faults"]

    start = threading.Barrier(in_flight + 1, action=begin)
    stop = threading.Barrier(in_flight + 1, action=end)
    latencies: list[list[float]] = [[] for _ in range(in_flight)]
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        close = None
        try:
            infer, close = _thread_client(impl, server, payload.model, shared)
            if not _equal(infer(x), x):
                raise AssertionError(f"{impl}: wrong result for {payload.name}")
            warm_until = time.perf_counter() + WARMUP_S
            while time.perf_counter() < warm_until:
                infer(x)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)
            start.abort()
        try:
            start.wait()
        except threading.BrokenBarrierError:
            if close:
                close()
            return
        mine = latencies[index]
        try:
            while len(mine) < per_thread_min or time.perf_counter() < marks["deadline"]:
                t0 = time.perf_counter()
                infer(x)
                mine.append(time.perf_counter() - t0)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        stop.wait()
        if close:
            close()

    threads = [threading.Thread(target=worker, args=(i,), name=f"bench-{impl}-{i}") for i in range(in_flight)]
    for t in threads:
        t.start()
    try:
        start.wait()
    except threading.BrokenBarrierError:
        for t in threads:
            t.join()
        raise errors[0]
    stop.wait()
    wall, cpu, faults = marks["wall"], marks["cpu"], marks["faults"]
    for t in threads:
        t.join()
    if shared is not None:
        shared.close()
    if errors:
        raise errors[0]
    all_latencies = np.array([v for per in latencies for v in per])
    requests = len(all_latencies)
    return {
        "requests": requests,
        "wall_s": wall,
        "cpu_us_per_request": cpu / requests * 1e6,
        "throughput_rps": requests / wall,
        "p50_us": float(np.percentile(all_latencies, 50)) * 1e6,
        "p99_us": float(np.percentile(all_latencies, 99)) * 1e6,
        "minflt_per_request": faults / requests,
    }


@pytest.mark.parametrize(("payload", "in_flight", "impl"), CELLS, ids=[f"{p}-{n}-{i}" for p, n, i in CELLS])
def test_e2e(benchmark, triton_server, server_version, payload, in_flight, impl):
    spec = PAYLOADS[payload]
    benchmark.group = f"{payload}, {in_flight} in flight"
    benchmark.extra_info.update(
        kind="e2e", impl=impl, payload=payload, model=spec.model, in_flight=in_flight,
        versions=_versions(server_version),
    )  # fmt: skip
    figures = benchmark.pedantic(run_cell, args=(impl, triton_server, spec, in_flight), rounds=1, iterations=1)
    benchmark.extra_info.update(figures)
