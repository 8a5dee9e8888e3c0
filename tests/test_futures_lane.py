"""``FuturesModelClient``'s reactor lane (``_core.InferEngine``): plain requests
sent by the calling thread and completed by one reactor thread, against the
real server. Every use of ``concurrent.futures.Future`` that users make is
checked on the lane's futures (``tritonfast.futures._LaneFuture``)."""

from __future__ import annotations

import concurrent.futures
import os
import socket
import threading
import time
from typing import Callable, Iterator

import numpy as np
import pytest

import tritonfast.futures
from tests.clients import closing_clients
from tests.test_hardening import _in_child, _wait_child
from tests.triton_server import RAISES_MESSAGE
from tritonfast import FuturesModelClient, ModelClient, TritonModelConfig
from tritonfast._workers import ForkedError
from tritonfast.exceptions import (
    PyTritonClientClosedError,
    PyTritonClientInferenceServerError,
    PyTritonClientQueueFullError,
    PyTritonClientTimeoutError,
)
from tritonfast.model_config import TensorSpec

RESULT_TIMEOUT_S = 30.0
REACTOR = "tritonfast-futures-reactor"


@pytest.fixture
def make_client(triton_server) -> Iterator[Callable[..., FuturesModelClient]]:
    yield from closing_clients(FuturesModelClient, triton_server.http_url)


def _ready(client: FuturesModelClient) -> FuturesModelClient:
    """Fetches the config (through a worker), after which the lane takes plain requests."""
    client.model_config().result(RESULT_TIMEOUT_S)
    assert client._client._fast is not None and client._engine is not None
    return client


def _slow(seconds: float) -> np.ndarray:
    return np.array([seconds], np.float32)


def _lane_sent(client: FuturesModelClient) -> int:
    return client._client._fast.sent


def test_plain_requests_take_the_lane_and_others_the_workers(make_client):
    client = _ready(make_client("identity_fp32", shared_memory=None))
    before = _lane_sent(client)
    xs = [np.full((2, 8), i, np.float32) for i in range(50)]
    futures = [client.infer_batch(x) for x in xs]
    assert all(isinstance(f, concurrent.futures.Future) for f in futures)
    assert all(type(f) is tritonfast.futures._LaneFuture for f in futures)
    for x, future in zip(xs, futures):
        np.testing.assert_array_equal(future.result(RESULT_TIMEOUT_S)["OUTPUT0"], x)
    assert _lane_sent(client) - before == 50
    # Headers, named inputs, lists and large inputs go to the worker pool.
    others = [
        client.infer_batch(xs[0], headers={"x-a": "1"}),
        client.infer_batch(INPUT0=xs[1]),
        client.infer_batch(np.zeros((1, tritonfast.futures.ENGINE_MAX_INPUT_BYTES // 4 + 1), np.float32)),
    ]
    for future in others:
        assert type(future) is concurrent.futures.Future
        future.result(RESULT_TIMEOUT_S)
    # The large one ran in a worker through ModelClient's own fast lane: plan.sent counts it.
    assert _lane_sent(client) - before == 51


def test_infer_sample_on_the_lane(make_client):
    client = _ready(make_client("add_sub"))
    a, b = np.array([1.0, 2.0], np.float32), np.array([0.5, 4.0], np.float32)
    future = client.infer_sample(a, b)
    assert type(future) is tritonfast.futures._LaneFuture
    result = future.result(RESULT_TIMEOUT_S)
    np.testing.assert_array_equal(result["OUTPUT0"], a + b)
    np.testing.assert_array_equal(result["OUTPUT1"], a - b)


def test_lane_futures_behave_as_futures(make_client):
    client = _ready(make_client("slow"))
    future = client.infer_sample(_slow(0.3))
    assert type(future) is tritonfast.futures._LaneFuture
    assert future.running() and not future.done() and not future.cancelled()
    assert "running" in repr(future)
    assert future.cancel() is False  # sent already
    with pytest.raises(concurrent.futures.TimeoutError):
        future.result(timeout=0.05)
    called = []
    future.add_done_callback(lambda f: called.append((f, threading.current_thread().name)))
    assert future.exception(RESULT_TIMEOUT_S) is None
    np.testing.assert_array_equal(future.result(0)["OUTPUT0"], _slow(0.3))
    assert future.done() and not future.running()
    assert "finished" in repr(future)
    assert len(called) == 1 and called[0][0] is future and called[0][1] == REACTOR
    late = []
    future.add_done_callback(late.append)  # after completion: called at once, here
    assert late == [future]


def test_lane_futures_finished_before_anyone_looked(make_client):
    # The reactor sets these without a Condition (nobody waited): every method must see them done.
    client = _ready(make_client("identity_fp32"))
    xs = [np.full((1, 4), i, np.float32) for i in range(20)]
    futures = [client.infer_batch(x) for x in xs]
    deadline = time.monotonic() + RESULT_TIMEOUT_S
    while client._engine.in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    for x, future in zip(xs, futures):
        assert "_condition" not in vars(future)
        assert future.done() and not future.running() and future.cancel() is False
        assert future.exception(0) is None
        np.testing.assert_array_equal(future.result(0)["OUTPUT0"], x)
    done, not_done = concurrent.futures.wait(futures, timeout=0)
    assert len(done) == 20 and not not_done
    assert set(concurrent.futures.as_completed(futures, timeout=0)) == set(futures)


def test_wait_and_as_completed_on_lane_futures(make_client):
    client = _ready(make_client("slow"))
    durations = [0.4, 0.05, 0.2]
    futures = [client.infer_sample(_slow(s)) for s in durations]
    first = concurrent.futures.wait(futures, timeout=RESULT_TIMEOUT_S, return_when=concurrent.futures.FIRST_COMPLETED)
    assert futures[1] in first.done
    order = [f.result(0)["OUTPUT0"][0] for f in concurrent.futures.as_completed(futures, timeout=RESULT_TIMEOUT_S)]
    np.testing.assert_allclose(order, [0.05, 0.2, 0.4])
    done, not_done = concurrent.futures.wait(futures, timeout=RESULT_TIMEOUT_S)
    assert len(done) == 3 and not not_done


def test_many_lane_requests_bounded_in_flight_and_descriptors(make_client):
    client = _ready(make_client("identity_fp32", max_workers=8, max_queue_size=None))
    fds_before = len(os.listdir("/proc/self/fd"))
    xs = [np.full((1, 8), i, np.float32) for i in range(3000)]
    futures = [client.infer_batch(x) for x in xs]
    peak = client._engine.in_flight
    queued = client._engine.queued
    assert peak <= 8
    for x, future in zip(xs, futures):
        np.testing.assert_array_equal(future.result(RESULT_TIMEOUT_S)["OUTPUT0"], x)
    assert queued > 0  # the burst outran 8 in flight: the rest waited in order
    assert len(os.listdir("/proc/self/fd")) <= fds_before + 8 + 2  # 8 connections, epoll and eventfd


def test_threads_submitting_at_once(make_client):
    client = _ready(make_client("identity_fp32", max_workers=16))
    wrong: list = []

    def submit(k: int) -> None:
        xs = [np.full((1, 16), k * 1000 + j, np.float32) for j in range(200)]
        futures = [client.infer_batch(x) for x in xs]
        wrong.extend(j for j, (x, f) in enumerate(zip(xs, futures))
                     if not np.array_equal(f.result(RESULT_TIMEOUT_S)["OUTPUT0"], x))

    threads = [threading.Thread(target=submit, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not wrong


def test_full_queue_blocks_until_room(make_client):
    client = _ready(make_client("slow", max_workers=1, max_queue_size=1, inference_timeout_s=10.0))
    first, second = client.infer_sample(_slow(0.3)), client.infer_sample(_slow(0.3))
    start = time.monotonic()
    third = client.infer_sample(_slow(0.01))  # waits until the first is done and the second goes out
    assert 0.2 <= time.monotonic() - start <= 2.0
    for future, seconds in ((first, 0.3), (second, 0.3), (third, 0.01)):
        np.testing.assert_array_equal(future.result(RESULT_TIMEOUT_S)["OUTPUT0"], _slow(seconds))

    # (Refusal: test_futures_client.py's test_non_blocking_full_queue, on this lane too.
    # Refusal after waiting cannot be staged apart from the request timeout: PyTriton
    # bounds the wait for room by inference_timeout_s, as here.)


def test_server_error_on_the_lane(make_client):
    client = _ready(make_client("raises"))
    future = client.infer_batch(np.zeros((1, 2), np.float32))
    assert type(future) is tritonfast.futures._LaneFuture
    with pytest.raises(PyTritonClientInferenceServerError) as excinfo:
        future.result(RESULT_TIMEOUT_S)
    assert RAISES_MESSAGE in excinfo.value.message
    sync = ModelClient.from_existing_client(client._client)
    try:
        with pytest.raises(PyTritonClientInferenceServerError) as sync_info:
            sync.infer_batch(np.zeros((1, 2), np.float32))
    finally:
        sync.close()
    assert str(excinfo.value) == str(sync_info.value)


def test_lane_timeout_fires_on_time_and_the_client_recovers(make_client):
    client = _ready(make_client("slow", inference_timeout_s=0.5))
    start = time.monotonic()
    future = client.infer_sample(_slow(2.0))
    with pytest.raises(PyTritonClientTimeoutError, match="Timeout occurred during inference request"):
        future.result(RESULT_TIMEOUT_S)
    assert 0.49 <= time.monotonic() - start <= 0.5 * 1.1 + 0.05
    np.testing.assert_array_equal(client.infer_sample(_slow(0.01)).result(RESULT_TIMEOUT_S)["OUTPUT0"], _slow(0.01))


def _config() -> TritonModelConfig:
    return TritonModelConfig(model_name="m", max_batch_size=8, inputs=[TensorSpec("INPUT0", (-1,), np.float32)],
                             outputs=[TensorSpec("OUTPUT0", (-1,), np.float32)])


def test_lane_errors_match_the_sync_client(tmp_path):
    # A port nobody listens on: the same exception, with the same message, as ModelClient.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    kwargs = dict(model_config=_config(), ensure_model_is_ready=False, inference_timeout_s=2.0)
    with FuturesModelClient(url, "m", **kwargs) as client, ModelClient(url, "m", **kwargs) as sync:
        future = client.infer_batch(np.zeros((1, 4), np.float32))
        assert type(future) is tritonfast.futures._LaneFuture
        with pytest.raises(Exception) as lane_error:
            future.result(RESULT_TIMEOUT_S)
        with pytest.raises(Exception) as sync_error:
            sync.infer_batch(np.zeros((1, 4), np.float32))
    assert type(lane_error.value) is type(sync_error.value)
    assert str(lane_error.value) == str(sync_error.value)


def test_stalling_server_times_out_on_the_lane():
    # Accepts and reads, never answers: the deadline fails the future, and its connection is dropped.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except socket.timeout:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        with FuturesModelClient(url, "m", model_config=_config(), ensure_model_is_ready=False,
                                inference_timeout_s=0.3) as client:
            start = time.monotonic()
            futures = [client.infer_batch(np.zeros((1, 4), np.float32)) for _ in range(5)]
            for future in futures:
                with pytest.raises(PyTritonClientTimeoutError):
                    future.result(RESULT_TIMEOUT_S)
            assert time.monotonic() - start <= 0.3 * 1.1 + 0.05 + 0.1
            assert client._engine.in_flight == 0
    finally:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        listener.close()


def test_reactor_thread_ends_when_idle_and_restarts(make_client, monkeypatch):
    monkeypatch.setattr(tritonfast.futures, "REACTOR_IDLE_S", 0.1)
    client = _ready(make_client("identity_fp32"))
    x = np.ones((1, 4), np.float32)
    for _ in range(2):
        client.infer_batch(x).result(RESULT_TIMEOUT_S)
        reactor = client._reactor
        assert reactor is not None and reactor.name == REACTOR
        reactor.join(5)
        assert not reactor.is_alive()
    np.testing.assert_array_equal(client.infer_batch(x).result(RESULT_TIMEOUT_S)["OUTPUT0"], x)


def test_close_waits_for_lane_requests_and_then_refuses(make_client):
    client = _ready(make_client("slow"))
    futures = [client.infer_sample(_slow(0.2)) for _ in range(4)]
    client.close()
    assert all(f.done() for f in futures)
    for future in futures:
        np.testing.assert_array_equal(future.result(0)["OUTPUT0"], _slow(0.2))
    with pytest.raises(PyTritonClientClosedError):
        client.infer_sample(_slow(0.01))


def test_close_without_wait_lets_lane_requests_finish(make_client):
    client = _ready(make_client("slow"))
    futures = [client.infer_sample(_slow(0.2)) for _ in range(4)]
    start = time.monotonic()
    client.close(wait=False)
    assert time.monotonic() - start < 0.1
    for future in futures:
        np.testing.assert_array_equal(future.result(RESULT_TIMEOUT_S)["OUTPUT0"], _slow(0.2))


def test_close_from_a_done_callback(make_client):
    client = _ready(make_client("identity_fp32"))
    closed = threading.Event()

    def close_it(_future) -> None:
        client.close()  # in the reactor thread: must not wait for itself
        closed.set()

    client.infer_batch(np.ones((1, 2), np.float32)).add_done_callback(close_it)
    assert closed.wait(RESULT_TIMEOUT_S)


def test_forked_child_fails_the_parents_lane_futures(make_client):
    client = _ready(make_client("slow", inference_timeout_s=30.0))
    inherited = [client.infer_sample(_slow(0.5)) for _ in range(4)]
    assert all(type(f) is tritonfast.futures._LaneFuture for f in inherited)

    def child() -> None:
        for future in inherited:
            with pytest.raises(ForkedError, match="in flight in the parent"):
                future.result(timeout=5)
        fresh = [client.infer_sample(_slow(0.01)) for _ in range(4)]
        assert all(type(f) is tritonfast.futures._LaneFuture for f in fresh)
        for future in fresh:
            np.testing.assert_array_equal(future.result(timeout=20)["OUTPUT0"], _slow(0.01))

    pid = _in_child(child)
    for future in inherited:
        np.testing.assert_array_equal(future.result(timeout=30)["OUTPUT0"], _slow(0.5))
    assert _wait_child(pid) == 0
