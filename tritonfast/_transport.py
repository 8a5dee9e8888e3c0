"""Transports under the clients: one interface, two drivers.

* ``http://``: ``tritonfast._core.HttpClient``, the native C++ transport
  (thread-safe keep-alive pool, every wait with the GIL released).
* ``https://``: :class:`tritonfast._tls.TlsTransport`, Python's ``ssl`` sockets
  driving the same C++ request builder and response parser.

Both have ``request(method, target, headers, body, timeout_s, idempotent) ->
(status, body)``, ``infer(target, headers, request_id, inputs, outputs,
parameters, timeout_s) -> {name: ndarray}`` and ``close()``.
"""

from __future__ import annotations

import ssl
from typing import Optional

import numpy as np

from tritonfast import _core
from tritonfast._url import TritonUrl
from tritonfast.utils import _TRITON_TO_NP

# Numpy dtype of each Triton datatype, for the native output path.
_core.set_numpy_dtypes({name: np.dtype(t) for name, t in _TRITON_TO_NP.items() if name != "BYTES"})

# Idle keep-alive connections a client keeps per server.
MAX_IDLE_CONNECTIONS = 64
# Idle receive buffers a client keeps so large responses land in memory that is
# already paged in; freed by close().
MAX_IDLE_BUFFER_BYTES = 1 << 30


# Largest response body a client accepts (ModelClient's max_response_body_bytes).
DEFAULT_MAX_RESPONSE_BODY_BYTES = 16 << 30


def create_transport(url: TritonUrl, ssl_context: Optional[ssl.SSLContext] = None,
                     max_response_body_bytes: Optional[int] = None):
    max_body = DEFAULT_MAX_RESPONSE_BODY_BYTES if max_response_body_bytes is None else max_response_body_bytes
    if url.scheme == "https":
        from tritonfast._tls import TlsTransport

        return TlsTransport(url, ssl_context or ssl.create_default_context(), max_body)
    return _core.HttpClient(url.hostname, url.port, MAX_IDLE_CONNECTIONS, MAX_IDLE_BUFFER_BYTES, max_body)
