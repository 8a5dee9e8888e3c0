"""Fault tests: the native transport and ``ModelClient`` against a raw-socket
server that misbehaves on purpose.

``FaultServer`` is a thread on 127.0.0.1 (port 0) that handles each accepted
connection with the next behaviour of its script (then with ``ok``): stall,
answer half a body and close, stall mid-body, answer garbage, lie about the
Content-Length, reset (SO_LINGER 0) mid-response, or close at once. After its
fault a behaviour keeps the socket open and silent, so that a client which
wrongly pooled the broken connection would hang on it (and time out) instead
of being rescued by a fresh one. The server counts connections and requests:
a POST /infer whose connection dies must be seen exactly once.

Every call runs under a hard timeout (``bounded``): the caller must never hang.
Timeouts must fire within ``timeout * 1.1 + 0.05`` s; closes and resets must
be reported at once, long before the deadline.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import threading
import time
from typing import Callable, List, NamedTuple, Optional, Tuple

import numpy as np
import pytest

from tritonfast import ModelClient, TritonModelConfig, _core
from tritonfast.exceptions import (
    ProtocolError,
    PyTritonClientConnectionError,
    PyTritonClientInferenceServerError,
    PyTritonClientTimeoutError,
    _ServerError,
)
from tritonfast.model_config import TensorSpec

# A fault server closes everything after this long, whatever the test does.
SERVER_LIFETIME_S = 20.0
# A call that has not returned after this long is a hang.
HARD_TIMEOUT_S = 5.0
# The deadline of calls that must fail on a stall.
STALL_TIMEOUT_S = 0.3
# The deadline of calls that must fail on a close or reset: they must not wait for it.
CLOSE_TIMEOUT_S = 3.0
CLOSE_REPORTED_WITHIN_S = 1.0
# Body bytes announced by the faulty answers.
BODY_BYTES = 4096
LYING_CONTENT_LENGTH = 10_000_000

MODEL_CONFIG = TritonModelConfig(
    model_name="m",
    max_batch_size=8,
    inputs=[TensorSpec("INPUT0", (1,), np.float32)],
    outputs=[TensorSpec("OUTPUT0", (1,), np.float32)],
)
INPUT = np.arange(4, dtype=np.float32).reshape(4, 1)


def within(timeout_s: float) -> float:
    return timeout_s * 1.1 + 0.05


# --------------------------------------------------------------------------- the fault server


class Request:
    def __init__(self, method: str, target: str, headers: dict, body: bytes):
        self.method, self.target, self.headers, self.body = method, target, headers, body

    def __repr__(self) -> str:
        return f"{self.method} {self.target}"


class FaultServer:
    """Raw HTTP/1.1 server on 127.0.0.1; connection i runs ``script[i]`` (then ``ok``)."""

    def __init__(self, script: List[Callable] = (), default: Optional[Callable] = None):
        self.script = list(script)
        self.default = default or ok
        self.connections = 0
        self.requests: List[Request] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._sockets: List[socket.socket] = []
        self._threads: List[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self.authority = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.authority}"
        self._deadline = time.monotonic() + SERVER_LIFETIME_S
        self._accepter = threading.Thread(target=self._accept_loop, name="fault-server", daemon=True)
        self._accepter.start()

    def _accept_loop(self) -> None:
        while not self.stopping.is_set() and time.monotonic() < self._deadline:
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(0.05)
            with self._lock:
                index = self.connections
                self.connections += 1
                self._sockets.append(conn)
                behaviour = self.script[index] if index < len(self.script) else self.default
                thread = threading.Thread(target=self._run, args=(behaviour, conn), daemon=True,
                                          name=f"fault-conn-{index}")
                self._threads.append(thread)
            thread.start()
        self.stopping.set()

    def _run(self, behaviour: Callable, conn: socket.socket) -> None:
        try:
            behaviour(self, Connection(self, conn))
        except OSError:
            pass  # the client went away, or stop() closed the socket
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def wait(self, seconds: float) -> bool:
        """Sleeps up to ``seconds``; False when the server is stopping."""
        return not self.stopping.wait(min(seconds, max(0.0, self._deadline - time.monotonic())))

    def linger(self) -> None:
        """Keeps the connection open and silent until the server stops."""
        while self.wait(0.05):
            pass

    def stop(self) -> None:
        self.stopping.set()
        self._accepter.join(2)
        self._listener.close()
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in threads:
            t.join(2)
        assert not any(t.is_alive() for t in threads), "a fault-server connection thread did not stop"

    def __enter__(self) -> "FaultServer":
        return self

    def __exit__(self, *_) -> None:
        self.stop()

    def seen(self, method: str = "POST", target: Optional[str] = None) -> int:
        return sum(1 for r in self.requests if r.method == method and (target is None or r.target == target))


class Connection:
    def __init__(self, server: FaultServer, sock: socket.socket):
        self.server, self.sock, self.pending = server, sock, b""

    def _recv(self) -> bytes:
        while not self.server.stopping.is_set():
            try:
                return self.sock.recv(65536)
            except socket.timeout:
                continue
        raise OSError("server stopping")

    def read_request(self) -> Optional[Request]:
        """One whole request (head and Content-Length body), recorded; None at end of stream."""
        while b"\r\n\r\n" not in self.pending:
            data = self._recv()
            if not data:
                return None
            self.pending += data
        head, self.pending = self.pending.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.pending) < length:
            data = self._recv()
            if not data:
                return None
            self.pending += data
        body, self.pending = self.pending[:length], self.pending[length:]
        request = Request(method, target, headers, body)
        with self.server._lock:
            self.server.requests.append(request)
        return request

    def send(self, data: bytes) -> None:
        self.sock.settimeout(2.0)
        try:
            self.sock.sendall(data)
        finally:
            self.sock.settimeout(0.05)

    def reset(self) -> None:
        """Closes with SO_LINGER 0: the peer gets a RST, not a FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


def answer(request: Request) -> bytes:
    """A well-behaved answer: /infer echoes INPUT0 as OUTPUT0, anything else is 200 {}."""
    if request.method == "POST" and request.target.endswith("/infer"):
        header_length = int(request.headers["inference-header-content-length"])
        header = json.loads(request.body[:header_length])
        (tensor,) = header["inputs"]
        data = request.body[header_length:]
        echo = {"id": header["id"]} if "id" in header else {}  # Triton echoes the request id
        out = json.dumps({**echo, "model_name": "m", "model_version": "1", "outputs": [
            {"name": "OUTPUT0", "datatype": tensor["datatype"], "shape": tensor["shape"],
             "parameters": {"binary_data_size": len(data)}}]}).encode()
        body = out + data
        head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                b"Inference-Header-Content-Length: %d\r\nContent-Length: %d\r\n\r\n" % (len(out), len(body)))
        return head + body
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


# --------------------------------------------------------------------------- behaviours


def ok(server: FaultServer, conn: Connection) -> None:
    while (request := conn.read_request()) is not None:
        conn.send(answer(request))


def stall(server: FaultServer, conn: Connection) -> None:
    """Reads the request, never answers."""
    conn.read_request()
    server.linger()


def stall_unread(server: FaultServer, conn: Connection) -> None:
    """Accepts, then neither reads nor answers."""
    server.linger()


def half_body_then_close(server: FaultServer, conn: Connection) -> None:
    conn.read_request()
    conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BODY_BYTES + b"x" * (BODY_BYTES // 2))
    conn.sock.close()


def stall_mid_body(server: FaultServer, conn: Connection) -> None:
    conn.read_request()
    conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BODY_BYTES + b"x" * (BODY_BYTES // 4))
    server.linger()


def garbage(server: FaultServer, conn: Connection) -> None:
    conn.read_request()
    conn.send(b"SSH-2.0-OpenSSH_9.6\r\n\x00\x01\x02 binary noise\r\n\r\n")
    server.linger()


def lying_content_length(server: FaultServer, conn: Connection) -> None:
    conn.read_request()
    conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % LYING_CONTENT_LENGTH + b"y" * 100)
    conn.sock.close()


def reset_mid_response(server: FaultServer, conn: Connection) -> None:
    conn.read_request()
    conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BODY_BYTES + b"z" * 1000)
    server.wait(0.05)  # let the client take what was sent: the RST then comes mid-body
    conn.reset()


def close_at_once(server: FaultServer, conn: Connection) -> None:
    conn.sock.close()


def ok_then_read_and_close(server: FaultServer, conn: Connection) -> None:
    """Answers one request (keep-alive), then reads the next one and closes without a word."""
    conn.send(answer(conn.read_request()))
    conn.read_request()
    conn.sock.close()


# The head of the faulty answers below.
HEAD_BYTES = len(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BODY_BYTES)


class Fault(NamedTuple):
    behaviour: Callable
    error: type  # the exact class the caller gets
    message: str  # a regular expression; {a} stands for the server's host:port
    stall: bool  # True: fails on the deadline; False: must fail at once


FAULTS = {
    "stall-after-accept": Fault(stall_unread, PyTritonClientTimeoutError,
                                r"no response from {a} within 0\.300 s", True),
    "stall-after-request": Fault(stall, PyTritonClientTimeoutError,
                                 r"no response from {a} within 0\.300 s", True),
    "half-body-close": Fault(half_body_then_close, PyTritonClientConnectionError,
                             rf"server closed the connection after {BODY_BYTES // 2} of {BODY_BYTES} body bytes"
                             r" \(from {a}\)", False),
    "stall-mid-body": Fault(stall_mid_body, PyTritonClientTimeoutError,
                            r"no complete response from {a} within 0\.300 s"
                            rf" \({HEAD_BYTES + BODY_BYTES // 4} bytes received\)", True),
    "garbage": Fault(garbage, ProtocolError,
                     r"malformed status line 'SSH-2\.0-OpenSSH_9\.6' \(from {a}\)", False),
    "lying-content-length": Fault(lying_content_length, PyTritonClientConnectionError,
                                  rf"server closed the connection after 100 of {LYING_CONTENT_LENGTH} body bytes"
                                  r" \(from {a}\)", False),
    "reset-mid-response": Fault(reset_mid_response, PyTritonClientConnectionError,
                                r"connection to {a} was reset by the server"
                                rf" after {HEAD_BYTES + 1000} response bytes", False),
    # Whether the client's request or the server's close comes first is a race:
    # EOF before any answer, a reset, or a send that fails are all right.
    "close-at-once": Fault(close_at_once, PyTritonClientConnectionError,
                           r"(server closed the connection before sending a response \(from {a}\)"
                           r"|connection to {a} was reset by the server"
                           r"|server closed the connection after \d+ of \d+ request bytes were sent to {a})",
                           False),
}


# --------------------------------------------------------------------------- callers


def bounded(fn: Callable, limit_s: float = HARD_TIMEOUT_S) -> Tuple[Optional[BaseException], object, float]:
    """Runs ``fn`` in a thread; fails the test if it has not returned after ``limit_s``.

    Returns (exception or None, result, seconds it took).
    """
    outcome: dict = {}

    def run() -> None:
        start = time.monotonic()
        try:
            outcome["result"] = fn()
        except BaseException as e:  # noqa: BLE001  (handed to the test)
            outcome["error"] = e
        outcome["elapsed"] = time.monotonic() - start

    thread = threading.Thread(target=run, daemon=True, name="bounded-call")
    thread.start()
    thread.join(limit_s)
    if thread.is_alive():
        pytest.fail(f"the call hung: still running after {limit_s} s")
    return outcome.get("error"), outcome.get("result"), outcome["elapsed"]


def core_infer(client, timeout_s: float):
    return client.infer("/v2/models/m/infer", [], "1", [("INPUT0", INPUT)], None, None, timeout_s)


def core_post(client, timeout_s: float):
    return client.request("POST", "/v2/repository/models/m/load", [], b"{}", timeout_s, False)


def core_get(client, timeout_s: float):
    return client.request("GET", "/v2/models/m/ready", [], None, timeout_s, True)


def model_infer(client, timeout_s: float):
    return client.infer_batch(INPUT0=INPUT)


def make_core(server: FaultServer, timeout_s: float):
    return _core.HttpClient("127.0.0.1", server.port)


def make_model_client(server: FaultServer, timeout_s: float):
    return ModelClient(server.url, "m", model_config=MODEL_CONFIG, ensure_model_is_ready=False,
                       inference_timeout_s=timeout_s)


# name: (client factory, call, (method, target) the server must see once)
DRIVERS = {
    "core-infer": (make_core, core_infer, ("POST", "/v2/models/m/infer")),
    "core-post": (make_core, core_post, ("POST", "/v2/repository/models/m/load")),
    "core-get-idempotent": (make_core, core_get, ("GET", "/v2/models/m/ready")),
    "model-client": (make_model_client, model_infer, ("POST", "/v2/models/m/infer")),
}


def check_works(call, client, timeout_s: float) -> None:
    error, result, _ = bounded(lambda: call(client, timeout_s))
    assert error is None, f"the client broke after the fault: {error!r}"
    if isinstance(result, dict):
        np.testing.assert_array_equal(result["OUTPUT0"], INPUT)
    else:
        assert result == (200, b"{}")


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("driver", list(DRIVERS))
@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault(fault: str, driver: str) -> None:
    behaviour, expected, pattern, is_stall = FAULTS[fault]
    make, call, (method, target) = DRIVERS[driver]
    timeout_s = STALL_TIMEOUT_S if is_stall else CLOSE_TIMEOUT_S
    with FaultServer([behaviour]) as server:
        client = make(server, timeout_s)
        try:
            error, _, elapsed = bounded(lambda: call(client, timeout_s))
            assert error is not None, "the faulty answer was accepted"
            assert type(error) is expected, repr(error)
            message = str(error)
            assert server.authority in message
            assert re.search(pattern.format(a=re.escape(server.authority)), message), message
            if driver == "model-client" and isinstance(error, PyTritonClientTimeoutError):
                assert f"Timeout: {timeout_s} s" in message and "(model m/<latest>)" in message
            if is_stall:
                assert timeout_s - 0.01 <= elapsed <= within(timeout_s), elapsed
            else:
                assert elapsed < CLOSE_REPORTED_WITHIN_S, elapsed
            # Not resent: the request reached the server at most once, over one connection.
            assert server.connections == 1
            if fault not in ("close-at-once", "stall-after-accept"):  # those never read it
                assert server.seen(method, target) == 1, server.requests
            assert len(server.requests) <= 1, server.requests  # no readiness requests either
            # The broken connection is not pooled: the next call gets a fresh,
            # well-behaved one (the faulty one stays open and silent).
            check_works(call, client, timeout_s)
            assert server.connections == 2
            check_works(call, client, timeout_s)
            assert server.connections == 2  # the good one is kept alive and reused
        finally:
            client.close()


@pytest.mark.parametrize("driver", ["core-infer", "core-post", "model-client"])
def test_request_on_a_reused_connection_that_dies_is_not_resent(driver: str) -> None:
    """The server reads the second request on a kept-alive connection, then closes:
    a non-idempotent request may have run, so it must not be sent again."""
    make, call, (method, target) = DRIVERS[driver]
    with FaultServer([ok_then_read_and_close]) as server:
        client = make(server, CLOSE_TIMEOUT_S)
        try:
            check_works(call, client, CLOSE_TIMEOUT_S)
            error, _, elapsed = bounded(lambda: call(client, CLOSE_TIMEOUT_S))
            assert type(error) is PyTritonClientConnectionError, repr(error)
            assert re.search(r"server closed the connection before sending a response \(from "
                             + re.escape(server.authority) + r"\)", str(error)), str(error)
            assert elapsed < CLOSE_REPORTED_WITHIN_S
            assert server.seen(method, target) == 2 and server.connections == 1, server.requests
            check_works(call, client, CLOSE_TIMEOUT_S)
            assert server.connections == 2
        finally:
            client.close()


def test_idempotent_request_on_a_dead_reused_connection_is_retried_once() -> None:
    """The contrast: a GET whose reused connection dies before any answer is retried
    once on a fresh connection (and succeeds there)."""
    with FaultServer([ok_then_read_and_close]) as server:
        client = _core.HttpClient("127.0.0.1", server.port)
        try:
            check_works(core_get, client, CLOSE_TIMEOUT_S)
            check_works(core_get, client, CLOSE_TIMEOUT_S)
            assert server.seen("GET") == 3 and server.connections == 2, server.requests
        finally:
            client.close()


def test_init_timeout_against_a_stalling_server() -> None:
    init_timeout_s = 1.0
    with FaultServer(default=stall) as server:
        client = ModelClient(server.url, "m", init_timeout_s=init_timeout_s, inference_timeout_s=0.3)
        try:
            error, _, elapsed = bounded(lambda: client.infer_batch(INPUT0=INPUT))
            assert type(error) is PyTritonClientTimeoutError, repr(error)
            assert server.url in str(error)
            assert init_timeout_s - 0.01 <= elapsed <= within(init_timeout_s), elapsed
            # Only readiness polls, each on a fresh connection: no inference was sent.
            assert server.seen("POST") == 0
            assert server.requests and all(r.method == "GET" for r in server.requests), server.requests
            assert server.connections == len(server.requests)
        finally:
            client.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_eager_init_against_a_refusing_port() -> None:
    init_timeout_s = 1.0
    url = f"http://127.0.0.1:{_free_port()}"
    error, _, elapsed = bounded(
        lambda: ModelClient(url, "m", lazy_init=False, init_timeout_s=init_timeout_s, inference_timeout_s=0.3))
    assert type(error) is PyTritonClientTimeoutError, repr(error)
    assert url in str(error)
    assert init_timeout_s - 0.01 <= elapsed <= within(init_timeout_s), elapsed


def test_refused_connection_is_a_connection_error() -> None:
    port = _free_port()
    client = _core.HttpClient("127.0.0.1", port)
    try:
        error, _, elapsed = bounded(lambda: core_infer(client, CLOSE_TIMEOUT_S))
        assert type(error) is PyTritonClientConnectionError, repr(error)
        assert f"connection to 127.0.0.1:{port} refused" in str(error)
        assert elapsed < CLOSE_REPORTED_WITHIN_S
    finally:
        client.close()


def binary_502(server: FaultServer, conn: Connection) -> None:
    conn.read_request()
    conn.send(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 4\r\n\r\n\xff\xfe\x00\x01")
    server.linger()


@pytest.mark.parametrize(("driver", "expected"), [("core-infer", _ServerError),
                                                  ("model-client", PyTritonClientInferenceServerError)])
def test_error_answer_with_binary_body(driver: str, expected: type) -> None:
    """A proxy's error page that is neither JSON nor UTF-8 is still the server's error."""
    make, call, _ = DRIVERS[driver]
    with FaultServer([binary_502]) as server:
        client = make(server, CLOSE_TIMEOUT_S)
        try:
            error, _, _ = bounded(lambda: call(client, CLOSE_TIMEOUT_S))
            if error is not None and not isinstance(error, expected):
                raise error
            assert type(error) is expected, repr(error)
        finally:
            client.close()
