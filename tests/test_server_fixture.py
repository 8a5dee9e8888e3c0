"""The session Triton servers (tests/conftest.py) work as the client tests assume.

Everything here talks to the servers through the reference clients
(tritonclient.http, PyTriton's ModelClient), so a failure points at the test
environment, not at tritonfast; the one exception is the BYTES smoke test,
which sends tritonfast's serialization through tritonclient.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tritonclient.http as httpclient
from pytriton.client import ModelClient
from tritonclient.utils import InferenceServerException, triton_to_np_dtype
from tritonclient.utils import serialize_byte_tensor as tritonclient_serialize_byte_tensor

from tests.triton_server import IDENTITY_DATATYPES, MODELS, RAISES_MESSAGE, ModelSpec
from tritonfast.utils import serialize_byte_tensor

# BYTES elements that trip naive codecs: empty, embedded and leading NULs, non-UTF-8.
AWKWARD_BYTES = np.array([[b"", b"a\x00b", b"\x00"], [b"plain", b"\xff\xfe", b""]], dtype=np.object_)


@pytest.fixture(scope="module")
def http_client(triton_server) -> httpclient.InferenceServerClient:
    client = httpclient.InferenceServerClient(triton_server.http_url.removeprefix("http://"))
    yield client
    client.close()


def _fp32_input(name: str, data: np.ndarray) -> httpclient.InferInput:
    tensor = httpclient.InferInput(name, list(data.shape), "FP32")
    tensor.set_data_from_numpy(data)
    return tensor


def _sample(datatype: str) -> np.ndarray:
    """A (2, 3) batch of distinct values of ``datatype``."""
    if datatype == "BYTES":
        return AWKWARD_BYTES
    values = np.arange(6).reshape(2, 3)
    if datatype == "BOOL":
        values = values % 2
    return values.astype(triton_to_np_dtype(datatype))


# --- raw model repository ------------------------------------------------------


@pytest.mark.parametrize("spec", MODELS, ids=lambda spec: spec.name)
def test_model_ready_with_expected_config(http_client, spec: ModelSpec):
    assert http_client.is_model_ready(spec.name)
    config = http_client.get_model_config(spec.name)
    assert config["max_batch_size"] == spec.max_batch_size
    assert [t["name"] for t in config["input"]] == [t.name for t in spec.inputs]
    assert [t["name"] for t in config["output"]] == [t.name for t in spec.outputs]


@pytest.mark.parametrize("datatype", IDENTITY_DATATYPES)
def test_identity_round_trip(http_client, datatype: str):
    data = _sample(datatype)
    tensor = httpclient.InferInput("INPUT0", list(data.shape), datatype)
    tensor.set_data_from_numpy(data)
    output = http_client.infer(f"identity_{datatype.lower()}", [tensor]).as_numpy("OUTPUT0")
    assert output.dtype == data.dtype
    assert output.tolist() == data.tolist()


def test_add_sub(http_client):
    a = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=np.float32)
    b = np.full_like(a, 0.5)
    result = http_client.infer("add_sub", [_fp32_input("INPUT0", a), _fp32_input("INPUT1", b)])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


def test_raises_returns_model_error(http_client):
    data = np.zeros((1, 4), dtype=np.float32)
    with pytest.raises(InferenceServerException) as excinfo:
        http_client.infer("raises", [_fp32_input("INPUT0", data)])
    assert RAISES_MESSAGE in excinfo.value.message()


def test_echo_params_returns_parameters_and_forwarded_headers(http_client):
    result = http_client.infer(
        "echo_params",
        [_fp32_input("INPUT0", np.zeros(1, dtype=np.float32))],
        parameters={"tf_string": "value", "tf_int": 7, "tf_bool": True},
        headers={"x-tf-trace": "abc", "x-other": "not forwarded"},
    )
    params = json.loads(result.as_numpy("PARAMS")[0])
    assert params["tf_string"] == "value"
    assert params["tf_int"] == 7
    assert params["tf_bool"] is True
    assert params["x-tf-trace"] == "abc"
    assert "x-other" not in params


def test_tritonfast_serialized_bytes_round_trip(http_client):
    ours = serialize_byte_tensor(AWKWARD_BYTES)
    reference = tritonclient_serialize_byte_tensor(AWKWARD_BYTES)
    assert ours.shape == () and ours.dtype == np.object_
    assert ours.item() == reference.item()

    tensor = httpclient.InferInput("INPUT0", list(AWKWARD_BYTES.shape), "BYTES")
    tensor.set_data_from_numpy(AWKWARD_BYTES)  # sets the binary_data_size parameter
    # tritonclient has no public API for pre-serialized BYTES, so swap in our
    # buffer for the one it just built (same length, asserted above) to put
    # tritonfast's encoding, not tritonclient's, on the wire.
    tensor._raw_data = ours.item()
    output = http_client.infer("identity_bytes", [tensor]).as_numpy("OUTPUT0")
    assert output.tolist() == AWKWARD_BYTES.tolist()


# --- PyTriton reference server ---------------------------------------------------


def test_pytriton_add_sub_example(pytriton_server):
    a = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    b = np.array([[0.5, 0.5], [1.0, -1.0]], dtype=np.float32)
    with ModelClient(pytriton_server.http_url, "AddSub") as client:
        result = client.infer_batch(a, b)
    np.testing.assert_array_equal(result["add"], a + b)
    np.testing.assert_array_equal(result["sub"], a - b)


def test_pytriton_identity(pytriton_server):
    numbers = np.array([[1.5, -2.0, 3.25]], dtype=np.float64)
    blobs = np.array([[b"a\x00b"]], dtype=np.bytes_)
    with ModelClient(pytriton_server.http_url, "Identity") as client:
        result = client.infer_batch(INPUT_1=numbers, INPUT_2=blobs)
    np.testing.assert_array_equal(result["OUTPUT_1"], numbers)
    assert result["OUTPUT_2"].tolist() == blobs.tolist()


def test_pytriton_params_and_headers_example(pytriton_server):
    a = np.full((2, 1), 2.0, dtype=np.float32)
    b = np.ones((2, 1), dtype=np.float32)
    with ModelClient(pytriton_server.http_url, "ParamsAndHeaders") as client:
        result = client.infer_batch(a, b, parameters={"parameter_multiplier": 2}, headers={"header_divisor": 3})
    np.testing.assert_allclose(result["scaled_add"], (a + b) / 3)
    np.testing.assert_array_equal(result["scaled_sub"], (a - b) * 2)
