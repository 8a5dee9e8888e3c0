"""The clients the perf tool drives: tritonfast, and tritonclient.http for
``--compare tritonclient``, behind one small interface.

``make_call()`` returns the function one worker thread calls per request with
one of ``requests``. tritonfast's workers all share one ``ModelClient``
(thread-safe; the GIL is released during I/O); tritonclient's each get their
own ``InferenceServerClient``, as its documentation requires.

Client send / recv times. Both clients send and receive a request inside one
call that exposes no per-phase timestamps (tritonfast's is one C++ call with the
GIL released), so the tool cannot time the phases under load the way
perf_analyzer's C++ client library does. What it reports instead is measured
separately, once per run, on this machine: "send" is the CPU time to turn one
request's numpy inputs into wire bytes (tritonfast: its C++ request builder,
head and buffer list; tritonclient: ``set_data_from_numpy`` plus
``generate_request_body``), and "recv" the time to parse one response of the
same shape into numpy outputs (tritonfast: its C++ response parser fed the
whole response; tritonclient: ``parse_response_body`` plus ``as_numpy``). The
socket writes and reads are not in them: they land in "Network+Server
Send/Recv", with the wait for the server.
"""

from __future__ import annotations

import inspect
import json
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from tritonfast import _core
from tritonfast.client import ModelClient
from tritonfast.exceptions import PyTritonClientError
from tritonfast.perf.data import Payload
from tritonfast.perf.errors import PerfError
from tritonfast.perf.server import ACCESS_TOKEN_HEADER, ModelInfo
from tritonfast.utils import serialize_byte_tensor

# Bound on waiting for the model when a client starts (the server was just
# seen ready, so this only matters if it goes away in between).
INIT_TIMEOUT_S = 30.0
# Timing the send/recv estimates: each sample runs the step enough times to take
# at least SAMPLE_NS; the estimate is the fastest of SAMPLES samples.
SAMPLE_NS = 2_000_000
SAMPLES = 5
MAX_REPEATS = 4096

SHARED_MEMORY_CHOICES = ("none", "system", "cuda", "auto")


def _min_ns(step: Callable[[], Any]) -> int:
    """Time of one ``step()`` call, in ns (the fastest of SAMPLES samples)."""
    repeats = 1
    while True:
        start = time.perf_counter_ns()
        for _ in range(repeats):
            step()
        elapsed = time.perf_counter_ns() - start
        if elapsed >= SAMPLE_NS or repeats >= MAX_REPEATS:
            break
        repeats *= 2
    samples = [elapsed / repeats]
    for _ in range(SAMPLES - 1):
        start = time.perf_counter_ns()
        for _ in range(repeats):
            step()
        samples.append((time.perf_counter_ns() - start) / repeats)
    return int(min(samples))  # noise (other processes, frequency changes) only adds time


def synthetic_response(model: ModelInfo, outputs: Dict[str, np.ndarray]) -> Tuple[bytes, int]:
    """A Triton binary-tensor response body carrying ``outputs``, and its JSON header's length."""
    datatypes = {t.name: t.datatype for t in model.outputs}
    metadata, blobs = [], []
    for name, array in outputs.items():
        datatype = datatypes.get(name, "BYTES" if array.dtype == np.object_ else "FP32")
        if datatype == "BYTES":
            data = serialize_byte_tensor(array).item() if array.size else b""
        else:
            data = np.ascontiguousarray(array).tobytes()
        metadata.append({"name": name, "datatype": datatype, "shape": list(array.shape),
                         "parameters": {"binary_data_size": len(data)}})
        blobs.append(data)
    header = json.dumps({"model_name": model.name, "model_version": model.version or "1",
                         "outputs": metadata}, separators=(",", ":")).encode()
    return header + b"".join(blobs), len(header)


class TritonfastClient:
    """One shared ``tritonfast.ModelClient`` for every worker."""

    name = "tritonfast"

    def __init__(self, url: str, model: ModelInfo, payloads: List[Payload], shared_memory: str = "none",
                 timeout_s: float = 60.0, access_token: Optional[str] = None):
        kwargs: Dict[str, Any] = {}
        if access_token:
            kwargs["access_token"] = access_token  # sent as triton-access-token on every request
        if "shared_memory" in inspect.signature(ModelClient).parameters:
            kwargs["shared_memory"] = None if shared_memory == "none" else shared_memory
        elif shared_memory != "none":
            raise PerfError(f"--shared-memory {shared_memory} is not supported by this tritonfast build "
                            "(tritonfast.ModelClient has no shared_memory option); use --shared-memory none")
        self._model = model
        try:
            self._client = ModelClient(url, model.name, model.version, lazy_init=False,
                                       init_timeout_s=INIT_TIMEOUT_S, inference_timeout_s=timeout_s,
                                       split_large_batches=False, **kwargs)
        except (PyTritonClientError, ValueError) as e:
            raise PerfError(f"tritonfast.ModelClient for model {model.name!r} on {url}: {e}") from None
        infer = self._client.infer_batch if model.max_batch_size > 0 else self._client.infer_sample
        names = [t.name for t in model.inputs]
        if all(list(p) == names for p in payloads):
            # Positional inputs follow the config's order (PyTriton's rule): no keyword dict per call.
            self.requests: List[Any] = [tuple(p.values()) for p in payloads]
            self._call: Callable[[Any], Any] = lambda args: infer(*args)
        else:  # an optional input left out: name them
            self.requests = list(payloads)
            self._call = lambda named: infer(**named)
        self._payloads = payloads

    def make_call(self) -> Callable[[Any], Any]:
        return self._call

    def estimate_send_recv_ns(self, outputs: Dict[str, np.ndarray]) -> Tuple[int, int]:
        target = _core.model_target(self._model.name, self._model.version or "", "/infer")
        inputs = list(self._payloads[0].items())
        authority = "localhost:8000"  # the builder copies it into the head; its length hardly matters

        def send() -> None:
            _core.build_infer_request(target, authority, [], "0", inputs, None, None)

        body, header_length = synthetic_response(self._model, outputs)
        raw = (b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
               b"Inference-Header-Content-Length: %d\r\nContent-Length: %d\r\n\r\n" % (header_length, len(body))
               + body)

        def recv() -> None:
            parser = _core.ResponseParser()
            view = memoryview(raw)
            pos = 0
            while not parser.done and pos < len(raw):
                window = parser.body_window()
                if window is not None:
                    n = min(len(window), len(raw) - pos)
                    window[:n] = view[pos:pos + n]
                    parser.commit(n)
                else:
                    n = parser.feed(view[pos:])
                    if n == 0:
                        break
                pos += n
            parser.infer_result()

        return _min_ns(send), _min_ns(recv)

    def close(self) -> None:
        self._client.close()


class TritonclientClient:
    """``tritonclient.http``: one ``InferenceServerClient`` per worker thread."""

    name = "tritonclient"

    def __init__(self, url: str, model: ModelInfo, payloads: List[Payload], timeout_s: float = 60.0,
                 access_token: Optional[str] = None):
        try:
            import tritonclient.http as httpclient
        except ImportError as e:
            raise PerfError(f"--compare tritonclient needs the tritonclient package "
                            f"(pip install 'tritonclient[http]'): {e}") from None
        from tritonfast._url import TritonUrl

        parsed = TritonUrl.from_url(url)
        self._http = httpclient
        self._authority = parsed.authority
        self._ssl = parsed.scheme == "https"
        self._timeout_s = timeout_s
        self._model = model
        datatypes = {t.name: t.datatype for t in model.inputs}
        self.requests = [[(name, datatypes[name], array) for name, array in p.items()] for p in payloads]
        self._output_names = [t.name for t in model.outputs]
        self._headers = {ACCESS_TOKEN_HEADER: access_token} if access_token else None
        self._clients: List[Any] = []

    def _new_client(self) -> Any:
        client = self._http.InferenceServerClient(self._authority, ssl=self._ssl,
                                                  connection_timeout=self._timeout_s,
                                                  network_timeout=self._timeout_s)
        self._clients.append(client)
        return client

    def _inputs(self, request: List[Tuple[str, str, np.ndarray]]) -> List[Any]:
        inputs = []
        for name, datatype, array in request:
            item = self._http.InferInput(name, list(array.shape), datatype)
            item.set_data_from_numpy(array, binary_data=True)
            inputs.append(item)
        return inputs

    def make_call(self) -> Callable[[Any], Any]:
        client = self._new_client()  # make_call runs on the worker thread that will use it
        http = self._http
        outputs = [http.InferRequestedOutput(name, binary_data=True) for name in self._output_names]
        model_name, version = self._model.name, self._model.version or ""
        names = self._output_names
        make_inputs = self._inputs
        headers = self._headers

        def call(request: List[Tuple[str, str, np.ndarray]]) -> Dict[str, np.ndarray]:
            result = client.infer(model_name, make_inputs(request), model_version=version, outputs=outputs,
                                  headers=headers)
            return {name: result.as_numpy(name) for name in names}

        return call

    def estimate_send_recv_ns(self, outputs: Dict[str, np.ndarray]) -> Tuple[int, int]:
        http = self._http
        requested = [http.InferRequestedOutput(name, binary_data=True) for name in self._output_names]
        request = self.requests[0]

        def send() -> None:
            http.InferenceServerClient.generate_request_body(self._inputs(request), outputs=requested)

        body, header_length = synthetic_response(self._model, outputs)
        names = self._output_names

        def recv() -> None:
            result = http.InferenceServerClient.parse_response_body(body, header_length=header_length)
            for name in names:
                result.as_numpy(name)

        return _min_ns(send), _min_ns(recv)

    def close(self) -> None:
        for client in self._clients:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing after a benchmark must not hide its results
                pass
        self._clients = []
