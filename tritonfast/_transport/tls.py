"""The ``https://`` transport: Python's ``ssl`` sockets driving the C++ request
builder and response parser (the same framing as the native ``http://`` path).

Copies: request tensors go to ``sendall`` as memoryviews over the caller's
arrays (ssl encrypts from them); Content-Length bodies are received with
``recv_into`` straight into the parser's body buffer, so outputs are views over
it as on the native path.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from typing import Any, Callable, List, Optional, Tuple

from tritonfast import _core, _fork
from tritonfast._transport.limits import MAX_IDLE_CONNECTIONS
from tritonfast._url import TritonUrl
from tritonfast.exceptions import PyTritonClientConnectionError, PyTritonClientTimeoutError, TlsError, _ServerError

# Size of the buffer the response head is received into.
HEAD_CHUNK_BYTES = 64 * 1024


class TlsTransport:
    def __init__(self, url: TritonUrl, context: ssl.SSLContext, max_response_body_bytes: int):
        self._url = url
        self._context = context
        self._max_body = max_response_body_bytes
        self._lock = threading.Lock()
        self._idle: List[ssl.SSLSocket] = []
        self._closed = False
        _fork.register(self)  # a forked child starts a pool of its own

    @property
    def authority(self) -> str:
        return self._url.authority

    def request(self, method: str, target: str, headers: Optional[List[Tuple[str, str]]] = None,
                body: Optional[bytes] = None, timeout_s: Optional[float] = None,
                idempotent: bool = True) -> Tuple[int, bytes]:
        head = _core.build_request(method, target, self.authority, headers, body)
        return self._exchange(head, [], timeout_s, idempotent, lambda parser: (parser.status, parser.body()))

    def infer(self, target: str, headers: List[Tuple[str, str]], request_id: str, inputs: Any,
              outputs: Any, parameters: Any, timeout_s: Optional[float]) -> dict:
        head, segments, prepared = _core.build_infer_request(
            target, self.authority, headers, request_id, inputs, outputs, parameters
        )
        # Checked against the request before the connection is pooled.
        return self._exchange(head, segments, timeout_s, False, lambda parser: parser.infer_result(prepared))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for sock in idle:
            sock.close()

    # ------------------------------------------------------------------ internals

    def _exchange(self, head: bytes, segments: list, timeout_s: Optional[float], idempotent: bool,
                  finish: Callable[[Any], Any]) -> Any:
        """``finish(parser)`` of the response; what it raises (a response that does not
        answer the request) closes the connection instead of pooling it."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        sock, reused = self._checkout(deadline)
        try:
            parser, reusable = self._send_and_receive(sock, head, segments, deadline)
        except PyTritonClientConnectionError:
            sock.close()
            if not (reused and idempotent):
                raise
            sock, _ = self._connect(deadline), False
            try:
                parser, reusable = self._send_and_receive(sock, head, segments, deadline)
            except BaseException:
                sock.close()
                raise
        except BaseException:
            sock.close()
            raise
        try:
            result = finish(parser)
        except _ServerError:
            # The server's error answer: the connection is as good as after a success.
            self._checkin(sock, reusable and parser.keep_alive)
            raise
        except BaseException:
            sock.close()
            raise
        self._checkin(sock, reusable and parser.keep_alive)
        return result

    def _send_and_receive(self, sock: ssl.SSLSocket, head: bytes, segments: list,
                          deadline: Optional[float]):
        where = self.authority
        parser = _core.ResponseParser(self._max_body)
        chunk = bytearray(HEAD_CHUNK_BYTES)
        reusable = True
        try:
            _settimeout(sock, deadline)
            sock.sendall(head)
            for segment in segments:
                _settimeout(sock, deadline)
                sock.sendall(segment)
            while not parser.done:
                _settimeout(sock, deadline)
                window = parser.body_window()
                if window is not None:
                    n = sock.recv_into(window)
                    if n == 0:
                        parser.finish()
                        break
                    parser.commit(n)
                    continue
                n = sock.recv_into(chunk)
                if n == 0:
                    parser.finish()
                    break
                if parser.feed(memoryview(chunk)[:n]) < n:
                    reusable = False  # bytes past the response: never reuse this connection
        except (socket.timeout, TimeoutError) as e:
            raise PyTritonClientTimeoutError(f"no response from {where} in time: {e}") from e
        except (ssl.SSLError, OSError) as e:
            raise PyTritonClientConnectionError(f"connection to {where} failed: {e}") from e
        return parser, reusable

    def _connect(self, deadline: Optional[float]) -> ssl.SSLSocket:
        try:
            raw = socket.create_connection((self._url.hostname, self._url.port),
                                           timeout=_remaining(deadline))
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return self._context.wrap_socket(raw, server_hostname=self._url.hostname)
        except (socket.timeout, TimeoutError) as e:
            raise PyTritonClientTimeoutError(f"connecting to {self.authority} timed out: {e}") from e
        except ssl.SSLError as e:
            raise TlsError(f"TLS handshake with {self.authority} failed: {e}") from e
        except OSError as e:
            raise PyTritonClientConnectionError(f"connection to {self.authority} failed: {e}") from e

    def _checkout(self, deadline: Optional[float]) -> Tuple[ssl.SSLSocket, bool]:
        while True:
            with self._lock:
                sock = self._idle.pop() if self._idle else None
            if sock is None:
                return self._connect(deadline), False
            try:
                reusable = _reusable(sock)
            except (OSError, ValueError):
                reusable = False
            if reusable:
                return sock, True
            sock.close()

    def _after_fork(self) -> None:
        """In a forked child (tritonfast._fork): the parent's connections and lock are
        not ours. The sockets are dropped unclosed (closing a TLS socket may write to it)."""
        self._lock = threading.Lock()
        self._idle = []

    def _checkin(self, sock: ssl.SSLSocket, keep: bool) -> None:
        with self._lock:
            if keep and not self._closed and len(self._idle) < MAX_IDLE_CONNECTIONS:
                self._idle.append(sock)
                return
        sock.close()


def _remaining(deadline: Optional[float]) -> Optional[float]:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _settimeout(sock: socket.socket, deadline: Optional[float]) -> None:
    remaining = _remaining(deadline)
    if remaining is not None and remaining <= 0:
        raise socket.timeout("deadline passed")
    sock.settimeout(remaining)


def _reusable(sock: ssl.SSLSocket) -> bool:
    """An idle keep-alive connection is reusable when nothing arrived on it (a
    close or unasked bytes would make it readable). poll(), not select(): select
    fails for descriptors past 1,023, which busy processes have."""
    if sock.pending():
        return False
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return not poller.poll(0)
