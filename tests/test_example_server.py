"""``tritonfast example-server``: a local Triton with the README's models, in the foreground.

The full cycle runs the command as a process on free ports (with TMPDIR pointed
at an empty directory), runs the README's first example and BYTES snippet (read
from README.md, the url's port changed) and a short ``tritonfast perf`` against
it, then sends Ctrl-C (SIGINT) and checks that it exited 0 leaving no process,
no file and no shared memory behind. The error paths run in-process: they end
before any server starts.
"""

from __future__ import annotations

import contextlib
import io
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import List

import numpy as np
import pytest

from tritonfast import ModelClient
from tritonfast import _example_server
from tritonfast._example_server import EXIT_SERVER_FAILED, EXIT_USAGE, ModelSpec, TensorSpec, free_ports
from tritonfast.perf.cli import main as tritonfast_main
from tritonfast.perf.cli import perf_main

REPO = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 120.0  # as the session fixtures allow
EXIT_TIMEOUT_S = 60.0
READY_LINE = "Press Ctrl-C to stop."
# The `tritonfast` console script's entry point, run by this interpreter.
COMMAND = [sys.executable, "-c", "import sys; from tritonfast.perf.cli import main; sys.exit(main())"]


def _readme_block(containing: str) -> str:
    """The first ```python block of README.md that contains ``containing``."""
    blocks = re.findall(r"^```python\n(.*?)^```", (REPO / "README.md").read_text(), re.MULTILINE | re.DOTALL)
    matching = [block for block in blocks if containing in block]
    assert matching, f"README.md has no python example containing {containing!r}"
    return matching[0]


def _run_snippet(code: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})
    return out.getvalue()


def _lines(stream) -> queue.Queue:
    """The stream's lines, read by a thread (so waiting for one can time out); None at EOF."""
    lines: queue.Queue = queue.Queue()

    def pump() -> None:
        with contextlib.suppress(ValueError, OSError):  # closed under it after a failure
            for line in stream:
                lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _read_until(lines: queue.Queue, marker: str, seen: List[str], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return False
        if line is None:
            return False
        seen.append(line)
        if marker in line:
            return True
    return False


class _Command:
    """``tritonfast example-server`` as a process on free ports, TMPDIR an empty directory."""

    def __init__(self, tmp_path: Path):
        self.http_port, grpc_port, metrics_port = free_ports(3)
        self.temp = tmp_path / "tmp"
        self.temp.mkdir()
        self.process = subprocess.Popen(
            [*COMMAND, "example-server", f"--http-port={self.http_port}", f"--grpc-port={grpc_port}",
             f"--metrics-port={metrics_port}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "TMPDIR": str(self.temp)}, cwd=tmp_path,
        )  # fmt: skip
        self.output: List[str] = []
        self._lines = _lines(self.process.stdout)

    def wait_until_ready(self) -> str:
        assert _read_until(self._lines, READY_LINE, self.output, READY_TIMEOUT_S), self.text
        return self.text

    def wait(self) -> int:
        returncode = self.process.wait(timeout=EXIT_TIMEOUT_S)
        _read_until(self._lines, "\0", self.output, 5.0)  # the rest, up to EOF
        return returncode

    @property
    def text(self) -> str:
        return "".join(self.output)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()


@pytest.fixture
def command(tmp_path):
    command = _Command(tmp_path)
    yield command
    command.close()


def _assert_nothing_left(command: _Command, family) -> None:
    assert not _example_server.still_alive(family), "processes outlived the command"
    assert os.listdir(command.temp) == [], "files outlived the command"
    assert not list(_example_server.SHM_DIR.glob(f"tritonfast-{command.process.pid}-*")), "shared memory outlived it"


@pytest.mark.slow
def test_example_server_serves_the_readme_examples_and_stops_cleanly(command):
    banner = command.wait_until_ready()
    port = command.http_port
    assert f"HTTP:    http://127.0.0.1:{port}" in banner
    assert f'ModelClient("localhost:{port}", "AddSub")' in banner
    for name in ("AddSub: INPUT_1, INPUT_2 -> add, sub", "identity_fp32: INPUT0 -> OUTPUT0",
                 "identity_bytes: INPUT0 -> OUTPUT0"):
        assert name in banner
    assert os.listdir(command.temp) != []  # its repository and log live there while it runs
    family = _example_server.process_family(command.process.pid)
    assert len(family) >= 4, family  # tritonserver and a Python-backend stub per model

    # The README's first example, verbatim but for the port.
    first = _readme_block('"AddSub"').replace("localhost:8000", f"localhost:{port}")
    assert _run_snippet(first).split() == ["[[2.]", "[2.]]", "[[0.]", "[0.]]"]
    # The README's asyncio example, verbatim but for the port.
    aio = _readme_block("AsyncioModelClient").replace("localhost:8000", f"localhost:{port}")
    assert _run_snippet(aio).split() == ["[[100.]", "[100.]]"]
    # The README's BYTES snippet, and the same awkward elements through identity_bytes.
    _run_snippet(_readme_block("serialize_byte_tensor"))
    awkward = np.array([[b"a\x00b", b"", "é".encode()]], dtype=object)
    with ModelClient(f"localhost:{port}", "identity_bytes") as client:
        assert client.infer_batch(awkward)["OUTPUT0"].tolist() == awkward.tolist()
    # The README's perf example, short.
    assert perf_main(["-m", "identity_fp32", "-u", f"localhost:{port}", "--shape", "INPUT0:16",
                      "--request-count", "20"]) == 0

    command.process.send_signal(signal.SIGINT)
    assert command.wait() == 0, command.text
    assert "Traceback" not in command.text
    assert command.text.endswith("tritonfast example-server: Ctrl-C: stopping tritonserver ...\n"
                                 "tritonfast example-server: stopped\n")
    _assert_nothing_left(command, family)


@pytest.mark.slow
def test_a_server_that_dies_while_serving_is_reported(command):
    banner = command.wait_until_ready()
    server_pid = int(re.search(r"pid (\d+)\)", banner).group(1))
    family = _example_server.process_family(command.process.pid)
    assert server_pid in {proc.pid for proc in family}
    os.kill(server_pid, signal.SIGKILL)
    assert command.wait() == EXIT_SERVER_FAILED, command.text
    assert "tritonfast example-server: error: tritonserver was killed by SIGKILL while serving" in command.text
    assert "--- last " in command.text  # its log's tail
    _assert_nothing_left(command, family)


def test_help_lists_the_command_and_its_options(capsys):
    assert tritonfast_main(["--help"]) == 0
    assert "example-server" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        tritonfast_main(["example-server", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: tritonfast example-server ")
    out = " ".join(out.split())  # as wrapped for the terminal
    for text in ("--http-port", "--grpc-port", "--metrics-port", "--models", "default 8000", "AddSub",
                 "identity_fp32", "identity_bytes", "pip install nvidia-pytriton"):
        assert text in out


def test_without_nvidia_pytriton_it_says_how_to_install_it(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pytriton", None)  # importlib.util.find_spec("pytriton") -> None
    assert _example_server.main([], "tritonfast example-server") == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("tritonfast example-server: error: nvidia-pytriton is not installed")
    assert "pip install nvidia-pytriton" in err and 'pip install -e ".[test]"' in err


def test_a_port_in_use_is_a_clear_error(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        grpc_port, metrics_port = free_ports(2)
        status = _example_server.main([f"--grpc-port={port}", f"--http-port={grpc_port}",
                                       f"--metrics-port={metrics_port}"], "tritonfast example-server")
    assert status == EXIT_USAGE
    assert capsys.readouterr().err == (
        f"tritonfast example-server: error: port {port} on 127.0.0.1 is already in use (is another Triton "
        "server running?): stop it, or choose another port with --grpc-port\n")


@pytest.mark.parametrize("argv, message", [
    (["--models", "AddSub,nope"], "--models 'AddSub,nope': unknown model(s) nope; choose from AddSub, "),
    (["--http-port", "8100", "--grpc-port", "8100"], "the HTTP, gRPC and metrics ports must differ"),
    (["--http-port", "0"], "--http-port 0: a port is between 1 and 65535"),
])
def test_option_errors(capsys, argv, message):
    assert _example_server.main(argv, "tritonfast example-server") == EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_server_that_dies_shows_its_log(capsys, monkeypatch, tmp_path):
    # A model Triton cannot load: with --exit-on-error the server exits while starting.
    broken = ModelSpec("broken", "identity_numpy", 16, (TensorSpec("INPUT0", "NOPE"),),
                       (TensorSpec("OUTPUT0", "FP32"),))
    monkeypatch.setitem(_example_server.EXAMPLE_MODELS_BY_NAME, "broken", broken)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # re-read TMPDIR
    ports = free_ports(3)
    status = _example_server.main(["--models", "broken", f"--http-port={ports[0]}", f"--grpc-port={ports[1]}",
                                   f"--metrics-port={ports[2]}"], "tritonfast example-server")
    err = capsys.readouterr().err
    assert status == EXIT_SERVER_FAILED, err
    assert "tritonfast example-server: error: tritonserver exited with code 1" in err
    assert "--- last " in err and "TYPE_NOPE" in err  # the log's tail quotes the cause
    assert os.listdir(tmp_path) == []
