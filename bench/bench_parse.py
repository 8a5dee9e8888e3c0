"""Request build and response parse without a server: tritonfast's ``_core``
against ``tritonclient.http`` and ``tritonclient.grpc``.

    python -m pytest bench/bench_parse.py --benchmark-only -p no:cacheprovider \\
        --benchmark-json=.benchmarks/parse.json
    python bench/report.py .benchmarks/parse.json

What each row does (the timer is wall time; no I/O, one thread):

* build, ``tritonfast``: ``_core.build_infer_request`` (numpy in, an HTTP head
  plus a list of buffers out; FP32 tensors are not copied, BYTES are
  serialized once);
* build, ``tritonclient``: ``tritonclient.http.InferInput`` +
  ``set_data_from_numpy`` + ``InferRequestedOutput`` +
  ``InferenceServerClient.generate_request_body`` (the JSON header and the
  tensors concatenated into one body; the HTTP head is geventhttpclient's
  business and not counted);
* build, ``tritonclient-grpc``: ``tritonclient.grpc.InferInput`` +
  ``set_data_from_numpy`` + the client's own ``_get_inference_request`` +
  ``SerializeToString`` (what gRPC puts on the wire);
* parse, ``tritonfast``: a ``_core.ResponseParser`` fed the HTTP head, the
  body copied into its ``body_window()`` as the transport's ``recv_into``
  would (so this row pays one memcpy of the body, and the page faults of a
  fresh buffer, that the tritonclient rows do not: their socket reads are
  outside the timing), then ``infer_result()`` (numpy views over the
  parser's buffer; BYTES decoded into an object array);
* parse, ``tritonclient``: ``InferResult.from_response_body`` on the *body*
  only (its HTTP head parsing is geventhttpclient's, not counted) + ``as_numpy``;
* parse, ``tritonclient-grpc``: ``ModelInferResponse.FromString`` +
  ``InferResult`` + ``as_numpy``.

Each implementation's result is checked once against the input before timing.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc._utils as grpc_utils
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2
from tritonclient.utils import serialize_byte_tensor

from tritonfast import _core

IMPLS = ("tritonfast", "tritonclient", "tritonclient-grpc")
INPUT, OUTPUT = "INPUT0", "OUTPUT0"
MODEL = "identity"
TARGET = f"/v2/models/{MODEL}/infer"
AUTHORITY = "127.0.0.1:8000"


def _payloads() -> dict[str, tuple[str, np.ndarray]]:
    bytes_16 = np.array([i.to_bytes(4, "little") * 4 for i in range(100_000)], dtype=object).reshape(1, -1)
    return {
        "1x16 FP32": ("FP32", np.arange(16, dtype=np.float32).reshape(1, 16)),
        "16 MiB FP32": ("FP32", np.arange(4 << 20, dtype=np.float32).reshape(1, -1)),
        "100,000 x 16 B BYTES": ("BYTES", bytes_16),
    }


PAYLOADS = _payloads()


def _raw(datatype: str, x: np.ndarray) -> bytes:
    if datatype != "BYTES":
        return x.tobytes()
    serialized = serialize_byte_tensor(x)  # tritonclient >= 2.3x: a 0-d object array holding one bytes
    return serialized.item() if serialized.dtype == object else serialized.tobytes()


def _http_response(datatype: str, x: np.ndarray) -> tuple[bytes, bytes, int]:
    """(full HTTP response, its body, JSON header length) as Triton sends a binary output."""
    raw = _raw(datatype, x)
    header = json.dumps({
        "model_name": MODEL, "model_version": "1",
        "outputs": [{"name": OUTPUT, "datatype": datatype, "shape": list(x.shape),
                     "parameters": {"binary_data_size": len(raw)}}],
    }, separators=(",", ":")).encode()  # fmt: skip
    body = header + raw
    head = (
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
        f"Inference-Header-Content-Length: {len(header)}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body, body, len(header)


def _grpc_response(datatype: str, x: np.ndarray) -> bytes:
    response = service_pb2.ModelInferResponse(model_name=MODEL, model_version="1")
    output = response.outputs.add()
    output.name, output.datatype = OUTPUT, datatype
    output.shape.extend(x.shape)
    response.raw_output_contents.append(_raw(datatype, x))
    return response.SerializeToString()


def _check(y: np.ndarray, x: np.ndarray) -> None:
    assert y.shape == x.shape and np.array_equal(y, x)


# --- request build ---------------------------------------------------------------


def _build_fn(impl: str, datatype: str, x: np.ndarray):
    if impl == "tritonfast":
        return lambda: _core.build_infer_request(TARGET, AUTHORITY, None, "", [(INPUT, x)], [OUTPUT], None)
    if impl == "tritonclient":
        def build_http():
            tensor = httpclient.InferInput(INPUT, list(x.shape), datatype)
            tensor.set_data_from_numpy(x)
            outputs = [httpclient.InferRequestedOutput(OUTPUT)]
            return httpclient.InferenceServerClient.generate_request_body([tensor], outputs=outputs)
        return build_http
    if impl == "tritonclient-grpc":
        def build_grpc():
            tensor = grpcclient.InferInput(INPUT, list(x.shape), datatype)
            tensor.set_data_from_numpy(x)
            outputs = [grpcclient.InferRequestedOutput(OUTPUT)]
            request = grpc_utils._get_inference_request(
                MODEL, [tensor], "", "", outputs, 0, False, False, 0, None, None
            )
            return request.SerializeToString()
        return build_grpc
    raise ValueError(impl)


def _request_bytes(impl: str, built) -> int:
    """Bytes the built request would put on the wire (a sanity check that nothing was skipped)."""
    if impl == "tritonfast":
        head, segments, _owner = built
        return len(head) + sum(memoryview(s).nbytes for s in segments)
    if impl == "tritonclient":
        return len(built[0])
    return len(built)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("payload", list(PAYLOADS))
def test_build(benchmark, payload, impl):
    datatype, x = PAYLOADS[payload]
    benchmark.group = f"build {payload}"
    benchmark.extra_info.update(kind="parse", impl=impl, step="build", payload=payload)
    fn = _build_fn(impl, datatype, x)
    assert _request_bytes(impl, fn()) >= len(_raw(datatype, x))
    benchmark(fn)


# --- response parse ----------------------------------------------------------------


def _parse_fn(impl: str, datatype: str, x: np.ndarray):
    if impl == "tritonfast":
        response, body, _ = _http_response(datatype, x)
        head = memoryview(response)[: len(response) - len(body)]
        body_view = memoryview(body)

        def parse_tritonfast():
            # As the transport drives it: the head through feed(), the body
            # received straight into body_window() (here a memcpy stands in for
            # recv_into, the one copy any client's socket read makes).
            parser = _core.ResponseParser()
            parser.feed(head)
            received = 0
            while not parser.done:
                window = parser.body_window()
                n = min(len(window), len(body) - received)
                window[:n] = body_view[received : received + n]
                parser.commit(n)
                received += n
            return parser.infer_result()[OUTPUT]
        return parse_tritonfast
    if impl == "tritonclient":
        _response, body, header_length = _http_response(datatype, x)
        return lambda: httpclient.InferResult.from_response_body(body, header_length=header_length).as_numpy(OUTPUT)
    if impl == "tritonclient-grpc":
        message = _grpc_response(datatype, x)
        return lambda: grpcclient.InferResult(service_pb2.ModelInferResponse.FromString(message)).as_numpy(OUTPUT)
    raise ValueError(impl)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("payload", list(PAYLOADS))
def test_parse(benchmark, payload, impl):
    datatype, x = PAYLOADS[payload]
    benchmark.group = f"parse {payload}"
    benchmark.extra_info.update(kind="parse", impl=impl, step="parse", payload=payload)
    fn = _parse_fn(impl, datatype, x)
    _check(fn(), x)
    benchmark(fn)
