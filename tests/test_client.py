"""``tritonfast.ModelClient`` against real servers (``tests/conftest.py``).

Most tests use the raw model repository of ``tests.triton_server`` (the
``triton_server`` fixture); the PyTriton parity tests use ``pytriton_server``
and PyTriton's own ``ModelClient`` as the reference.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Iterator, List, Optional, Tuple

import ml_dtypes
import numpy as np
import pytest

import tritonfast
import tritonfast._pipeline
import tritonfast.client
from tests.clients import closing_clients
from tests.triton_server import RAISES_MESSAGE, free_ports
from tritonfast import ModelClient, TritonModelConfig
from tritonfast.exceptions import (
    PyTritonClientClosedError,
    PyTritonClientConnectionError,
    PyTritonClientInferenceServerError,
    PyTritonClientInvalidUrlError,
    PyTritonClientModelDoesntSupportBatchingError,
    PyTritonClientModelUnavailableError,
    PyTritonClientTimeoutError,
    PyTritonClientValueError,
)

# Wall-clock slack for deadline checks: 10% of the deadline plus 50 ms (2 busy cores).
def _slack(deadline_s: float) -> float:
    return deadline_s * 1.1 + 0.05


@contextlib.contextmanager
def _elapsed() -> Iterator[List[float]]:
    """``with _elapsed() as t: ...``; afterwards ``t[0]`` is the wall time in seconds."""
    box: List[float] = []
    start = time.monotonic()
    try:
        yield box
    finally:
        box.append(time.monotonic() - start)


@pytest.fixture
def url(triton_server) -> str:
    return triton_server.http_url


@pytest.fixture
def make_client(url) -> Iterator[Callable[..., ModelClient]]:
    """``make_client(model, **kwargs)``: a ModelClient on the raw server, closed after the test."""
    yield from closing_clients(ModelClient, url)


class RecordingTransport:
    """Wraps a client's transport and records what goes through it."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.calls: List[Tuple[str, str]] = []
        self.infer_args: List[tuple] = []  # (headers, request_id) of each infer
        self._lock = threading.Lock()

    def _record(self, method: str, target: str) -> None:
        with self._lock:
            self.calls.append((method, target))

    def request(self, method: str, target: str, *args: Any, **kwargs: Any) -> Any:
        self._record(method, target)
        return self.inner.request(method, target, *args, **kwargs)

    def infer(self, target: str, *args: Any, **kwargs: Any) -> Any:
        self._record("INFER", target)
        with self._lock:
            self.infer_args.append((args[0], args[1]))
        return self.inner.infer(target, *args, **kwargs)

    def close(self) -> None:
        self.inner.close()

    def count(self, method: str, suffix: str = "") -> int:
        return sum(1 for m, t in self.calls if m == method and t.endswith(suffix))


def _record(client: ModelClient) -> RecordingTransport:
    """Records every request of ``client``; its native fast lane, which would go
    around the recorder, is off (tests/test_fast_lane.py covers that lane)."""
    recorder = RecordingTransport(client._transport)
    client._transport = recorder
    client._make_fast()  # not a native transport: no fast lane
    assert client._fast is None
    return recorder


def _assert_view_of_receive_buffer(array: np.ndarray) -> None:
    """A numeric output must be a view over the response buffer, not a copy."""
    assert not array.flags.owndata
    base = array
    while isinstance(base, np.ndarray):
        assert base.base is not None, "the chain of views ends in an array that owns a copy"
        base = base.base
    assert type(base).__name__ == "PyCapsule", f"unexpected owner {type(base)!r}"


# =============================================================================
# Model config, readiness, lifecycle
# =============================================================================


def test_model_config_of_add_sub(make_client):
    config = make_client("add_sub").model_config
    assert isinstance(config, TritonModelConfig)
    assert config.model_name == "add_sub"
    assert config.max_batch_size == 16
    assert config.batching is True
    assert [(s.name, s.shape, s.dtype) for s in config.inputs] == [
        ("INPUT0", (-1,), np.float32),
        ("INPUT1", (-1,), np.float32),
    ]
    assert [(s.name, s.shape, s.dtype) for s in config.outputs] == [
        ("OUTPUT0", (-1,), np.float32),
        ("OUTPUT1", (-1,), np.float32),
    ]


@pytest.mark.parametrize(
    "model, max_batch_size, inputs, outputs",
    [
        ("slow", 0, [("SECONDS", (1,), np.float32)], [("OUTPUT0", (1,), np.float32)]),
        ("echo_params", 0, [("INPUT0", (-1,), np.float32)], [("PARAMS", (1,), np.bytes_)]),
        ("identity_bool", 16, [("INPUT0", (-1,), np.dtype("bool"))], [("OUTPUT0", (-1,), np.dtype("bool"))]),
        ("identity_bf16", 16, [("INPUT0", (-1,), ml_dtypes.bfloat16)], [("OUTPUT0", (-1,), ml_dtypes.bfloat16)]),
        ("identity_bytes", 16, [("INPUT0", (-1,), np.bytes_)], [("OUTPUT0", (-1,), np.bytes_)]),
        ("batch2", 2, [("INPUT0", (-1,), np.float32)], [("OUTPUT0", (-1,), np.float32)]),
    ],
)
def test_model_config_fields(make_client, model, max_batch_size, inputs, outputs):
    client = make_client(model)
    config = client.model_config
    assert config.model_name == model
    assert config.max_batch_size == max_batch_size
    assert [(s.name, s.shape, s.dtype) for s in config.inputs] == inputs
    assert [(s.name, s.shape, s.dtype) for s in config.outputs] == outputs
    assert client.is_batching_supported is (max_batch_size > 0)
    assert client.model_config is config  # cached


def test_explicit_model_version(make_client):
    client = make_client("identity_fp32", "1")
    assert client.model_config.model_name == "identity_fp32"
    data = np.arange(4, dtype=np.float32).reshape(2, 2)
    np.testing.assert_array_equal(client.infer_batch(data)["OUTPUT0"], data)


def test_wait_for_server_and_model_on_ready_server(make_client):
    client = make_client("identity_fp32")
    with _elapsed() as t:
        assert client.wait_for_server(5.0) is None
        assert client.wait_for_model(5.0) is None
    assert t[0] < 1.0


def test_close_is_idempotent_and_everything_after_it_raises(make_client):
    client = make_client("identity_fp32")
    client.close()
    client.close()
    calls = {
        "infer_sample": lambda: client.infer_sample(np.zeros(2, np.float32)),
        "infer_batch": lambda: client.infer_batch(np.zeros((1, 2), np.float32)),
        "model_config": lambda: client.model_config,
        "is_batching_supported": lambda: client.is_batching_supported,
        "wait_for_server": lambda: client.wait_for_server(1.0),
        "wait_for_model": lambda: client.wait_for_model(1.0),
        "load_model": lambda: client.load_model(),
        "unload_model": lambda: client.unload_model(),
    }
    for name, call in calls.items():
        with pytest.raises(PyTritonClientClosedError, match="^ModelClient is closed$"):
            call()
            pytest.fail(f"{name} did not raise after close()")


def test_cached_model_config_survives_close(make_client):
    """As in PyTriton: a config fetched before close() is still returned."""
    client = make_client("identity_fp32")
    config = client.model_config
    client.close()
    assert client.model_config is config
    with pytest.raises(PyTritonClientClosedError):
        client.infer_batch(np.zeros((1, 2), np.float32))


def test_context_manager_closes_and_does_not_swallow_errors(url):
    with pytest.raises(KeyError, match="from the body"):
        with ModelClient(url, "identity_fp32") as client:
            assert isinstance(client, ModelClient)
            data = np.ones((1, 3), np.float32)
            np.testing.assert_array_equal(client.infer_batch(data)["OUTPUT0"], data)
            raise KeyError("from the body")
    with pytest.raises(PyTritonClientClosedError, match="ModelClient is closed"):
        client.infer_batch(np.ones((1, 3), np.float32))


def test_from_existing_client_shares_settings_and_skips_init(make_client):
    original = make_client(
        "identity_fp32", "1", init_timeout_s=12.0, inference_timeout_s=7.0,
        access_token="tok", split_large_batches=False,
    )
    config = original.model_config
    clone = ModelClient.from_existing_client(original)
    try:
        assert type(clone) is ModelClient
        assert clone._url == original._url
        assert clone._model_name == "identity_fp32"
        assert clone._model_version == "1"
        assert clone._init_timeout_s == 12.0
        assert clone._inference_timeout_s == 7.0
        assert clone._access_token == "tok"
        assert clone._split_large_batches is False
        assert clone.model_config is config
        recorder = _record(clone)
        original.close()  # the clone has its own connections
        data = np.arange(6, dtype=np.float32).reshape(3, 2)
        np.testing.assert_array_equal(clone.infer_batch(data)["OUTPUT0"], data)
        # No readiness check and no config fetch: the cached config is trusted.
        assert recorder.calls == [("INFER", "/v2/models/identity_fp32/versions/1/infer")]
    finally:
        clone.close()


def test_from_existing_client_keeps_ssl_context():
    context = ssl.create_default_context()
    with ModelClient("https://127.0.0.1:1", "m", ssl_context=context) as original:
        with ModelClient.from_existing_client(original) as clone:
            assert clone._url == "https://127.0.0.1:1"
            assert clone._ssl_context is context


# --- the lazy first call -------------------------------------------------------------


def test_first_lazy_call_checks_readiness_once_and_fetches_config_once(make_client):
    client = make_client("identity_fp32")
    recorder = _record(client)
    client.infer_sample(np.zeros(3, np.float32))
    client.infer_batch(np.zeros((2, 3), np.float32))
    assert recorder.calls == [
        ("GET", "/v2/models/identity_fp32/ready"),
        ("GET", "/v2/models/identity_fp32/config"),
        ("INFER", "/v2/models/identity_fp32/infer"),
        ("INFER", "/v2/models/identity_fp32/infer"),
    ]


def test_concurrent_first_calls_initialise_once(make_client):
    client = make_client("identity_fp32")
    recorder = _record(client)
    barrier = threading.Barrier(8)

    def first_call(i: int) -> np.ndarray:
        barrier.wait()
        return client.infer_sample(np.full(2, i, np.float32))["OUTPUT0"]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(first_call, range(8)))
    for i, out in enumerate(results):
        np.testing.assert_array_equal(out, np.full(2, i, np.float32))
    assert recorder.count("GET", "/ready") == 1
    assert recorder.count("GET", "/config") == 1
    assert recorder.count("INFER") == 8


def test_model_config_access_then_infer_fetches_nothing_more(make_client):
    client = make_client("identity_fp32")
    recorder = _record(client)
    assert client.is_batching_supported
    client.infer_sample(np.zeros(3, np.float32))
    assert [m for m, _ in recorder.calls] == ["GET", "GET", "INFER"]


def test_given_config_without_ensure_ready_goes_straight_to_inference(make_client):
    config = make_client("identity_fp32").model_config
    client = make_client("identity_fp32", model_config=config, ensure_model_is_ready=False)
    recorder = _record(client)
    client.infer_sample(np.zeros(3, np.float32))
    assert recorder.calls == [("INFER", "/v2/models/identity_fp32/infer")]


def test_given_config_with_ensure_ready_is_refreshed_from_server(make_client):
    stale = TritonModelConfig(model_name="identity_fp32", max_batch_size=0)
    client = make_client("identity_fp32", model_config=stale, ensure_model_is_ready=True)
    recorder = _record(client)
    out = client.infer_sample(np.arange(3, dtype=np.float32))["OUTPUT0"]
    np.testing.assert_array_equal(out, np.arange(3, dtype=np.float32))
    assert client.model_config.max_batch_size == 16  # the server's, not the stale one
    assert [m for m, _ in recorder.calls] == ["GET", "GET", "INFER"]


def test_lazy_init_false_initialises_in_constructor(url):
    with ModelClient(url, "identity_fp32", lazy_init=False) as client:
        recorder = _record(client)
        client.infer_sample(np.zeros(2, np.float32))
        assert recorder.calls == [("INFER", "/v2/models/identity_fp32/infer")]


# --- load / unload -----------------------------------------------------------------


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:
            return response.status
    except urllib.error.HTTPError as e:
        e.close()
        return e.code


def test_load_model_error_carries_server_text(make_client):
    client = make_client("tf_no_such_model")
    with pytest.raises(PyTritonClientInferenceServerError, match="tf_no_such_model") as excinfo:
        client.load_model()
    message = excinfo.value.message
    # explicit model control: "failed to load '...'"; mode none: "... not allowed ..."
    assert "failed to load 'tf_no_such_model'" in message or "not allowed" in message, message


def test_load_and_unload_a_new_model(make_client, url, triton_server):
    """Loads a model the repository does not have (config + files), infers, unloads it."""
    model_py = (triton_server.model_repository / "identity_fp32" / "1" / "model.py").read_bytes()
    config = json.dumps({
        "name": "tf_loaded", "backend": "python", "max_batch_size": 4,
        "input": [{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [-1]}],
        "output": [{"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [-1]}],
        "instance_group": [{"count": 1, "kind": "KIND_CPU"}],
    })  # fmt: skip
    client = make_client("tf_loaded", init_timeout_s=10.0)
    try:
        client.load_model(config=config, files={"1/model.py": model_py})
    except PyTritonClientInferenceServerError as e:
        if "not allowed" in e.message:  # the server runs with --model-control-mode=none
            pytest.skip(f"server does not allow loading models: {e.message}")
        raise
    assert client.model_config.max_batch_size == 4
    data = np.arange(8, dtype=np.float32).reshape(4, 2)
    np.testing.assert_array_equal(client.infer_batch(data)["OUTPUT0"], data)

    client.unload_model()
    deadline = time.monotonic() + 15.0
    while _http_status(f"{url}/v2/models/tf_loaded/ready") == 200:
        assert time.monotonic() < deadline, "tf_loaded still ready 15 s after unload_model()"
        time.sleep(0.1)
    with pytest.raises(PyTritonClientModelUnavailableError, match="tf_loaded"):
        client.infer_batch(data)


# =============================================================================
# Data types and tensors
# =============================================================================


def _extremes(dtype: Any) -> np.ndarray:
    """Distinct values that test every bit of ``dtype``: limits, signed zero, inf, nan, subnormals."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return np.array([True, False, False, True, True, False])
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.array([info.min, info.max, 0, 1, info.max - 1, info.min + 1], dtype=dtype)
    info = ml_dtypes.finfo(dtype) if dtype == ml_dtypes.bfloat16 else np.finfo(dtype)
    values = [info.min, info.max, info.tiny, info.smallest_subnormal, -0.0, 0.0,
              np.inf, -np.inf, np.nan, 1.0, -1.5, info.eps]  # fmt: skip
    return np.array(values, dtype=np.float64).astype(dtype)


NUMERIC_DTYPES = {
    "bool": np.bool_, "uint8": np.uint8, "uint16": np.uint16, "uint32": np.uint32, "uint64": np.uint64,
    "int8": np.int8, "int16": np.int16, "int32": np.int32, "int64": np.int64,
    "fp16": np.float16, "bf16": ml_dtypes.bfloat16, "fp32": np.float32, "fp64": np.float64,
}  # fmt: skip


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("name", NUMERIC_DTYPES)
def test_numeric_round_trip_is_bit_exact(make_client, name):
    dtype = NUMERIC_DTYPES[name]
    data = np.stack([_extremes(dtype), _extremes(dtype)[::-1]])
    client = make_client(f"identity_{name}")
    out = client.infer_batch(data)["OUTPUT0"]
    assert out.dtype == np.dtype(dtype)
    assert _same_bits(out, data), (out, data)
    _assert_view_of_receive_buffer(out)
    sample = client.infer_sample(data[1])["OUTPUT0"]
    assert _same_bits(sample, data[1])


AWKWARD_BYTES = np.array(
    [[b"", b"a\x00b", b"\x00\x00\x00", "héllo wörld ✓".encode("utf-8")],
     [b"\xff\xfe\x00", b"trailing\x00", b"x" * 70_000, b""]],
    dtype=np.object_,
)  # fmt: skip


def _assert_bytes_output(out: np.ndarray, expected: list) -> None:
    assert out.dtype == np.object_
    assert all(type(item) is bytes for item in out.flat)
    assert out.tolist() == expected


def test_bytes_round_trip_with_nuls_empty_and_non_ascii(make_client):
    client = make_client("identity_bytes")
    out = client.infer_batch(AWKWARD_BYTES)["OUTPUT0"]
    _assert_bytes_output(out, AWKWARD_BYTES.tolist())
    assert out.flags.writeable
    sample = client.infer_sample(AWKWARD_BYTES[1])["OUTPUT0"]
    _assert_bytes_output(sample, AWKWARD_BYTES[1].tolist())


def test_str_inputs_are_encoded_as_utf8(make_client):
    client = make_client("identity_bytes")
    unicode_array = np.array([["héllo", ""], ["a\x00b", "✓"]])
    assert unicode_array.dtype.kind == "U"
    out = client.infer_batch(unicode_array)["OUTPUT0"]
    _assert_bytes_output(out, [[s.encode("utf-8") for s in row] for row in unicode_array.tolist()])
    mixed = np.array([["text", b"\x00raw"]], dtype=np.object_)
    _assert_bytes_output(client.infer_batch(mixed)["OUTPUT0"], [[b"text", b"\x00raw"]])


def test_fixed_width_bytes_inputs(make_client):
    # numpy itself drops trailing NULs of S items; what is left must arrive intact.
    data = np.array([[b"ab\x00", b"c", b""]], dtype="S3")
    out = make_client("identity_bytes").infer_batch(data)["OUTPUT0"]
    _assert_bytes_output(out, [[b"ab", b"c", b""]])


@pytest.mark.parametrize(
    "model, data",
    [
        ("identity_fp32", np.zeros((2, 0), np.float32)),
        ("identity_fp32", np.zeros((1, 0), np.float32)),
        ("identity_bytes", np.empty((2, 0), np.object_)),
    ],
    ids=["fp32-2x0", "fp32-1x0", "bytes-2x0"],
)
def test_zero_size_tensors(make_client, model, data):
    # A zero-length batch axis is rejected by the server ("Expected 12, got 0"), as with tritonclient.
    out = make_client(model).infer_batch(data)["OUTPUT0"]
    assert out.shape == data.shape
    assert out.dtype == data.dtype


def test_zero_size_sample_on_non_batching_model(make_client):
    out = make_client("nobatch").infer_sample(np.zeros((0,), np.float32))["OUTPUT0"]
    assert out.shape == (0,) and out.dtype == np.float32


def _non_contiguous(base: np.ndarray) -> dict:
    return {
        "transposed": base.T,
        "strided": base[:, ::2],
        "reversed": base[::-1, ::-1],
        "fortran": np.asfortranarray(base),
        "offset": base[1:, 1:],
    }


@pytest.mark.parametrize("layout", ["transposed", "strided", "reversed", "fortran", "offset"])
def test_non_contiguous_inputs(make_client, layout):
    numbers = _non_contiguous(np.arange(24, dtype=np.float64).reshape(4, 6) * 1.5)[layout]
    assert not numbers.flags.c_contiguous
    out = make_client("identity_fp64").infer_batch(numbers)["OUTPUT0"]
    np.testing.assert_array_equal(out, numbers)
    assert out.flags.c_contiguous

    blobs = _non_contiguous(np.array([[f"{i}-{j}".encode() * (i + 1) for j in range(6)] for i in range(4)],
                                     dtype=np.object_))[layout]
    out = make_client("identity_bytes").infer_batch(blobs)["OUTPUT0"]
    _assert_bytes_output(out, blobs.tolist())


def test_outputs_are_writable_views_independent_between_calls(make_client):
    client = make_client("identity_fp32", shared_memory=None)  # the HTTP receive buffers
    first_in = np.full((2, 1 << 17), 1.0, np.float32)  # 1 MiB: a pooled receive buffer
    first = client.infer_batch(first_in)["OUTPUT0"]
    _assert_view_of_receive_buffer(first)
    assert first.flags.writeable
    later = [client.infer_batch(np.full((2, 1 << 17), float(i), np.float32))["OUTPUT0"] for i in range(2, 6)]
    # Earlier outputs stay intact while buffers are received and recycled.
    np.testing.assert_array_equal(first, first_in)
    for i, out in enumerate(later, start=2):
        np.testing.assert_array_equal(out, np.full((2, 1 << 17), float(i), np.float32))
    first[:] = -1.0
    for i, out in enumerate(later, start=2):
        assert out[0, 0] == float(i)
    assert first_in[0, 0] == 1.0  # the output never aliased the input
    pointers = {a.__array_interface__["data"][0] for a in [first, *later]}
    assert len(pointers) == 5


def test_outputs_of_one_response_share_one_buffer(make_client):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.full((2, 3), 0.5, np.float32)
    result = make_client("add_sub").infer_batch(a, b)
    add, sub = result["OUTPUT0"], result["OUTPUT1"]
    np.testing.assert_array_equal(add, a + b)
    np.testing.assert_array_equal(sub, a - b)
    _assert_view_of_receive_buffer(add)
    _assert_view_of_receive_buffer(sub)
    assert add.base is sub.base  # one receive buffer, no copy per output
    gap = sub.__array_interface__["data"][0] - add.__array_interface__["data"][0]
    assert gap == add.nbytes


def test_256_mib_fp32_round_trip(make_client):
    client = make_client("identity_fp32", shared_memory=None)  # over HTTP: tests/test_client_shm.py has shm
    # Every element distinct (its index as float32 bits), so a misplaced chunk shows.
    data = np.arange(64 << 20, dtype=np.uint32).view(np.float32).reshape(1, 64 << 20)
    assert data.nbytes == 256 << 20
    out = client.infer_batch(data)["OUTPUT0"]
    assert out.shape == data.shape and out.dtype == np.float32
    assert np.array_equal(out.view(np.uint32), data.view(np.uint32))
    _assert_view_of_receive_buffer(out)


# =============================================================================
# Arguments and batching
# =============================================================================


@pytest.mark.parametrize("method", ["infer_sample", "infer_batch"])
def test_no_inputs(make_client, method):
    client = make_client("identity_fp32")
    with pytest.raises(PyTritonClientValueError, match="^Provide input data$"):
        getattr(client, method)()
    with pytest.raises(PyTritonClientValueError, match="^Provide input data$"):
        getattr(client, method)(parameters={"a": 1}, headers={"x-tf-a": "b"})


@pytest.mark.parametrize("method", ["infer_sample", "infer_batch"])
def test_mixed_positional_and_named_inputs(make_client, method):
    a = np.ones((1, 2), np.float32)
    with pytest.raises(PyTritonClientValueError, match="^Use either positional either keyword method arguments convention$"):
        getattr(make_client("add_sub"), method)(a, INPUT1=a)


def test_positional_inputs_follow_config_order(make_client):
    client = make_client("add_sub")
    a = np.array([[5.0, 7.0]], np.float32)
    b = np.array([[1.0, 2.0]], np.float32)
    forward = client.infer_batch(a, b)
    swapped = client.infer_batch(b, a)
    np.testing.assert_array_equal(forward["OUTPUT1"], a - b)
    np.testing.assert_array_equal(swapped["OUTPUT1"], b - a)
    np.testing.assert_array_equal(forward["OUTPUT0"], swapped["OUTPUT0"])
    assert list(forward) == ["OUTPUT0", "OUTPUT1"]


def test_named_inputs_in_any_order(make_client):
    a = np.array([[5.0]], np.float32)
    b = np.array([[1.0]], np.float32)
    result = make_client("add_sub").infer_batch(INPUT1=b, INPUT0=a)
    np.testing.assert_array_equal(result["OUTPUT1"], a - b)


def test_extra_positional_inputs_are_dropped(make_client):
    a = np.array([[5.0]], np.float32)
    b = np.array([[1.0]], np.float32)
    junk = np.array([[b"ignored"]], np.object_)
    result = make_client("add_sub").infer_batch(a, b, junk, junk)
    np.testing.assert_array_equal(result["OUTPUT0"], a + b)


def test_missing_input_is_a_server_error(make_client):
    with pytest.raises(PyTritonClientInferenceServerError, match="INPUT1") as excinfo:
        make_client("add_sub").infer_batch(np.ones((1, 2), np.float32))
    assert excinfo.value.message.startswith("Error occurred during inference request. Message: ")
    assert "expected 2 inputs but got 1" in excinfo.value.message


def test_unknown_input_name_is_a_server_error(make_client):
    with pytest.raises(PyTritonClientInferenceServerError, match="FOO"):
        make_client("identity_fp32").infer_batch(FOO=np.ones((1, 2), np.float32))


def test_inputs_are_not_cast_to_the_config_dtype(make_client):
    with pytest.raises(PyTritonClientInferenceServerError, match="FP64"):
        make_client("identity_fp32").infer_batch(np.ones((1, 2), np.float64))


def test_infer_sample_adds_and_strips_the_batch_axis(make_client):
    client = make_client("add_sub")
    a = np.array([1.0, 2.0, 3.0], np.float32)
    result = client.infer_sample(a, np.ones(3, np.float32))
    # The server would reject a 1-D input to this batching model: the axis was added.
    assert result["OUTPUT0"].shape == (3,)
    np.testing.assert_array_equal(result["OUTPUT0"], a + 1)
    np.testing.assert_array_equal(result["OUTPUT1"], a - 1)
    named = client.infer_sample(INPUT0=a, INPUT1=a)
    assert named["OUTPUT0"].shape == (3,)


def test_infer_sample_passes_through_on_non_batching_model(make_client):
    client = make_client("nobatch")
    data = np.array([1.0, -2.0, 3.5], np.float32)
    out = client.infer_sample(data)["OUTPUT0"]
    assert out.shape == (3,)  # sent as (3,): a (1, 3) input would be a rank error
    np.testing.assert_array_equal(out, data)


def test_infer_batch_on_non_batching_model(make_client):
    client = make_client("nobatch")
    recorder = _record(client)
    with pytest.raises(PyTritonClientModelDoesntSupportBatchingError,
                       match="^Model nobatch doesn't support batching - use infer_sample method instead$"):
        client.infer_batch(np.ones(3, np.float32))
    assert recorder.count("INFER") == 0


def test_large_batch_is_split_and_reassembled_in_order(make_client):
    client = make_client("batch2")
    recorder = _record(client)
    data = np.arange(5 * 3, dtype=np.float32).reshape(5, 3)
    out = client.infer_batch(data)["OUTPUT0"]
    np.testing.assert_array_equal(out, data)
    assert recorder.count("INFER") == 3  # rows 0-1, 2-3, 4


def test_large_batch_split_keeps_named_inputs_and_all_outputs(make_client):
    # add_sub allows 16 rows; 40 rows become 3 chunks of two inputs each.
    a = np.arange(40 * 2, dtype=np.float32).reshape(40, 2)
    b = np.full((40, 2), 0.25, np.float32)
    result = make_client("add_sub").infer_batch(INPUT1=b, INPUT0=a)
    np.testing.assert_array_equal(result["OUTPUT0"], a + b)
    np.testing.assert_array_equal(result["OUTPUT1"], a - b)


def test_large_batch_without_splitting_is_a_server_error(make_client):
    client = make_client("batch2", split_large_batches=False)
    with pytest.raises(PyTritonClientInferenceServerError, match="batch-size must be <= 2"):
        client.infer_batch(np.zeros((5, 3), np.float32))


# =============================================================================
# Parameters and headers
# =============================================================================


def _echoed(client: ModelClient, **kwargs: Any) -> dict:
    out = client.infer_sample(np.zeros(1, np.float32), **kwargs)["PARAMS"]
    return json.loads(out[0])


def test_parameters_and_headers_reach_the_model(make_client):
    client = make_client("echo_params")
    echoed = _echoed(
        client,
        parameters={"tf_string": "välue", "tf_int": 7, "tf_bool": True, "tf_false": False},
        headers={"x-tf-trace": "abc", "x-tf-int": 3, "x-other": "not forwarded"},
    )
    assert echoed["tf_string"] == "välue"
    assert echoed["tf_int"] == 7
    assert echoed["tf_bool"] is True
    assert echoed["tf_false"] is False
    assert echoed["x-tf-trace"] == "abc"
    assert echoed["x-tf-int"] == "3"  # headers travel as text
    assert "x-other" not in echoed  # not matched by the server's forward pattern


def test_no_parameters_by_default(make_client):
    echoed = _echoed(make_client("echo_params"))
    assert not any(key.startswith(("tf_", "x-tf-")) for key in echoed)


def test_access_token_header_and_user_headers_override_it(make_client):
    client = make_client("echo_params", access_token="secret")
    recorder = _record(client)
    _echoed(client)
    _echoed(client, headers={"triton-access-token": "mine", "x-tf-a": "b"})
    (first, _), (second, _) = recorder.infer_args
    assert dict(first) == {"triton-access-token": "secret"}
    assert dict(second) == {"triton-access-token": "mine", "x-tf-a": "b"}


@pytest.mark.parametrize("kind", ["parameters", "headers"])
@pytest.mark.parametrize(
    "value, message",
    [
        ([("a", 1)], "Parameters and headers must be a dictionary"),
        ("a=1", "Parameters and headers must be a dictionary"),
        ({1: "a"}, "Parameter/header key must be a string"),
        ({"a": 1.5}, "Parameter/header value must be a string, integer or boolean"),
        ({"a": None}, "Parameter/header value must be a string, integer or boolean"),
        ({"a": b"x"}, "Parameter/header value must be a string, integer or boolean"),
    ],
)
def test_parameter_and_header_validation(make_client, kind, value, message):
    client = make_client("echo_params")
    recorder = _record(client)
    with pytest.raises(PyTritonClientValueError, match=f"^{message}$"):
        client.infer_sample(np.zeros(1, np.float32), **{kind: value})
    assert recorder.calls == []  # rejected before any I/O


@pytest.mark.parametrize(
    "headers, name",
    [
        ({"x-tf-a": "v\r\nx-tf-injected: evil"}, "x-tf-a"),
        ({"x-tf-b": "v\n"}, "x-tf-b"),
        ({"x-tf-c": "v\rw"}, "x-tf-c"),
        ({"x-tf-d\r\nx-tf-injected": "v"}, "x-tf-d"),
    ],
)
def test_header_with_cr_or_lf_is_rejected(make_client, headers, name):
    client = make_client("echo_params")
    with pytest.raises(PyTritonClientValueError, match=name):
        _echoed(client, headers=headers)
    # The client is still usable and nothing was injected.
    assert "x-tf-injected" not in _echoed(client, headers={"x-tf-ok": "1"})


# =============================================================================
# Errors and timeouts
# =============================================================================


def test_model_error_carries_server_text(make_client):
    with pytest.raises(PyTritonClientInferenceServerError) as excinfo:
        make_client("raises").infer_batch(np.zeros((1, 4), np.float32))
    assert RAISES_MESSAGE in excinfo.value.message
    assert excinfo.value.message.startswith("Error occurred during inference request. Message: ")


def test_unknown_model_fails_fast(make_client):
    grace = tritonfast._pipeline.UNKNOWN_MODEL_GRACE_S
    client = make_client("tf_no_such_model", init_timeout_s=30.0)
    with _elapsed() as t, pytest.raises(PyTritonClientModelUnavailableError, match="tf_no_such_model"):
        client.infer_batch(np.zeros((1, 2), np.float32))
    assert t[0] < grace + 1.5


@pytest.mark.parametrize(
    "model, version, call",
    [
        ("tf_no_such_model", None, "infer_sample"),
        ("identity_fp32", "7", "infer_batch"),
        ("identity_fp32", "7", "model_config"),
        ("identity_fp32", "7", "wait_for_model"),
    ],
)
def test_unknown_model_or_version_is_unavailable(make_client, monkeypatch, model, version, call):
    monkeypatch.setattr(tritonfast._pipeline, "UNKNOWN_MODEL_GRACE_S", 0.3)
    client = make_client(model, version, init_timeout_s=30.0)
    calls = {
        "infer_sample": lambda: client.infer_sample(np.zeros(2, np.float32)),
        "infer_batch": lambda: client.infer_batch(np.zeros((1, 2), np.float32)),
        "model_config": lambda: client.model_config,
        "wait_for_model": lambda: client.wait_for_model(30.0),
    }
    with _elapsed() as t, pytest.raises(PyTritonClientModelUnavailableError) as excinfo:
        calls[call]()
    assert t[0] < 0.3 + 1.5
    assert f"{model}/{version or '<latest>'}" in excinfo.value.message


@pytest.fixture
def dead_url() -> str:
    """A loopback port nothing listens on."""
    return f"http://127.0.0.1:{free_ports(1)[0]}"


def test_no_server_first_call_times_out_after_init_timeout(dead_url):
    with ModelClient(dead_url, "identity_fp32", init_timeout_s=1.0) as client:
        with _elapsed() as t, pytest.raises(PyTritonClientTimeoutError, match="Waiting for server to be ready timed out"):
            client.infer_batch(np.zeros((1, 2), np.float32))
    assert 0.95 <= t[0] <= _slack(1.0)


def test_no_server_eager_init_times_out(dead_url):
    with _elapsed() as t, pytest.raises(PyTritonClientTimeoutError, match="Waiting for server to be ready timed out"):
        ModelClient(dead_url, "identity_fp32", init_timeout_s=0.6, lazy_init=False)
    assert 0.55 <= t[0] <= _slack(0.6)


@pytest.mark.parametrize("call", ["wait_for_server", "wait_for_model"])
def test_no_server_waits_time_out(dead_url, call):
    with ModelClient(dead_url, "identity_fp32", init_timeout_s=30.0) as client:
        with _elapsed() as t, pytest.raises(PyTritonClientTimeoutError, match="Waiting for server to be ready timed out"):
            getattr(client, call)(0.5)
    assert 0.45 <= t[0] <= _slack(0.5)


def test_no_server_with_given_config_fails_fast_with_connection_error(make_client, dead_url):
    config = make_client("identity_fp32").model_config
    with ModelClient(dead_url, "identity_fp32", model_config=config, ensure_model_is_ready=False) as client:
        with _elapsed() as t, pytest.raises(PyTritonClientConnectionError) as excinfo:
            client.infer_batch(np.zeros((1, 2), np.float32))
    assert isinstance(excinfo.value, PyTritonClientTimeoutError)  # what PyTriton code catches
    # PyTriton words this as a timeout; we say what happened, and where.
    assert "Connection failed during inference request" in excinfo.value.message
    assert "refused" in excinfo.value.message and dead_url.split("//")[-1] in excinfo.value.message
    assert t[0] < 0.5


def test_inference_timeout_fires_on_time_and_client_recovers(make_client):
    client = make_client("slow", inference_timeout_s=0.5)
    client.model_config
    with _elapsed() as t, pytest.raises(PyTritonClientTimeoutError, match="Timeout occurred during inference request"):
        client.infer_sample(np.array([2.0], np.float32))
    assert 0.49 <= t[0] <= _slack(0.5)
    # The next request gets its own answer, not the late one of the timed-out request.
    with _elapsed() as t:
        out = client.infer_sample(np.array([0.01], np.float32))["OUTPUT0"]
    np.testing.assert_array_equal(out, np.array([0.01], np.float32))
    assert t[0] < 0.5


@pytest.mark.parametrize("bad_url", ["grpc://127.0.0.1:8001", "GRPC://localhost", "ftp://localhost"])
def test_unsupported_scheme(bad_url):
    with pytest.raises(PyTritonClientInvalidUrlError, match="Invalid url"):
        ModelClient(bad_url, "identity_fp32")


def test_request_ids_count_from_zero_per_client(make_client):
    """Ids are visible in the server's validation errors: "[request id: N] ..."."""
    client = make_client("add_sub")
    one = np.ones((1, 2), np.float32)

    def missing_input_error() -> str:
        with pytest.raises(PyTritonClientInferenceServerError) as excinfo:
            client.infer_batch(one)
        return excinfo.value.message

    assert "[request id: 0]" in missing_input_error()
    client.infer_batch(one, one)  # id 1
    with pytest.raises(PyTritonClientValueError):
        client.infer_batch()  # rejected before sending: uses no id
    assert "[request id: 2]" in missing_input_error()
    clone = ModelClient.from_existing_client(client)
    try:
        with pytest.raises(PyTritonClientInferenceServerError, match=r"\[request id: 0\]"):
            clone.infer_batch(one)
    finally:
        clone.close()


# =============================================================================
# Threads
# =============================================================================


def test_one_client_shared_by_32_threads(make_client):
    client = make_client("identity_fp32")
    barrier = threading.Barrier(32)

    def work(thread: int) -> List[Optional[str]]:
        barrier.wait()
        failures = []
        for i in range(20):
            data = np.arange(8, dtype=np.float32).reshape(1, 8) + thread * 1000 + i
            if i % 2:
                out = client.infer_batch(np.repeat(data, 3, axis=0))["OUTPUT0"]
                ok = np.array_equal(out, np.repeat(data, 3, axis=0))
            else:
                out = client.infer_sample(data[0])["OUTPUT0"]
                ok = np.array_equal(out, data[0])
            failures.append(None if ok else f"thread {thread} request {i}: {out!r}")
        return failures

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        results = [f for fs in pool.map(work, range(32)) for f in fs]
    assert len(results) == 640
    assert [f for f in results if f] == []


def test_request_ending_during_interpreter_shutdown_does_not_crash():
    """A daemon thread's request fails (connection reset) while the interpreter
    finalizes; the thread wakes up in the transport then, and the process must
    still exit cleanly (not abort in the C++ layer)."""
    script = """
import socket, threading, time
import numpy as np
from tritonfast import ModelClient, TritonModelConfig
from tritonfast.model_config import TensorSpec

silent = socket.socket()  # accepts, never answers; resets the connection when the process exits
silent.bind(("127.0.0.1", 0))
silent.listen(8)
config = TritonModelConfig("m", max_batch_size=0, inputs=[TensorSpec("X", (1,), np.float32)], outputs=[])
client = ModelClient(f"http://127.0.0.1:{silent.getsockname()[1]}", "m",
                     model_config=config, ensure_model_is_ready=False)
threading.Thread(target=client.infer_sample, args=(np.zeros(1, np.float32),), daemon=True).start()
time.sleep(0.2)
print("leaving", flush=True)
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=10.0)
    assert (run.returncode, run.stdout) == (0, "leaving\n"), run.stderr


# =============================================================================
# https through a TLS-terminating relay
# =============================================================================


class TlsRelay:
    """Terminates TLS on 127.0.0.1:<port> and relays the bytes to a plain TCP backend.

    An asyncio loop in a thread; ``with`` starts it and stops it (closing every connection).
    """

    def __init__(self, server_context: ssl.SSLContext, backend: Tuple[str, int]):
        self._context = server_context
        self._backend = backend
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(lambda loop, context: None)  # failed handshakes are expected
        self._thread = threading.Thread(target=self._loop.run_forever, name="tls-relay", daemon=True)
        self._tasks: set = set()
        self.connections = 0
        self.port = 0

    def __enter__(self) -> "TlsRelay":
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc_info: Any) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> asyncio.AbstractServer:
        return await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self._context)

    async def _stop(self) -> None:
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        self._tasks.add(task)
        backend_writer = None
        try:
            backend_reader, backend_writer = await asyncio.open_connection(*self._backend)
            await asyncio.gather(self._pump(reader, backend_writer), self._pump(backend_reader, writer))
        except (asyncio.CancelledError, OSError):
            pass
        finally:
            self._tasks.discard(task)
            for w in (backend_writer, writer):
                if w is not None:
                    w.close()
                    with contextlib.suppress(Exception):
                        await w.wait_closed()

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1 << 20):
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(OSError):
            if writer.can_write_eof():
                writer.write_eof()


@pytest.fixture(scope="module")
def tls_ca():
    trustme = pytest.importorskip("trustme")
    return trustme.CA()


@pytest.fixture
def tls_relay(tls_ca, triton_server) -> Iterator[TlsRelay]:
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls_ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
    with TlsRelay(server_context, ("127.0.0.1", triton_server.http_port)) as relay:
        yield relay


@pytest.fixture
def trusting_context(tls_ca) -> ssl.SSLContext:
    context = ssl.create_default_context()
    tls_ca.configure_trust(context)
    return context


@pytest.fixture
def wrong_ca_context() -> ssl.SSLContext:
    trustme = pytest.importorskip("trustme")
    context = ssl.create_default_context()
    trustme.CA().configure_trust(context)
    return context


def test_https_round_trips(tls_relay, trusting_context):
    https_url = f"https://127.0.0.1:{tls_relay.port}"
    with ModelClient(https_url, "identity_fp32", ssl_context=trusting_context) as client:
        config = client.model_config
        assert config.model_name == "identity_fp32" and config.max_batch_size == 16
        small = np.arange(6, dtype=np.float32).reshape(2, 3)
        np.testing.assert_array_equal(client.infer_batch(small)["OUTPUT0"], small)
        big = np.arange(4 << 20, dtype=np.uint32).view(np.float32).reshape(1, 4 << 20)  # 16 MiB
        out = client.infer_batch(big)["OUTPUT0"]
        assert np.array_equal(out.view(np.uint32), big.view(np.uint32))
        _assert_view_of_receive_buffer(out)
        np.testing.assert_array_equal(client.infer_sample(small[0])["OUTPUT0"], small[0])
    with ModelClient(https_url, "identity_bytes", ssl_context=trusting_context) as client:
        out = client.infer_batch(AWKWARD_BYTES)["OUTPUT0"]
        _assert_bytes_output(out, AWKWARD_BYTES.tolist())
    assert tls_relay.connections >= 2


def test_https_shared_by_threads_and_split_batches(tls_relay, trusting_context):
    https_url = f"https://127.0.0.1:{tls_relay.port}"
    with ModelClient(https_url, "batch2", ssl_context=trusting_context) as client:
        data = np.arange(7 * 2, dtype=np.float32).reshape(7, 2)

        def run(i: int) -> bool:
            return np.array_equal(client.infer_batch(data + i)["OUTPUT0"], data + i)

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            assert all(pool.map(run, range(8)))


def test_https_wrong_ca_with_given_config_is_a_connection_error(tls_relay, wrong_ca_context, make_client):
    config = make_client("identity_fp32").model_config
    https_url = f"https://127.0.0.1:{tls_relay.port}"
    with ModelClient(https_url, "identity_fp32", ssl_context=wrong_ca_context,
                     model_config=config, ensure_model_is_ready=False) as client:
        with _elapsed() as t, pytest.raises(PyTritonClientConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            client.infer_batch(np.zeros((1, 2), np.float32))
    assert t[0] < 1.0


def test_https_wrong_ca_on_first_call_is_a_connection_error(tls_relay, wrong_ca_context):
    """A certificate that fails verification will not start passing: no polling until init_timeout_s."""
    https_url = f"https://127.0.0.1:{tls_relay.port}"
    with ModelClient(https_url, "identity_fp32", ssl_context=wrong_ca_context, init_timeout_s=2.0) as client:
        with _elapsed() as t, pytest.raises(PyTritonClientConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            client.infer_batch(np.zeros((1, 2), np.float32))
    assert t[0] < 1.0


# =============================================================================
# PyTriton parity (pytriton_server)
# =============================================================================

# examples/add_sub_python/client.py from triton-inference-server/pytriton (Apache-2.0),
# verbatim but for the import (and the server address: the test server's port is not 8000).
ADD_SUB_EXAMPLE_CLIENT = '''\
"""Client for add_sub_python sample server."""
import logging

import numpy as np

from pytriton.client import ModelClient

logger = logging.getLogger("examples.add_sub_python.client")
logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(levelname)s - %(name)s: %(message)s")

batch_size = 2
a_batch = np.ones((batch_size, 1), dtype=np.float32)
b_batch = np.ones((batch_size, 1), dtype=np.float32)

logger.info(f"a: {a_batch.tolist()}")
logger.info(f"b: {b_batch.tolist()}")

with ModelClient("localhost", "AddSub") as client:
    logger.info("Sending inference request")
    result_batch = client.infer_batch(a_batch, b_batch)

for output_name, data_batch in result_batch.items():
    logger.info(f"{output_name}: {data_batch.tolist()}")
'''


def test_pytriton_add_sub_example_client(pytriton_server):
    address = pytriton_server.http_url.removeprefix("http://")
    source = ADD_SUB_EXAMPLE_CLIENT.replace("from pytriton.client import", "from tritonfast import")
    source = source.replace('ModelClient("localhost"', f'ModelClient("{address}"')
    assert "pytriton" not in source.replace("add_sub_python", "")
    run = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "examples.add_sub_python.client: add: [[2.0], [2.0]]" in run.stderr
    assert "examples.add_sub_python.client: sub: [[0.0], [0.0]]" in run.stderr


def test_add_sub_matches_pytriton(pytriton_server):
    from pytriton.client import ModelClient as PyTritonModelClient

    a = np.array([[1.0, 2.5], [-3.0, 4.0]], np.float32)
    b = np.array([[0.5, 0.5], [1.0, -1.0]], np.float32)
    with PyTritonModelClient(pytriton_server.http_url, "AddSub") as reference:
        expected = reference.infer_batch(a, b)
    with ModelClient(pytriton_server.http_url, "AddSub") as client:
        result = client.infer_batch(a, b)
        sample = client.infer_sample(a[0], b[0])
    assert list(result) == list(expected) == ["add", "sub"]
    for name in expected:
        assert _same_bits(result[name], expected[name])
        assert _same_bits(sample[name], expected[name][0])
    np.testing.assert_array_equal(result["add"], a + b)
    np.testing.assert_array_equal(result["sub"], a - b)


def _config_summary(config: Any) -> dict:
    specs = lambda items: [(s.name, s.shape, np.dtype(s.dtype), bool(s.optional)) for s in items]  # noqa: E731
    return {
        "model_name": config.model_name,
        "max_batch_size": config.max_batch_size,
        "batching": config.batching,
        "decoupled": config.decoupled,
        "instance_group": {kind.value: count for kind, count in config.instance_group.items()},
        "backend_parameters": dict(config.backend_parameters),
        "inputs": specs(config.inputs),
        "outputs": specs(config.outputs),
        "preferred_batch_size": config.batcher and config.batcher.preferred_batch_size,
    }


def test_identity_matches_pytriton(pytriton_server):
    from pytriton.client import ModelClient as PyTritonModelClient

    numbers = np.array([[1.5, -0.0, np.inf, 5e-324], [np.nan, -1e308, 2.0, 0.1]], np.float64)
    blobs = np.array([[b"\xff\x00\x00\x00"], [b"a\x00"]], dtype=np.object_)  # trailing NULs
    with PyTritonModelClient(pytriton_server.http_url, "Identity") as reference:
        expected = reference.infer_batch(numbers, blobs)
        expected_config = reference.model_config
    with ModelClient(pytriton_server.http_url, "Identity") as client:
        result = client.infer_batch(numbers, blobs)
        config = client.model_config
    assert list(result) == list(expected)
    assert _same_bits(result["OUTPUT_1"], expected["OUTPUT_1"])
    assert _same_bits(result["OUTPUT_1"], numbers)
    assert result["OUTPUT_2"].dtype == expected["OUTPUT_2"].dtype == np.object_
    assert result["OUTPUT_2"].tolist() == expected["OUTPUT_2"].tolist() == blobs.tolist()
    assert _config_summary(config) == _config_summary(expected_config)


def test_params_and_headers_example(pytriton_server):
    a = np.full((2, 1), 2.0, np.float32)
    b = np.ones((2, 1), np.float32)
    with ModelClient(pytriton_server.http_url, "ParamsAndHeaders") as client:
        result = client.infer_batch(a, b, parameters={"parameter_multiplier": 2}, headers={"header_divisor": 3})
    np.testing.assert_allclose(result["scaled_add"], (a + b) / 3)
    np.testing.assert_array_equal(result["scaled_sub"], (a - b) * 2)
