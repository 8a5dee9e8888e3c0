"""Tests of the sans-I/O HTTP response parser and of the /infer body parser.

``tritonfast._core.ResponseParser`` is fed bytes and never touches a socket;
the native transport and the TLS driver share it. These tests feed it:

* golden responses (a Triton /infer answer with binary outputs, a JSON error,
  chunked, ``Connection: close``, read-until-close, ``100 Continue``, ...)
  whole, one byte at a time, with trailing bytes after the response, and
  through ``body_window()``/``commit()`` the way the transport does; the
  outputs are checked against ``tritonclient.http.InferResult`` on the same
  body (tritonclient is the reference for slicing);
* hypothesis-generated input: random bytes, valid responses truncated, with
  lying or oversized lengths, and with garbage header lines. The parser may
  only ask for more data, finish, or raise ``ProtocolError`` (and, at
  ``finish()``, ``PyTritonClientConnectionError``), the same way whatever the
  split of the input;
* ``parse_infer_body`` with random JSON inference headers and spans: only
  ``ProtocolError``/``DecodeError``, and every span it returns lies in the body.
"""

from __future__ import annotations

import json
import re
from typing import List, Optional, Sequence

import numpy as np
import pytest
import tritonclient.http as tritonhttp
import tritonclient.utils as tcutils
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import tritonfast  # noqa: F401  (registers the numpy dtypes of the native output path)
from tritonfast import _core
from tritonfast.exceptions import (
    DecodeError,
    ProtocolError,
    PyTritonClientConnectionError,
    _ServerError,
)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Bytes a response is followed by in the "trailing" modes: the start of the
# next response on a kept-alive connection (the parser must leave it alone).
TRAILING = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
# BufferPool::kAlignment: the first binary output lands on this boundary.
ALIGNMENT = 64
# Step of the transport-like driver: small, so that every path is split.
WINDOW_STEP = 7

# --------------------------------------------------------------------------- building responses


def wire(status_line: bytes, headers: Sequence[tuple], body: bytes = b"", eol: bytes = b"\r\n") -> bytes:
    head = status_line + eol
    for name, value in headers:
        head += name.encode() + b": " + (value if isinstance(value, bytes) else str(value).encode()) + eol
    return head + eol + body


def chunked(body: bytes, sizes: Sequence[int], extensions: bool = False, trailers: bytes = b"") -> bytes:
    """``body`` in chunks of ``sizes`` (cycled), then the last chunk and trailers."""
    out, pos, k = b"", 0, 0
    while pos < len(body):
        n = max(1, sizes[k % len(sizes)])
        piece = body[pos:pos + n]
        ext = b";name=value;x" if extensions and k % 2 == 0 else b""
        out += b"%x%s\r\n%s\r\n" % (len(piece), ext, piece)
        pos += len(piece)
        k += 1
    return out + b"0\r\n" + trailers + b"\r\n"


def infer_body(outputs: List[dict], tensors: Sequence[bytes], extra: Optional[dict] = None) -> tuple:
    """(body, header_length) of a Triton /infer response: compact JSON header then tensors."""
    header = {"id": "42", "model_name": "add_sub", "model_version": "1", **(extra or {}), "outputs": outputs}
    json_bytes = json.dumps(header, separators=(",", ":")).encode()
    return json_bytes + b"".join(tensors), len(json_bytes)


FP32_OUT = np.arange(6, dtype=np.float32).reshape(2, 3) * np.float32(0.5) - 1
BYTES_OUT = np.array([b"hello", b"", b"\x00\xffbinary\n"], dtype=object)
BYTES_WIRE = tcutils.serialize_byte_tensor(BYTES_OUT).item()

INFER_BODY, INFER_HEADER_LENGTH = infer_body(
    [
        {"name": "OUTPUT0", "datatype": "FP32", "shape": [2, 3],
         "parameters": {"binary_data_size": FP32_OUT.nbytes}},
        {"name": "OUTPUT1", "datatype": "BYTES", "shape": [3],
         "parameters": {"binary_data_size": len(BYTES_WIRE)}},
    ],
    [FP32_OUT.tobytes(), BYTES_WIRE],
    extra={"parameters": {"sequence_id": 7, "note": "x"}},
)
INFER_HEADERS = [
    ("Content-Type", "application/octet-stream"),
    ("Inference-Header-Content-Length", INFER_HEADER_LENGTH),
    ("Content-Length", len(INFER_BODY)),
]

# Every binary output empty: application/json, no Inference-Header-Content-Length,
# yet the outputs carry binary_data_size 0 (spec 1.5); plus JSON-data outputs.
JSON_BODY, _ = infer_body(
    [
        {"name": "SUM", "datatype": "INT32", "shape": [2, 2], "data": [1, -2, 3, 2147483647]},
        {"name": "EMPTY", "datatype": "FP32", "shape": [0, 4], "parameters": {"binary_data_size": 0}},
        {"name": "F64", "datatype": "FP64", "shape": [3], "data": [0.5, -1e300, 3.0]},
    ],
    [],
)

ERROR_BODY = json.dumps({"error": "unexpected shape for input 'INPUT0' for model 'add_sub'"}).encode()


class Golden:
    def __init__(self, name, data, *, status=200, body=b"", keep_alive=True, header_length=None,
                 until_close=False, infer=False, headers=None):
        self.name = name
        self.data = data
        self.status = status
        self.body = body
        self.keep_alive = keep_alive
        self.header_length = header_length
        self.until_close = until_close  # no framing: the body ends at finish()
        self.infer = infer  # a successful /infer answer: infer_result() is checked
        self.headers = headers  # expected headers, as (name, value) strings

    def __repr__(self) -> str:
        return self.name


GOLDEN = [
    Golden("infer-binary",
           wire(b"HTTP/1.1 200 OK", INFER_HEADERS, INFER_BODY),
           body=INFER_BODY, header_length=INFER_HEADER_LENGTH, infer=True,
           headers=[(n, str(v)) for n, v in INFER_HEADERS]),
    Golden("infer-json-outputs",
           wire(b"HTTP/1.1 200 OK", [("Content-Type", "application/json"), ("Content-Length", len(JSON_BODY))],
                JSON_BODY),
           body=JSON_BODY, infer=True),
    Golden("error-400",
           wire(b"HTTP/1.1 400 Bad Request",
                [("Content-Type", "application/json"), ("Content-Length", len(ERROR_BODY))], ERROR_BODY),
           status=400, body=ERROR_BODY),
    Golden("error-400-empty",  # health/ready answer "not ready" with an empty 400
           wire(b"HTTP/1.1 400 Bad Request", [("Content-Length", 0)]), status=400),
    Golden("infer-chunked",
           wire(b"HTTP/1.1 200 OK",
                [("Inference-Header-Content-Length", INFER_HEADER_LENGTH), ("Transfer-Encoding", "chunked")],
                chunked(INFER_BODY, [100, 1, 17, 64], extensions=True, trailers=b"X-Trailer: 1\r\n")),
           body=INFER_BODY, header_length=INFER_HEADER_LENGTH, infer=True),
    Golden("infer-connection-close",
           wire(b"HTTP/1.1 200 OK", [*INFER_HEADERS, ("Connection", "close")], INFER_BODY),
           body=INFER_BODY, header_length=INFER_HEADER_LENGTH, keep_alive=False, infer=True),
    Golden("infer-until-close",
           wire(b"HTTP/1.1 200 OK",
                [("Inference-Header-Content-Length", INFER_HEADER_LENGTH), ("Connection", "close")], INFER_BODY),
           body=INFER_BODY, header_length=INFER_HEADER_LENGTH, keep_alive=False, until_close=True, infer=True),
    Golden("infer-100-continue",
           b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
           + wire(b"HTTP/1.1 200 OK", INFER_HEADERS, INFER_BODY),
           body=INFER_BODY, header_length=INFER_HEADER_LENGTH, infer=True,
           headers=[(n, str(v)) for n, v in INFER_HEADERS]),
    Golden("http10", wire(b"HTTP/1.0 200 OK", [("Content-Length", 2)], b"{}"), body=b"{}", keep_alive=False),
    Golden("http10-keep-alive",
           wire(b"HTTP/1.0 200 OK", [("Connection", "Keep-Alive"), ("Content-Length", 2)], b"{}"), body=b"{}"),
    Golden("204-ignores-length", wire(b"HTTP/1.1 204 No Content", [("Content-Length", 10)]), status=204),
    Golden("lenient-lines",  # bare LF, no reason phrase, lower case, OWS, repeated equal lengths
           wire(b"HTTP/1.1 200",
                [("content-length", b" \t 4, 4 \t"), ("X-Empty", b""), ("x-utf8", "café".encode())],
                b"body", eol=b"\n"),
           body=b"body",
           # header values are bytes; like http.client, each byte is one latin-1 code point
           headers=[("content-length", "4, 4"), ("X-Empty", ""), ("x-utf8", "café".encode().decode("latin-1"))]),
]
INFER_GOLDEN = [g for g in GOLDEN if g.infer]
MODES = ["whole", "bytewise", "trailing", "trailing-bytewise", "window"]


def feed_chunks(parser, chunks) -> int:
    """Feeds chunks until the response is done; returns the bytes it took."""
    consumed = 0
    for chunk in chunks:
        if parser.done:
            assert parser.feed(chunk) == 0  # nothing past the end of the response
            continue
        n = parser.feed(chunk)
        assert 0 <= n <= len(chunk)
        # Short only at the end of the response: the transport relies on it.
        assert n == len(chunk) or parser.done
        consumed += n
    return consumed


def drive_window(parser, data: bytes, step: int = WINDOW_STEP) -> int:
    """The transport's loop: body bytes go straight into body_window(), the rest through feed()."""
    pos = 0
    while pos < len(data) and not parser.done:
        window = parser.body_window()
        if window is not None and len(window) > 0:
            n = min(len(window), step, len(data) - pos)
            window[:n] = data[pos:pos + n]
            window.release()
            parser.commit(n)
        else:
            n = parser.feed(data[pos:pos + step])
            assert n > 0
        pos += n
    return pos


def drive(parser, data: bytes, mode: str) -> int:
    if mode == "whole":
        return feed_chunks(parser, [data])
    if mode == "bytewise":
        return feed_chunks(parser, [data[i:i + 1] for i in range(len(data))])
    if mode == "trailing":
        return feed_chunks(parser, [data + TRAILING])
    if mode == "trailing-bytewise":
        both = data + TRAILING
        return feed_chunks(parser, [both[i:i + 1] for i in range(len(both))])
    if mode == "window":
        return drive_window(parser, data)
    raise AssertionError(mode)


def split(data: bytes, cuts: Sequence[int]) -> List[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])]


# --------------------------------------------------------------------------- golden responses


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("golden", GOLDEN, ids=repr)
def test_golden_response(golden: Golden, mode: str) -> None:
    parser = _core.ResponseParser()
    consumed = drive(parser, golden.data, mode)
    trailing = mode.startswith("trailing")
    if golden.until_close:
        # No framing: every byte is body until the server closes.
        assert not parser.done
        assert consumed == len(golden.data) + (len(TRAILING) if trailing else 0)
        parser.finish()
    else:
        assert consumed == len(golden.data)  # trailing bytes are left for the next response
    assert parser.done and parser.head_complete
    assert parser.status == golden.status
    assert parser.keep_alive is golden.keep_alive
    assert parser.inference_header_length == golden.header_length
    if golden.headers is not None:
        assert parser.headers == golden.headers
    expected = golden.body + (TRAILING if golden.until_close and trailing else b"")
    assert parser.body() == expected
    assert parser.body() == expected  # taking the body twice gives it again
    parser.finish()  # a finished response stays finished
    assert parser.feed(b"more") == 0


def _assert_same_as_tritonclient(ours: dict, body: bytes, header_length: Optional[int]) -> None:
    reference = tritonhttp.InferResult.from_response_body(body, header_length=header_length)
    outputs = reference.get_response()["outputs"]
    assert list(ours) == [o["name"] for o in outputs]
    for o in outputs:
        theirs = reference.as_numpy(o["name"])
        got = ours[o["name"]]
        assert got.dtype == theirs.dtype, o["name"]
        assert got.shape == theirs.shape, o["name"]
        assert got.tolist() == theirs.tolist(), o["name"]
    # The binary spans: tritonclient's offsets (into the bytes after the JSON
    # header) are ours (into the body).
    spans = {name: offset for name, _, _, kind, offset, _ in _core.parse_infer_body(body, header_length)
             if kind == 0}
    assert spans == reference_spans(body, header_length)


def reference_spans(body: bytes, header_length: Optional[int]) -> dict:
    """tritonclient's binary output offsets, as offsets into the whole body."""
    if header_length is None:
        # tritonclient slices nothing without the header length: only empty
        # binary outputs (binary_data_size 0) can be there, at the body's end.
        reference = tritonhttp.InferResult.from_response_body(body)
        return {o["name"]: len(body) for o in reference.get_response()["outputs"]
                if "binary_data_size" in (o.get("parameters") or {})}
    reference = tritonhttp.InferResult.from_response_body(body, header_length=header_length)
    return {name: header_length + index for name, index in reference._output_name_to_buffer_map.items()}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("golden", INFER_GOLDEN, ids=repr)
def test_golden_infer_result_matches_tritonclient(golden: Golden, mode: str) -> None:
    parser = _core.ResponseParser()
    drive(parser, golden.data, mode)
    if golden.until_close:
        parser.finish()
    expected_body = golden.body
    if golden.until_close and mode.startswith("trailing"):
        # The trailing bytes became part of the (unframed) body: the outputs no
        # longer account for every byte, which infer_result() must refuse.
        with pytest.raises(ProtocolError, match=r"bytes after the last output"):
            parser.infer_result()
        return
    result = parser.infer_result()
    _assert_same_as_tritonclient(result, expected_body, golden.header_length)


def test_golden_binary_outputs_are_aligned_views() -> None:
    parser = _core.ResponseParser()
    parser.feed(GOLDEN[0].data)
    result = parser.infer_result()
    out = result["OUTPUT0"]
    assert out.base is not None  # a view over the receive buffer, not a copy
    assert out.ctypes.data % ALIGNMENT == 0  # the first tensor after the header is aligned
    np.testing.assert_array_equal(out, FP32_OUT)
    assert result["OUTPUT1"].tolist() == BYTES_OUT.tolist()
    del parser
    assert out.tolist() == FP32_OUT.tolist()  # the view keeps its memory alive


@pytest.mark.parametrize("mode", ["whole", "bytewise", "trailing"])
def test_golden_error_body_raises_server_error(mode: str) -> None:
    parser = _core.ResponseParser()
    drive(parser, GOLDEN[2].data, mode)
    with pytest.raises(_ServerError) as info:
        parser.infer_result()
    assert info.value.status == 400
    assert info.value.message == json.loads(ERROR_BODY)["error"]


def test_non_json_error_body_is_quoted_with_the_status() -> None:
    parser = _core.ResponseParser()
    parser.feed(wire(b"HTTP/1.1 502 Bad Gateway", [("Content-Length", 11)], b"upstream x!"))
    with pytest.raises(_ServerError) as info:
        parser.infer_result()
    assert (info.value.status, info.value.message) == (
        502, "the server answered HTTP 502 Bad Gateway with a body that is not a Triton error "
             "(11 bytes): upstream x!")


def test_json_output_that_does_not_fit_its_shape_names_the_output() -> None:
    body = json.dumps({"outputs": [
        {"name": "scores", "datatype": "INT32", "shape": [3], "data": [1, 2]},
    ]}).encode()
    parser = _core.ResponseParser()
    parser.feed(wire(b"HTTP/1.1 200 OK", [("Content-Length", len(body))], body))
    with pytest.raises(ProtocolError, match=r"output 'scores': JSON data holds 2 elements but shape \[3\] holds 3"):
        parser.infer_result()


def test_keep_alive_connection_parses_consecutive_responses() -> None:
    stream = GOLDEN[0].data + GOLDEN[2].data + GOLDEN[4].data
    statuses = []
    while stream:
        parser = _core.ResponseParser()
        n = parser.feed(stream)
        assert parser.done
        statuses.append(parser.status)
        stream = stream[n:]
    assert statuses == [200, 400, 200]


# --------------------------------------------------------------------------- deterministic faults


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "server closed the connection before sending a response"),
        (b"HTTP/1.1 200 OK\r\nContent-Le", "in the middle of the response head (27 bytes received)"),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2", "in the middle of the response head (35 bytes received)"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", "after 0 of 10 body bytes"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n1234", "after 4 of 10 body bytes"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabc",
         "in the middle of a chunked body (3 body bytes received)"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n",
         "in the middle of a chunked body (3 body bytes received)"),
    ],
)
def test_finish_says_where_the_response_stopped(data: bytes, message: str) -> None:
    for mode in ("whole", "bytewise", "window"):
        parser = _core.ResponseParser()
        assert drive(parser, data, mode) == len(data)
        assert not parser.done
        with pytest.raises(PyTritonClientConnectionError, match=re.escape(message)):
            parser.finish()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"garbage\r\n", "malformed status line 'garbage'"),
        (b"HTTP/2 200 OK\r\n", "malformed status line"),
        (b"HTTP/1.1 099 Low\r\n", "malformed status line"),
        (b"HTTP/1.1 20x OK\r\n", "malformed status line"),
        (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "unexpected 101 Switching Protocols"),
        (b"HTTP/1.1 200 OK\r\nNo colon here\r\n", "has no ':'"),
        (b"HTTP/1.1 200 OK\r\nBad Name: x\r\n", "response header name 'Bad Name' is not an HTTP token"),
        (b"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n", "obsolete line folding"),
        (b"HTTP/1.1 200 OK\r\nX: a\x01b\r\n", "holds a control character"),
        (b"HTTP/1.1 200 OK\r\nX: a\rb\r\n", "bare CR"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "invalid Content-Length '-1'"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n", "invalid Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551616\r\n\r\n", "invalid Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
         "conflicting Content-Length values 3 and 4"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\n", "conflicting Content-Length values 3 and 4"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
         "both Transfer-Encoding and Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "unsupported Transfer-Encoding 'gzip'"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", "'chunked' before its end"),
        (b"HTTP/1.1 200 OK\r\nInference-Header-Content-Length: x\r\n\r\n",
         "invalid Inference-Header-Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "malformed chunk-size line 'zz'"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab",
         "chunk data is not followed by CRLF (1 body bytes in)"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n", "overflows 64 bits"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\n", "exceeds the 17179869184-byte limit"),
        (b"HTTP/1.1 200 OK\r\n" + b"X: " + b"a" * (64 * 1024) + b"\r\n", "response head exceeds 65536 bytes"),
        (b"HTTP/1.1 200 OK\r\n" + b"X: a\r\n" * 129, "more than 128 header fields"),
    ],
)
def test_malformed_response_raises_protocol_error(data: bytes, message: str) -> None:
    for mode in ("whole", "bytewise"):
        parser = _core.ResponseParser()
        with pytest.raises(ProtocolError, match=re.escape(message)):
            drive(parser, data, mode)
        # The parser stays failed, with the same message, whatever is called next.
        for call in (lambda: parser.feed(b"HTTP/1.1 200 OK\r\n"), parser.finish, parser.body_window):
            with pytest.raises(ProtocolError, match=re.escape(message)):
                call()


@pytest.mark.parametrize(
    ("framing", "message"),
    [
        (b"Content-Length: 1001\r\n\r\n", "Content-Length 1001 exceeds the 1000-byte limit"),
        (b"Content-Length: 18446744073709551615\r\n\r\n",
         "Content-Length 18446744073709551615 exceeds the 1000-byte limit"),
        (b"Transfer-Encoding: chunked\r\n\r\n3e9\r\n", "at least 0 + 1001 bytes exceeds the 1000-byte limit"),
        (b"Transfer-Encoding: chunked\r\n\r\n1f4\r\n" + b"a" * 500 + b"\r\n1f5\r\n",
         "at least 500 + 501 bytes exceeds the 1000-byte limit"),
        (b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n", "exceeds the 1000-byte limit"),
        (b"\r\n" + b"a" * 1001, "response body exceeds the 1000-byte limit"),
    ],
)
def test_oversized_bodies_are_refused_before_allocation(framing: bytes, message: str) -> None:
    data = b"HTTP/1.1 200 OK\r\n" + framing
    for mode in ("whole", "bytewise", "window"):
        parser = _core.ResponseParser(max_body_bytes=1000)
        with pytest.raises(ProtocolError, match=re.escape(message)):
            drive(parser, data, mode)
            parser.finish()


def test_body_of_exactly_the_limit_is_accepted() -> None:
    for framing in (b"Content-Length: 1000\r\n\r\n", b"Transfer-Encoding: chunked\r\n\r\n3e8\r\n", b"\r\n"):
        body = bytes(range(256)) * 3 + b"x" * 232
        data = b"HTTP/1.1 200 OK\r\n" + framing + body
        if b"chunked" in framing:
            data += b"\r\n0\r\n\r\n"
        for mode in ("whole", "bytewise", "window"):
            parser = _core.ResponseParser(max_body_bytes=1000)
            drive(parser, data, mode)
            parser.finish()
            assert parser.body() == body


def test_commit_past_the_window_is_a_programming_error() -> None:
    parser = _core.ResponseParser()
    parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n")
    assert len(parser.body_window()) == 4
    with pytest.raises(RuntimeError):
        parser.commit(5)
    done = _core.ResponseParser()
    done.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert done.body_window() is None
    with pytest.raises(RuntimeError):
        done.commit(1)


# --------------------------------------------------------------------------- fuzzing: random input

ALLOWED_AT_FEED = (ProtocolError,)
ALLOWED_AT_FINISH = (ProtocolError, PyTritonClientConnectionError)


def outcome(data: bytes, chunks: List[bytes], max_body_bytes: int = 1 << 20):
    """What the parser makes of ``chunks`` followed by the end of the stream.

    Only need-more-data, a finished response, ProtocolError or (at finish())
    PyTritonClientConnectionError are allowed; anything else propagates.
    """
    parser = _core.ResponseParser(max_body_bytes=max_body_bytes)
    try:
        consumed = feed_chunks(parser, chunks)
    except ALLOWED_AT_FEED as e:
        assert type(e) is ProtocolError, type(e)
        return ("protocol-error", str(e))
    done_before_close = parser.done
    try:
        parser.finish()
    except ALLOWED_AT_FINISH as e:
        return (type(e).__name__, str(e))
    assert parser.done
    body = parser.body()
    assert len(body) <= consumed <= len(data)
    if parser.status == 200:
        # infer_result() on whatever came: the outputs or a tritonfast error.
        # (Not on error statuses: see test_error_body_that_is_not_utf8.)
        try:
            parser.infer_result()
        except (ProtocolError, DecodeError, _ServerError):
            pass
    return ("done", done_before_close, consumed, parser.status, parser.keep_alive, body)


@FUZZ
@given(data=st.binary(max_size=400), cuts=st.lists(st.integers(min_value=0), max_size=8))
def test_fuzz_random_bytes(data: bytes, cuts: List[int]) -> None:
    whole = outcome(data, [data])
    assert outcome(data, split(data, cuts)) == whole  # the same result whatever the split
    assert outcome(data, [data[i:i + 1] for i in range(len(data))]) == whole


# Pieces that make random input look like a response, so the fuzzer gets past
# the status line: framing headers with odd values, separators, CR/LF mixes.
HEAD_PIECES = st.sampled_from([
    b"HTTP/1.1 200 OK\r\n", b"HTTP/1.0 200 OK\r\n", b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 204 No\r\n",
    b"HTTP/1.1 404 Not Found\r\n", b"Content-Length: ", b"Transfer-Encoding: ", b"chunked", b"gzip",
    b"Connection: ", b"close", b"keep-alive", b"Inference-Header-Content-Length: ", b"0", b"5", b"17",
    b"18446744073709551616", b"ff", b";ext=1", b", ", b": ", b":", b" ", b"\t", b"\r\n", b"\n", b"\r",
    b"\r\n\r\n", b"X-A: b\r\n", b"\x00", b"\x7f", b"\xff", b"{\"outputs\":[]}", b"abcde",
])
HEADISH = st.lists(st.one_of(HEAD_PIECES, st.binary(max_size=4)), max_size=40).map(b"".join)


@FUZZ
@given(data=HEADISH, cuts=st.lists(st.integers(min_value=0), max_size=8))
def test_fuzz_response_like_bytes(data: bytes, cuts: List[int]) -> None:
    whole = outcome(data, [data], max_body_bytes=64)
    assert outcome(data, split(data, cuts), max_body_bytes=64) == whole
    assert outcome(data, [data[i:i + 1] for i in range(len(data))], max_body_bytes=64) == whole


# --------------------------------------------------------------------------- fuzzing: valid responses mutated

TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~",
                min_size=1, max_size=12)
FIELD_VALUE = st.binary(max_size=16).map(
    lambda b: bytes(c for c in b if 0x20 <= c < 0x7F).strip(b" \t"))


@st.composite
def responses(draw, framings=("length", "chunked", "close")):
    """A valid response: (wire bytes, head length, body, framing)."""
    status = draw(st.sampled_from([200, 200, 400, 500, 503]))
    framing = draw(st.sampled_from(framings))
    body = draw(st.binary(max_size=300))
    headers = [("X-" + name, value) for name, value in draw(st.lists(st.tuples(TOKEN, FIELD_VALUE), max_size=4))]
    if framing == "length":
        headers.append(("Content-Length", len(body)))
    elif framing == "chunked":
        headers.append(("Transfer-Encoding", "chunked"))
    else:
        headers.append(("Connection", "close"))
    headers = draw(st.permutations(headers))
    interim = b"HTTP/1.1 100 Continue\r\n\r\n" if draw(st.booleans()) else b""
    head = interim + wire(b"HTTP/1.1 %d Reason" % status, headers)
    payload = body
    if framing == "chunked":
        payload = chunked(body, draw(st.lists(st.integers(1, 64), min_size=1, max_size=4)),
                          extensions=draw(st.booleans()))
    return head + payload, len(head), body, framing


@FUZZ
@given(response=responses(), cuts=st.lists(st.integers(min_value=0), max_size=6))
def test_fuzz_valid_response_any_split(response, cuts: List[int]) -> None:
    data, _, body, framing = response
    parser = _core.ResponseParser()
    consumed = feed_chunks(parser, split(data + TRAILING, cuts))
    if framing == "close":
        assert not parser.done
        parser.finish()
        assert parser.body() == body + TRAILING
    else:
        assert parser.done and consumed == len(data)
        assert parser.body() == body
    window = _core.ResponseParser()
    assert drive_window(window, data, step=max(1, (cuts or [5])[0] % 50 + 1)) == len(data)
    window.finish()
    assert window.body() == body


@FUZZ
@given(response=responses(), where=st.integers(min_value=0), cuts=st.lists(st.integers(min_value=0), max_size=6))
def test_fuzz_truncated_then_closed(response, where: int, cuts: List[int]) -> None:
    data, head_length, body, framing = response
    k = where % len(data)  # strictly shorter than the response
    truncated = data[:k]
    parser = _core.ResponseParser()
    assert feed_chunks(parser, split(truncated, cuts)) == k
    if framing == "close" and k >= head_length:
        parser.finish()  # no framing: a shorter body is all we can know
        assert parser.body() == body[:k - head_length]
        return
    assert not parser.done
    with pytest.raises(PyTritonClientConnectionError) as info:
        parser.finish()
    message = str(info.value)
    if k == 0:
        assert message == "server closed the connection before sending a response"
    elif k < head_length:
        assert message == f"server closed the connection in the middle of the response head ({k} bytes received)"
    elif framing == "length":
        assert message == f"server closed the connection after {k - head_length} of {len(body)} body bytes"
    else:
        assert re.fullmatch(r"server closed the connection in the middle of a chunked body"
                            r" \((\d+) body bytes received\)", message), message


@FUZZ
@given(response=responses(framings=("length",)), extra=st.integers(min_value=1, max_value=10**9))
def test_fuzz_content_length_too_large(response, extra: int) -> None:
    data, head_length, body, _ = response
    lying = data.replace(b"Content-Length: %d\r\n" % len(body), b"Content-Length: %d\r\n" % (len(body) + extra), 1)
    parser = _core.ResponseParser()
    assert feed_chunks(parser, [lying]) == len(lying)
    assert not parser.done
    with pytest.raises(PyTritonClientConnectionError,
                       match=f"^server closed the connection after {len(body)} of {len(body) + extra} "
                             "body bytes$"):
        parser.finish()


@FUZZ
@given(response=responses(framings=("length",)), short=st.integers(min_value=1))
def test_fuzz_content_length_too_small(response, short: int) -> None:
    data, head_length, body, _ = response
    assume(body)
    claimed = len(body) - 1 - short % len(body)
    lying = data.replace(b"Content-Length: %d\r\n" % len(body), b"Content-Length: %d\r\n" % claimed, 1)
    head_length -= len(str(len(body))) - len(str(claimed))
    parser = _core.ResponseParser()
    consumed = feed_chunks(parser, [lying])
    # The parser believes the header: the rest is not consumed...
    assert parser.done and consumed == head_length + claimed
    assert parser.body() == body[:claimed]
    # ...and becomes the next response on the connection, which is garbage.
    rest = lying[consumed:]
    assume(not rest.startswith(b"HTTP/1."))
    assert outcome(rest, [rest])[0] in ("protocol-error", "PyTritonClientConnectionError")


@FUZZ
@given(length=st.integers(min_value=1001, max_value=2**64 - 1), chunked_body=st.booleans())
def test_fuzz_oversized_length_refused_before_allocation(length: int, chunked_body: bool) -> None:
    if chunked_body:
        data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n" % length
    else:
        data = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % length
    parser = _core.ResponseParser(max_body_bytes=1000)
    with pytest.raises(ProtocolError, match="exceeds the 1000-byte limit"):
        parser.feed(data)


def header_line_is_valid(name: bytes, value: bytes) -> bool:
    """RFC 9110/9112 as the parser reads a header line ``name ":" value`` (no LF inside)."""
    tchar = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    if not name or any(c not in tchar for c in name):
        return False
    if b"\r" in value:
        return False
    return all(c >= 0x20 and c != 0x7F or c == 0x09 for c in value.strip(b" \t"))


@FUZZ
@given(response=responses(framings=("length", "chunked")), name=st.binary(max_size=8),
       value=st.binary(max_size=12), position=st.integers(min_value=0), bytewise=st.booleans())
def test_fuzz_garbage_header_line(response, name: bytes, value: bytes, position: int, bytewise: bool) -> None:
    data, head_length, body, _ = response
    name = name.replace(b"\n", b"").replace(b":", b"")
    value = value.replace(b"\n", b"")
    assume(name[:1] not in (b" ", b"\t"))  # a leading space is obs-fold: covered below
    # Insert the line at the start of a header line of the final head (or
    # before its blank line).
    status_end = data.index(b"\r\n", data.rindex(b"HTTP/1.1 ", 0, head_length)) + 2
    starts = [status_end] + [m.end() for m in re.finditer(b"\r\n", data[:head_length - 2]) if m.end() > status_end]
    at = starts[position % len(starts)]
    line = b"X" + name + b":" + value + b"\r\n"
    mutated = data[:at] + line + data[at:]
    chunks = [mutated[i:i + 1] for i in range(len(mutated))] if bytewise else [mutated]
    parser = _core.ResponseParser()
    if header_line_is_valid(b"X" + name, value):
        assert feed_chunks(parser, chunks) == len(mutated)
        assert parser.done and parser.body() == body
        # header bytes map one to one onto latin-1 code points, as in http.client
        expected = ("X" + name.decode("latin-1"), value.strip(b" \t").decode("latin-1"))
        assert expected in parser.headers
    else:
        with pytest.raises(ProtocolError):
            feed_chunks(parser, chunks)


@FUZZ
@given(response=responses(framings=("length",)), fold=st.binary(min_size=1, max_size=8))
def test_fuzz_obs_fold_is_refused(response, fold: bytes) -> None:
    data, head_length, _, _ = response
    status_end = data.index(b"\r\n", data.rindex(b"HTTP/1.1 ", 0, head_length)) + 2
    line = b"X-A: b\r\n" + b" " + fold.replace(b"\n", b"") + b"\r\n"
    parser = _core.ResponseParser()
    with pytest.raises(ProtocolError, match="obsolete line folding|bare CR"):
        parser.feed(data[:status_end] + line + data[status_end:])


# --------------------------------------------------------------------------- fuzzing: parse_infer_body

JSON_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                        st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=6))
JSON_ANY = st.recursive(
    JSON_SCALAR,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=8,
)
DATATYPES = [name for name, _ in _core.datatypes()]
DIMENSION = st.one_of(st.integers(min_value=0, max_value=4), st.integers(min_value=-2**63, max_value=2**64),
                      st.sampled_from([2**31, 2**32, 2**62, 2**63 - 1]), JSON_SCALAR)
SIZE = st.one_of(st.integers(min_value=0, max_value=40), st.integers(min_value=-2**63, max_value=2**65),
                 JSON_SCALAR)
PARAMETERS = st.one_of(
    st.fixed_dictionaries({}, optional={"binary_data_size": SIZE, "shared_memory_byte_size": SIZE,
                                        "shared_memory_region": JSON_SCALAR, "classification": JSON_SCALAR}),
    JSON_ANY,
)
OUTPUT = st.one_of(
    st.fixed_dictionaries(
        {"name": st.one_of(st.text(max_size=5), JSON_SCALAR)},
        optional={"datatype": st.one_of(st.sampled_from(DATATYPES), st.text(max_size=5), JSON_SCALAR),
                  "shape": st.one_of(st.lists(DIMENSION, max_size=4), JSON_ANY),
                  "parameters": PARAMETERS,
                  "data": JSON_ANY},
    ),
    JSON_ANY,
)
HEADER = st.one_of(
    st.fixed_dictionaries(
        {"outputs": st.one_of(st.lists(OUTPUT, max_size=4), JSON_ANY)},
        optional={"model_name": JSON_SCALAR, "model_version": JSON_SCALAR, "id": JSON_SCALAR,
                  "parameters": JSON_ANY},
    ),
    JSON_ANY,
)


@st.composite
def infer_bodies(draw):
    header = json.dumps(draw(HEADER)).encode()
    mutation = draw(st.sampled_from(["none", "none", "truncate", "byte", "nan"]))
    if mutation == "truncate" and header:
        header = header[:draw(st.integers(0, len(header) - 1))]
    elif mutation == "byte":
        at = draw(st.integers(0, len(header)))
        header = header[:at] + draw(st.binary(min_size=1, max_size=2)) + header[at:]
    elif mutation == "nan":
        header = header.replace(b"0", b"NaN", 1)
    tail = draw(st.binary(max_size=48))
    header_length = draw(st.one_of(st.just(len(header)), st.none(),
                                   st.integers(0, len(header) + len(tail) + 2), st.integers(0, 2**64 - 1)))
    return header + tail, header_length


ELEMENT_SIZE = dict(_core.datatypes())


@st.composite
def plausible_infer_bodies(draw):
    """Bodies close to what Triton sends: sizes that mostly match the shapes, small perturbations."""
    outputs, tensors = [], []
    for _ in range(draw(st.integers(0, 4))):
        datatype = draw(st.sampled_from(DATATYPES))
        shape = draw(st.lists(st.integers(0, 3), max_size=3))
        count = int(np.prod(shape, dtype=np.int64))
        output = {"name": draw(st.text(min_size=1, max_size=4)), "datatype": datatype, "shape": shape}
        kind = draw(st.sampled_from(["binary", "binary", "binary", "json", "shm"]))
        if kind == "binary":
            if datatype == "BYTES":
                elements = draw(st.lists(st.binary(max_size=5), min_size=count, max_size=count))
                tensor = b"".join(len(e).to_bytes(4, "little") + e for e in elements)
            else:
                n = count * ELEMENT_SIZE[datatype]
                tensor = draw(st.binary(min_size=n, max_size=n))
            size = len(tensor) + draw(st.sampled_from([0, 0, 0, 0, 1, -1, 4]))
            output["parameters"] = {"binary_data_size": size}
            tensors.append(tensor)
        elif kind == "json":
            output["data"] = draw(st.lists(JSON_SCALAR, min_size=count, max_size=count))
        outputs.append(output)
    header = json.dumps({"model_name": "m", "model_version": "1", "outputs": outputs}).encode()
    tail = b"".join(tensors)
    tail = draw(st.sampled_from([tail, tail, tail, tail[:-1], tail + b"\0"]))
    header_length = draw(st.sampled_from([len(header)] * 4 + [len(header) - 1, len(header) + 1, None]))
    return header + tail, header_length


@FUZZ
@given(case=st.one_of(infer_bodies(), plausible_infer_bodies()))
def test_fuzz_parse_infer_body(case) -> None:
    body, header_length = case
    try:
        outputs = _core.parse_infer_body(body, header_length)
    except (ProtocolError, DecodeError):
        return
    # Accepted: the binary spans follow each other from the end of the JSON
    # header to the last byte of the body.
    offset = len(body) if header_length is None else header_length
    for name, datatype, shape, kind, span_offset, size in outputs:
        assert isinstance(name, str) and datatype in DATATYPES
        assert all(isinstance(d, int) and d >= 0 for d in shape)
        if kind == 0:
            assert span_offset == offset
            offset += size
            assert offset <= len(body)
    assert offset == len(body)
    # tritonclient slices the same body the same way.
    names = [o[0] for o in outputs]
    if len(set(names)) == len(names) and header_length is not None:
        assert reference_spans(body, header_length) == {o[0]: o[4] for o in outputs if o[3] == 0}


@FUZZ
@given(case=st.one_of(infer_bodies(), plausible_infer_bodies()),
       cuts=st.lists(st.integers(min_value=0), max_size=4))
def test_fuzz_infer_response_through_the_parser(case, cuts: List[int]) -> None:
    """The same bodies framed as HTTP responses: feeding and parsing raise only tritonfast errors."""
    body, header_length = case
    headers = [("Content-Length", len(body))]
    if header_length is not None:
        headers.append(("Inference-Header-Content-Length", header_length))
    data = wire(b"HTTP/1.1 200 OK", headers, body)
    parser = _core.ResponseParser()
    assert feed_chunks(parser, split(data, cuts)) == len(data)
    assert parser.done and parser.inference_header_length == header_length
    try:
        outputs = _core.parse_infer_body(body, header_length)
    except (ProtocolError, DecodeError):
        with pytest.raises((ProtocolError, DecodeError)):
            parser.infer_result()
        return
    # Only outputs that parse_infer_body accepts and that hold a binary span
    # or nothing (shared memory) are turned into arrays here: JSON-data
    # outputs are covered by the deterministic tests below.
    assume(all(kind != 1 for *_, kind, _, _ in outputs))
    assume(all(len(shape) <= 32 for _, _, shape, *_ in outputs))
    try:
        result = parser.infer_result()
    except (ProtocolError, DecodeError):
        return
    assert list(result) == list(dict.fromkeys(o[0] for o in outputs))
    if len({o[0] for o in outputs}) < len(outputs):
        return  # repeated names (Triton never sends them): the last one wins
    for name, datatype, shape, kind, offset, size in outputs:
        if kind == 2:  # shared memory: the caller reads it from its region
            assert result[name] == (datatype, tuple(shape))
    by_name = {o[0]: o for o in outputs}
    for name, array in result.items():
        _, datatype, shape, kind, offset, size = by_name[name]
        if kind == 0 and datatype != "BYTES":
            assert array.shape == tuple(shape)
            assert array.tobytes() == body[offset:offset + size]


# --------------------------------------------------------------------------- JSON-data outputs (library bugs)


def _json_output_response(output: dict) -> bytes:
    body = json.dumps({"outputs": [output]}).encode()
    return wire(b"HTTP/1.1 200 OK", [("Content-Length", len(body))], body)


@pytest.mark.parametrize(
    "output",
    [
        {"name": "o", "datatype": "INT32", "shape": [3], "data": [1, 2]},
        {"name": "o", "datatype": "FP32", "shape": [1], "data": "abc"},
        {"name": "o", "datatype": "FP32", "shape": [1], "data": {"a": 1}},
        {"name": "o", "datatype": "BYTES", "shape": [1], "data": "abc"},
    ],
    ids=["count-mismatch", "string-data", "object-data", "bytes-not-array"],
)
def test_json_output_not_matching_its_shape_is_a_protocol_error(output: dict) -> None:
    parser = _core.ResponseParser()
    parser.feed(_json_output_response(output))
    with pytest.raises(ProtocolError, match="output 'o'"):
        parser.infer_result()


def test_header_values_that_are_not_utf8() -> None:
    parser = _core.ResponseParser()
    parser.feed(b"HTTP/1.1 200 OK\r\nX-Name: caf\xe9\r\nContent-Length: 0\r\n\r\n")
    assert parser.done
    assert ("X-Name", "caf\xe9") in parser.headers


def test_error_body_that_is_not_utf8() -> None:
    parser = _core.ResponseParser()
    parser.feed(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 3\r\n\r\n\xff\xfe\x00")
    with pytest.raises(_ServerError) as info:
        parser.infer_result()
    assert info.value.status == 502


@pytest.mark.parametrize(
    ("shape", "size"),
    # numpy 1 holds at most 32 dimensions, numpy 2 at most 64: 65 is past both. The
    # C++ parser refuses these itself (numpy's strides are int64: [0, 2**62] FP32
    # would overflow them although the array is empty).
    [([1] * 65, 4), ([0, 2**62, 2**62], 0), ([0, 2**62], 0)],
    ids=["65-dimensions", "empty-but-huge", "empty-stride-overflow"],
)
def test_binary_output_shape_numpy_cannot_hold_is_a_protocol_error(shape: list, size: int) -> None:
    body, header_length = infer_body(
        [{"name": "o", "datatype": "FP32", "shape": shape, "parameters": {"binary_data_size": size}}],
        [b"\0" * size])
    with pytest.raises(ProtocolError, match="output 'o'"):
        _core.parse_infer_body(body, header_length)
    parser = _core.ResponseParser()
    parser.feed(wire(b"HTTP/1.1 200 OK", [("Inference-Header-Content-Length", header_length),
                                          ("Content-Length", len(body))], body))
    with pytest.raises(ProtocolError, match="output 'o'"):
        parser.infer_result()
