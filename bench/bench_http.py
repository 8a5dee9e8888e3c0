"""End-to-end HTTP inference: client CPU per request, tritonfast against
``tritonclient.http`` and PyTriton's ``ModelClient``, on one real tritonserver.

    python -m pytest bench/bench_http.py --benchmark-only -p no:cacheprovider \
        --benchmark-json=.benchmarks/http.json
    python bench/report.py .benchmarks/http.json

What is measured. The server runs in other processes, so the *client's* cost
is this process's CPU time. Every benchmark here uses ``time.process_time``
as its timer (``pytestmark`` below), so pytest-benchmark's own statistics
(min, mean, median, ...) are client CPU seconds per round. Each test also
records in ``extra_info``, over exactly the timed rounds:

* ``cpu_us_per_request``: sum of the ``process_time`` deltas / requests (all
  threads of this process; the server's CPU is not in it); also the median
  and min round / requests per round, less disturbed by other processes;
* ``wall_us_per_request``: ``perf_counter`` elapsed / requests;
* ``minflt_per_request``: minor page faults (``getrusage(RUSAGE_SELF)``) /
  requests, i.e. pages the client mapped fresh: a sign of a buffer allocated
  (and released) per request instead of reused.

Every client is checked once for a correct result and warmed up outside the
timed rounds (so connection set-up, PyTriton's readiness wait and config fetch
are not counted); ``pedantic(..., warmup_rounds=0)`` then times ``rounds``
rounds of ``iterations`` requests each (10 for 1x16, 1 for 16 MiB;
``REQUESTS_PER_ROUND`` requests per round in the concurrent group).

Groups (one row per client in each):

* ``1x16 FP32 cached``: sequential (1, 16) float32 requests to
  ``identity_fp32_cached``; the response cache makes the server's part small,
  so the client's cost is what shows (issue target: tritonfast CPU <= 1/5 of
  both baselines, under 25 us);
* ``16 MiB FP32``: sequential (1, 4Mi) float32 to ``identity_fp32`` (target:
  <= 1/4 of tritonclient's CPU);
* ``1x16 FP32 cached, N in flight`` (N = 4, 16): tritonfast and PyTriton use
  their ``FuturesModelClient(max_workers=N)`` (a round submits 64 requests,
  then waits for all), tritonclient N threads each with its own
  ``InferenceServerClient`` (tritonclient's clients are not thread-safe), and
  ``tritonfast-threads`` N threads sharing one ``ModelClient``: the reference
  of issue 11's target (FuturesModelClient's CPU <= 1.5x of it at 16);
* ``256 MiB FP32 peak memory``: ``bench/memory_roundtrip.py`` in a fresh
  process per client; its timer is wall time (the work is in the child) and
  the figures are in ``extra_info`` (target: extra peak < 1.5x the payload).

Rounds are chosen so that the file runs in about a minute and a half on 2 cores
that the server shares (server start-up included); before the first client, the
fresh server gets ``SETTLE_S`` seconds of untimed requests (``settled_server``).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

import numpy as np
import pytest
import tritonclient.http as httpclient
from pytriton.client import FuturesModelClient as PyTritonFuturesModelClient
from pytriton.client import ModelClient as PyTritonModelClient

import tritonfast

pytestmark = pytest.mark.benchmark(timer=time.process_time)  # stats are client CPU seconds

CLIENTS = ("tritonfast", "tritonclient", "pytriton")
INPUT, OUTPUT = "INPUT0", "OUTPUT0"
MEMORY_SCRIPT = Path(__file__).with_name("memory_roundtrip.py")
MEMORY_MIB = 256
MEMORY_TIMEOUT_S = 600.0  # a 256 MiB round trip takes seconds; tritonclient's copies on 2 busy cores more


@dataclass(frozen=True)
class Payload:
    group: str
    model: str
    shape: tuple[int, ...]
    rounds: int  # timed rounds
    warmup: int  # untimed requests first (after the correctness check)
    iterations: int = 1  # requests per round (pytest-benchmark's iterations)


# 10 requests per timed round: the two timer calls around a round (process_time is
# a system call, ~0.6 us here) are then paid once per 10 requests, not per request.
SMALL = Payload("1x16 FP32 cached", "identity_fp32_cached", (1, 16), rounds=1000, warmup=500, iterations=10)
LARGE = Payload("16 MiB FP32", "identity_fp32", (1, 4 << 20), rounds=60, warmup=3)
PAYLOADS = {p.group: p for p in (SMALL, LARGE)}

CONCURRENCIES = (4, 16)  # 16: issue 11's FuturesModelClient target (<= 1.5x of threads sharing a ModelClient)
REQUESTS_PER_ROUND = 64  # split evenly over the threads
# tritonfast-threads: N threads sharing one ModelClient (the reference for FuturesModelClient)
CONCURRENT_CLIENTS = CLIENTS + ("tritonfast-threads",)
CONCURRENT_ROUNDS = 40
CONCURRENT_WARMUP_ROUNDS = 3


def _input(shape: tuple[int, ...]) -> np.ndarray:
    return np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)


def _hostport(url: str) -> str:
    return urlsplit(url).netloc  # tritonclient takes "host:port"


def _tritonclient_infer(client: httpclient.InferenceServerClient, model: str, x: np.ndarray) -> np.ndarray:
    """tritonclient's documented way: a fresh InferInput per call, binary in and out."""
    tensor = httpclient.InferInput(INPUT, list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    result = client.infer(model, [tensor], outputs=[httpclient.InferRequestedOutput(OUTPUT)])
    return result.as_numpy(OUTPUT)


SETTLE_S = 2.0  # load on the fresh server before the first timed client (see settled_server)


@pytest.fixture(scope="module", autouse=True)
def settled_server(triton_server) -> None:
    """Small requests for SETTLE_S seconds, untimed, before any client is measured.

    A server that has just started still finishes its own start-up work (model
    stubs, first-request paths) for a while; without this, whichever client runs
    first pays for it."""
    with tritonfast.ModelClient(triton_server.http_url, SMALL.model) as client:
        x = _input(SMALL.shape)
        deadline = time.monotonic() + SETTLE_S
        while time.monotonic() < deadline:
            client.infer_batch(x)


@pytest.fixture(scope="module")
def server_version(triton_server) -> str:
    with urllib.request.urlopen(f"{triton_server.http_url}/v2", timeout=10) as response:
        metadata = json.load(response)
    return f"{metadata.get('name', 'triton')} {metadata.get('version', '?')}"


def _versions(server_version: str) -> dict:
    import importlib.metadata as md

    return {
        "server": server_version,
        "tritonfast": tritonfast.__version__,
        "tritonclient": md.version("tritonclient"),
        "nvidia-pytriton": md.version("nvidia-pytriton"),
        "numpy": np.__version__,
    }


def _run_timed(benchmark, fn: Callable[[], object], rounds: int, requests_per_call: int,
               iterations: int = 1) -> None:
    """Time ``rounds`` rounds of ``iterations`` calls of ``fn`` (each call
    ``requests_per_call`` requests) and record per-request CPU, wall and minor faults."""
    faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    wall_before = time.perf_counter()
    benchmark.pedantic(fn, rounds=rounds, iterations=iterations, warmup_rounds=0)
    wall = time.perf_counter() - wall_before
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before

    requests = rounds * iterations * requests_per_call
    stats = benchmark.stats.stats  # process_time per call (a round's time / iterations)
    benchmark.extra_info.update(
        kind="http",
        requests=requests,
        cpu_us_per_request=stats.total * iterations / requests * 1e6,
        cpu_us_per_request_median=stats.median / requests_per_call * 1e6,  # of rounds: robust to bursts
        cpu_us_per_request_min=stats.min / requests_per_call * 1e6,
        wall_us_per_request=wall / requests * 1e6,  # includes the harness's few us per round
        minflt_per_request=faults / requests,
    )


# --- sequential ----------------------------------------------------------------


def _sequential_client(impl: str, url: str, model: str) -> tuple[Callable[[np.ndarray], np.ndarray], Callable]:
    """(infer(x) -> output, close) for one client object, reused across calls."""
    if impl == "tritonfast":
        client = tritonfast.ModelClient(url, model)
        return (lambda x: client.infer_batch(x)[OUTPUT]), client.close
    if impl == "pytriton":
        client = PyTritonModelClient(url, model)
        return (lambda x: client.infer_batch(x)[OUTPUT]), client.close
    if impl == "tritonclient":
        client = httpclient.InferenceServerClient(_hostport(url))
        return (lambda x: _tritonclient_infer(client, model, x)), client.close
    raise ValueError(impl)


@pytest.mark.parametrize("impl", CLIENTS)  # inner: a group's clients run back to back
@pytest.mark.parametrize("group", list(PAYLOADS))
def test_sequential(benchmark, triton_server, server_version, impl, group):
    payload = PAYLOADS[group]
    benchmark.group = payload.group
    benchmark.extra_info.update(
        impl=impl, model=payload.model, shape=list(payload.shape), versions=_versions(server_version)
    )
    x = _input(payload.shape)
    infer, close = _sequential_client(impl, triton_server.http_url, payload.model)
    try:
        y = infer(x)
        assert y.shape == x.shape and y.dtype == x.dtype and np.array_equal(y, x)
        for _ in range(payload.warmup):
            infer(x)
        _run_timed(benchmark, lambda: infer(x), payload.rounds, requests_per_call=1,
                   iterations=payload.iterations)
    finally:
        close()


# --- concurrent ------------------------------------------------------------------


class _Threads:
    """``concurrency`` threads: with ``shared``, sharing one tritonfast ModelClient; else each
    with its own tritonclient InferenceServerClient (tritonclient's are not thread-safe)."""

    def __init__(self, url: str, model: str, concurrency: int, shared: "tritonfast.ModelClient | None" = None) -> None:
        self._hostport, self._model = _hostport(url), model
        self._concurrency = concurrency
        self._shared = shared
        self._local = threading.local()
        self._clients: list[httpclient.InferenceServerClient] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="bench-threads")

    def _run(self, x: np.ndarray, count: int) -> list[np.ndarray]:
        if self._shared is not None:
            shared = self._shared
            return [shared.infer_batch(x)[OUTPUT] for _ in range(count)]
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = httpclient.InferenceServerClient(self._hostport)
            with self._lock:
                self._clients.append(client)
        return [_tritonclient_infer(client, self._model, x) for _ in range(count)]

    def infer_round(self, x: np.ndarray) -> list[np.ndarray]:
        per_thread = REQUESTS_PER_ROUND // self._concurrency
        futures = [self._pool.submit(self._run, x, per_thread) for _ in range(self._concurrency)]
        return [y for f in futures for y in f.result()]

    def close(self) -> None:
        self._pool.shutdown()
        for client in self._clients:
            client.close()
        if self._shared is not None:
            self._shared.close()


class _FuturesClient:
    """A PyTriton-style FuturesModelClient: submit a round's requests, wait for all."""

    def __init__(self, client) -> None:
        self._client = client

    def infer_round(self, x: np.ndarray) -> list[np.ndarray]:
        futures = [self._client.infer_batch(x) for _ in range(REQUESTS_PER_ROUND)]
        return [f.result()[OUTPUT] for f in futures]

    def close(self) -> None:
        self._client.close()


def _concurrent_client(impl: str, url: str, model: str, concurrency: int):
    if impl == "tritonfast":
        return _FuturesClient(tritonfast.FuturesModelClient(url, model, max_workers=concurrency))
    if impl == "tritonfast-threads":
        return _Threads(url, model, concurrency, shared=tritonfast.ModelClient(url, model))
    if impl == "pytriton":
        return _FuturesClient(PyTritonFuturesModelClient(url, model, max_workers=concurrency))
    if impl == "tritonclient":
        return _Threads(url, model, concurrency)
    raise ValueError(impl)


@pytest.mark.parametrize("impl", CONCURRENT_CLIENTS)
@pytest.mark.parametrize("concurrency", CONCURRENCIES)
def test_concurrent(benchmark, triton_server, server_version, impl, concurrency):
    benchmark.group = f"1x16 FP32 cached, {concurrency} in flight"
    benchmark.extra_info.update(
        impl=impl, model=SMALL.model, shape=list(SMALL.shape), concurrency=concurrency,
        versions=_versions(server_version),
    )  # fmt: skip
    x = _input(SMALL.shape)
    client = _concurrent_client(impl, triton_server.http_url, SMALL.model, concurrency)
    try:
        ys = client.infer_round(x)
        assert len(ys) == REQUESTS_PER_ROUND and all(np.array_equal(y, x) for y in ys)
        for _ in range(CONCURRENT_WARMUP_ROUNDS):
            client.infer_round(x)
        _run_timed(benchmark, lambda: client.infer_round(x), CONCURRENT_ROUNDS, requests_per_call=REQUESTS_PER_ROUND)
    finally:
        client.close()


# --- peak memory -------------------------------------------------------------------


@pytest.mark.benchmark(timer=time.perf_counter)  # the work is in the child process
@pytest.mark.parametrize("impl", CLIENTS)
def test_peak_memory(benchmark, triton_server, server_version, impl):
    benchmark.group = f"{MEMORY_MIB} MiB FP32 peak memory"
    command = [sys.executable, str(MEMORY_SCRIPT), "--client", impl,
               "--url", triton_server.http_url, "--mib", str(MEMORY_MIB)]  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "error"}  # as strict as the suite's filterwarnings

    def run() -> dict:
        done = subprocess.run(command, capture_output=True, text=True, timeout=MEMORY_TIMEOUT_S, env=env)
        assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{done.stderr}{done.stdout}"
        return json.loads(done.stdout.strip().splitlines()[-1])

    result = benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    assert result["correct"]
    benchmark.extra_info.update(kind="memory", impl=impl, versions=_versions(server_version), **result)
