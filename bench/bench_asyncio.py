"""asyncio inference: client CPU per request of ``tritonfast.AsyncioModelClient``
(on asyncio's default loop and on uvloop) against ``tritonclient.http.aio``,
``tritonclient.grpc.aio``, PyTriton's ``AsyncioModelClient`` and a floor, on one
real tritonserver (issue 11, "Benchmarks").

    python -m pytest bench/bench_asyncio.py --benchmark-only -p no:cacheprovider \\
        --benchmark-json=.benchmarks/aio.json
    python bench/report.py .benchmarks/aio.json

``BENCH_AIO_QUICK=1`` divides every round count by 10 (at least 2 rounds): a
smoke run of the whole file, not figures to quote.

Issue 11's targets (``bench/report.py`` prints each, measured, met or not):

* at 64 in flight (1x16 FP32 cached), tritonfast's client CPU per request at
  most 1/5 of ``tritonclient.http.aio``'s and of PyTriton's
  ``AsyncioModelClient``'s, at most 1/3 of ``tritonclient.grpc.aio``'s, and
  within 2x of the floor;
* at 1 in flight, at most 1.5x the CPU per request of the synchronous
  ``tritonfast.ModelClient``;
* 16 MiB FP32: at most 1/4 of ``tritonclient.http.aio``'s CPU.

What is measured: as in ``bench_http.py`` (whose helpers this file reuses),
the timer is ``time.process_time``, so pytest-benchmark's statistics are client
CPU seconds per round (every thread of this process: grpcio's threads count;
the server runs in other processes), and ``extra_info`` (``kind`` "aio") holds
``cpu_us_per_request`` (mean, median and min round), ``wall_us_per_request``
and ``minflt_per_request`` over exactly the timed rounds.

One event loop per kind in the process: every asyncio row runs on one module-
wide ``asyncio.new_event_loop()``, every uvloop row on one
``uvloop.new_event_loop()``, in the main thread; no other threads but the
clients' own. Each client is made on its loop, checked once for a correct
result, warmed up for its level's ``warmup_rounds`` untimed rounds, then timed.

How N requests are kept in flight: a round is ``asyncio.gather`` of N worker
coroutines on one shared client, each sending ``per_worker`` requests back to
back (the next as soon as its previous one is answered), so N requests are in
flight for most of the round, not only at its start; the few microseconds a
round spends creating its N tasks are in every row alike. (At 1 in flight a
round is one coroutine sending ``per_worker`` requests in sequence.)

Rows (``impl``):

* ``tritonfast-aio`` / ``tritonfast-aio-uvloop``: one
  ``tritonfast.AsyncioModelClient`` with its defaults (``max_connections`` 64:
  at 256 in flight, requests beyond 64 wait in order for a connection);
* ``tritonclient-http-aio``: one ``tritonclient.http.aio.InferenceServerClient``
  (aiohttp; its default ``conn_limit`` 100), tritonclient's documented way: a
  fresh ``InferInput`` per call, binary in and out;
* ``tritonclient-grpc-aio``: one ``tritonclient.grpc.aio.InferenceServerClient``
  on the server's gRPC port (one channel), same calls;
* ``pytriton-aio``: one ``pytriton.client.AsyncioModelClient`` (over
  tritonclient.http.aio);
* ``floor`` / ``floor-uvloop``: the least an asyncio HTTP client can do: N
  connections, each an ``asyncio.Protocol`` that writes prebuilt request bytes
  (built once by ``tritonfast._core.build_infer_request``, the request
  tritonfast sends) and waits for the response's Content-Length bytes, counting
  them, nothing else: no encoding, no parsing beyond the head, no result
  (``transport.write`` of one prebuilt ``bytes``: for 16 MiB, asyncio copies
  whatever the first ``send`` leaves into its buffer, and every chunk received
  is a fresh ``bytes``, so there the floor is a plain Protocol's cost, not a
  lower bound for a ``BufferedProtocol`` client);
* ``tritonfast-sync`` (1 in flight only): the synchronous
  ``tritonfast.ModelClient``, requests in sequence, no loop: the reference of the
  "1.5x of the sync client" target.

Groups: ``1x16 FP32 cached, N in flight`` (``identity_fp32_cached``: the
response cache makes the server's part small, so the client's cost shows) at N
= 1, 16, 64, 256; ``16 MiB FP32, 1 in flight`` (``identity_fp32``);
``100,000 x 16 B BYTES, 1 in flight`` (``identity_bytes_cached``). Rounds are
chosen so that the file runs in about 1.5-2 minutes on 2 cores that the server
shares (server start-up included).

Noise: run it on an otherwise idle machine, and compare rows of one run only.
Rows run one after another, so anything else running shifts one row and not its
peers; and at 1 in flight the client sleeps between requests, so every row
there pays for its wake-ups (measured here: the sync ``ModelClient`` 7 us per
request while other processes kept the cores busy, 35 us on an idle machine).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Awaitable, Callable
from urllib.parse import urlsplit

import grpc
import numpy as np
import pytest
import tritonclient.grpc.aio as grpcaio
import tritonclient.http.aio as httpaio
import uvloop
from bench_e2e import PAYLOADS as E2E_PAYLOADS
from bench_e2e import _equal
from bench_http import (  # noqa: F401 - fixtures
    INPUT,
    OUTPUT,
    _hostport,
    _run_timed,
    _versions,
    server_version,
    settled_server,
)
from pytriton.client import AsyncioModelClient as PyTritonAsyncioModelClient
from tritonclient.utils import np_to_triton_dtype

import tritonfast
from tritonfast import _core

pytestmark = [
    pytest.mark.benchmark(timer=time.process_time),  # stats are client CPU seconds
    # aiohttp's advice to tritonclient.http.aio (and PyTriton over it) on a 16 MiB body: theirs to take.
    pytest.mark.filterwarnings("ignore:Sending a large body directly with raw bytes:ResourceWarning"),
]

QUICK = os.environ.get("BENCH_AIO_QUICK", "") not in ("", "0")


def _rounds(n: int) -> int:
    return max(2, n // 10) if QUICK else n


@dataclass(frozen=True)
class Level:
    """One cell's shape: N workers, each ``per_worker`` requests per round."""

    group: str
    payload: str  # a bench_e2e payload name (its array)
    model: str
    in_flight: int
    per_worker: int
    rounds: int
    warmup_rounds: int = 3  # untimed, after the correctness check

    @property
    def requests_per_round(self) -> int:
        return self.in_flight * self.per_worker


SMALL = "1x16 FP32 cached"
LEVELS = [
    Level(f"{SMALL}, 1 in flight", "1x16 FP32", "identity_fp32_cached", 1, 64, _rounds(40)),
    Level(f"{SMALL}, 16 in flight", "1x16 FP32", "identity_fp32_cached", 16, 4, _rounds(40)),
    Level(f"{SMALL}, 64 in flight", "1x16 FP32", "identity_fp32_cached", 64, 4, _rounds(12)),
    Level(f"{SMALL}, 256 in flight", "1x16 FP32", "identity_fp32_cached", 256, 2, _rounds(8)),
    # tritonclient.http.aio (and PyTriton over it) take about 2 s of wall time per 16 MiB round trip here.
    Level("16 MiB FP32, 1 in flight", "16 MiB FP32", "identity_fp32", 1, 1, _rounds(10), warmup_rounds=1),
    Level("100,000 x 16 B BYTES, 1 in flight", "100,000 x 16 B BYTES", "identity_bytes_cached", 1, 1, _rounds(10),
          warmup_rounds=1),
]
IMPLS = ("tritonfast-aio", "tritonfast-aio-uvloop", "tritonclient-http-aio", "tritonclient-grpc-aio",
         "pytriton-aio", "floor", "floor-uvloop", "tritonfast-sync")  # fmt: skip
CELLS = [(level, impl) for level in LEVELS for impl in IMPLS if impl != "tritonfast-sync" or level.in_flight == 1]


def _loop_kind(impl: str) -> str:
    return "uvloop" if impl.endswith("-uvloop") else "asyncio"


@pytest.fixture(scope="module")
def loops():
    """``loops(kind)``: the module's one loop of that kind ("asyncio" or "uvloop")."""
    made: dict[str, asyncio.AbstractEventLoop] = {}

    def get(kind: str) -> asyncio.AbstractEventLoop:
        if kind not in made:
            made[kind] = uvloop.new_event_loop() if kind == "uvloop" else asyncio.new_event_loop()
        return made[kind]

    yield get
    for loop in made.values():
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


# --- the floor ---------------------------------------------------------------------


class _FloorProtocol(asyncio.Protocol):
    """One keep-alive connection: write the prebuilt request, wait for Content-Length bytes."""

    def __init__(self, request: bytes, keep: bool = False) -> None:
        self._request = request
        self._keep = keep  # keep the response (the correctness check only)
        self._head = bytearray()  # until the head is complete
        self._left = -1  # body bytes still to come; -1 while the head is incomplete
        self._done: asyncio.Future | None = None
        self._loop = asyncio.get_running_loop()  # made by create_connection, on the loop
        self.response = b""

    def connection_made(self, transport) -> None:
        self._transport = transport

    def send(self) -> asyncio.Future:
        self._done = self._loop.create_future()
        self._transport.write(self._request)
        return self._done

    def data_received(self, data: bytes) -> None:
        if self._left < 0:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._head[:end]).lower()
            at = head.index(b"\r\ncontent-length:") + len(b"\r\ncontent-length:")  # not Inference-Header-...
            stop = head.find(b"\r\n", at)
            self._left = int(head[at:stop if stop >= 0 else None])
            self._left -= len(self._head) - end - 4
            if self._keep:
                self.response = bytes(self._head)
            self._head.clear()
        else:
            self._left -= len(data)
            if self._keep:
                self.response += data
        if self._left == 0:
            self._left = -1
            self._done.set_result(None)

    def connection_lost(self, exc) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_exception(exc or ConnectionError("server closed the connection"))


def _floor_request(url: str, model: str, x: np.ndarray) -> tuple[bytes, bytes]:
    """(the request tritonfast sends for ``x``, its tensor bytes) as built by its core."""
    head, segments, _prepared = _core.build_infer_request(
        f"/v2/models/{model}/infer", urlsplit(url).netloc, None, "0", [(INPUT, x)], None, None
    )
    tensors = b"".join(bytes(s) for s in segments)
    return bytes(head) + tensors, tensors


class _Floor:
    """N connections of ``_FloorProtocol``, one per worker."""

    def __init__(self, url: str, model: str, x: np.ndarray) -> None:
        self._url, self._model = url, model
        self.request, self.tensors = _floor_request(url, model, x)
        self._protocols: list[_FloorProtocol] = []

    async def connect(self, count: int) -> None:
        loop = asyncio.get_running_loop()
        parts = urlsplit(self._url)
        for i in range(count):
            _, protocol = await loop.create_connection(
                lambda: _FloorProtocol(self.request, keep=i == 0), parts.hostname, parts.port
            )
            self._protocols.append(protocol)

    def worker_infer(self, index: int) -> Callable[[], Awaitable]:
        return self._protocols[index].send

    def check(self) -> None:
        response = self._protocols[0].response
        assert response.startswith(b"HTTP/1.1 200"), response[:200]
        assert response.endswith(self.tensors), "floor: the response does not end with the input's tensor bytes"
        self._protocols[0]._keep = False

    async def close(self) -> None:
        for protocol in self._protocols:
            protocol._transport.close()


# --- clients -----------------------------------------------------------------------


async def _tritonclient_aio_infer(module, client, model: str, x: np.ndarray) -> np.ndarray:
    """tritonclient's documented way (HTTP or gRPC aio): a fresh InferInput per call, binary in and out."""
    tensor = module.InferInput(INPUT, list(x.shape), np_to_triton_dtype(x.dtype))
    tensor.set_data_from_numpy(x)
    result = await client.infer(model, [tensor], outputs=[module.InferRequestedOutput(OUTPUT)])
    return result.as_numpy(OUTPUT)


async def _make_client(impl: str, server, model: str, x: np.ndarray, in_flight: int):
    """(worker i -> its infer() coroutine function, close coroutine function, check or None),
    made on the running loop; ``check`` checks the floor's first response."""
    if impl.startswith("tritonfast-aio"):
        client = tritonfast.AsyncioModelClient(server.http_url, model)

        async def infer():
            return (await client.infer_batch(x))[OUTPUT]

        return (lambda i: infer), client.close, None
    if impl == "pytriton-aio":
        client = PyTritonAsyncioModelClient(server.http_url, model)

        async def infer():
            return (await client.infer_batch(x))[OUTPUT]

        return (lambda i: infer), client.close, None
    if impl in ("tritonclient-http-aio", "tritonclient-grpc-aio"):
        module = httpaio if impl == "tritonclient-http-aio" else grpcaio
        url = server.http_url if module is httpaio else server.grpc_url
        client = module.InferenceServerClient(_hostport(url))

        def infer():
            return _tritonclient_aio_infer(module, client, model, x)

        return (lambda i: infer), client.close, None
    if impl.startswith("floor"):
        floor = _Floor(server.http_url, model, x)
        await floor.connect(in_flight)
        return floor.worker_infer, floor.close, floor.check
    raise ValueError(impl)


async def _gather_once(infers: list[Callable[[], Awaitable]]) -> list:
    return await asyncio.gather(*(infer() for infer in infers))


async def _round(infers: list[Callable[[], Awaitable]], per_worker: int) -> None:
    async def worker(infer: Callable[[], Awaitable]) -> None:
        for _ in range(per_worker):
            await infer()

    if len(infers) == 1:
        await worker(infers[0])
    else:
        await asyncio.gather(*(worker(infer) for infer in infers))


def _run_aio_cell(benchmark, loop, impl: str, server, level: Level, x: np.ndarray) -> None:
    infer_for, close, check = loop.run_until_complete(_make_client(impl, server, level.model, x, level.in_flight))
    try:
        infers = [infer_for(i) for i in range(level.in_flight)]
        if check is not None:  # the floor returns no result: check its first response's bytes
            loop.run_until_complete(infers[0]())
            check()
        else:
            ys = loop.run_until_complete(_gather_once(infers))
            assert all(_equal(y, x) for y in ys), f"{impl}: wrong result for {level.payload}"
        for _ in range(level.warmup_rounds):
            loop.run_until_complete(_round(infers, level.per_worker))
        _run_timed(benchmark, lambda: loop.run_until_complete(_round(infers, level.per_worker)),
                   level.rounds, requests_per_call=level.requests_per_round)
    finally:
        loop.run_until_complete(close())


def _run_sync_cell(benchmark, server, level: Level, x: np.ndarray) -> None:
    with tritonfast.ModelClient(server.http_url, level.model) as client:
        assert _equal(client.infer_batch(x)[OUTPUT], x)

        def round_() -> None:
            for _ in range(level.per_worker):
                client.infer_batch(x)

        for _ in range(level.warmup_rounds):
            round_()
        _run_timed(benchmark, round_, level.rounds, requests_per_call=level.requests_per_round)


@pytest.mark.parametrize(("level", "impl"), CELLS, ids=[f"{lv.group}-{impl}" for lv, impl in CELLS])
def test_asyncio(benchmark, triton_server, server_version, loops, level, impl):
    benchmark.group = level.group
    versions = {**_versions(server_version), "uvloop": uvloop.__version__, "grpcio": grpc.__version__}
    x = E2E_PAYLOADS[level.payload].array()
    if impl == "tritonfast-sync":
        _run_sync_cell(benchmark, triton_server, level, x)
    else:
        _run_aio_cell(benchmark, loops(_loop_kind(impl)), impl, triton_server, level, x)
    benchmark.extra_info.update(
        kind="aio", impl=impl, payload=level.payload, model=level.model, in_flight=level.in_flight,
        loop="none" if impl == "tritonfast-sync" else _loop_kind(impl), versions=versions,
    )  # fmt: skip
