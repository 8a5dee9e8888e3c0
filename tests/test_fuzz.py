"""Coverage-guided fuzzing of the parsers that read network bytes (csrc/fuzz/fuzz_response.cpp).

The seed corpus is real: raw HTTP/1.1 responses of the session's tritonserver,
recorded byte for byte off a plain socket (health, model config, binary and
JSON inference responses of several datatypes, BYTES tensors, a model's
error, an unknown model). The target then runs for FUZZ_SECONDS under
libFuzzer with AddressSanitizer and UndefinedBehaviorSanitizer when clang++
(with libFuzzer) is installed; otherwise it is built with the C++ compiler as
a standalone driver (-DTRITONFAST_FUZZ_STANDALONE) that runs the corpus and a
fixed set of deterministic mutations of it under the same sanitizers.
TRITONFAST_FUZZ_NO_CLANG=1 forces the standalone branch.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from tests.triton_server import LOOPBACK, TritonServer

REPO = Path(__file__).resolve().parent.parent
FUZZ_SOURCE = REPO / "csrc" / "fuzz" / "fuzz_response.cpp"
CORE_SOURCES = sorted((REPO / "csrc" / "core").glob("*.cpp"))
# How long libFuzzer runs (its -max_total_time).
FUZZ_SECONDS = 20
# The standalone driver's mutations (its own default is 20,000; ~2 s on these seeds).
STANDALONE_RUNS = "20000"
COMMON_FLAGS = ["-std=c++17", "-O1", "-g", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer",
                "-pthread", f"-I{REPO / 'csrc'}"]  # fmt: skip
LIBFUZZER_SANITIZE = "-fsanitize=fuzzer,address,undefined"
STANDALONE_SANITIZE = "-fsanitize=address,undefined"
LINK_LIBS = ["-ldl", "-pthread"]
BUILD_TIMEOUT_S = 300
RUN_TIMEOUT_S = FUZZ_SECONDS + 240  # libFuzzer's own limit plus start-up, the corpus and the final merge
SOCKET_TIMEOUT_S = 10.0
OUTPUT_TAIL_LINES = 25


# =============================================================================
# Seed corpus: real responses, exactly as received
# =============================================================================


def _exchange(port: int, request: bytes) -> bytes:
    """Send one raw request; return the raw response (head and Content-Length body) as received."""
    with socket.create_connection((LOOPBACK, port), timeout=SOCKET_TIMEOUT_S) as sock:
        sock.sendall(request)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            assert chunk, f"server closed before the response head: {received!r}"
            received += chunk
        head, _, _ = received.partition(b"\r\n\r\n")
        length = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        assert length is not None, f"response without Content-Length: {head!r}"
        total = len(head) + 4 + length
        while len(received) < total:
            chunk = sock.recv(65536)
            assert chunk, f"server closed after {len(received)} of {total} response bytes"
            received += chunk
        assert len(received) == total, f"bytes past the response: {received[total:]!r}"
        return received


def _request(port: int, method: str, target: str, body: bytes = b"", headers: dict | None = None) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {LOOPBACK}:{port}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _infer(port: int, model: str, header: dict, binary: bytes = b"") -> bytes:
    """An /infer request: the JSON header, then `binary` (Triton's binary tensor extension)."""
    text = json.dumps(header, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/octet-stream" if binary else "application/json"}
    if binary:
        headers["Inference-Header-Content-Length"] = str(len(text))
    return _exchange(port, _request(port, "POST", f"/v2/models/{model}/infer", text + binary, headers))


def _bytes_wire(elements: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def _capture_corpus(port: int) -> dict[str, bytes]:
    corpus: dict[str, bytes] = {}

    def get(name: str, target: str) -> bytes:
        corpus[name] = _exchange(port, _request(port, "GET", target))
        return corpus[name]

    get("health_ready", "/v2/health/ready")
    get("server_metadata", "/v2")
    config = get("config_identity_fp32", "/v2/models/identity_fp32/config")
    assert _status(config) == 200, config
    config_json = json.loads(config.partition(b"\r\n\r\n")[2])
    in_name, out_name = config_json["input"][0]["name"], config_json["output"][0]["name"]
    assert (in_name, out_name) == ("INPUT0", "OUTPUT0"), config_json
    get("metadata_add_sub", "/v2/models/add_sub")
    get("config_identity_bytes", "/v2/models/identity_bytes/config")

    fp32 = np.arange(4, dtype=np.float32) * np.float32(1.5) - np.float32(2.0)
    binary_input = {"name": in_name, "shape": [1, 4], "datatype": "FP32",
                    "parameters": {"binary_data_size": fp32.nbytes}}  # fmt: skip
    corpus["infer_fp32_binary"] = _infer(
        port, "identity_fp32",
        {"id": "7", "inputs": [binary_input], "parameters": {"binary_data_output": True}}, fp32.tobytes())
    corpus["infer_fp32_json_output"] = _infer(
        port, "identity_fp32",
        {"id": "7", "inputs": [binary_input], "outputs": [{"name": out_name, "parameters": {"binary_data": False}}]},
        fp32.tobytes())
    corpus["infer_fp32_all_json"] = _infer(
        port, "identity_fp32",
        {"inputs": [{"name": in_name, "shape": [2, 2], "datatype": "FP32", "data": fp32.tolist()}],
         "outputs": [{"name": out_name, "parameters": {"binary_data": False}}]})
    corpus["infer_nobatch_binary"] = _infer(
        port, "nobatch",
        {"id": "7", "inputs": [{"name": in_name, "shape": [4], "datatype": "FP32",
                                "parameters": {"binary_data_size": fp32.nbytes}}],
         "outputs": [{"name": out_name, "parameters": {"binary_data": True}}]}, fp32.tobytes())

    two = {"shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": fp32.nbytes}}
    corpus["infer_add_sub_mixed"] = _infer(
        port, "add_sub",
        {"id": "7", "inputs": [{"name": "INPUT0", **two}, {"name": "INPUT1", **two}],
         "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": True}},
                     {"name": "OUTPUT1", "parameters": {"binary_data": False}}]},
        fp32.tobytes() + (fp32 * 2).tobytes())

    elements = [b"ab", b"", b"xyz\x00", "\u00e9t\u00e9".encode()]
    wire = _bytes_wire(elements)
    bytes_input = {"name": in_name, "shape": [1, len(elements)], "datatype": "BYTES",
                   "parameters": {"binary_data_size": len(wire)}}  # fmt: skip
    corpus["infer_bytes_binary"] = _infer(
        port, "identity_bytes", {"id": "7", "inputs": [bytes_input], "parameters": {"binary_data_output": True}}, wire)
    corpus["infer_bytes_json_output"] = _infer(
        port, "identity_bytes",
        {"id": "7", "inputs": [bytes_input], "outputs": [{"name": out_name, "parameters": {"binary_data": False}}]},
        wire)

    # JSON-encoded outputs of other datatypes, for decode_json_output (Triton
    # refuses to send FP16 and BF16 as JSON).
    samples = {
        "BOOL": np.array([True, False, True], dtype=np.bool_),
        "INT8": np.array([-128, 0, 127], dtype=np.int8),
        "UINT64": np.array([0, 1, 2**64 - 1], dtype=np.uint64),
        "INT64": np.array([-(2**63), 0, 2**63 - 1], dtype=np.int64),
        "UINT8": np.array([0, 7, 255], dtype=np.uint8),
        "FP64": np.array([-1e300, 5e-324, 0.1], dtype=np.float64),
    }
    for datatype, array in samples.items():
        corpus[f"infer_{datatype.lower()}_json_output"] = _infer(
            port, f"identity_{datatype.lower()}",
            {"id": "7",
             "inputs": [{"name": in_name, "shape": [1, array.size], "datatype": datatype,
                         "parameters": {"binary_data_size": array.nbytes}}],
             "outputs": [{"name": out_name, "parameters": {"binary_data": False}}]},
            array.tobytes())

    corpus["infer_echo_params"] = _infer(
        port, "echo_params",
        {"id": "7", "inputs": [{"name": in_name, "shape": [4], "datatype": "FP32",
                                "parameters": {"binary_data_size": fp32.nbytes}}],
         "parameters": {"binary_data_output": True, "flag": True, "n": 3, "s": "text"}}, fp32.tobytes())

    # Errors: the model's own, an unknown model, a malformed request.
    corpus["infer_raises"] = _infer(
        port, "raises", {"id": "7", "inputs": [binary_input], "parameters": {"binary_data_output": True}},
        fp32.tobytes())
    corpus["infer_unknown_model"] = _infer(
        port, "no_such_model", {"inputs": [binary_input]}, fp32.tobytes())
    corpus["infer_malformed"] = _exchange(
        port, _request(port, "POST", "/v2/models/identity_fp32/infer", b'{"inputs": [',
                       {"Content-Type": "application/json"}))

    for name in ("health_ready", "server_metadata", "metadata_add_sub", "config_identity_bytes",
                 *(n for n in corpus if n.startswith("infer_") and n not in
                   ("infer_raises", "infer_unknown_model", "infer_malformed"))):
        assert _status(corpus[name]) == 200, f"{name}: {corpus[name][:2000]!r}"
    assert _status(corpus["infer_unknown_model"]) in (400, 404), corpus["infer_unknown_model"]
    for name in ("infer_raises", "infer_malformed"):
        assert _status(corpus[name]) >= 400, f"{name}: {corpus[name]!r}"
    assert b"inference-header-content-length" in corpus["infer_fp32_binary"].lower()
    return corpus


# =============================================================================
# Building and running the target
# =============================================================================


def _run_compiler(command: list[str]) -> None:
    build = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    assert build.returncode == 0, f"building the fuzz target failed:\n{' '.join(command)}\n{build.stderr[-4000:]}"


def _build(cxx: str, compile_flags: list[str], link_flags: list[str], out_dir: Path) -> Path:
    """Compile every source (in parallel: ~30 s sanitized and one at a time), then link."""
    out_dir.mkdir()
    sources = [FUZZ_SOURCE, *CORE_SOURCES]
    objects = [out_dir / f"{source.stem}.o" for source in sources]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for future in [pool.submit(_run_compiler, [cxx, *compile_flags, "-c", str(source), "-o", str(obj)])
                       for source, obj in zip(sources, objects)]:  # fmt: skip
            future.result()
    binary = out_dir / "fuzz_response"
    _run_compiler([cxx, *link_flags, *map(str, objects), "-o", str(binary), *LINK_LIBS])
    return binary


def _libfuzzer_clang(tmp_path: Path) -> str | None:
    """clang++ when it is installed and links libFuzzer programs (unless TRITONFAST_FUZZ_NO_CLANG=1)."""
    if os.environ.get("TRITONFAST_FUZZ_NO_CLANG") == "1":
        return None
    clang = shutil.which("clang++")
    if clang is None:
        return None
    probe = tmp_path / "probe.cpp"
    probe.write_text('#include <cstddef>\n#include <cstdint>\n'
                     'extern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n')
    result = subprocess.run([clang, LIBFUZZER_SANITIZE, str(probe), "-o", str(tmp_path / "probe")],
                            capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)  # fmt: skip
    if result.returncode != 0:
        sys.stdout.write(f"clang++ cannot link libFuzzer programs; using the standalone driver:\n"
                         f"{result.stderr[-1000:]}\n")  # fmt: skip
        return None
    return clang


def _compiler() -> str:
    cxx = shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++")
    assert cxx is not None, "no C++ compiler found (set CXX): the fuzz target needs one, as does the build"
    return cxx


def test_fuzz_response_parsers(triton_server: TritonServer, tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    for name, response in _capture_corpus(triton_server.http_port).items():
        (seeds / name).write_bytes(response)
    corpus = tmp_path / "corpus"  # libFuzzer adds what it finds here; `seeds` stays as captured
    shutil.copytree(seeds, corpus)
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()

    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")  # fmt: skip
    clang = _libfuzzer_clang(tmp_path)
    if clang is not None:
        flags = [*COMMON_FLAGS, LIBFUZZER_SANITIZE]
        binary = _build(clang, flags, [LIBFUZZER_SANITIZE], tmp_path / "build")
        command = [str(binary), f"-max_total_time={FUZZ_SECONDS}", "-timeout=5", "-rss_limit_mb=2048",
                   "-print_final_stats=1", f"-artifact_prefix={artifacts}/", str(corpus)]  # fmt: skip
        branch = f"libFuzzer ({clang}, {FUZZ_SECONDS} s)"
    else:
        flags = [*COMMON_FLAGS, "-DTRITONFAST_FUZZ_STANDALONE", STANDALONE_SANITIZE]
        binary = _build(_compiler(), flags, [STANDALONE_SANITIZE], tmp_path / "build")
        command = [str(binary), str(corpus)]
        env.setdefault("TRITONFAST_FUZZ_RUNS", STANDALONE_RUNS)
        env["TRITONFAST_FUZZ_ARTIFACT"] = str(artifacts / "crash-standalone")
        branch = f"standalone driver ({_compiler()}, {env['TRITONFAST_FUZZ_RUNS']} mutations)"

    run = subprocess.run(command, capture_output=True, text=True, errors="replace",
                         timeout=RUN_TIMEOUT_S, env=env, cwd=tmp_path)  # fmt: skip
    output = run.stdout + run.stderr
    tail = "\n".join(output.splitlines()[-OUTPUT_TAIL_LINES:])
    sys.stdout.write(f"fuzz_response, {branch}, {len(list(seeds.iterdir()))} seeds:\n{tail}\n")
    crashes = sorted(p.name for p in artifacts.iterdir())
    assert run.returncode == 0, (
        f"fuzz_response found a bug (exit {run.returncode}; inputs kept: {crashes} in {artifacts}):\n"
        f"{output[-8000:]}"
    )
