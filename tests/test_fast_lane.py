"""ModelClient's native fast lane (``_core.InferPlan``), against the real server.

Plain requests (positional, C-contiguous numeric arrays in native byte order,
no parameters or headers, under shared memory's threshold) skip the Python
request path: the request comes from a template kept per input layout and a
repeated response header is compared instead of parsed. Everything else is
handed back, unsent, to the general path. These tests check that the lane
gives exactly what the general path gives (a request with ``parameters={}``
takes the general path), that it hands back what it should, and that errors,
timeouts, ids and threads behave the same through it. ``InferPlan.sent``
counts the requests the lane itself sent.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import tritonfast._shm.path
from tests.clients import closing_clients, run_in_threads
from tests.triton_server import IDENTITY_DATATYPES, RAISES_MESSAGE
from tritonfast import ModelClient
from tritonfast.exceptions import (
    PyTritonClientClosedError,
    PyTritonClientInferenceServerError,
    PyTritonClientTimeoutError,
)
from tritonfast.utils import triton_to_np_dtype

NUMERIC = [dt for dt in IDENTITY_DATATYPES if dt not in ("BYTES", "BF16")]


@pytest.fixture
def make_client(triton_server):
    yield from closing_clients(ModelClient, triton_server.http_url)


def _ready(client: ModelClient, *inputs: np.ndarray):
    """Runs a first (general-path) request, after which the lane exists; returns it."""
    client.infer_batch(*inputs)
    assert client._fast is not None
    return client._fast


def _sample(dtype: np.dtype, shape: tuple) -> np.ndarray:
    count = int(np.prod(shape))
    if dtype == np.bool_:
        return (np.arange(count) % 3 == 0).reshape(shape)
    return (np.arange(count) % 100).astype(dtype).reshape(shape)


@pytest.mark.parametrize("datatype", NUMERIC)
def test_every_numeric_dtype_matches_the_general_path(make_client, datatype):
    dtype = np.dtype(triton_to_np_dtype(datatype))
    client = make_client(f"identity_{datatype.lower()}")
    x = _sample(dtype, (2, 5))
    lane = _ready(client, x)
    sent = lane.sent
    fast = client.infer_batch(x)["OUTPUT0"]
    general = client.infer_batch(x, parameters={})["OUTPUT0"]
    assert lane.sent == sent + 1
    assert fast.dtype == general.dtype == dtype
    assert fast.shape == general.shape == (2, 5)
    np.testing.assert_array_equal(fast, general)
    np.testing.assert_array_equal(fast, x)
    assert fast.flags.writeable and fast.flags.c_contiguous
    assert fast.base is not None  # a view of the receive buffer, not a copy


def test_repeated_and_alternating_layouts(make_client):
    """Template and response-header caches: one layout repeated, then layouts alternating."""
    client = make_client("add_sub")
    lane = _ready(client, np.ones((1, 4), np.float32), np.ones((1, 4), np.float32))
    shapes = [(1, 4)] * 5 + [(2, 3), (1, 4), (3, 1), (2, 3), (16, 2), (1, 0)] * 3
    for k, shape in enumerate(shapes):
        a = np.full(shape, k, np.float32)
        b = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
        result = client.infer_batch(a, b)
        np.testing.assert_array_equal(result["OUTPUT0"], a + b)
        np.testing.assert_array_equal(result["OUTPUT1"], a - b)
        assert list(result) == ["OUTPUT0", "OUTPUT1"]
    assert lane.sent == len(shapes)


def test_outputs_stay_valid_across_later_requests(make_client):
    """A receive buffer is reused only once every view of it is gone."""
    client = make_client("identity_fp32")
    lane = _ready(client, np.zeros((1, 8), np.float32))
    kept = [client.infer_batch(np.full((1, 8), k, np.float32))["OUTPUT0"] for k in range(20)]
    for k, out in enumerate(kept):
        np.testing.assert_array_equal(out, np.full((1, 8), k, np.float32))
    kept[0][0, 0] = -1.0  # writable, and no other output shares its memory
    assert all(out[0, 0] == k for k, out in enumerate(kept) if k)
    assert lane.sent == 20


def test_infer_sample_matches_the_general_path(make_client):
    client = make_client("add_sub")
    a = np.array([1.0, 2.0, 3.0], np.float32)
    lane = _ready(client, a[None], a[None])
    fast = client.infer_sample(a, np.ones(3, np.float32))
    general = client.infer_sample(a, np.ones(3, np.float32), parameters={})
    assert lane.sent == 1
    for name in ("OUTPUT0", "OUTPUT1"):
        assert fast[name].shape == general[name].shape == (3,)
        np.testing.assert_array_equal(fast[name], general[name])
    assert fast["OUTPUT0"].base is not None  # the first row, as a view


def test_infer_sample_on_a_non_batching_model(make_client):
    client = make_client("nobatch")
    x = np.array([1.0, -2.0], np.float32)
    client.infer_sample(x)
    lane = client._fast
    out = client.infer_sample(x)["OUTPUT0"]
    assert out.shape == (2,)
    np.testing.assert_array_equal(out, x)
    assert lane.sent == 1
    # infer_batch on it is the general path's error, raised there.
    from tritonfast.exceptions import PyTritonClientModelDoesntSupportBatchingError

    with pytest.raises(PyTritonClientModelDoesntSupportBatchingError):
        client.infer_batch(x[None])
    assert lane.sent == 1


@pytest.mark.parametrize("case", [
    "non_contiguous", "big_endian", "list", "named", "parameters", "headers", "oversized_batch",
    "fortran_order",
])  # fmt: skip
def test_handed_back_to_the_general_path(make_client, case):
    model = "batch2" if case == "oversized_batch" else "identity_fp32"
    client = make_client(model)
    lane = _ready(client, np.zeros((1, 2), np.float32))
    base = np.arange(10, dtype=np.float32).reshape(2, 5)
    kwargs: dict = {}
    if case == "non_contiguous":
        x = base[:, ::2]
        call = lambda: client.infer_batch(x)  # noqa: E731
    elif case == "fortran_order":
        x = np.asfortranarray(base)
        call = lambda: client.infer_batch(x)  # noqa: E731
    elif case == "big_endian":
        x = base.astype(">f4")
        call = lambda: client.infer_batch(x)  # noqa: E731
    elif case == "list":
        x = base
        call = lambda: client.infer_batch([[0.0, 1.0]])  # noqa: E731
    elif case == "named":
        x = base
        call = lambda: client.infer_batch(INPUT0=x)  # noqa: E731
    elif case == "parameters":
        x = base
        kwargs = {"parameters": {"p": 1}}
        call = lambda: client.infer_batch(x, **kwargs)  # noqa: E731
    elif case == "headers":
        x = base
        call = lambda: client.infer_batch(x, headers={"x-test": "1"})  # noqa: E731
    else:  # five rows to a model of max_batch_size 2: split into three requests
        x = np.arange(10, dtype=np.float32).reshape(5, 2)
        call = lambda: client.infer_batch(x)  # noqa: E731
    if case == "list":
        with pytest.raises(TypeError, match="input 'INPUT0' must be a numpy array, got list"):
            call()  # the general path's answer
    else:
        out = call()["OUTPUT0"]
        np.testing.assert_array_equal(out, x)
        assert out.dtype == np.float32 and not (case == "big_endian" and out.dtype.byteorder == ">")
    assert lane.sent == 0


def test_bytes_and_bf16_are_handed_back(make_client):
    client = make_client("identity_bytes")
    words = np.array([[b"a", b"", b"\x00z"]], dtype=object)
    client.infer_batch(words)
    lane = client._fast
    out = client.infer_batch(words)["OUTPUT0"]
    assert out.tolist() == words.tolist()
    assert lane.sent == 0


def test_large_inputs_go_to_shared_memory(make_client):
    client = make_client("identity_fp32", shared_memory="auto")
    lane = _ready(client, np.zeros((1, 4), np.float32))
    x = np.arange(64 * 1024, dtype=np.float32)[None]  # 256 KiB, over the 128 KiB threshold
    for _ in range(2):  # the first one learns the output size over plain HTTP
        np.testing.assert_array_equal(client.infer_batch(x)["OUTPUT0"], x)
    assert lane.sent == 0
    assert client._shm_path._pool is not None  # the shared-memory path took it
    small = np.ones((1, 4), np.float32)
    np.testing.assert_array_equal(client.infer_batch(small)["OUTPUT0"], small)
    assert lane.sent == 1
    # Without shared memory, large requests are the lane's too.
    plain = make_client("identity_fp32", shared_memory=None)
    plain_lane = _ready(plain, small)
    np.testing.assert_array_equal(plain.infer_batch(x)["OUTPUT0"], x)
    assert plain_lane.sent == 1


def test_large_outputs_of_unknown_size_stay_in_the_lane(make_client, monkeypatch):
    """Small inputs whose outputs turn out large: under "auto" shared memory takes
    only outputs whose size the config fixes, so such a layout stays the lane's."""
    monkeypatch.setattr(tritonfast._shm.path, "AUTO_THRESHOLD_BYTES", 4096)
    client = make_client("tile4", shared_memory="auto")
    x = np.arange(512, dtype=np.float32)[None]  # 2 KiB in, 8 KiB out
    expected = np.tile(x, 4)
    np.testing.assert_array_equal(client.infer_batch(x)["OUTPUT0"], expected)  # general path
    lane = client._fast
    for _ in range(3):
        np.testing.assert_array_equal(client.infer_batch(x)["OUTPUT0"], expected)
    assert lane.sent == 3
    assert client._shm_path._pool is None
    # Other layouts stay the lane's.
    small = np.ones((1, 4), np.float32)
    np.testing.assert_array_equal(client.infer_batch(small)["OUTPUT0"], np.tile(small, 4))
    assert lane.sent == 4


def test_server_errors_and_ids_match_the_general_path(make_client):
    client = make_client("raises")
    x = np.ones((1, 2), np.float32)
    with pytest.raises(PyTritonClientInferenceServerError) as general:
        client.infer_batch(x)
    lane = client._fast
    assert lane is not None
    with pytest.raises(PyTritonClientInferenceServerError) as fast:
        client.infer_batch(x)
    assert lane.sent == 1
    assert RAISES_MESSAGE in fast.value.message
    assert fast.value.message == general.value.message
    assert type(fast.value.__cause__).__name__ == "_ServerError"

    # Ids count on through both paths: the server quotes them in validation errors.
    typed = make_client("identity_fp32")
    typed.infer_batch(x)  # id 0
    for request_id in (1, 2):
        with pytest.raises(PyTritonClientInferenceServerError, match=rf"\[request id: {request_id}\].*FP64"):
            typed.infer_batch(np.ones((1, 2), np.float64))
    with pytest.raises(PyTritonClientInferenceServerError, match=r"\[request id: 3\]"):
        typed.infer_batch(np.ones((1, 2), np.float64), parameters={})
    assert typed._fast.sent == 2


def test_timeout_fires_in_the_lane(make_client):
    client = make_client("slow", inference_timeout_s=0.5)
    client.infer_sample(np.array([0.0], np.float32))
    lane = client._fast
    started = time.monotonic()
    with pytest.raises(PyTritonClientTimeoutError, match="Timeout occurred during inference request"):
        client.infer_sample(np.array([2.0], np.float32))
    elapsed = time.monotonic() - started
    assert lane.sent == 1
    assert 0.45 <= elapsed <= 0.5 * 1.1 + 0.05


def test_threads_share_one_lane(make_client):
    client = make_client("identity_fp32", shared_memory=None)
    lane = _ready(client, np.zeros((1, 1), np.float32))
    per_thread = 40

    def work(k: int) -> None:
        for i in range(per_thread):
            x = np.full((1 + (i + k) % 3, 1 + k), k * 1000 + i, np.float32)
            np.testing.assert_array_equal(client.infer_batch(x)["OUTPUT0"], x)

    errors = run_in_threads(work, 8)
    assert not errors, errors[0]
    assert lane.sent == 8 * per_thread


def test_closed_client(make_client):
    client = make_client("identity_fp32")
    _ready(client, np.zeros((1, 2), np.float32))
    client.close()
    assert client._fast is None
    with pytest.raises(PyTritonClientClosedError):
        client.infer_batch(np.zeros((1, 2), np.float32))
    with pytest.raises(PyTritonClientClosedError):
        client.infer_sample(np.zeros(2, np.float32))


def test_lane_exists_from_the_start_with_a_given_config(make_client):
    first = make_client("identity_fp32")
    first.infer_batch(np.zeros((1, 2), np.float32))
    clone = ModelClient.from_existing_client(first)
    try:
        assert clone._fast is not None  # the cached config is trusted: no first request needed
        x = np.ones((1, 2), np.float32)
        np.testing.assert_array_equal(clone.infer_batch(x)["OUTPUT0"], x)
        assert clone._fast.sent == 1
    finally:
        clone.close()
