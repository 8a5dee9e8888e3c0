"""The exceptions tritonfast raises, one tree with PyTriton's names at the top.

::

    Exception
    └── PyTritonClientError                      root of every tritonfast error
        ├── PyTritonClientValueError (ValueError) the caller passed a bad value
        │   ├── PyTritonClientInvalidUrlError     url cannot be parsed or is unsupported
        │   └── EncodeError                       a tensor cannot be encoded for the wire
        ├── DecodeError (ValueError)              bytes to decode are malformed
        │   └── ProtocolError                     the server's response breaks HTTP or Triton's protocol
        ├── PyTritonClientTimeoutError            server, model or inference deadline passed
        │   └── PyTritonClientConnectionError     connection refused, reset or closed early
        │       └── TlsError                      certificate or TLS handshake failure (never retried)
        ├── PyTritonClientModelUnavailableError   model or version unknown to the server
        ├── PyTritonClientClosedError             the client was closed
        ├── PyTritonClientModelDoesntSupportBatchingError
        ├── PyTritonClientInferenceServerError    the server answered with an error
        ├── PyTritonClientQueueFullError          FuturesModelClient queue is full
        └── SharedMemoryError                     a shared-memory region cannot be created,
                                                  mapped, accessed or registered

Names and messages follow ``pytriton.client.exceptions`` so code written for
PyTriton catches the same things. Two differences, both additive: the value
errors are also builtin ``ValueError``s, and the codec and shared-memory errors
are new classes (``tritonfast.utils.shared_memory.SharedMemoryException`` and
``tritonfast.utils.cuda_shared_memory.CudaSharedMemoryException`` are ``SharedMemoryError``, for
code ported from ``tritonclient.utils``).
``PyTritonClientConnectionError`` is a timeout error because PyTriton reports
every connection failure of its HTTP client as ``PyTritonClientTimeoutError``.
Programming mistakes (a list passed where an array is needed) stay ``TypeError``.

``InferenceServerException`` stands apart: tritonclient's error, with its
methods (``message()``, ``status()``, ``debug_details()``), for the
tritonclient-style API (``tritonfast.utils.InferenceServerException``).
"""

from __future__ import annotations

from typing import Any, Optional

__all__ = [
    "DecodeError",
    "EncodeError",
    "ProtocolError",
    "PyTritonClientClosedError",
    "PyTritonClientConnectionError",
    "PyTritonClientError",
    "PyTritonClientInferenceServerError",
    "PyTritonClientInvalidUrlError",
    "PyTritonClientModelDoesntSupportBatchingError",
    "PyTritonClientModelUnavailableError",
    "PyTritonClientQueueFullError",
    "PyTritonClientTimeoutError",
    "PyTritonClientValueError",
    "SharedMemoryError",
    "TlsError",
]


class PyTritonClientError(Exception):
    """Root of every error tritonfast raises; ``message`` holds its text."""

    def __init__(self, message: str):
        super().__init__(message)

    @property
    def message(self) -> str:
        return self.args[0]


class PyTritonClientValueError(PyTritonClientError, ValueError):
    """The caller passed a value the client cannot use."""


class PyTritonClientInvalidUrlError(PyTritonClientValueError):
    """The url is not a string, cannot be parsed, or names an unsupported scheme."""


class EncodeError(PyTritonClientValueError):
    """A tensor cannot be put on the wire; the message names the element at fault."""


class DecodeError(PyTritonClientError, ValueError):
    """Bytes to decode are malformed; the message names the element and byte at fault."""


class ProtocolError(DecodeError):
    """The server's response breaks HTTP/1.1 or Triton's protocol."""


class PyTritonClientTimeoutError(PyTritonClientError):
    """The server, the model or an inference did not answer in time."""


class PyTritonClientConnectionError(PyTritonClientTimeoutError):
    """The connection was refused, reset, or closed before the response was complete."""


class TlsError(PyTritonClientConnectionError):
    """The TLS handshake failed (e.g. the server's certificate is not trusted);
    waiting for the server does not help, so it is raised at once."""


class PyTritonClientModelUnavailableError(PyTritonClientError):
    """The server does not know the model or the requested version."""


class PyTritonClientClosedError(PyTritonClientError):
    """The client was used after ``close()``."""


class PyTritonClientModelDoesntSupportBatchingError(PyTritonClientError):
    """``infer_batch`` was called on a model with ``max_batch_size == 0``."""


class PyTritonClientInferenceServerError(PyTritonClientError):
    """The server answered the request with an error."""


class PyTritonClientQueueFullError(PyTritonClientError):
    """``FuturesModelClient`` was asked for more work than its queue holds."""


class SharedMemoryError(PyTritonClientError):
    """A system or CUDA shared-memory region cannot be created, opened, mapped or
    accessed (the message names the key or device, the sizes and the OS or CUDA
    error), an offset or size falls outside a region, or the server refused a
    shared-memory request; ``status`` is then its HTTP status, else None."""

    def __init__(self, message: str, status: Optional[int] = None):
        super().__init__(message)
        self.status = status

    def __reduce__(self):
        return type(self), (self.message, self.status)


class InferenceServerException(Exception):
    """tritonclient's error (``tritonfast.utils.InferenceServerException``): ``msg``
    with the server's ``status`` (a string, e.g. ``"400"``, shown as ``[400] msg``)
    and ``debug_details``, read through tritonclient's methods ``message()``,
    ``status()`` and ``debug_details()``. The tritonclient-style front ends raise it."""

    def __init__(self, msg: Optional[str], status: Optional[str] = None, debug_details: Any = None):
        super().__init__(msg)
        self._msg = msg
        self._status = status
        self._debug_details = debug_details

    def __str__(self) -> str:
        text = super().__str__() if self._msg is None else self._msg
        return text if self._status is None else f"[{self._status}] {text}"

    def __reduce__(self):
        return type(self), (self._msg, self._status, self._debug_details)

    def message(self) -> Optional[str]:
        """The error's text, without the status."""
        return self._msg

    def status(self) -> Optional[str]:
        """The server's status (HTTP status or gRPC code) as a string, or None."""
        return self._status

    def debug_details(self) -> Any:
        """Further details of the error, or None."""
        return self._debug_details


class _ServerError(Exception):
    """Internal: the server answered with an error; the client layer wraps it."""

    def __init__(self, status: int, message: str):
        super().__init__(status, message)
        self.status = status
        self.message = message
