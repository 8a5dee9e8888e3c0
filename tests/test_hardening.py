"""Hardening: memory safety under concurrent mutation, fork safety, and every
response checked against the request it answers (issue 9's items, each with a
test that failed before its fix).

Responses a real Triton never sends come from ``tests.test_faults.FaultServer``
(a raw-socket server) answering with crafted bodies; everything else runs
against the session's real server.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import pytest

import tritonfast._shm.path
from tritonfast import FuturesModelClient, ModelClient, _core, utils
from tritonfast._workers import ForkedError
from tritonfast.exceptions import (
    EncodeError,
    ProtocolError,
    PyTritonClientInferenceServerError,
    PyTritonClientInvalidUrlError,
    _ServerError,
)
from tests.clients import closing_clients
from tests.test_client import tls_ca, tls_relay, trusting_context  # noqa: F401 - fixtures
from tests.test_faults import MODEL_CONFIG, FaultServer, answer

REPO = Path(__file__).resolve().parent.parent
# A forked child that has not reported after this long is hung.
CHILD_TIMEOUT_S = 60.0


@pytest.fixture
def url(triton_server) -> str:
    return triton_server.http_url


@pytest.fixture
def make_client(url) -> Iterator[Callable[..., ModelClient]]:
    yield from closing_clients(ModelClient, url, init_timeout_s=30.0, inference_timeout_s=30.0)


# =============================================================================
# 1. BYTES tensors rewritten by another thread while they are serialized
# =============================================================================

ELEMENTS = 100_000  # 6.4 MB of 'S64': the write runs long enough without the GIL


class _Rewriter:
    """A thread that rewrites every element of ``array`` between a short and a
    long value for as long as it runs (the GIL moves to it while C++ writes)."""

    def __init__(self, array: np.ndarray, short: Any, long: Any):
        self.array, self.short, self.long = array, short, long
        self.stop = threading.Event()
        self.rounds = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            self.array[...] = self.long
            self.array[...] = self.short
            self.rounds += 1

    def __enter__(self) -> "_Rewriter":
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.stop.set()
        self.thread.join(10)


def _check_wire(wire: bytes) -> None:
    # A valid wire form of ELEMENTS elements (their bytes may mix both values).
    assert len(_core.deserialize_bytes(wire)) == ELEMENTS


@pytest.mark.parametrize("kind", ["S", "U"])
def test_bytes_serialization_stays_in_bounds_while_another_thread_rewrites_the_array(kind):
    array = np.array(["a"] * ELEMENTS, dtype=f"{kind}64")
    long = "x" * 64 if kind == "S" else "é" * 64  # UTF-8: 128 bytes, 64 code points
    changed = 0
    with _Rewriter(array, "a", long) as rewriter:
        for _ in range(30):
            try:
                _check_wire(utils.serialize_byte_tensor(array).item())
                buffer = bytearray(ELEMENTS * (4 + 128))
                n = _core.serialize_bytes_into(array, buffer, 0)
                _check_wire(bytes(buffer[:n]))
            except EncodeError as e:  # 'U': an element whose UTF-8 length changed mid-write
                assert "changed while the tensor was being serialized" in str(e)
                changed += 1
    assert rewriter.rounds > 0
    if kind == "S":
        assert changed == 0  # 'S' bytes are copied at their measured length: never an error


def test_bytes_into_shared_memory_stays_in_bounds_while_another_thread_rewrites_the_array():
    array = np.array(["a"] * ELEMENTS, dtype="U64")
    region = _core.SystemRegion.create(f"/tritonfast_test_race_{os.getpid()}", ELEMENTS * 8 + 64, True)
    try:
        # Sized for the short elements: a write that followed the long ones would
        # run past the region (and did, before the fix).
        with _Rewriter(array, "a", "é" * 64):
            for _ in range(30):
                try:
                    region.write_bytes(0, array)
                except (EncodeError, PyTritonClientInferenceServerError, Exception) as e:
                    assert "changed while" in str(e) or "region" in str(e), e
    finally:
        region.unlink()


def test_bytes_inference_stays_in_bounds_while_another_thread_rewrites_the_input(make_client):
    client = make_client("identity_bytes", shared_memory=None)
    array = np.array([b"a"] * ELEMENTS, dtype="S64")[None]
    with _Rewriter(array, b"a", b"x" * 64):
        for _ in range(5):
            out = client.infer_batch(array)["OUTPUT0"]
            assert out.shape == array.shape


# =============================================================================
# 3. / 5. fork: no shared connections, no inherited threads, locks or regions
# =============================================================================


def _in_child(work: Callable[[], None]) -> int:
    """Forks; the child runs ``work`` and exits 0 (1 on an exception, printed).
    Returns the child's pid."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            work()
        except BaseException:  # noqa: BLE001 - reported through the exit status
            import traceback

            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)
    return pid


def _wait_child(pid: int, timeout_s: float = CHILD_TIMEOUT_S) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"forked child {pid} hung for {timeout_s} s")


def _echo_loop(client: ModelClient, base: float, count: int, general: bool) -> None:
    headers = {"x-tf-path": "general"} if general else None
    for k in range(count):
        x = np.full((1, 16), base + k, np.float32)
        out = client.infer_batch(x, headers=headers)["OUTPUT0"]
        assert np.array_equal(out, x), f"request {base + k} got the answer to {out[0, 0]}"


@pytest.mark.parametrize("general", [False, True], ids=["fast-lane", "general-path"])
def test_parent_and_forked_child_never_read_each_others_responses(make_client, general):
    client = make_client("identity_fp32", shared_memory=None)
    # Warm: connections pooled in the parent, some with a thread holding them.
    errors: List[BaseException] = []
    _echo_loop(client, 0, 20, general)
    busy = threading.Thread(target=lambda: _run_into(errors, _echo_loop, client, 10_000, 400, general))
    busy.start()
    pid = _in_child(lambda: _echo_loop(client, 100_000, 300, general))
    _echo_loop(client, 200_000, 300, general)
    busy.join(60)
    assert _wait_child(pid) == 0, "the forked child got wrong answers (see its traceback above)"
    assert not errors, errors


def _run_into(errors: List[BaseException], fn: Callable[..., None], *args: Any) -> None:
    try:
        fn(*args)
    except BaseException as e:  # noqa: BLE001 - checked by the test
        errors.append(e)


_POOL_CLIENT: Optional[ModelClient] = None


def _pool_task(k: int) -> int:
    """One task of a fork pool: the number of wrong answers (0 expected)."""
    wrong = 0
    for j in range(5):
        x = np.full((2, 8), k * 10 + j, np.float32)
        out = _POOL_CLIENT.infer_batch(x)["OUTPUT0"]
        wrong += int(not np.array_equal(out, x))
    return wrong


def test_multiprocessing_fork_pool_gets_every_answer_right(make_client):
    global _POOL_CLIENT
    _POOL_CLIENT = make_client("identity_fp32", shared_memory=None)
    _POOL_CLIENT.infer_batch(np.zeros((2, 8), np.float32))  # warm: a pooled connection to inherit
    try:
        with multiprocessing.get_context("fork").Pool(4) as pool:
            wrong = pool.map(_pool_task, range(200), chunksize=5)
    finally:
        _POOL_CLIENT = None
    assert sum(wrong) == 0, f"{sum(wrong)} of 1000 answers were another request's"


def test_forked_child_splits_a_batch_and_finishes(make_client):
    client = make_client("batch2", shared_memory=None)
    x = np.arange(14, dtype=np.float32).reshape(7, 2)
    np.testing.assert_array_equal(client.infer_batch(x)["OUTPUT0"], x)  # the chunk pool's threads exist

    def child() -> None:
        np.testing.assert_array_equal(client.infer_batch(x + 1)["OUTPUT0"], x + 1)

    assert _wait_child(_in_child(child), timeout_s=30) == 0
    np.testing.assert_array_equal(client.infer_batch(x)["OUTPUT0"], x)


def test_forked_child_fails_inherited_futures_and_serves_new_ones(url):
    with FuturesModelClient(url, "slow", inference_timeout_s=30.0) as client:
        inherited = [client.infer_sample(np.array([0.5], np.float32)) for _ in range(4)]

        def child() -> None:
            for future in inherited:
                with pytest.raises(ForkedError, match="in flight in the parent"):
                    future.result(timeout=5)
            fresh = client.infer_sample(np.array([0.01], np.float32))
            np.testing.assert_array_equal(fresh.result(timeout=20)["OUTPUT0"], np.array([0.01], np.float32))

        pid = _in_child(child)
        for future in inherited:  # the parent's own results are untouched
            np.testing.assert_array_equal(future.result(timeout=30)["OUTPUT0"], [0.5])
        assert _wait_child(pid) == 0


def test_forked_child_leaves_the_parents_shared_memory_regions_alone(make_client, triton_server):
    client = make_client("identity_fp32", shared_memory="system")
    x = np.arange(1024, dtype=np.float32)[None]
    np.testing.assert_array_equal(client.infer_batch(x)["OUTPUT0"], x)
    parents = client._shm_path.region_names
    assert parents

    def child() -> None:
        np.testing.assert_array_equal(client.infer_batch(x + 1)["OUTPUT0"], x + 1)
        assert not set(client._shm_path.region_names) & set(parents)  # regions of its own
        client.close()  # unregisters and unlinks the child's regions only

    assert _wait_child(_in_child(child)) == 0
    assert client._shm_path.region_names == parents
    for name in parents:
        assert (Path("/dev/shm") / name).exists()
    np.testing.assert_array_equal(client.infer_batch(x + 2)["OUTPUT0"], x + 2)


# =============================================================================
# 4., 6.-12. Responses checked against their request (crafted by a raw server)
# =============================================================================


def _respond(header: dict, binary: bytes = b"", status: bytes = b"200 OK") -> bytes:
    out = json.dumps(header).encode()
    body = out + binary
    return (b"HTTP/1.1 " + status + b"\r\nContent-Type: application/octet-stream\r\n"
            b"Inference-Header-Content-Length: %d\r\nContent-Length: %d\r\n\r\n" % (len(out), len(body))) + body


def crafted(make: Callable[[dict, bytes], bytes]) -> Callable:
    """A FaultServer behaviour answering each /infer with ``make(request header, tensor bytes)``."""

    def behaviour(server: FaultServer, conn: Any) -> None:
        while (request := conn.read_request()) is not None:
            if request.method == "POST" and request.target.endswith("/infer"):
                length = int(request.headers["inference-header-content-length"])
                conn.send(make(json.loads(request.body[:length]), request.body[length:]))
            else:
                conn.send(answer(request))

    return behaviour


def _echo_header(header: dict, data: bytes, **changes: Any) -> dict:
    (tensor,) = header["inputs"]
    out = {"name": "OUTPUT0", "datatype": tensor["datatype"], "shape": tensor["shape"],
           "parameters": {"binary_data_size": len(data)}}
    response = {"id": header.get("id"), "model_name": "m", "model_version": "1", "outputs": [out]}
    response.update(changes)
    return response


@pytest.fixture
def fake() -> Iterator[Callable[[Callable[[dict, bytes], bytes]], ModelClient]]:
    servers: List[FaultServer] = []
    clients: List[ModelClient] = []

    def make(respond: Callable[[dict, bytes], bytes]) -> ModelClient:
        server = FaultServer(default=crafted(respond))
        servers.append(server)
        client = ModelClient(server.url, "m", model_config=MODEL_CONFIG, ensure_model_is_ready=False,
                             shared_memory=None, inference_timeout_s=5.0)
        client.server = server  # type: ignore[attr-defined]
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
    for server in servers:
        server.stop()


INPUT = np.arange(4, dtype=np.float32).reshape(4, 1)
PATHS = [None, {"x-tf-path": "general"}]  # the fast lane, then the general path
PATH_IDS = ["fast-lane", "general-path"]


@pytest.mark.parametrize("headers", PATHS, ids=PATH_IDS)
def test_response_with_another_id_is_refused_and_its_connection_closed(fake, headers):
    client = fake(lambda header, data: _respond(_echo_header(header, data, id="999"), data))
    for attempt in range(2):
        with pytest.raises(ProtocolError, match=r"response id '999' does not match the request id '\d+'"):
            client.infer_batch(INPUT, headers=headers)
    assert client.server.connections == 2  # the out-of-step connection was not reused


@pytest.mark.parametrize("headers", PATHS, ids=PATH_IDS)
def test_response_without_the_request_id_is_refused(fake, headers):
    def respond(header: dict, data: bytes) -> bytes:
        response = _echo_header(header, data)
        del response["id"]
        return _respond(response, data)

    with pytest.raises(ProtocolError, match=r"response carries no id, but it should answer request id"):
        fake(respond).infer_batch(INPUT, headers=headers)


@pytest.mark.parametrize("headers", PATHS, ids=PATH_IDS)
def test_output_without_data_is_refused_unless_asked_for_in_shared_memory(fake, headers):
    def respond(header: dict, data: bytes) -> bytes:
        response = _echo_header(header, data)
        del response["outputs"][0]["parameters"]
        return _respond(response)

    with pytest.raises(ProtocolError, match="output 'OUTPUT0' has neither binary_data_size nor data"):
        fake(respond).infer_batch(INPUT, headers=headers)


@pytest.mark.parametrize("headers", PATHS, ids=PATH_IDS)
def test_duplicated_output_is_refused(fake, headers):
    def respond(header: dict, data: bytes) -> bytes:
        response = _echo_header(header, data)
        response["outputs"] *= 2
        return _respond(response, data + data)

    with pytest.raises(ProtocolError, match="output 'OUTPUT0' appears twice"):
        fake(respond).infer_batch(INPUT, headers=headers)


def _json_output(datatype: str, data: list, shape: Optional[list] = None) -> Callable[[dict, bytes], bytes]:
    def respond(header: dict, _: bytes) -> bytes:
        out = {"name": "OUTPUT0", "datatype": datatype, "shape": shape or [len(data)], "data": data}
        return _respond({"id": header.get("id"), "outputs": [out]})

    return respond


@pytest.mark.parametrize(("datatype", "data", "message"), [
    ("INT8", [300, -129], r"JSON element 0 \(300\) is out of the datatype's range"),
    ("INT8", [1, -129], r"JSON element 1 \(-129\) is out of the datatype's range"),
    ("UINT8", [-1], r"element 0 \(-1\) is out of the datatype's range"),
    ("INT32", [1.5], "element 0 is not an integer"),
    ("BOOL", [1], "element 0 is not true or false"),
    ("BYTES", [1], "element 0 is not a string"),
    ("BYTES", ["a", None], "element 1 is not a string"),
    ("FP16", [70000.0], r"element 0 \(70000\) is out of the datatype's range"),
    ("FP32", [1e39], "out of the datatype's range"),
    ("FP32", ["1"], "element 0 is not a number"),
    ("INT64", [[1, 2], {"a": 1}], "element 2 is an object"),
])
@pytest.mark.parametrize("headers", PATHS, ids=PATH_IDS)
def test_json_output_of_the_wrong_type_or_range_is_refused(fake, headers, datatype, data, message):
    with pytest.raises(ProtocolError, match=f"output 'OUTPUT0' \\({datatype}\\): .*{message}|output 'OUTPUT0'.*{message}"):
        fake(_json_output(datatype, data)).infer_batch(INPUT, headers=headers)


@pytest.mark.parametrize(("datatype", "data", "expected"), [
    ("BOOL", [True, False], np.array([True, False])),
    ("INT8", [-128, 127], np.array([-128, 127], np.int8)),
    ("UINT64", [0, 2**64 - 1], np.array([0, 2**64 - 1], np.uint64)),
    ("INT64", [-(2**63), 2**63 - 1], np.array([-(2**63), 2**63 - 1], np.int64)),
    ("FP16", [65504.0, -0.5], np.array([65504.0, -0.5], np.float16)),
    ("FP32", [1.5, float("nan")], np.array([1.5, np.nan], np.float32)),
    ("FP64", [1e300, -1e-300], np.array([1e300, -1e-300])),
    ("BYTES", ["a", "é"], np.array([b"a", "é".encode()], object)),
])
def test_json_outputs_decode_exactly(fake, datatype, data, expected):
    out = fake(_json_output(datatype, data)).infer_batch(INPUT)["OUTPUT0"]
    assert out.dtype == expected.dtype
    np.testing.assert_array_equal(out, expected)


def test_nested_json_data_is_read_in_row_major_order(fake):
    out = fake(_json_output("INT32", [[1, 2], [3, 4]], shape=[2, 2])).infer_batch(INPUT)["OUTPUT0"]
    np.testing.assert_array_equal(out, [[1, 2], [3, 4]])


@pytest.mark.parametrize("headers", PATHS, ids=PATH_IDS)
def test_error_answer_without_an_error_body_names_the_status(fake, headers):
    client = fake(lambda header, data: b"HTTP/1.1 204 No Content\r\n\r\n")
    with pytest.raises(PyTritonClientInferenceServerError, match="HTTP 204 No Content with an empty body"):
        client.infer_batch(INPUT, headers=headers)
    client = fake(lambda header, data: b"HTTP/1.1 503 Busy\r\nContent-Length: 9\r\n\r\n<b>no</b>")
    with pytest.raises(PyTritonClientInferenceServerError, match=r"HTTP 503 Busy .*\(9 bytes\): <b>no</b>"):
        client.infer_batch(INPUT, headers=headers)


def _fp32_output_of_shape(shape: list) -> Callable[[dict, bytes], bytes]:
    """Answers with one binary FP32 output of ``shape`` (one element, or none when a dimension is 0)."""

    def respond(header: dict, _: bytes) -> bytes:
        size = 0 if 0 in shape else 4
        out = {"name": "OUTPUT0", "datatype": "FP32", "shape": shape, "parameters": {"binary_data_size": size}}
        return _respond({"id": header.get("id"), "outputs": [out]}, b"\0" * size)

    return respond


@pytest.mark.parametrize(("shape", "what"), [
    ([0, 2**62], "too large for an array"),
    ([1] * 65, "65 dimensions"),
])
@pytest.mark.parametrize("headers", PATHS, ids=PATH_IDS)
def test_output_shape_no_array_can_have_names_the_output(fake, headers, shape, what):
    with pytest.raises(ProtocolError, match=f"output 'OUTPUT0'.*{what}"):
        fake(_fp32_output_of_shape(shape)).infer_batch(INPUT, headers=headers)


@pytest.mark.parametrize("headers", PATHS, ids=PATH_IDS)
def test_output_numpy_1_cannot_hold_names_the_output(fake, headers):
    client = fake(_fp32_output_of_shape([1] * 33))
    if np.__version__.startswith("1."):  # numpy 1 holds at most 32 dimensions
        with pytest.raises(ProtocolError, match=r"output 'OUTPUT0' \(FP32, shape \[1(, 1){32}\]\) cannot be converted"):
            client.infer_batch(INPUT, headers=headers)
    else:
        assert client.infer_batch(INPUT, headers=headers)["OUTPUT0"].ndim == 33


@pytest.mark.parametrize(("shape", "what"), [([], "no batch axis"), ([0, 1], "an empty batch axis")])
@pytest.mark.parametrize("headers", PATHS, ids=PATH_IDS)
def test_infer_sample_output_without_a_row_names_the_output(fake, headers, shape, what):
    client = fake(_fp32_output_of_shape(shape))
    with pytest.raises(ProtocolError, match=f"output 'OUTPUT0' has shape {re.escape(str(shape))}: .*{what}"):
        client.infer_sample(np.ones(1, np.float32), headers=headers)
    if headers is None:
        assert client._fast.sent == 1  # the fast lane's own check, not a hand-back


# =============================================================================
# 9. A hostile header costs a few times its size, not a DOM of ~100x
# =============================================================================


_MEMORY_PROBE = textwrap.dedent("""
    import json, resource, sys
    from tritonfast import _core
    from tritonfast.exceptions import ProtocolError
    where = sys.argv[1]
    count = 4_750_000  # "0," per element: a 9.5 MB header
    zeros = b"0," * (count - 1) + b"0"
    if where == "data":
        header = b'{"outputs":[{"name":"o","datatype":"INT8","shape":[%d],"data":[' % count + zeros + b']}]}'
    elif where == "parameters":
        header = b'{"parameters":{"p":[' + zeros + b']},"outputs":[]}'
    else:
        header = b'{"error":[' + zeros + b']}'
    body = header
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        if where == "error":
            raw = b"HTTP/1.1 400 Bad\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(body) + body
        else:
            raw = b"HTTP/1.1 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(body) + body
        parser = _core.ResponseParser()
        parser.feed(raw)
        del raw
        result = parser.infer_result()
        outcome = "ok %d" % result["o"].size
    except Exception as e:
        outcome = type(e).__name__ + ": " + str(e)[:200]
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"extra_kib": after - before, "size": len(body), "outcome": outcome}))
""")


@pytest.mark.parametrize("where", ["data", "parameters", "error"])
def test_hostile_header_costs_a_few_times_its_size(where):
    run = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, where], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    # Before: a DOM of ~88x the header (835 MiB for 9.5 MiB).
    assert report["extra_kib"] * 1024 < 4 * report["size"], report
    if where == "data":
        assert report["outcome"] == "ok 4750000"
    elif where == "parameters":
        assert "more than 65536 values" in report["outcome"], report
    else:
        assert "not a Triton error" in report["outcome"], report


# =============================================================================
# 13.-18.
# =============================================================================


def test_response_body_limit_is_a_client_option(make_client):
    client = make_client("identity_fp32", shared_memory=None, max_response_body_bytes=100)
    with pytest.raises(ProtocolError, match="raise it with the client option max_response_body_bytes"):
        client.infer_batch(np.ones((1, 64), np.float32))
    with pytest.raises(ValueError, match="max_response_body_bytes must be a positive int"):
        ModelClient("localhost", "m", max_response_body_bytes=0)


def test_unsupported_scheme_is_named_even_when_urllib_cannot_read_it():
    with pytest.raises(PyTritonClientInvalidUrlError, match="scheme 'invalid_scheme' is not supported"):
        ModelClient("invalid_scheme://localhost", "m")
    with pytest.raises(PyTritonClientInvalidUrlError, match="scheme 'ftp' is not supported"):
        ModelClient("ftp://localhost", "m")


@pytest.mark.parametrize("cls", [ModelClient, FuturesModelClient])
def test_clients_pickle_as_their_configuration(url, cls):
    client = cls(url, "identity_fp32", init_timeout_s=30.0, inference_timeout_s=12.5, shared_memory=None)
    x = np.ones((1, 4), np.float32)

    def infer(c: Any) -> np.ndarray:
        result = c.infer_batch(x)
        return (result.result(timeout=30) if cls is FuturesModelClient else result)["OUTPUT0"]

    try:
        np.testing.assert_array_equal(infer(client), x)  # connected, config cached
        clone = pickle.loads(pickle.dumps(client))
        try:
            inner = clone._client if cls is FuturesModelClient else clone
            assert (inner._url, inner._model_name, inner._inference_timeout_s) == (url, "identity_fp32", 12.5)
            assert inner._shared_memory is None
            np.testing.assert_array_equal(infer(clone), x)
        finally:
            clone.close()
    finally:
        client.close()


def test_client_with_an_ssl_context_says_why_it_cannot_be_pickled():
    import ssl

    with ModelClient("https://localhost:1", "m", ssl_context=ssl.create_default_context()) as client:
        with pytest.raises(TypeError, match="ssl_context cannot be pickled"):
            pickle.dumps(client)


def test_auto_shared_memory_never_fails_a_request_plain_http_completes(make_client):
    """`grow` answers LENGTH[0] floats whatever INPUT0's shape: an output size learned
    from an earlier request with the same input shapes does not hold for the next."""
    client = make_client("grow", shared_memory="auto")
    plain = make_client("grow", shared_memory=None)
    x = np.ones(tritonfast._shm.path.AUTO_THRESHOLD_BYTES // 2, np.float32)  # large: inputs in shm
    for length in (1_000, 1_000, 1_000_000, 10):
        n = np.array([length], np.int32)
        out = client.infer_sample(x, n)["OUTPUT0"]
        np.testing.assert_array_equal(out, plain.infer_sample(x, n)["OUTPUT0"])
        assert out.shape == (length,)
    assert client._shm_path._pool is not None  # the inputs did go through shared memory


def test_system_shared_memory_keeps_its_explicit_error_for_outputs_that_outgrow_their_region(make_client):
    client = make_client("grow", shared_memory="system")
    x = np.ones(16, np.float32)
    client.infer_sample(x, np.array([1_000], np.int32))  # learns 4,000 bytes
    client.infer_sample(x, np.array([1_000], np.int32))
    with pytest.raises(PyTritonClientInferenceServerError, match="needs at least 4000000 bytes"):
        client.infer_sample(x, np.array([1_000_000], np.int32))
    assert client.infer_sample(x, np.array([1_000_000], np.int32))["OUTPUT0"].shape == (1_000_000,)


def test_first_inference_prints_no_deprecation_warning():
    code = textwrap.dedent("""
        import numpy as np
        from tritonfast import ModelClient, TritonModelConfig
        from tritonfast.model_config import TensorSpec
        config = TritonModelConfig(model_name="m", max_batch_size=8,
                                   inputs=[TensorSpec("INPUT0", (1,), np.float32)],
                                   outputs=[TensorSpec("OUTPUT0", (1,), np.float32)])
        client = ModelClient("http://127.0.0.1:1", "m", model_config=config, ensure_model_is_ready=False)
        assert client._fast is not None  # the fast lane was set up: it asked numpy for its types
        client.close()
    """)
    run = subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "Warning" not in run.stderr, run.stderr


def test_https_connection_reuse_works_past_1024_open_descriptors(tls_relay, trusting_context):
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1300:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]  # the next sockets get fds past 1024
    try:
        with ModelClient(f"https://127.0.0.1:{tls_relay.port}", "identity_fp32", ssl_context=trusting_context,
                         shared_memory=None) as client:
            x = np.ones((1, 4), np.float32)
            for _ in range(3):  # the 2nd and 3rd reuse the pooled connection (select() failed there)
                np.testing.assert_array_equal(client.infer_batch(x)["OUTPUT0"], x)
            assert client._transport._idle and client._transport._idle[0].fileno() > 1024
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
