"""Limits refused client-side, before anything is sent."""

import numpy as np
import pytest

from tritonfast import ModelClient
from tritonfast.exceptions import EncodeError
from tritonfast.model_config import TensorSpec, TritonModelConfig

CONFIG = TritonModelConfig(
    "identity_fp32",
    max_batch_size=16,
    inputs=[TensorSpec("INPUT0", (-1,), np.float32)],
    outputs=[TensorSpec("OUTPUT0", (-1,), np.float32)],
)


def test_body_of_2_gib_is_refused_before_sending(tmp_path, triton_server):
    # A sparse file mapped as the tensor: 2 GiB of address space, no memory used.
    big = np.memmap(tmp_path / "big.f32", dtype=np.float32, mode="w+", shape=(1, 2**29))
    # Over HTTP: through shared memory ("auto" with a local server) there is no body to limit.
    with ModelClient(triton_server.http_url, "identity_fp32", model_config=CONFIG,
                     ensure_model_is_ready=False, shared_memory=None) as client:
        with pytest.raises(EncodeError, match=r"request body of \d+ bytes reaches Triton's limit of 2147483647 bytes"):
            client.infer_batch(big)
        # The client is still usable afterwards.
        small = np.arange(4, dtype=np.float32).reshape(1, 4)
        np.testing.assert_array_equal(client.infer_batch(small)["OUTPUT0"], small)


@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "a\nb", "a\x00b"])
def test_header_injection_is_refused(triton_server, value):
    with ModelClient(triton_server.http_url, "identity_fp32", model_config=CONFIG,
                     ensure_model_is_ready=False) as client:
        with pytest.raises(EncodeError, match="x-tf-test"):
            client.infer_batch(np.ones((1, 2), np.float32), headers={"x-tf-test": value})


def test_nan_parameter_is_refused(triton_server):
    with ModelClient(triton_server.http_url, "identity_fp32", model_config=CONFIG,
                     ensure_model_is_ready=False) as client:
        transport = client._transport
        with pytest.raises(EncodeError, match="request parameter .p.: NaN cannot be written as JSON"):
            transport.infer(client._model.infer_target, [], "0", [("INPUT0", np.ones((1, 2), np.float32))],
                            None, {"p": float("nan")}, 5.0)
