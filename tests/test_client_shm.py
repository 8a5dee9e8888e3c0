"""``ModelClient(shared_memory=...)`` against the real server (``triton_server``).

Round trips through system shared memory for every datatype, compared with the
plain HTTP path; proof that the regions are really used (the server lists them,
the request carries no tensor bytes); output sizing and the too-small error;
16 threads on one pooled client; the fallback when the server cannot open our
regions; and cleanup: nothing left in /dev/shm or registered on the server after
close, after errors, or after a killed client once the next one starts.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from typing import Any, Callable, Iterator, List

import ml_dtypes
import numpy as np
import pytest

import tritonfast
import tritonfast.utils.cuda_shared_memory
from tests.clients import closing_clients, run_in_threads
from tritonfast import FuturesModelClient, ModelClient
from tritonfast._shm import api as _shm_api
from tritonfast._shm import path as _shm_path
from tritonfast._shm import pool as _shm_pool
from tritonfast.exceptions import (
    PyTritonClientInferenceServerError,
    PyTritonClientTimeoutError,
    PyTritonClientValueError,
    SharedMemoryError,
)

SHM_DIR = "/dev/shm"


@pytest.fixture
def url(triton_server) -> str:
    return triton_server.http_url


@pytest.fixture
def make_client(url) -> Iterator[Callable[..., ModelClient]]:
    """``make_client(model, **kwargs)``: a ModelClient (system shm unless told), closed after the test."""
    yield from closing_clients(ModelClient, url, shared_memory="system")


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def _registered(url: str, prefix: str = "tritonfast_") -> List[str]:
    """Names of the server's system regions that start with ``prefix``."""
    return sorted(e["name"] for e in _get_json(f"{url}/v2/systemsharedmemory/status")
                  if e["name"].startswith(prefix))


def _files(prefix: str) -> List[str]:
    return sorted(name for name in os.listdir(SHM_DIR) if name.startswith(prefix))


def _prefix(client: ModelClient) -> str:
    pool = client._shm_path._pool
    assert pool is not None, "the client never used shared memory"
    return pool.prefix


def _assert_nothing_left(url: str, prefix: str, wait_s: float = 0.0) -> None:
    deadline = time.monotonic() + wait_s
    while True:
        left = (_registered(url, prefix), _files(prefix))
        if left == ([], []) or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    assert left == ([], []), f"left behind (registered, files): {left}"


def _is_shm_view(array: np.ndarray) -> bool:
    """True when the chain of bases ends in a lease's anchor (a view of a region)."""
    base = array
    while isinstance(base, np.ndarray):
        base = base.base
    return type(base).__name__ == "_Anchor"


class RecordingTransport:
    """Wraps a client's transport; records the arguments of every infer."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.infers: List[tuple] = []  # (inputs, outputs)
        self.requests: List[tuple] = []  # (method, target)
        self._lock = threading.Lock()

    def request(self, method: str, target: str, *args: Any) -> Any:
        with self._lock:
            self.requests.append((method, target))
        return self.inner.request(method, target, *args)

    def infer(self, target: str, headers: Any, request_id: str, inputs: Any, outputs: Any, *args: Any) -> Any:
        with self._lock:
            self.infers.append((inputs, outputs))
        return self.inner.infer(target, headers, request_id, inputs, outputs, *args)

    def close(self) -> None:
        self.inner.close()


def _record(client: ModelClient) -> RecordingTransport:
    """Records every request; the native fast lane, which would go around the
    recorder, is off (tests/test_fast_lane.py checks how it hands large requests here)."""
    recorder = RecordingTransport(client._transport)
    client._transport = recorder
    client._make_fast()
    assert client._fast is None
    return recorder


def _body_bytes(inputs: list) -> int:
    """Tensor bytes an infer call puts in the request body."""
    return sum(entry[1].nbytes for entry in inputs if len(entry) == 2)


# =============================================================================
# Round trips
# =============================================================================

NUMERIC = {
    "bool": np.bool_, "uint8": np.uint8, "uint16": np.uint16, "uint32": np.uint32, "uint64": np.uint64,
    "int8": np.int8, "int16": np.int16, "int32": np.int32, "int64": np.int64,
    "fp16": np.float16, "bf16": ml_dtypes.bfloat16, "fp32": np.float32, "fp64": np.float64,
}  # fmt: skip

AWKWARD_BYTES = np.array(
    [[b"", b"a\x00b", b"\x00\x00\x00", "héllo wörld ✓".encode("utf-8")],
     [b"\xff\xfe\x00", b"trailing\x00", b"x" * 70_000, b""]],
    dtype=np.object_,
)  # fmt: skip


def _data(name: str) -> np.ndarray:
    rng = np.random.default_rng(7)
    if name == "bool":
        return rng.integers(0, 2, (3, 257)).astype(np.bool_)
    dtype = np.dtype(NUMERIC[name])
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, (3, 257), dtype=dtype, endpoint=True)
    return (rng.standard_normal((3, 257)) * 1000).astype(dtype)


def _assert_same(out: np.ndarray, expected: np.ndarray) -> None:
    assert out.dtype == expected.dtype and out.shape == expected.shape
    if out.dtype == np.object_:
        assert out.tolist() == expected.tolist()
    else:
        assert out.tobytes() == expected.tobytes()  # bit-exact, NaNs included


@pytest.mark.parametrize("name", [*NUMERIC, "bytes"])
def test_round_trip_of_every_datatype_equals_http(make_client, name):
    data = AWKWARD_BYTES if name == "bytes" else _data(name)
    http = make_client(f"identity_{name}", shared_memory=None).infer_batch(data)["OUTPUT0"]
    client = make_client(f"identity_{name}")
    recorder = _record(client)
    first = client.infer_batch(data)["OUTPUT0"]  # output size unknown (dims [-1]): learned over HTTP
    second = client.infer_batch(data)["OUTPUT0"]  # now through shared memory both ways
    for out in (first, second):
        _assert_same(out, http)
    (first_in, first_out), (second_in, second_out) = recorder.infers
    assert _body_bytes(first_in) == _body_bytes(second_in) == 0  # inputs by shared memory
    assert first_out == ["OUTPUT0"] and isinstance(second_out[0], tuple)
    if name != "bytes":
        assert _is_shm_view(second) and second.flags.writeable
    _assert_same(client.infer_sample(data[1])["OUTPUT0"], data[1])


def test_str_and_fixed_width_bytes_inputs(make_client):
    client = make_client("identity_bytes")
    text = np.array([["héllo", ""], ["a\x00b", "✓"]])
    for _ in range(2):
        assert client.infer_batch(text)["OUTPUT0"].tolist() == [[s.encode() for s in row] for row in text.tolist()]
    fixed = np.array([[b"ab\x00", b"c", b""]], dtype="S3")
    for _ in range(2):
        assert client.infer_batch(fixed)["OUTPUT0"].tolist() == [[b"ab", b"c", b""]]


def test_zero_size_and_non_contiguous_inputs(make_client):
    client = make_client("identity_fp32")
    empty = np.zeros((2, 0), np.float32)
    for _ in range(2):
        assert client.infer_batch(empty)["OUTPUT0"].shape == (2, 0)
    strided = np.arange(64, dtype=np.float32).reshape(8, 8)[:, ::2]
    big_endian = np.arange(12, dtype=">f4").reshape(3, 4)
    for x in (strided, big_endian):
        for _ in range(2):
            np.testing.assert_array_equal(client.infer_batch(x)["OUTPUT0"], x)


def test_two_inputs_two_outputs(make_client, url):
    client = make_client("add_sub")
    a = np.arange(2 * 1000, dtype=np.float32).reshape(2, 1000)
    b = np.full((2, 1000), 0.5, np.float32)
    for _ in range(2):
        result = client.infer_batch(a, b)
        np.testing.assert_array_equal(result["OUTPUT0"], a + b)
        np.testing.assert_array_equal(result["OUTPUT1"], a - b)
    assert _is_shm_view(result["OUTPUT0"]) and _is_shm_view(result["OUTPUT1"])


def test_fixed_size_outputs_go_through_shared_memory_from_the_first_request(make_client):
    # slow: SECONDS FP32 [1] -> OUTPUT0 FP32 [1], no batching: the size is known up front.
    client = make_client("slow")
    recorder = _record(client)
    out = client.infer_sample(np.array([0.0], np.float32))["OUTPUT0"]
    assert out.tolist() == [0.0] and _is_shm_view(out)
    [(inputs, [(name, (region, nbytes, offset))])] = recorder.infers
    assert (name, nbytes) == ("OUTPUT0", 4)
    assert offset == _shm_pool.TENSOR_ALIGNMENT  # after the 4-byte input, aligned


# =============================================================================
# Proof of use, pooling, lifetimes
# =============================================================================


def test_server_lists_our_regions_while_open_and_none_after_close(make_client, url):
    client = make_client("identity_fp32")
    recorder = _record(client)
    x = np.ones((4, 1 << 16), np.float32)  # 1 MiB
    held = [client.infer_batch(x)["OUTPUT0"] for _ in range(3)]
    prefix = _prefix(client)
    names = client._shm_path.region_names
    assert names and all(n.startswith(prefix) for n in names)
    assert _registered(url, prefix) == names
    assert _files(prefix) == names  # key /<name> is /dev/shm/<name>
    assert all(n.startswith(f"tritonfast_{os.getpid()}_") for n in names)
    assert all(_body_bytes(inputs) == 0 for inputs, _ in recorder.infers)
    for inputs, _ in recorder.infers:
        [(name, datatype, shape, (region, nbytes, offset))] = inputs
        assert (name, datatype, shape, nbytes, offset) == ("INPUT0", "FP32", [4, 1 << 16], x.nbytes, 0)
    client.close()
    _assert_nothing_left(url, prefix)
    for out in held:  # outputs stay readable after close: the mapping outlives the name
        np.testing.assert_array_equal(out, x)


def test_regions_are_reused_and_never_overwritten_while_held(make_client):
    client = make_client("identity_fp32")
    x = lambda i: np.full((1, 1 << 16), float(i), np.float32)  # noqa: E731
    client.infer_batch(x(0))  # learns the output size
    held = [client.infer_batch(x(i))["OUTPUT0"] for i in range(1, 5)]
    pool = client._shm_path._pool
    assert len(pool.region_names) == 4  # four results held: four regions
    sample = client.infer_sample(x(9)[0])["OUTPUT0"]  # infer_sample: a view of a view
    for _ in range(3):
        client.infer_batch(x(7))  # results dropped at once: one region, reused
    assert len(pool.region_names) == 6
    for i, out in enumerate(held, start=1):
        np.testing.assert_array_equal(out, x(i))
    np.testing.assert_array_equal(sample, x(9)[0])
    names = pool.region_names
    del held, sample
    for _ in range(5):
        client.infer_batch(x(8))
    assert pool.region_names == names  # everything was returned and reused


def test_sixteen_threads_share_one_client(make_client):
    client = make_client("add_sub", shared_memory="auto")
    start = threading.Barrier(16)

    def work(t: int) -> None:
        start.wait()
        held = []
        for i in range(6):
            a = np.full((2, 1 << 15), t * 100 + i, np.float32)  # 256 KiB per input: over the threshold
            b = np.full((2, 1 << 15), i, np.float32)
            held.append((a, b, client.infer_batch(a, b)))
        for a, b, result in held:  # all still intact after the later calls
            np.testing.assert_array_equal(result["OUTPUT0"], a + b)
            np.testing.assert_array_equal(result["OUTPUT1"], a - b)

    errors = run_in_threads(work, 16)
    assert not errors, errors[:3]
    assert len(client._shm_path.region_names) > 1  # concurrent requests leased different regions


def test_auto_uses_http_for_small_requests_and_shm_for_large(make_client, url):
    client = make_client("identity_fp32", shared_memory="auto")
    recorder = _record(client)
    small = np.ones((1, 16), np.float32)
    client.infer_batch(small)
    assert client._shm_path._pool is None  # no region for a small request
    large = np.ones((1, _shm_path.AUTO_THRESHOLD_BYTES // 4), np.float32)
    client.infer_batch(large)
    client.infer_batch(large)
    assert _body_bytes(recorder.infers[0][0]) == small.nbytes
    # The output's size is not known up front: the first large request goes plain
    # HTTP (one round trip holds 1x its payload, not inputs in a region plus
    # outputs in a receive buffer); then the inputs take shared memory and the
    # output, whose size no earlier request can promise, stays on HTTP.
    assert _body_bytes(recorder.infers[1][0]) == large.nbytes
    assert recorder.infers[1][1] is None
    assert _body_bytes(recorder.infers[2][0]) == 0
    assert recorder.infers[2][1] == ["OUTPUT0"]


def test_auto_receives_large_outputs_of_unknown_size_over_http(make_client):
    # echo_params returns the request's parameters as one BYTES element: a small
    # request with a large response, whose size no earlier request can promise.
    client = make_client("echo_params", shared_memory="auto")
    recorder = _record(client)
    x = np.ones(4, np.float32)
    parameters = {"blob": "p" * _shm_path.AUTO_THRESHOLD_BYTES}
    for _ in range(2):
        [params] = client.infer_sample(x, parameters=parameters)["PARAMS"]
        assert json.loads(params)["blob"] == parameters["blob"]
    for inputs, outputs in recorder.infers:
        assert _body_bytes(inputs) == x.nbytes and outputs is None  # plain HTTP, both times
    assert client._shm_path._pool is None


def test_remote_or_disabled_servers_never_take_the_path(url):
    assert _shm_path.is_loopback("127.0.0.1", 8000) and _shm_path.is_loopback("::1", 8000)
    assert _shm_path.is_loopback("localhost", 8000) and _shm_path.is_loopback("127.8.9.10", 8000)
    assert not _shm_path.is_loopback("10.1.2.3", 8000)
    assert not _shm_path.is_loopback("no-such-host.invalid", 8000)
    with ModelClient("http://10.1.2.3:8000", "m") as remote:
        assert remote._shm is None  # decided at construction: one attribute check per request
    with ModelClient(url, "m", shared_memory=None) as off:
        assert off._shm is None
    with ModelClient("http://localhost:8000", "m") as local:
        assert local._shm is not None
    with pytest.raises(PyTritonClientValueError, match="shared_memory must be one of"):
        ModelClient(url, "m", shared_memory="posix")


def test_from_existing_client_and_futures_client_pass_shared_memory_through(url):
    x = np.ones((1, 1 << 16), np.float32)
    with ModelClient(url, "identity_fp32", shared_memory=None) as original:
        clone = ModelClient.from_existing_client(original)
        assert clone._shm is None
        clone.close()
    with FuturesModelClient(url, "identity_fp32", shared_memory="system") as futures:
        for _ in range(2):
            np.testing.assert_array_equal(futures.infer_batch(x).result()["OUTPUT0"], x)
        prefix = _prefix(futures._client)
        assert _registered(url, prefix)
    _assert_nothing_left(url, prefix)
    with FuturesModelClient(url, "identity_fp32", shared_memory=None) as futures:
        futures.infer_batch(x).result()
        assert futures._client._shm is None


# =============================================================================
# Output sizing
# =============================================================================


def test_output_larger_than_its_region_is_a_clear_error_and_is_not_retried(make_client):
    client = make_client("identity_bytes")
    short = np.array([[b"ab", b"cd"]], dtype=np.object_)
    client.infer_batch(short)  # learns 2 x (4 + 2) = 12 bytes for this shape
    client.infer_batch(short)
    recorder = _record(client)
    long = np.array([[b"x" * 5000, b"y" * 5000]], dtype=np.object_)  # same shape, 10008 bytes
    with pytest.raises(PyTritonClientInferenceServerError) as info:
        client.infer_batch(long)
    message = str(info.value)
    allotted = 12 * _shm_path.VARIABLE_OUTPUT_HEADROOM
    assert "'OUTPUT0'" in message and "identity_bytes" in message
    assert "at least 10008 bytes" in message and f"holds {allotted} bytes" in message
    assert "not retried" in message
    assert len(recorder.infers) == 1  # the inference ran once
    # The learned size is forgotten: the next request with this shape takes HTTP for the output.
    assert client.infer_batch(long)["OUTPUT0"].tolist() == long.tolist()
    assert recorder.infers[1][1] == ["OUTPUT0"]


def test_config_without_outputs_learns_every_output(make_client, url):
    with ModelClient(url, "add_sub", shared_memory=None) as plain:
        config = plain.model_config
    config.outputs = None
    client = make_client("add_sub", model_config=config, ensure_model_is_ready=False)
    recorder = _record(client)
    a, b = np.ones((1, 300), np.float32), np.full((1, 300), 2.0, np.float32)
    for _ in range(2):
        result = client.infer_batch(a, b)
        np.testing.assert_array_equal(result["OUTPUT0"], a + b)
        np.testing.assert_array_equal(result["OUTPUT1"], a - b)
    assert recorder.infers[0][1] is None  # every output over HTTP ...
    assert sorted(name for name, _ in recorder.infers[1][1]) == ["OUTPUT0", "OUTPUT1"]  # ... then by shm


# =============================================================================
# Fallback
# =============================================================================


def _register_wrong_key(monkeypatch) -> List[str]:
    """Makes every registration name a key the server cannot open (as for a server in
    another IPC namespace); returns the list of names it was asked to register."""
    calls: List[str] = []
    real = _shm_api.register_system_shared_memory

    def register(transport, name, key, byte_size, *args, **kwargs):
        calls.append(name)
        return real(transport, name, key + "_not_there", byte_size, *args, **kwargs)

    monkeypatch.setattr(_shm_api, "register_system_shared_memory", register)
    return calls


def test_auto_falls_back_once_when_the_server_cannot_open_the_region(make_client, url, monkeypatch, caplog):
    calls = _register_wrong_key(monkeypatch)
    client = make_client("identity_fp32", shared_memory="auto")
    x = np.ones((1, 1 << 16), np.float32)
    with caplog.at_level(logging.DEBUG, logger="tritonfast.client"):
        for _ in range(3):
            np.testing.assert_array_equal(client.infer_batch(x)["OUTPUT0"], x)
    assert len(calls) == 1  # tried once, remembered
    assert client._shm is None
    assert any("Unable to open shared memory region" in r.getMessage() and "plain HTTP" in r.getMessage()
               for r in caplog.records)
    _assert_nothing_left(url, _prefix_of_calls(calls))  # the failed region was unlinked


def _prefix_of_calls(calls: List[str]) -> str:
    return calls[0].rsplit("_", 1)[0] + "_"


def test_system_raises_the_servers_reason(make_client, url, monkeypatch):
    calls = _register_wrong_key(monkeypatch)
    client = make_client("identity_fp32", shared_memory="system")
    with pytest.raises(SharedMemoryError, match="HTTP 500: Unable to open shared memory region") as info:
        client.infer_batch(np.ones((1, 4), np.float32))
    assert info.value.status == 500
    _assert_nothing_left(url, _prefix_of_calls(calls))


def test_missing_extension(make_client, monkeypatch):
    for mode in ("auto", "system"):
        client = make_client("identity_fp32", shared_memory=mode)
        recorder = _record(client)
        real = recorder.request

        def request(method, target, *args, real=real):
            status, body = real(method, target, *args)
            if target == "/v2":
                metadata = json.loads(body)
                metadata["extensions"].remove("system_shared_memory")
                body = json.dumps(metadata).encode()
            return status, body

        recorder.request = request
        x = np.ones((1, 1 << 16), np.float32)
        if mode == "system":
            with pytest.raises(SharedMemoryError, match="does not support system shared memory"):
                client.infer_batch(x)
        else:
            # The first request of the shape learns the output size over plain HTTP;
            # the second would take shared memory, finds no extension and falls back.
            for _ in range(2):
                np.testing.assert_array_equal(client.infer_batch(x)["OUTPUT0"], x)
            assert client._shm is None


def _cuda_missing() -> str | None:
    try:
        tritonfast.utils.cuda_shared_memory.check_available()
    except SharedMemoryError as e:
        return str(e)
    return None


CUDA_MISSING = _cuda_missing()


@pytest.mark.skipif(CUDA_MISSING is None, reason="CUDA is available here")
def test_cuda_without_a_gpu_is_a_clear_error_at_construction(url):
    with pytest.raises(SharedMemoryError, match="shared_memory='cuda' needs the CUDA runtime and a GPU"):
        ModelClient(url, "identity_fp32", shared_memory="cuda")
    with pytest.raises(SharedMemoryError):
        FuturesModelClient(url, "identity_fp32", shared_memory="cuda")


@pytest.mark.gpu
@pytest.mark.skipif(CUDA_MISSING is not None, reason=f"CUDA shared memory unavailable: {CUDA_MISSING}")
def test_cuda_round_trip(url):
    x = np.arange(1 << 16, dtype=np.float32).reshape(1, -1)
    with ModelClient(url, "identity_fp32", shared_memory="cuda") as client:
        for _ in range(2):
            np.testing.assert_array_equal(client.infer_batch(x)["OUTPUT0"], x)
        names = client._shm_path.region_names
        assert names
        registered = [e["name"] for e in _get_json(f"{url}/v2/cudasharedmemory/status")]
        assert set(names) <= set(registered)
    registered = [e["name"] for e in _get_json(f"{url}/v2/cudasharedmemory/status")]
    assert not set(names) & set(registered)


# =============================================================================
# Cleanup
# =============================================================================


def test_nothing_left_after_server_errors_and_timeouts(make_client, url):
    client = make_client("raises")
    with pytest.raises(PyTritonClientInferenceServerError, match="intentional failure"):
        client.infer_batch(np.ones((1, 4), np.float32))
    pool = client._shm_path._pool
    assert len(pool._idle) == 1  # the server answered: the region went back to the pool
    client.close()
    _assert_nothing_left(url, pool.prefix)

    slow = make_client("slow", inference_timeout_s=0.3)
    with pytest.raises(PyTritonClientTimeoutError):
        slow.infer_sample(np.array([1.0], np.float32))
    pool = slow._shm_path._pool
    [busy] = pool.region_names  # the server still runs the request: quarantined, never reused
    assert slow.infer_sample(np.array([0.0], np.float32))["OUTPUT0"].tolist() == [0.0]
    assert busy not in [r.name for r in pool._idle] and len(pool.region_names) == 2
    slow.close()  # waits for the server to let go of the busy region
    _assert_nothing_left(url, pool.prefix)


def test_garbage_collected_client_cleans_up(url):
    client = ModelClient(url, "identity_fp32", shared_memory="system")
    client.infer_batch(np.ones((1, 4), np.float32))
    prefix = _prefix(client)
    assert _files(prefix)
    del client  # never closed: the pool's finalizer cleans up
    gc.collect()
    _assert_nothing_left(url, prefix)


EXITING_CLIENT = textwrap.dedent("""
    import sys
    import numpy as np
    import tritonfast
    client = tritonfast.ModelClient(sys.argv[1], "identity_fp32", shared_memory="system")
    client.infer_batch(np.ones((1, 4), np.float32))
    print(client._shm_path._pool.prefix, flush=True)
    # no close(): interpreter exit cleans up
""")


def test_interpreter_exit_cleans_up_an_unclosed_client(url):
    done = subprocess.run([sys.executable, "-c", EXITING_CLIENT, url], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    prefix = done.stdout.strip()
    assert prefix.startswith("tritonfast_")
    _assert_nothing_left(url, prefix)


KILLED_CLIENT = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    import tritonfast
    client = tritonfast.ModelClient(sys.argv[1], "add_sub", shared_memory="system")
    a = np.ones((1, 1000), np.float32)
    held = [client.infer_batch(a, a) for _ in range(3)]
    print(client._shm_path._pool.prefix, flush=True)
    time.sleep(120)
""")


def test_leftovers_of_a_killed_client_are_removed_when_the_next_one_starts(make_client, url):
    child = subprocess.Popen([sys.executable, "-c", KILLED_CLIENT, url], stdout=subprocess.PIPE, text=True)
    try:
        prefix = child.stdout.readline().strip()
        assert prefix.startswith(f"tritonfast_{child.pid}_")
        assert _files(prefix) and _registered(url, prefix) == _files(prefix)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
    assert _files(prefix) and _registered(url, prefix)  # a SIGKILL runs no cleanup
    client = make_client("identity_fp32")
    client.infer_batch(np.ones((1, 4), np.float32))  # the pool starts and cleans up
    _assert_nothing_left(url, prefix)
    assert _files(_prefix(client))  # and its own region is there


def test_live_regions_of_another_process_are_left_alone(make_client, url, tmp_path):
    # A region whose creator looks dead (a pid that does not exist) but whose
    # file is held locked by a live process (e.g. a client in another pid namespace).
    name = f"tritonfast_{2 ** 22 + 1}_deadbeef_0"
    handle = tritonfast.utils.shared_memory.create_shared_memory_region(name, "/" + name, 4096, create_only=True)
    lock_fd = _shm_pool._lock_shared(os.path.join(SHM_DIR, name))
    try:
        make_client("identity_fp32").infer_batch(np.ones((1, 4), np.float32))
        assert _files(name) == [name]
    finally:
        os.close(lock_fd)
        handle.destroy()
