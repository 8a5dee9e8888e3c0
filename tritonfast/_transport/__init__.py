"""Transports under the clients: one interface, one driver per kind of connection.

* ``http://``: ``tritonfast._core.HttpClient``, the native C++ transport
  (thread-safe keep-alive pool, every wait with the GIL released).
* ``https://``: :class:`tritonfast._transport.tls.TlsTransport`, Python's ``ssl``
  sockets driving the same C++ request builder and response parser.
* asyncio (both schemes): :class:`tritonfast._transport.aio.AioTransport`, an
  ``asyncio.BufferedProtocol`` over the same builder and parser, whose
  ``request`` and ``infer`` are coroutines (``AsyncioModelClient``'s transport).

All have ``request(method, target, headers, body, timeout_s, idempotent) ->
(status, body)``, ``infer(target, headers, request_id, inputs, outputs,
parameters, timeout_s) -> {name: ndarray}`` (coroutines on the asyncio one) and
``close()``. The request
pipeline above them (``tritonfast._pipeline``) does no I/O; the front ends call
it around one transport call.

Modules: ``limits`` (pool and size limits), ``tls`` (the https driver), ``aio``
(the asyncio driver, imported by the asyncio client only: sync users never load
asyncio). The native driver is the C++ ``_core.HttpClient`` itself.
"""

from __future__ import annotations

import ssl
from typing import Any, Optional

import numpy as np

from tritonfast import _core
from tritonfast._transport.limits import (
    DEFAULT_MAX_RESPONSE_BODY_BYTES,
    MAX_IDLE_BUFFER_BYTES,
    MAX_IDLE_CONNECTIONS,
)
from tritonfast._transport.tls import TlsTransport
from tritonfast._url import TritonUrl
from tritonfast.utils import _TRITON_TO_NP

__all__ = [
    "DEFAULT_MAX_RESPONSE_BODY_BYTES",
    "MAX_IDLE_BUFFER_BYTES",
    "MAX_IDLE_CONNECTIONS",
    "TlsTransport",
    "create_transport",
    "is_native",
]

# Numpy dtype of each Triton datatype, for the native output path.
_core.set_numpy_dtypes({name: np.dtype(t) for name, t in _TRITON_TO_NP.items() if name != "BYTES"})


def create_transport(url: TritonUrl, ssl_context: Optional[ssl.SSLContext] = None,
                     max_response_body_bytes: Optional[int] = None) -> Any:
    """The transport for ``url``: native for ``http://``, the TLS driver for ``https://``."""
    max_body = DEFAULT_MAX_RESPONSE_BODY_BYTES if max_response_body_bytes is None else max_response_body_bytes
    if url.scheme == "https":
        return TlsTransport(url, ssl_context or ssl.create_default_context(), max_body)
    return _core.HttpClient(url.hostname, url.port, MAX_IDLE_CONNECTIONS, MAX_IDLE_BUFFER_BYTES, max_body)


def is_native(transport: Any) -> bool:
    """Whether ``transport`` is the C++ one (the fast lane drives it directly)."""
    return isinstance(transport, _core.HttpClient)
