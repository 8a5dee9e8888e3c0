"""The asyncio transport: an ``asyncio.BufferedProtocol`` driving the C++ request
builder and response parser (the framing of the native and TLS paths).

* Requests go out as the head plus the tensor segments (memoryviews over the
  caller's arrays) through ``transport.writelines``: no concatenation where the
  loop's transport writes a list as it is (uvloop, asyncio's SSL transport,
  asyncio's socket transport from Python 3.12); where ``writelines`` would join
  the list (asyncio's socket transport before 3.12), large requests are written
  piece by piece instead.
* Responses land in the parser: ``get_buffer`` hands the transport the parser's
  body window when there is one, so Content-Length bodies are received into
  their final buffer (outputs are views over it, as on the native path).
* One keep-alive pool per transport with at most ``max_connections`` connections
  (``MAX_CONNECTIONS`` by default); requests beyond it wait their turn in FIFO
  order. ``https://`` goes through asyncio's SSL.
* A request's ``timeout_s`` is a deadline for all of it: waiting for a free
  connection, connecting (and the TLS handshake), sending, receiving.
* A connection is pooled again after a complete response that answers its
  request (a server's error answer included); a request that fails, times out
  or is cancelled closes the connection that carried it, and its slot is freed.
* Loop rule: the transport binds to the running loop on first use. Used from
  another loop while that one is open, it raises ``PyTritonClientValueError``;
  once the bound loop is closed, the next loop takes it over with a fresh pool.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import ssl
from typing import Any, Callable, Deque, List, Optional, Set, Tuple

from tritonfast import _core, _fork
from tritonfast._url import TritonUrl
from tritonfast.exceptions import (
    ProtocolError,
    PyTritonClientConnectionError,
    PyTritonClientTimeoutError,
    PyTritonClientValueError,
    TlsError,
    _ServerError,
)

# Connections one transport (one AsyncioModelClient) keeps open at most.
MAX_CONNECTIONS = 64
# Size of the buffer the response head (and small bodies) are received into.
HEAD_CHUNK_BYTES = 64 * 1024
# Above this many bytes, a request is written piece by piece where the loop's
# writelines would join the pieces (a copy of every tensor).
JOIN_LIMIT_BYTES = 64 * 1024
# How long close() waits for the closed connections to be gone (a TLS close
# sends close_notify first).
CLOSE_WAIT_S = 1.0

_JOINING_WRITELINES = asyncio.WriteTransport.writelines


class _Connection(asyncio.BufferedProtocol):
    """One HTTP/1.1 connection; one request at a time."""

    def __init__(self, pool: "AioTransport"):
        self.pool = pool
        self.authority = pool.authority
        self.transport: Any = None
        self.parser: Any = None
        self.waiter: Optional["asyncio.Future[Any]"] = None
        self.timer: Optional[asyncio.TimerHandle] = None
        self.timeout_s: Optional[float] = None
        # The request being sent: its segments point into the caller's arrays,
        # which must outlive every byte the transport still holds.
        self.keep: Any = None
        self.lost = False
        self.lost_future: Optional["asyncio.Future[None]"] = None
        self.reusable = True
        self.received = 0
        self._chunk = memoryview(bytearray(HEAD_CHUNK_BYTES))
        self._in_window = False

    # ------------------------------------------------------------------ protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.lost_future = asyncio.get_running_loop().create_future()
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except (OSError, AttributeError):
                pass
        self.pool._connections.add(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        parser = self.parser
        if parser is not None:
            try:
                window = parser.body_window()
            except Exception:  # noqa: BLE001 - reported by buffer_updated's feed
                window = None
            if window is not None and len(window) > 0:
                self._in_window = True
                return window  # type: ignore[no-any-return]
        self._in_window = False
        return self._chunk

    def buffer_updated(self, nbytes: int) -> None:
        parser = self.parser
        if parser is None or self.waiter is None:
            # Bytes nobody asked for (on an idle connection): never reuse it.
            self.reusable = False
            self.abort()
            return
        self.received += nbytes
        try:
            if self._in_window:
                parser.commit(nbytes)
            elif parser.feed(self._chunk[:nbytes]) < nbytes:
                self.reusable = False  # bytes past the response
        except (ProtocolError, PyTritonClientConnectionError) as e:
            self._fail(type(e)(f"{e} (from {self.authority})"))
            return
        except Exception as e:  # noqa: BLE001 - whatever the parser raised goes to the caller
            self._fail(e)
            return
        if parser.done:
            self._complete()

    def eof_received(self) -> Optional[bool]:
        parser = self.parser
        if parser is not None and self.waiter is not None:
            try:
                parser.finish()
            except (ProtocolError, PyTritonClientConnectionError) as e:
                self._fail(type(e)(f"{e} (from {self.authority})"))
                return None
            if parser.done:
                self.reusable = False
                self._complete()
            else:  # cannot happen: finish() completes the response or raises
                self._fail(PyTritonClientConnectionError(
                    f"server closed the connection before sending a response (from {self.authority})"))
        self.reusable = False
        return None  # the transport closes itself

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.lost = True
        self.reusable = False
        self.keep = None
        self.pool._connections.discard(self)
        if self.waiter is not None:
            if exc is None:
                error: Exception = PyTritonClientConnectionError(
                    f"server closed the connection before sending a response (from {self.authority})")
            elif isinstance(exc, (ConnectionResetError, BrokenPipeError)):
                error = PyTritonClientConnectionError(
                    f"connection to {self.authority} was reset by the server "
                    f"after {self.received} response bytes")
            else:
                error = PyTritonClientConnectionError(f"connection to {self.authority} failed: {exc}")
            self._fail(error)
        if self.lost_future is not None and not self.lost_future.done():
            self.lost_future.set_result(None)

    # ------------------------------------------------------------------ requests

    def usable(self) -> bool:
        return not self.lost and self.reusable and not self.transport.is_closing()

    def exchange(self, head: bytes, segments: List[Any], keep: Any, deadline: Optional[float],
                 timeout_s: Optional[float]) -> "asyncio.Future[Any]":
        """Sends a request; the future's result is the parser holding the response."""
        loop = self.pool._loop
        assert loop is not None
        waiter: "asyncio.Future[Any]" = loop.create_future()
        if self.lost:
            waiter.set_exception(PyTritonClientConnectionError(
                f"server closed the connection before sending a response (from {self.authority})"))
            return waiter
        self.parser = _core.ResponseParser(self.pool._max_body)
        self.received = 0
        self.keep = keep
        self.timeout_s = timeout_s
        self.waiter = waiter
        if deadline is not None:
            self.timer = loop.call_at(deadline, self._on_timeout)
        transport = self.transport
        if not segments:
            transport.write(head)
        elif (type(transport).writelines is _JOINING_WRITELINES
              and sum(len(s) for s in segments) > JOIN_LIMIT_BYTES):
            transport.write(head)
            for segment in segments:
                transport.write(segment)
        else:
            transport.writelines([head, *segments])
        return waiter

    def abort(self) -> None:
        """Closes at once, dropping unsent bytes (never reused with a response pending)."""
        self.reusable = False
        if self.transport is not None and not self.lost:
            self.transport.abort()

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None and not self.lost:
            self.transport.close()

    def _on_timeout(self) -> None:
        self.timer = None
        where, t = self.authority, self.timeout_s
        if self.received == 0:
            message = f"no response from {where} within {t:.3f} s"
        else:
            message = f"no complete response from {where} within {t:.3f} s ({self.received} bytes received)"
        self._fail(PyTritonClientTimeoutError(message))

    def _finish_request(self) -> Optional["asyncio.Future[Any]"]:
        waiter, self.waiter = self.waiter, None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        return waiter

    def _complete(self) -> None:
        parser = self.parser
        self.parser = None
        waiter = self._finish_request()
        if self.transport.get_write_buffer_size():
            self.reusable = False  # answered before the request was all sent: keep `keep` until closed
        else:
            self.keep = None
        if waiter is not None and not waiter.done():
            waiter.set_result(parser)

    def _fail(self, error: Exception) -> None:
        self.parser = None
        waiter = self._finish_request()
        self.abort()
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)


async def _carry(conn: _Connection, head: bytes, segments: List[Any], keep: Any, deadline: Optional[float],
                 timeout_s: Optional[float]) -> Any:
    """One request on ``conn``: the parser holding its response. Cancelled or failed,
    the connection is aborted: it never carries another request."""
    try:
        return await conn.exchange(head, segments, keep, deadline, timeout_s)
    except BaseException:
        conn.abort()
        raise


def _expire_waiter(waiter: "asyncio.Future[None]", error: Callable[[], Exception]) -> None:
    if not waiter.done():
        waiter.set_exception(error())


class AioTransport:
    """The asyncio transport of one client: ``await request(...)``, ``await infer(...)``."""

    def __init__(self, url: TritonUrl, ssl_context: Optional[ssl.SSLContext], max_response_body_bytes: int,
                 max_connections: int = MAX_CONNECTIONS):
        if isinstance(max_connections, bool) or not isinstance(max_connections, int) or max_connections < 1:
            raise PyTritonClientValueError(f"max_connections must be a positive int, got {max_connections!r}")
        self._url = url
        self._ssl = (ssl_context or ssl.create_default_context()) if url.scheme == "https" else None
        self._max_body = max_response_body_bytes
        self._max_connections = max_connections
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._closed = False
        self._reset_pool()
        _fork.register(self)  # a forked child starts a pool of its own

    def _reset_pool(self) -> None:
        self._idle: List[_Connection] = []
        self._connections: Set[_Connection] = set()
        self._free = self._max_connections
        self._waiters: Deque["asyncio.Future[None]"] = collections.deque()

    @property
    def authority(self) -> str:
        return self._url.authority

    @property
    def max_connections(self) -> int:
        return self._max_connections

    @property
    def open_connections(self) -> int:
        """Connections open now, in use or idle."""
        return len(self._connections)

    async def request(self, method: str, target: str, headers: Optional[List[Tuple[str, str]]] = None,
                      body: Optional[bytes] = None, timeout_s: Optional[float] = None,
                      idempotent: bool = True) -> Tuple[int, bytes]:
        head = _core.build_request(method, target, self.authority, headers, body)
        return await self._exchange(head, [], None, timeout_s, idempotent,  # type: ignore[no-any-return]
                                    lambda parser: (parser.status, parser.body()))

    async def infer(self, target: str, headers: List[Tuple[str, str]], request_id: str, inputs: Any,
                    outputs: Any, parameters: Any, timeout_s: Optional[float]) -> dict:
        head, segments, prepared = _core.build_infer_request(
            target, self.authority, headers, request_id, inputs, outputs, parameters
        )
        # Checked against the request before the connection is pooled.
        return await self._exchange(head, segments, prepared, timeout_s, False,  # type: ignore[no-any-return]
                                    lambda parser: parser.infer_result(prepared))

    def close(self) -> List["asyncio.Future[None]"]:
        """Closes the idle connections (in-flight ones close when their request ends);
        returns futures done once those are gone (awaitable on the bound loop)."""
        self._closed = True
        loop = self._loop
        if loop is None:
            return []
        try:
            running: Optional[asyncio.AbstractEventLoop] = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not loop:
            if loop.is_closed():
                self._reset_pool()  # the loop is gone and its connections with it
            else:
                loop.call_soon_threadsafe(self._close_idle)
            return []
        return self._close_idle()

    async def aclose(self) -> None:
        await self._wait_gone(self.close())

    async def detach(self) -> None:
        """Closes the idle connections and unbinds the transport from its loop (which
        must be the running one), so that any loop may use it next; stays open."""
        if self._loop is not None and self._loop is not asyncio.get_running_loop():
            self.bind()  # raises: not the bound loop
        futures = self._close_idle()
        await self._wait_gone(futures)
        if not self._connections:
            self._loop = None

    @staticmethod
    async def _wait_gone(futures: List["asyncio.Future[None]"]) -> None:
        waiting = [f for f in futures if not f.done()]
        if waiting:
            await asyncio.wait(waiting, timeout=CLOSE_WAIT_S)

    # ------------------------------------------------------------------ internals

    def _close_idle(self) -> List["asyncio.Future[None]"]:
        idle, self._idle = self._idle, []
        futures = []
        for conn in idle:
            conn.close()
            if conn.lost_future is not None:
                futures.append(conn.lost_future)
        return futures

    def bind(self) -> asyncio.AbstractEventLoop:
        """The running loop, which the transport is bound to from now on (see the loop rule)."""
        loop = asyncio.get_running_loop()
        bound = self._loop
        if bound is loop:
            return loop
        if bound is not None and not bound.is_closed():
            raise PyTritonClientValueError(
                f"this client's connections to {self.authority} belong to the event loop it was first used "
                f"on ({bound!r}), which is still open; it cannot be used from another loop ({loop!r}): "
                "create one client per event loop"
            )
        self._reset_pool()  # a closed loop's connections are gone with it
        self._loop = loop
        return loop

    async def _exchange(self, head: bytes, segments: List[Any], prepared: Any, timeout_s: Optional[float],
                        idempotent: bool, finish: Callable[[Any], Any]) -> Any:
        """``finish(parser)`` of the response; what it raises (a response that does not
        answer the request) closes the connection instead of pooling it."""
        loop = self._loop
        if loop is None or loop is not asyncio.get_running_loop():
            loop = self.bind()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        if self._free > 0:  # a free slot, nobody waiting for one (see _release)
            self._free -= 1
        else:
            await self._acquire(loop, deadline, timeout_s)
        keep = prepared if prepared is not None else segments
        try:
            conn = self._take_idle()
            reused = conn is not None
            if conn is None:
                conn = await self._connect(loop, deadline, timeout_s)
            try:
                parser = await _carry(conn, head, segments, keep, deadline, timeout_s)
            except PyTritonClientConnectionError:
                if not (reused and idempotent and conn.received == 0):
                    raise
                # A reused keep-alive connection the server had closed: once more on a fresh one.
                conn = await self._connect(loop, deadline, timeout_s)
                parser = await _carry(conn, head, segments, keep, deadline, timeout_s)
            reusable = conn.reusable and parser.keep_alive
            try:
                result = finish(parser)
            except _ServerError:
                # The server's error answer: the connection is as good as after a success.
                self._checkin(conn, reusable)
                raise
            except BaseException:
                conn.abort()
                raise
            self._checkin(conn, reusable)
            return result
        finally:
            self._release()

    async def _connect(self, loop: asyncio.AbstractEventLoop, deadline: Optional[float],
                       timeout_s: Optional[float]) -> _Connection:
        where = self.authority
        host, port = self._url.hostname, self._url.port
        connecting = loop.create_connection(
            lambda: _Connection(self), host, port, ssl=self._ssl,
            server_hostname=host if self._ssl is not None else None,
        )
        try:
            if deadline is None:
                _, conn = await connecting
            else:
                _, conn = await asyncio.wait_for(connecting, max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError as e:
            raise PyTritonClientTimeoutError(f"no response from {where} within {timeout_s:.3f} s "
                                             "(connecting)") from e
        except (ssl.SSLError, ssl.CertificateError) as e:
            raise TlsError(f"TLS handshake with {where} failed: {e}") from e
        except ConnectionRefusedError as e:
            raise PyTritonClientConnectionError(f"connection to {where} refused") from e
        except OSError as e:
            raise PyTritonClientConnectionError(f"connection to {where} failed: {e}") from e
        return conn

    def _take_idle(self) -> Optional[_Connection]:
        idle = self._idle
        while idle:
            conn = idle.pop()
            if conn.usable():
                return conn
            conn.abort()
        return None

    def _checkin(self, conn: _Connection, keep: bool) -> None:
        if keep and not self._closed and conn.usable():
            self._idle.append(conn)
        elif conn.keep is None:
            conn.close()
        else:
            conn.abort()  # unsent bytes of the request: dropped, not flushed

    async def _acquire(self, loop: asyncio.AbstractEventLoop, deadline: Optional[float],
                       timeout_s: Optional[float]) -> None:
        """Waits for a connection slot (none is free), FIFO behind the requests already waiting."""
        waiter: "asyncio.Future[None]" = loop.create_future()
        self._waiters.append(waiter)
        timer = None
        if deadline is not None:
            timer = loop.call_at(deadline, _expire_waiter, waiter, lambda: PyTritonClientTimeoutError(
                f"no connection to {self.authority} free within {timeout_s:.3f} s "
                f"({self._max_connections} connections in use)"))
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._release()  # the slot came, and so did the cancellation: pass it on
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def _release(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1

    def _after_fork(self) -> None:
        """In a forked child (tritonfast._fork): the parent's connections and loop are
        not ours. They are dropped unclosed (closing a TLS connection writes to it)."""
        self._loop = None
        self._reset_pool()

