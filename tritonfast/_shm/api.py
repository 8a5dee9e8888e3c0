"""Triton's shared-memory endpoints (system and CUDA) over a transport.

``transport`` is anything with ``request(method, target, headers, body,
timeout_s, idempotent) -> (status, body)``: ``tritonfast._core.HttpClient`` or
``tritonfast._transport.tls.TlsTransport``. A non-200 answer raises
:class:`~tritonfast.exceptions.SharedMemoryError` with the HTTP status in
``.status`` and the server's message (e.g. 501 "Client shared memory is
disabled" from servers started without ``--allow-client-shm=true``); transport
failures propagate as the transport raises them. POSTs are never retried.
"""

from __future__ import annotations

import json
import mmap
from typing import Any, Iterable, List, Mapping, Optional, Tuple, Union
from urllib.parse import quote

from tritonfast.exceptions import SharedMemoryError

Headers = Optional[Union[Mapping[str, Any], Iterable[Tuple[str, Any]]]]

_SYSTEM = "/v2/systemsharedmemory"
_CUDA = "/v2/cudasharedmemory"


def _header_list(headers: Headers, json_body: bool) -> List[Tuple[str, str]]:
    items = headers.items() if isinstance(headers, Mapping) else (headers or ())
    out = [(str(k), str(v)) for k, v in items]
    if json_body and not any(k.lower() == "content-type" for k, _ in out):
        out.append(("Content-Type", "application/json"))
    return out


def _target(base: str, name: str, action: str) -> str:
    region = f"/region/{quote(name, safe='')}" if name else ""
    return f"{base}{region}/{action}"


def _error_message(body: bytes) -> str:
    try:
        return str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return body.decode("utf-8", "replace") or "(empty response)"


def _call(transport: Any, method: str, target: str, what: str, payload: Optional[dict],
          headers: Headers, timeout_s: Optional[float], hint: str = "") -> bytes:
    body = None if payload is None else json.dumps(payload).encode()
    status, response = transport.request(method, target, _header_list(headers, body is not None),
                                         body, timeout_s, method == "GET")
    if status != 200:
        raise SharedMemoryError(f"{what} failed with HTTP {status}: {_error_message(response)}"
                                f"{hint if status == 400 else ''}", status=status)
    return response


def register_system_shared_memory(transport: Any, name: str, key: str, byte_size: int, offset: int = 0,
                                  headers: Headers = None, timeout_s: Optional[float] = None) -> None:
    """Registers ``byte_size`` bytes at ``offset`` of the object ``key`` as ``name``.

    Triton mmaps the region at ``offset``, so (at least up to 2.5x) the offset
    must be a multiple of the page size; a refusal then says so.
    """
    hint = ""
    if offset % mmap.PAGESIZE:
        hint = (f" (the offset {offset} is not a multiple of the page size, {mmap.PAGESIZE}: "
                "Triton maps the region at that offset, which mmap requires to be page-aligned)")
    _call(transport, "POST", _target(_SYSTEM, name, "register"),
          f"registering system shared memory region {name!r} (key {key!r}, {byte_size} bytes at offset {offset})",
          {"key": key, "offset": int(offset), "byte_size": int(byte_size)}, headers, timeout_s, hint)


def unregister_system_shared_memory(transport: Any, name: str = "", headers: Headers = None,
                                    timeout_s: Optional[float] = None) -> None:
    """Unregisters the region ``name``, or every system region when ``name`` is empty."""
    what = f"unregistering system shared memory region {name!r}" if name else "unregistering all system shared memory"
    _call(transport, "POST", _target(_SYSTEM, name, "unregister"), what, None, headers, timeout_s)


def get_system_shared_memory_status(transport: Any, region_name: str = "", headers: Headers = None,
                                    timeout_s: Optional[float] = None) -> Any:
    """The server's JSON status: ``[{"name", "key", "offset", "byte_size"}, ...]``."""
    body = _call(transport, "GET", _target(_SYSTEM, region_name, "status"),
                 "system shared memory status", None, headers, timeout_s)
    return json.loads(body)


def register_cuda_shared_memory(transport: Any, name: str, raw_handle: Union[bytes, str], device_id: int,
                                byte_size: int, headers: Headers = None,
                                timeout_s: Optional[float] = None) -> None:
    """Registers a CUDA region by its base64 IPC handle (``cuda_shm.get_raw_handle``)."""
    b64 = raw_handle.decode("ascii") if isinstance(raw_handle, (bytes, bytearray)) else str(raw_handle)
    _call(transport, "POST", _target(_CUDA, name, "register"),
          f"registering CUDA shared memory region {name!r} ({byte_size} bytes on device {device_id})",
          {"raw_handle": {"b64": b64}, "device_id": int(device_id), "byte_size": int(byte_size)},
          headers, timeout_s)


def unregister_cuda_shared_memory(transport: Any, name: str = "", headers: Headers = None,
                                  timeout_s: Optional[float] = None) -> None:
    """Unregisters the CUDA region ``name``, or every CUDA region when ``name`` is empty."""
    what = f"unregistering CUDA shared memory region {name!r}" if name else "unregistering all CUDA shared memory"
    _call(transport, "POST", _target(_CUDA, name, "unregister"), what, None, headers, timeout_s)


def get_cuda_shared_memory_status(transport: Any, region_name: str = "", headers: Headers = None,
                                  timeout_s: Optional[float] = None) -> Any:
    """The server's JSON status: ``[{"name", "device_id", "byte_size"}, ...]``."""
    body = _call(transport, "GET", _target(_CUDA, region_name, "status"),
                 "CUDA shared memory status", None, headers, timeout_s)
    return json.loads(body)
