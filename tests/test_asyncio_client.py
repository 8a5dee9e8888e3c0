"""``tritonfast.AsyncioModelClient`` and its transport (``tritonfast._transport.aio``)
against the real server (``tests/conftest.py``), the raw-socket fault servers of
``tests/test_faults.py`` and the TLS relay of ``tests/test_client.py``.

Every test runs on asyncio's default loop and on uvloop (the ``run`` fixture).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import time
import warnings
from typing import Any, Awaitable, Callable, Coroutine, List, TypeVar

import numpy as np
import pytest

import tritonfast
import tritonfast._pipeline
from tests.test_client import AWKWARD_BYTES, _assert_view_of_receive_buffer, tls_ca, tls_relay, trusting_context, wrong_ca_context  # noqa: F401
from tests.test_faults import (
    CLOSE_REPORTED_WITHIN_S,
    CLOSE_TIMEOUT_S,
    FAULTS,
    INPUT,
    MODEL_CONFIG,
    STALL_TIMEOUT_S,
    FaultServer,
    answer,
    ok_then_read_and_close,
    stall,
    within,
)
from tests.triton_server import RAISES_MESSAGE, free_ports
from tritonfast import AsyncioModelClient, ModelClient
from tritonfast._transport.aio import MAX_CONNECTIONS
from tritonfast.exceptions import (
    PyTritonClientClosedError,
    PyTritonClientConnectionError,
    PyTritonClientInferenceServerError,
    PyTritonClientModelDoesntSupportBatchingError,
    PyTritonClientModelUnavailableError,
    PyTritonClientTimeoutError,
    PyTritonClientValueError,
)

T = TypeVar("T")
Runner = Callable[[Callable[[], Coroutine[Any, Any, T]]], T]

# A test's coroutine that has not finished after this long is a hang.
HARD_TIMEOUT_S = 60.0


def _loop_factories() -> List[Any]:
    factories = [pytest.param(asyncio.new_event_loop, id="asyncio")]
    try:
        import uvloop
    except ImportError:
        factories.append(pytest.param(None, id="uvloop", marks=pytest.mark.skip(reason="uvloop not installed")))
    else:
        factories.append(pytest.param(uvloop.new_event_loop, id="uvloop"))
    return factories


def run_on(factory: Callable[[], asyncio.AbstractEventLoop], main: Callable[[], Awaitable[T]]) -> T:
    """``asyncio.run(main())`` on a loop from ``factory`` (asyncio.run has no loop_factory before 3.12)."""
    loop = factory()
    try:
        return loop.run_until_complete(asyncio.wait_for(main(), HARD_TIMEOUT_S))
    finally:
        try:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


@pytest.fixture(params=_loop_factories())
def loop_factory(request: pytest.FixtureRequest) -> Callable[[], asyncio.AbstractEventLoop]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def run(loop_factory) -> Runner:
    """``run(main)``: ``main()`` to completion on a fresh loop of the parametrized kind."""
    return lambda main: run_on(loop_factory, main)


@pytest.fixture
def url(triton_server) -> str:
    return triton_server.http_url


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _elapsed_since(start: float) -> float:
    return time.monotonic() - start


# =============================================================================
# Results
# =============================================================================


def test_infer_batch_and_sample_fp32(run, url):
    async def main() -> None:
        async with AsyncioModelClient(url, "identity_fp32") as client:
            batch = np.arange(12, dtype=np.float32).reshape(4, 3)
            out = (await client.infer_batch(batch))["OUTPUT0"]
            np.testing.assert_array_equal(out, batch)
            assert out.dtype == np.float32
            sample = (await client.infer_sample(batch[1]))["OUTPUT0"]
            np.testing.assert_array_equal(sample, batch[1])
            named = (await client.infer_batch(INPUT0=batch))["OUTPUT0"]
            np.testing.assert_array_equal(named, batch)
            big = np.arange(4 << 20, dtype=np.uint32).view(np.float32).reshape(1, 4 << 20)  # 16 MiB
            out = (await client.infer_batch(big))["OUTPUT0"]
            assert np.array_equal(out.view(np.uint32), big.view(np.uint32))
            _assert_view_of_receive_buffer(out)  # received into the parser's body buffer

    run(main)


def test_infer_bytes(run, url):
    async def main() -> None:
        async with AsyncioModelClient(url, "identity_bytes") as client:
            out = (await client.infer_batch(AWKWARD_BYTES))["OUTPUT0"]
            assert out.dtype == object and out.tolist() == AWKWARD_BYTES.tolist()
            assert all(type(x) is bytes for x in out.reshape(-1))
            sample = (await client.infer_sample(np.array([b"a", b"\x00bc"], dtype=object)))["OUTPUT0"]
            assert sample.tolist() == [b"a", b"\x00bc"]

    run(main)


def test_add_sub_positional_and_named(run, url):
    async def main() -> None:
        async with AsyncioModelClient(url, "add_sub") as client:
            a = np.arange(6, dtype=np.float32).reshape(3, 2)
            b = np.full((3, 2), 10, np.float32)
            for result in (await client.infer_batch(a, b), await client.infer_batch(INPUT0=a, INPUT1=b)):
                assert list(result) == ["OUTPUT0", "OUTPUT1"]
                np.testing.assert_array_equal(result["OUTPUT0"], a + b)
                np.testing.assert_array_equal(result["OUTPUT1"], a - b)
            sample = await client.infer_sample(a[0], b[0])
            np.testing.assert_array_equal(sample["OUTPUT1"], a[0] - b[0])

    run(main)


def test_split_batches_are_sent_concurrently_and_merged(run, url):
    async def main() -> None:
        async with AsyncioModelClient(url, "batch2") as client:
            data = np.arange(7 * 2, dtype=np.float32).reshape(7, 2)
            results = await asyncio.gather(*(client.infer_batch(data + i) for i in range(4)))
            for i, result in enumerate(results):
                np.testing.assert_array_equal(result["OUTPUT0"], data + i)
        async with AsyncioModelClient(url, "batch2", split_large_batches=False) as client:
            with pytest.raises(PyTritonClientInferenceServerError):
                await client.infer_batch(data)

    run(main)


def test_model_config_is_awaitable_and_cached(run, url):
    async def main() -> None:
        async with AsyncioModelClient(url, "identity_fp32") as client:
            config = await client.model_config
            assert config.model_name == "identity_fp32" and config.max_batch_size == 16
            assert await client.model_config is config

    run(main)


def test_wait_for_model_and_server(run, url):
    async def main() -> None:
        async with AsyncioModelClient(url, "identity_fp32") as client:
            await client.wait_for_server(10.0)
            await client.wait_for_model(10.0)

    run(main)


def test_readiness_is_checked_once(run, url):
    """PyTriton's [BUG]: with lazy_init=False or a given config, every call re-waits."""
    async def main() -> None:
        config = ModelClient(url, "identity_fp32").model_config
        for kwargs in ({"lazy_init": False}, {"model_config": config}, {}):
            client = AsyncioModelClient(url, "identity_fp32", **kwargs)
            calls: List[str] = []
            inner = client._transport.request

            async def recording(method: str, target: str, *args: Any, **kw: Any) -> Any:
                calls.append(target)
                return await inner(method, target, *args, **kw)

            client._transport.request = recording  # type: ignore[method-assign]
            async with client:
                for _ in range(5):
                    await client.infer_batch(np.zeros((1, 2), np.float32))
            assert calls.count("/v2/models/identity_fp32/ready") == 1, (kwargs, calls)
            assert calls.count("/v2/models/identity_fp32/config") == 1, (kwargs, calls)

    run(main)


def test_from_existing_client(run, url):
    async def main() -> None:
        async with AsyncioModelClient(url, "identity_fp32", access_token="tok", max_connections=3) as first:
            config = await first.model_config
            async with AsyncioModelClient.from_existing_client(first) as second:
                assert second._model_config is config and second._model_ready
                assert second._access_token == "tok" and second.max_connections == 3
                np.testing.assert_array_equal((await second.infer_sample(np.ones(2, np.float32)))["OUTPUT0"],
                                              np.ones(2, np.float32))
        with ModelClient(url, "identity_fp32") as sync_client:
            sync_client.model_config
            async with AsyncioModelClient.from_existing_client(sync_client) as third:
                assert third._model_ready
                np.testing.assert_array_equal((await third.infer_batch(np.ones((1, 2), np.float32)))["OUTPUT0"],
                                              np.ones((1, 2), np.float32))

    run(main)


def test_load_and_unload_a_new_model(run, url, triton_server, loop_factory):
    """Loads a model the repository does not have (config + files), infers, unloads it."""
    name = f"tf_aio_loaded_{loop_factory.__module__.split('.')[0]}"
    model_py = (triton_server.model_repository / "identity_fp32" / "1" / "model.py").read_bytes()
    config = json.dumps({
        "name": name, "backend": "python", "max_batch_size": 4,
        "input": [{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [-1]}],
        "output": [{"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [-1]}],
        "instance_group": [{"count": 1, "kind": "KIND_CPU"}],
    })  # fmt: skip

    async def main() -> None:
        async with AsyncioModelClient(url, name, init_timeout_s=10.0) as client:
            try:
                await client.load_model(config=config, files={"1/model.py": model_py})
            except PyTritonClientInferenceServerError as e:
                if "not allowed" in e.message:  # the server runs with --model-control-mode=none
                    pytest.skip(f"server does not allow loading models: {e.message}")
                raise
            assert (await client.model_config).max_batch_size == 4
            data = np.arange(8, dtype=np.float32).reshape(4, 2)
            np.testing.assert_array_equal((await client.infer_batch(data))["OUTPUT0"], data)
            await client.unload_model()
            deadline = time.monotonic() + 15.0
            while True:
                try:
                    await client.infer_batch(data)
                except PyTritonClientModelUnavailableError as e:
                    assert name in e.message
                    break
                assert time.monotonic() < deadline, f"{name} still served 15 s after unload_model()"
                await asyncio.sleep(0.1)
            # The server is not ready while the model unloads: wait, for the next tests' sake.
            await client.wait_for_server(15.0)

    run(main)


def test_load_model_error_carries_server_text(run, url):
    async def main() -> None:
        async with AsyncioModelClient(url, "tf_aio_no_such_load") as client:
            with pytest.raises(PyTritonClientInferenceServerError, match="tf_aio_no_such_load") as excinfo:
                await client.load_model()
            message = excinfo.value.message
            assert "failed to load 'tf_aio_no_such_load'" in message or "not allowed" in message, message

    run(main)


# =============================================================================
# Errors
# =============================================================================


def test_argument_errors(run, url):
    async def main() -> None:
        async with AsyncioModelClient(url, "identity_fp32") as client:
            with pytest.raises(PyTritonClientValueError, match="Provide input data"):
                await client.infer_batch()
            with pytest.raises(PyTritonClientValueError, match="either positional either keyword"):
                await client.infer_batch(np.zeros((1, 1), np.float32), INPUT0=np.zeros((1, 1), np.float32))
            with pytest.raises(PyTritonClientValueError, match="Parameter/header value"):
                await client.infer_batch(np.zeros((1, 1), np.float32), parameters={"x": 1.5})
            with pytest.raises(PyTritonClientValueError, match="Input INPUT0 is not a numpy array. Got <class 'list'>"):
                await client.infer_batch([[1.0]])
        async with AsyncioModelClient(url, "nobatch") as client:
            with pytest.raises(PyTritonClientModelDoesntSupportBatchingError, match="infer_sample"):
                await client.infer_batch(np.zeros((1, 2), np.float32))
            out = (await client.infer_sample(np.ones(3, np.float32)))["OUTPUT0"]
            np.testing.assert_array_equal(out, np.ones(3, np.float32))

    run(main)


def test_shared_memory_is_refused_clearly():
    for mode in ("auto", "system", "cuda"):
        with pytest.raises(PyTritonClientValueError, match="not supported yet in the asyncio client"):
            AsyncioModelClient("localhost", "m", shared_memory=mode)
    with pytest.raises(PyTritonClientValueError, match="max_connections"):
        AsyncioModelClient("localhost", "m", max_connections=0)


def test_model_error_pools_the_connection(run, url):
    async def main() -> None:
        async with AsyncioModelClient(url, "raises", max_connections=1) as client:
            for _ in range(3):
                with pytest.raises(PyTritonClientInferenceServerError) as excinfo:
                    await client.infer_batch(np.zeros((1, 4), np.float32))
                assert RAISES_MESSAGE in excinfo.value.message
                assert excinfo.value.message.startswith("Error occurred during inference request. Message: ")
                assert client._transport.open_connections == 1

    run(main)


def test_unknown_model_fails_fast(run, url):
    async def main() -> None:
        grace = tritonfast._pipeline.UNKNOWN_MODEL_GRACE_S
        async with AsyncioModelClient(url, "tf_aio_no_such_model", init_timeout_s=30.0) as client:
            start = time.monotonic()
            with pytest.raises(PyTritonClientModelUnavailableError, match="tf_aio_no_such_model"):
                await client.infer_batch(np.zeros((1, 2), np.float32))
            assert _elapsed_since(start) < grace + 1.5
        async with AsyncioModelClient(url, "tf_aio_no_such_model", init_timeout_s=30.0) as client:
            with pytest.raises(PyTritonClientModelUnavailableError):
                await client.model_config

    run(main)


def test_closed_client_raises(run, url):
    async def main() -> None:
        client = AsyncioModelClient(url, "identity_fp32")
        await client.infer_batch(np.zeros((1, 2), np.float32))
        await client.close()
        await client.close()  # idempotent
        for call in (lambda: client.infer_batch(np.zeros((1, 2), np.float32)),
                     lambda: client.infer_sample(np.zeros(2, np.float32)),
                     lambda: client.wait_for_model(1.0), lambda: client.wait_for_server(1.0)):
            with pytest.raises(PyTritonClientClosedError):
                await call()
        assert client._transport.open_connections == 0

    run(main)


def test_eager_init_in_async_with(run, url):
    async def main() -> None:
        client = AsyncioModelClient(url, "identity_fp32", lazy_init=False)
        assert client._model_config is None  # the constructor does no I/O
        async with client:
            assert client._model_config is not None and client._model_ready

    run(main)


def test_eager_init_failure_closes_the_client(run):
    dead_url = f"http://127.0.0.1:{free_ports(1)[0]}"

    async def main() -> None:
        client = AsyncioModelClient(dead_url, "m", lazy_init=False, init_timeout_s=0.5)
        start = time.monotonic()
        with pytest.raises(PyTritonClientTimeoutError, match=re.escape(dead_url)):
            async with client:
                pass
        assert _elapsed_since(start) <= within(0.5)
        with pytest.raises(PyTritonClientClosedError):
            await client.infer_batch(np.zeros((1, 2), np.float32))

    run(main)


# =============================================================================
# Loops
# =============================================================================


def test_created_outside_a_loop_then_used_in_asyncio_run(url, loop_factory):
    client = AsyncioModelClient(url, "identity_fp32")  # no loop is running here

    async def main() -> np.ndarray:
        try:
            return (await client.infer_batch(np.ones((2, 2), np.float32)))["OUTPUT0"]
        finally:
            await client.close()

    np.testing.assert_array_equal(run_on(loop_factory, main), np.ones((2, 2), np.float32))


def test_loop_in_a_background_thread(url, loop_factory):
    loop = loop_factory()
    thread = threading.Thread(target=loop.run_forever, name="asyncio-loop", daemon=True)
    thread.start()
    try:
        client = AsyncioModelClient(url, "identity_fp32")

        async def call(i: int) -> np.ndarray:
            return (await client.infer_batch(np.full((1, 2), i, np.float32)))["OUTPUT0"]

        futures = [asyncio.run_coroutine_threadsafe(call(i), loop) for i in range(20)]
        for i, future in enumerate(futures):
            np.testing.assert_array_equal(future.result(30), np.full((1, 2), i, np.float32))
        asyncio.run_coroutine_threadsafe(client.close(), loop).result(30)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_second_loop_gets_a_clear_error_then_takes_over_once_the_first_is_closed(url, loop_factory):
    client = AsyncioModelClient(url, "identity_fp32")
    data = np.ones((1, 2), np.float32)
    first = loop_factory()
    try:
        first.run_until_complete(client.infer_batch(data))

        async def from_second_loop() -> None:
            with pytest.raises(PyTritonClientValueError, match="another loop"):
                await client.infer_batch(data)

        run_on(loop_factory, from_second_loop)
        first.run_until_complete(client._transport.detach())  # or simply close the first loop
        assert client._transport._loop is None
    finally:
        first.close()

    async def after_first_closed() -> np.ndarray:
        try:
            return (await client.infer_batch(data))["OUTPUT0"]
        finally:
            await client.close()

    np.testing.assert_array_equal(run_on(loop_factory, after_first_closed), data)


# =============================================================================
# Concurrency, the pool, cancellation
# =============================================================================


def test_many_concurrent_requests_bounded_connections(run, url):
    count, max_connections = 10_000, 16

    async def main() -> None:
        fds_before = _open_fds()
        most_fds = 0
        async with AsyncioModelClient(url, "identity_fp32", max_connections=max_connections) as client:
            await client.model_config
            most_open = 0

            async def call(i: int) -> bool:
                nonlocal most_open, most_fds
                data = np.full((1, 4), i, np.float32)
                out = (await client.infer_batch(data))["OUTPUT0"]
                most_open = max(most_open, client._transport.open_connections)
                if i % 50 == 0:
                    most_fds = max(most_fds, _open_fds())
                return bool(np.array_equal(out, data))

            results = await asyncio.gather(*(call(i) for i in range(count)))
            assert all(results)
            assert 1 <= most_open <= max_connections
            assert client._transport.open_connections <= max_connections
        assert most_fds - fds_before <= max_connections + 4, (fds_before, most_fds)
        assert _open_fds() <= fds_before + 2

    run(main)


def test_default_pool_size():
    assert MAX_CONNECTIONS == 64
    assert AsyncioModelClient("localhost", "m").max_connections == MAX_CONNECTIONS


def test_requests_beyond_the_pool_wait_in_order(run, url):
    async def main() -> None:
        async with AsyncioModelClient(url, "slow", max_connections=1) as client:
            await client.model_config
            finished: List[int] = []

            async def call(i: int) -> None:
                out = (await client.infer_sample(np.array([0.05], np.float32)))["OUTPUT0"]
                assert out[0] == np.float32(0.05)
                finished.append(i)

            await asyncio.gather(*(call(i) for i in range(6)))
            assert finished == list(range(6))
            assert client._transport.open_connections == 1

    run(main)


def test_cancellation_closes_the_connection_and_frees_its_slot(run, url):
    async def main() -> None:
        async with AsyncioModelClient(url, "slow", max_connections=1) as client:
            await client.model_config
            task = asyncio.ensure_future(client.infer_sample(np.array([1.5], np.float32)))
            await asyncio.sleep(0.3)
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # The next request gets its own answer, not the cancelled one's.
            out = (await client.infer_sample(np.array([0.1], np.float32)))["OUTPUT0"]
            assert out[0] == np.float32(0.1)
            assert client._transport.open_connections == 1
            # A request cancelled while waiting for a slot gives it up too.
            busy = asyncio.ensure_future(client.infer_sample(np.array([0.3], np.float32)))
            waiting = asyncio.ensure_future(client.infer_sample(np.array([0.2], np.float32)))
            await asyncio.sleep(0.1)
            waiting.cancel()
            assert (await busy)["OUTPUT0"][0] == np.float32(0.3)
            with pytest.raises(asyncio.CancelledError):
                await waiting
            out = (await client.infer_sample(np.array([0.05], np.float32)))["OUTPUT0"]
            assert out[0] == np.float32(0.05)

    run(main)


def test_cancelled_wait_for_closes_the_connection(run, url):
    async def main() -> None:
        async with AsyncioModelClient(url, "slow", max_connections=2) as client:
            await client.model_config
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(client.infer_sample(np.array([1.0], np.float32)), 0.2)
            assert client._transport.open_connections == 0
            results = await asyncio.gather(*(client.infer_sample(np.array([x], np.float32))
                                             for x in (0.02, 0.04)))
            assert [r["OUTPUT0"][0] for r in results] == [np.float32(0.02), np.float32(0.04)]

    run(main)


def test_close_lets_in_flight_requests_finish_and_closes_their_connections(run, url):
    async def main() -> None:
        client = AsyncioModelClient(url, "slow")
        await client.model_config
        task = asyncio.ensure_future(client.infer_sample(np.array([0.3], np.float32)))
        await asyncio.sleep(0.1)
        await client.close()
        assert (await task)["OUTPUT0"][0] == np.float32(0.3)
        await asyncio.sleep(0.05)
        assert client._transport.open_connections == 0
        with pytest.raises(PyTritonClientClosedError):
            await client.infer_sample(np.array([0.0], np.float32))

    run(main)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_uses_connections_of_its_own(url, loop_factory):
    client = AsyncioModelClient(url, "identity_fp32")
    data = np.arange(4, dtype=np.float32).reshape(2, 2)
    loop = loop_factory()
    try:
        loop.run_until_complete(client.infer_batch(data))
        assert client._transport.open_connections == 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads running
            pid = os.fork()
        if pid == 0:  # the child: a loop of its own, a fresh pool
            status = 1
            try:
                child_loop = loop_factory()
                out = child_loop.run_until_complete(client.infer_batch(data + 1))["OUTPUT0"]
                status = 0 if np.array_equal(out, data + 1) else 2
            finally:
                os._exit(status)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        out = loop.run_until_complete(client.infer_batch(data))["OUTPUT0"]  # the parent's pool still works
        np.testing.assert_array_equal(out, data)
        assert client._transport.open_connections == 1
    finally:
        loop.run_until_complete(client.close())
        loop.close()


# =============================================================================
# Faults and timeouts (the raw-socket servers of tests/test_faults.py)
# =============================================================================


def _fault_client(server: FaultServer, timeout_s: float, **kwargs: Any) -> AsyncioModelClient:
    return AsyncioModelClient(server.url, "m", model_config=MODEL_CONFIG, ensure_model_is_ready=False,
                              inference_timeout_s=timeout_s, **kwargs)


async def _works(client: AsyncioModelClient) -> None:
    out = (await client.infer_batch(INPUT0=INPUT))["OUTPUT0"]
    np.testing.assert_array_equal(out, INPUT)


@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault(run, fault: str) -> None:
    behaviour, expected, pattern, is_stall = FAULTS[fault]
    timeout_s = STALL_TIMEOUT_S if is_stall else CLOSE_TIMEOUT_S

    async def main() -> None:
        with FaultServer([behaviour]) as server:
            async with _fault_client(server, timeout_s) as client:
                start = time.monotonic()
                with pytest.raises(expected) as excinfo:
                    await client.infer_batch(INPUT0=INPUT)
                elapsed = _elapsed_since(start)
                assert type(excinfo.value) is expected, repr(excinfo.value)
                message = str(excinfo.value)
                assert re.search(pattern.format(a=re.escape(server.authority)), message), message
                if isinstance(excinfo.value, PyTritonClientTimeoutError):
                    assert f"Timeout: {timeout_s} s" in message and "(model m/<latest>)" in message
                if is_stall:
                    assert timeout_s - 0.01 <= elapsed <= within(timeout_s), elapsed
                else:
                    assert elapsed < CLOSE_REPORTED_WITHIN_S, elapsed
                assert server.connections == 1 and len(server.requests) <= 1, server.requests
                # Not pooled: the next call gets a fresh, well-behaved connection, kept alive.
                await _works(client)
                assert server.connections == 2
                await _works(client)
                assert server.connections == 2

    run(main)


def drip(server: FaultServer, conn: Any) -> None:
    """Reads the request, then sends a valid answer one byte every 20 ms."""
    data = answer(conn.read_request())
    for i in range(len(data)):
        if not server.wait(0.02):
            return
        conn.send(data[i:i + 1])
    server.linger()


@pytest.mark.parametrize("behaviour", [stall, drip], ids=["stall", "drip"])
@pytest.mark.parametrize("timeout_s", [0.3, 1.0])
def test_inference_timeout_is_a_deadline_for_the_whole_request(run, behaviour, timeout_s) -> None:
    async def main() -> None:
        with FaultServer([behaviour]) as server:
            async with _fault_client(server, timeout_s) as client:
                start = time.monotonic()
                with pytest.raises(PyTritonClientTimeoutError) as excinfo:
                    await client.infer_batch(INPUT0=INPUT)
                elapsed = _elapsed_since(start)
                assert type(excinfo.value) is PyTritonClientTimeoutError
                assert timeout_s - 0.01 <= elapsed <= within(timeout_s), elapsed
                assert server.authority in str(excinfo.value)
                assert client._transport.open_connections == 0

    run(main)


def test_timeout_covers_the_wait_for_a_free_connection(run) -> None:
    async def main() -> None:
        with FaultServer(default=stall) as server:
            async with _fault_client(server, STALL_TIMEOUT_S, max_connections=1) as client:
                start = time.monotonic()
                results = await asyncio.gather(*(client.infer_batch(INPUT0=INPUT) for _ in range(3)),
                                               return_exceptions=True)
                elapsed = _elapsed_since(start)
                assert all(type(r) is PyTritonClientTimeoutError for r in results), results
                # The others waited for the slot (one of them may get the first one's
                # slot at its deadline, too late to connect).
                assert any("no connection to" in str(r) for r in results[1:]), results
                assert elapsed <= within(STALL_TIMEOUT_S), elapsed
                assert server.connections <= 2

    run(main)


def test_init_timeout_against_a_stalling_server(run) -> None:
    init_timeout_s = 1.0

    async def main() -> None:
        with FaultServer(default=stall) as server:
            async with AsyncioModelClient(server.url, "m", init_timeout_s=init_timeout_s,
                                          inference_timeout_s=0.3) as client:
                start = time.monotonic()
                with pytest.raises(PyTritonClientTimeoutError) as excinfo:
                    await client.infer_batch(INPUT0=INPUT)
                elapsed = _elapsed_since(start)
                assert server.url in str(excinfo.value)
                assert init_timeout_s - 0.01 <= elapsed <= within(init_timeout_s), elapsed
                assert server.seen("POST") == 0

    run(main)


def test_wait_for_model_timeout_against_a_stalling_server(run) -> None:
    timeout_s = 0.8

    async def main() -> None:
        with FaultServer(default=stall) as server:
            async with AsyncioModelClient(server.url, "m", inference_timeout_s=0.3) as client:
                start = time.monotonic()
                with pytest.raises(PyTritonClientTimeoutError, match=re.escape(server.url)):
                    await client.wait_for_model(timeout_s)
                assert timeout_s - 0.01 <= _elapsed_since(start) <= within(timeout_s)

    run(main)


def test_request_on_a_reused_connection_that_dies_is_not_resent(run) -> None:
    async def main() -> None:
        with FaultServer([ok_then_read_and_close]) as server:
            async with _fault_client(server, CLOSE_TIMEOUT_S) as client:
                await _works(client)
                start = time.monotonic()
                with pytest.raises(PyTritonClientConnectionError,
                                   match=r"server closed the connection before sending a response"):
                    await client.infer_batch(INPUT0=INPUT)
                assert _elapsed_since(start) < CLOSE_REPORTED_WITHIN_S
                assert server.seen("POST") == 2 and server.connections == 1, server.requests
                await _works(client)
                assert server.connections == 2

    run(main)


def test_idempotent_request_on_a_dead_reused_connection_is_retried_once(run) -> None:
    async def main() -> None:
        with FaultServer([ok_then_read_and_close]) as server:
            async with AsyncioModelClient(server.url, "m") as client:
                transport = client._transport
                for _ in range(2):
                    assert await transport.request("GET", "/v2/models/m/ready", [], None, CLOSE_TIMEOUT_S) \
                        == (200, b"{}")
                assert server.seen("GET") == 3 and server.connections == 2, server.requests

    run(main)


def test_refused_connection(run) -> None:
    port = free_ports(1)[0]

    async def main() -> None:
        client = AsyncioModelClient(f"http://127.0.0.1:{port}", "m", model_config=MODEL_CONFIG,
                                    ensure_model_is_ready=False, inference_timeout_s=CLOSE_TIMEOUT_S)
        async with client:
            start = time.monotonic()
            with pytest.raises(PyTritonClientConnectionError, match=f"connection to 127.0.0.1:{port} refused"):
                await client.infer_batch(INPUT0=INPUT)
            assert _elapsed_since(start) < CLOSE_REPORTED_WITHIN_S

    run(main)


# =============================================================================
# https (the TLS relay of tests/test_client.py)
# =============================================================================


def test_https_round_trips(run, tls_relay, trusting_context):  # noqa: F811
    https_url = f"https://127.0.0.1:{tls_relay.port}"

    async def main() -> None:
        async with AsyncioModelClient(https_url, "identity_fp32", ssl_context=trusting_context) as client:
            config = await client.model_config
            assert config.max_batch_size == 16
            small = np.arange(6, dtype=np.float32).reshape(2, 3)
            results = await asyncio.gather(*(client.infer_batch(small + i) for i in range(20)))
            for i, result in enumerate(results):
                np.testing.assert_array_equal(result["OUTPUT0"], small + i)
            big = np.arange(4 << 20, dtype=np.uint32).view(np.float32).reshape(1, 4 << 20)  # 16 MiB
            out = (await client.infer_batch(big))["OUTPUT0"]
            assert np.array_equal(out.view(np.uint32), big.view(np.uint32))
        async with AsyncioModelClient(https_url, "identity_bytes", ssl_context=trusting_context) as client:
            out = (await client.infer_batch(AWKWARD_BYTES))["OUTPUT0"]
            assert out.tolist() == AWKWARD_BYTES.tolist()

    run(main)


def test_https_wrong_ca_fails_at_once(run, tls_relay, wrong_ca_context):  # noqa: F811
    https_url = f"https://127.0.0.1:{tls_relay.port}"

    async def main() -> None:
        async with AsyncioModelClient(https_url, "identity_fp32", ssl_context=wrong_ca_context,
                                      init_timeout_s=5.0) as client:
            start = time.monotonic()
            with pytest.raises(PyTritonClientConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
                await client.infer_batch(np.zeros((1, 2), np.float32))
            assert _elapsed_since(start) < 1.0

    run(main)


def test_exported(url):
    assert tritonfast.AsyncioModelClient is AsyncioModelClient
    assert "AsyncioModelClient" in tritonfast.__all__

