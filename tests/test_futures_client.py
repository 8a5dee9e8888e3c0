"""``tritonfast.FuturesModelClient`` against real servers (``tests/conftest.py``)."""

from __future__ import annotations

import concurrent.futures
import json
import socket
import subprocess
import sys
import textwrap
import threading
import time
from typing import Callable, Iterator

import numpy as np
import pytest

import tritonfast._pipeline
import tritonfast.client
from tests.clients import closing_clients
from tests.triton_server import RAISES_MESSAGE
from tritonfast import FuturesModelClient, TritonModelConfig
from tritonfast.exceptions import (
    PyTritonClientClosedError,
    PyTritonClientInferenceServerError,
    PyTritonClientModelDoesntSupportBatchingError,
    PyTritonClientModelUnavailableError,
    PyTritonClientQueueFullError,
    PyTritonClientTimeoutError,
    PyTritonClientValueError,
)

RESULT_TIMEOUT_S = 30.0  # bound on any future.result() here, so a hang fails instead of blocking the run


@pytest.fixture
def url(triton_server) -> str:
    return triton_server.http_url


@pytest.fixture
def make_client(url) -> Iterator[Callable[..., FuturesModelClient]]:
    """``make_client(model, **kwargs)``: a FuturesModelClient on the raw server, closed after the test."""
    yield from closing_clients(FuturesModelClient, url)


def _slow_sample(seconds: float) -> np.ndarray:
    return np.array([seconds], np.float32)


def test_64_futures_in_flight(make_client):
    client = make_client("identity_fp32")
    inputs = [np.arange(16, dtype=np.float32).reshape(2, 8) + 100 * i for i in range(64)]
    futures = [client.infer_batch(x) for x in inputs]
    assert all(isinstance(f, concurrent.futures.Future) for f in futures)
    for x, future in zip(inputs, futures):
        np.testing.assert_array_equal(future.result(RESULT_TIMEOUT_S)["OUTPUT0"], x)


def test_concurrent_slow_requests_run_in_parallel(make_client):
    # `slow` has 4 instances: 8 requests of 0.3 s take about 0.6 s, not 2.4 s.
    client = make_client("slow")
    client.model_config().result(RESULT_TIMEOUT_S)
    start = time.monotonic()
    futures = [client.infer_sample(_slow_sample(0.3)) for _ in range(8)]
    for future in futures:
        np.testing.assert_array_equal(future.result(RESULT_TIMEOUT_S)["OUTPUT0"], _slow_sample(0.3))
    assert time.monotonic() - start < 1.1


def test_infer_sample_and_named_inputs(make_client):
    client = make_client("add_sub")
    a = np.array([1.0, 2.0], np.float32)
    b = np.array([0.5, 4.0], np.float32)
    positional = client.infer_sample(a, b)
    named = client.infer_sample(INPUT1=b, INPUT0=a)
    for future in (positional, named):
        result = future.result(RESULT_TIMEOUT_S)
        np.testing.assert_array_equal(result["OUTPUT0"], a + b)
        np.testing.assert_array_equal(result["OUTPUT1"], a - b)
        assert result["OUTPUT0"].shape == (2,)


def test_model_config_is_a_method_returning_a_future(make_client):
    client = make_client("add_sub")
    future = client.model_config()
    assert isinstance(future, concurrent.futures.Future)
    config = future.result(RESULT_TIMEOUT_S)
    assert isinstance(config, TritonModelConfig)
    assert config.model_name == "add_sub" and config.max_batch_size == 16
    assert [s.name for s in config.inputs] == ["INPUT0", "INPUT1"]
    assert [s.name for s in config.outputs] == ["OUTPUT0", "OUTPUT1"]


def test_wait_for_model(make_client):
    client = make_client("identity_fp32")
    future = client.wait_for_model(5.0)
    assert isinstance(future, concurrent.futures.Future)
    assert future.result(RESULT_TIMEOUT_S) is None


def test_unknown_model_through_futures(make_client, monkeypatch):
    monkeypatch.setattr(tritonfast._pipeline, "UNKNOWN_MODEL_GRACE_S", 0.3)
    client = make_client("tf_no_such_model", init_timeout_s=30.0)
    start = time.monotonic()
    with pytest.raises(PyTritonClientModelUnavailableError, match="tf_no_such_model"):
        client.wait_for_model(30.0).result(RESULT_TIMEOUT_S)
    with pytest.raises(PyTritonClientModelUnavailableError, match="tf_no_such_model"):
        client.infer_batch(np.zeros((1, 2), np.float32)).result(RESULT_TIMEOUT_S)
    assert time.monotonic() - start < 4.0


def test_errors_surface_through_the_future(make_client):
    failing = make_client("raises").infer_batch(np.zeros((1, 2), np.float32))
    with pytest.raises(PyTritonClientInferenceServerError) as excinfo:
        failing.result(RESULT_TIMEOUT_S)
    assert RAISES_MESSAGE in excinfo.value.message

    # Argument errors, as in PyTriton, come through the future too.
    no_inputs = make_client("identity_fp32").infer_batch()
    with pytest.raises(PyTritonClientValueError, match="^Provide input data$"):
        no_inputs.result(RESULT_TIMEOUT_S)
    bad_parameters = make_client("identity_fp32").infer_sample(np.zeros(2, np.float32), parameters={"a": 1.5})
    with pytest.raises(PyTritonClientValueError, match="^Parameter/header value must be a string, integer or boolean$"):
        bad_parameters.result(RESULT_TIMEOUT_S)

    nobatch = make_client("nobatch").infer_batch(np.zeros(2, np.float32))
    with pytest.raises(PyTritonClientModelDoesntSupportBatchingError,
                       match="^Model nobatch doesn't support batching - use infer_sample method instead$"):
        nobatch.result(RESULT_TIMEOUT_S)


def test_inference_timeout_through_the_future(make_client):
    client = make_client("slow", inference_timeout_s=0.5)
    client.model_config().result(RESULT_TIMEOUT_S)
    start = time.monotonic()
    with pytest.raises(PyTritonClientTimeoutError, match="Timeout occurred during inference request"):
        client.infer_sample(_slow_sample(2.0)).result(RESULT_TIMEOUT_S)
    assert 0.49 <= time.monotonic() - start <= 0.5 * 1.1 + 0.05
    result = client.infer_sample(_slow_sample(0.01)).result(RESULT_TIMEOUT_S)
    np.testing.assert_array_equal(result["OUTPUT0"], _slow_sample(0.01))


def test_parameters_and_headers(make_client):
    future = make_client("echo_params").infer_sample(
        np.zeros(1, np.float32), parameters={"tf_int": 5}, headers={"x-tf-trace": "t"}
    )
    echoed = json.loads(future.result(RESULT_TIMEOUT_S)["PARAMS"][0])
    assert echoed["tf_int"] == 5 and echoed["x-tf-trace"] == "t"


# --- lifecycle ---------------------------------------------------------------------


def test_close_is_idempotent_and_closed_client_raises(make_client):
    client = make_client("identity_fp32")
    client.infer_batch(np.zeros((1, 2), np.float32)).result(RESULT_TIMEOUT_S)
    client.close()
    client.close()
    client.close(wait=False)
    calls = {
        "infer_sample": lambda: client.infer_sample(np.zeros(2, np.float32)),
        "infer_batch": lambda: client.infer_batch(np.zeros((1, 2), np.float32)),
        "model_config": lambda: client.model_config(),
        "wait_for_model": lambda: client.wait_for_model(1.0),
    }
    for name, call in calls.items():
        with pytest.raises(PyTritonClientClosedError, match="^FutureModelClient is already closed$"):
            call()  # raised at call time, not through a future
            pytest.fail(f"{name} did not raise after close()")


def test_close_without_wait_is_idempotent(make_client):
    client = make_client("identity_fp32")
    client.close(wait=False)
    client.close(wait=False)
    client.close()
    with pytest.raises(PyTritonClientClosedError, match="^FutureModelClient is already closed$"):
        client.infer_batch(np.zeros((1, 2), np.float32))


def test_close_lets_queued_requests_finish(make_client):
    client = make_client("slow", max_workers=2)
    client.model_config().result(RESULT_TIMEOUT_S)
    futures = [client.infer_sample(_slow_sample(0.1)) for _ in range(6)]
    client.close()
    assert all(f.done() for f in futures)
    for future in futures:
        np.testing.assert_array_equal(future.result(0)["OUTPUT0"], _slow_sample(0.1))


def test_context_manager(url):
    with FuturesModelClient(url, "identity_fp32") as client:
        assert isinstance(client, FuturesModelClient)
        data = np.ones((2, 2), np.float32)
        future = client.infer_batch(data)
    assert future.done()
    np.testing.assert_array_equal(future.result(0)["OUTPUT0"], data)
    with pytest.raises(PyTritonClientClosedError):
        client.infer_batch(data)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_workers": 0}, "max_workers must be greater than 0"),
        ({"max_workers": -3}, "max_workers must be greater than 0"),
        ({"max_queue_size": 0}, "max_queue_size must be greater than 0"),
        ({"max_queue_size": -1}, "max_queue_size must be greater than 0"),
    ],
)
def test_invalid_pool_sizes(kwargs, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        FuturesModelClient("http://127.0.0.1:1", "identity_fp32", **kwargs)


def test_non_blocking_full_queue(make_client):
    client = make_client("slow", max_workers=1, max_queue_size=1, non_blocking=True)
    client.model_config().result(RESULT_TIMEOUT_S)
    accepted = []
    start = time.monotonic()
    with pytest.raises(PyTritonClientQueueFullError, match="^Queue is full$"):
        for _ in range(5):  # one running and one queued at most
            accepted.append(client.infer_sample(_slow_sample(0.3)))
    assert time.monotonic() - start < 0.2  # refused at once, not after waiting
    assert 1 <= len(accepted) <= 2
    for future in accepted:
        np.testing.assert_array_equal(future.result(RESULT_TIMEOUT_S)["OUTPUT0"], _slow_sample(0.3))


def test_workers_are_daemon_threads(make_client):
    client = make_client("identity_fp32")
    before = set(threading.enumerate())
    futures = [client.infer_batch(np.zeros((1, 2), np.float32)) for _ in range(8)]
    for future in futures:
        future.result(RESULT_TIMEOUT_S)
    started = set(threading.enumerate()) - before
    assert started, "no worker thread started"
    assert all(thread.daemon for thread in started)


_EXIT_SCRIPT = textwrap.dedent(
    """
    import socket, sys, time
    import numpy as np
    from tritonfast import FuturesModelClient, TritonModelConfig
    from tritonfast.model_config import TensorSpec

    if sys.argv[1] == "own":  # a listener of this process: it resets the connection as the process exits
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
    else:  # the test's listener: the request never ends
        port = int(sys.argv[1])
    config = TritonModelConfig(
        model_name="slow", max_batch_size=0,
        inputs=[TensorSpec("SECONDS", (1,), np.float32)],
        outputs=[TensorSpec("OUTPUT0", (1,), np.float32)],
    )
    client = FuturesModelClient(
        f"http://127.0.0.1:{port}", "slow", model_config=config, ensure_model_is_ready=False,
    )
    future = client.infer_sample(np.array([60.0], np.float32))
    time.sleep(0.3)
    assert not future.done(), future
    print("leaving with the request in flight", flush=True)
    """
)


def _run_exit_script(argument: str) -> None:
    start = time.monotonic()
    run = subprocess.run([sys.executable, "-c", _EXIT_SCRIPT, argument],
                         capture_output=True, text=True, timeout=5.0)
    assert run.returncode == 0, f"exit status {run.returncode}: {run.stderr}"
    assert "leaving with the request in flight" in run.stdout
    assert time.monotonic() - start < 5.0


def test_interpreter_exits_with_a_request_in_flight_and_no_close():
    """A forgotten close() must not hold up interpreter exit (PyTriton's workers hang it).

    The request goes to a listener (of this test) that accepts and never answers,
    so its worker is still blocked in the transport when the script ends.
    """
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        _run_exit_script(str(silent.getsockname()[1]))


def test_interpreter_exit_survives_a_request_ending_during_shutdown():
    """The in-flight request fails (connection reset) while the interpreter finalizes:
    its worker wakes up then, and the process must still exit cleanly."""
    _run_exit_script("own")


# --- PyTriton's example (pytriton_server) --------------------------------------------


def test_add_sub_example_through_futures(pytriton_server):
    address = pytriton_server.http_url.removeprefix("http://")
    batch_size = 2
    a_batch = np.ones((batch_size, 1), dtype=np.float32)
    b_batch = np.ones((batch_size, 1), dtype=np.float32)
    with FuturesModelClient(address, "AddSub") as client:
        result_batch = client.infer_batch(a_batch, b_batch).result(RESULT_TIMEOUT_S)
        config = client.model_config().result(RESULT_TIMEOUT_S)
    assert {name: data.tolist() for name, data in result_batch.items()} == {
        "add": [[2.0], [2.0]],
        "sub": [[0.0], [0.0]],
    }
    assert config.model_name == "AddSub"
    assert [s.name for s in config.inputs] == ["INPUT_1", "INPUT_2"]


def test_many_futures_against_pytriton(pytriton_server):
    from pytriton.client import ModelClient as PyTritonModelClient

    rng = np.random.default_rng(7)
    batches = [(rng.random((3, 4), dtype=np.float32), rng.random((3, 4), dtype=np.float32)) for _ in range(32)]
    with PyTritonModelClient(pytriton_server.http_url, "AddSub") as reference:
        expected = [reference.infer_batch(a, b) for a, b in batches[:4]]
    with FuturesModelClient(pytriton_server.http_url, "AddSub") as client:
        futures = [client.infer_batch(a, b) for a, b in batches]
        results = [f.result(RESULT_TIMEOUT_S) for f in futures]
    for (a, b), result in zip(batches, results):
        np.testing.assert_array_equal(result["add"], a + b)
        np.testing.assert_array_equal(result["sub"], a - b)
    for mine, theirs in zip(results, expected):
        assert mine.keys() == theirs.keys()
        for name in theirs:
            assert mine[name].tobytes() == theirs[name].tobytes()
