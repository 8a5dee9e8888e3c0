"""A 64 MiB FP32 round trip with two inputs and two outputs: tritonfast over
plain HTTP and over system shared memory, beside ``tritonclient.http`` and
PyTriton's ``ModelClient``, on one real tritonserver.

    python -m pytest bench/bench_shm.py --benchmark-only -p no:cacheprovider \\
        --benchmark-json=.benchmarks/shm.json
    python bench/report.py .benchmarks/shm.json

The request: ``add_sub`` with two (1, 8Mi) float32 inputs (32 MiB each, 64 MiB
in) and its two outputs (a + b, a - b: 64 MiB out). Rows:

* ``tritonfast-http``: ``ModelClient(shared_memory=None)``, the plain HTTP path;
* ``tritonfast-shm``: ``ModelClient(shared_memory="auto")`` (the default) with
  the server on loopback: the inputs are copied once into a registered region,
  the server writes the outputs into it, and they come back as views of it;
* ``tritonclient``: ``tritonclient.http``, binary tensors in and out;
* ``pytriton``: PyTriton's ``ModelClient``.

As in ``bench_http.py`` (whose timing helper this reuses), the timer is the
client process's CPU time, and ``extra_info`` holds CPU, wall time and minor
page faults per request over the timed rounds. Issue targets: shared memory
costs at most 1/5 of the client CPU of tritonfast's HTTP path and its wall
time is at least 2x better.

Each client is checked once for a correct result and warmed up (for
``tritonfast-shm`` that also registers its regions and learns the output
sizes, which ``add_sub``'s ``[-1]`` dims leave open until the first response).
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import pytest
import tritonclient.http as httpclient
from bench_http import _hostport, _run_timed, _versions, server_version  # noqa: F401 - fixture
from pytriton.client import ModelClient as PyTritonModelClient

import tritonfast

pytestmark = pytest.mark.benchmark(timer=time.process_time)  # stats are client CPU seconds

GROUP = "64 MiB FP32 in, 64 MiB out (add_sub)"
MODEL = "add_sub"
SHAPE = (1, 8 << 20)  # 32 MiB of float32 per input
CLIENTS = ("tritonfast-http", "tritonfast-shm", "tritonclient", "pytriton")
ROUNDS = 12
WARMUP = 3


def _inputs() -> tuple[np.ndarray, np.ndarray]:
    a = np.arange(SHAPE[1], dtype=np.float32).reshape(SHAPE)
    return a, np.full(SHAPE, 0.5, np.float32)


def _tritonclient_infer(client: httpclient.InferenceServerClient, a: np.ndarray, b: np.ndarray) -> dict:
    tensors = []
    for name, x in (("INPUT0", a), ("INPUT1", b)):
        tensor = httpclient.InferInput(name, list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        tensors.append(tensor)
    outputs = [httpclient.InferRequestedOutput("OUTPUT0"), httpclient.InferRequestedOutput("OUTPUT1")]
    result = client.infer(MODEL, tensors, outputs=outputs)
    return {"OUTPUT0": result.as_numpy("OUTPUT0"), "OUTPUT1": result.as_numpy("OUTPUT1")}


def _client(impl: str, url: str) -> tuple[Callable[[np.ndarray, np.ndarray], dict], Callable[[], None], object]:
    """(infer(a, b) -> outputs, close, client) for one client object, reused across calls."""
    if impl.startswith("tritonfast"):
        mode = "auto" if impl == "tritonfast-shm" else None
        client = tritonfast.ModelClient(url, MODEL, shared_memory=mode)
        return client.infer_batch, client.close, client
    if impl == "pytriton":
        client = PyTritonModelClient(url, MODEL)
        return client.infer_batch, client.close, client
    if impl == "tritonclient":
        client = httpclient.InferenceServerClient(_hostport(url))
        return (lambda a, b: _tritonclient_infer(client, a, b)), client.close, client
    raise ValueError(impl)


@pytest.mark.parametrize("impl", CLIENTS)
def test_round_trip_64_mib(benchmark, triton_server, server_version, impl):  # noqa: F811 - fixture
    benchmark.group = GROUP
    benchmark.extra_info.update(impl=impl, model=MODEL, shape=list(SHAPE), inputs=2, outputs=2,
                                versions=_versions(server_version))
    a, b = _inputs()
    infer, close, client = _client(impl, triton_server.http_url)
    try:
        result = infer(a, b)
        assert np.array_equal(result["OUTPUT0"], a + b) and np.array_equal(result["OUTPUT1"], a - b)
        # pytest-benchmark holds each round's result while it runs the next, so two
        # results are alive at once: warm up the same way (two receive buffers or
        # two shared-memory regions), or the second one is set up in the timed rounds.
        for _ in range(WARMUP):
            result = infer(a, b)
        del result
        if impl == "tritonfast-shm":
            assert client._shm_path.region_names, "the shared-memory path was not taken"
        _run_timed(benchmark, lambda: infer(a, b), ROUNDS, requests_per_round=1)
    finally:
        close()
