"""A local Triton Inference Server with example models: ``tritonfast example-server``.

It runs the ``tritonserver`` binary bundled in the ``nvidia-pytriton`` wheel, on
CPU, over a Python-backend model repository written to a temporary directory,
so neither a container nor a system-wide Triton install is needed. The test
suite's servers (``tests/triton_server.py``) are built from the same parts:

* :func:`write_model_repository` writes ``<model>/config.pbtxt`` and
  ``<model>/1/model.py`` for :class:`ModelSpec` s (behaviours in
  :data:`BEHAVIOURS`, or more passed in);
* :func:`tritonserver_binary`, :func:`child_environment` (this interpreter's
  ``LIBDIR`` on ``LD_LIBRARY_PATH``, without which the Python-backend stub dies
  on a pyenv Python) and :func:`build_backend_directory` (the bundled backend
  with this Python's stub) start the binary;
* :class:`TritonServer` runs it in its own process group, is ready (server and
  every model) when constructed, and :meth:`ManagedServer.stop` unloads the
  models, stops it and kills whatever is left of its process tree, so no
  ``tritonserver`` or ``triton_python_backend_stub`` process and no shared
  memory outlives it.

Nothing here imports ``pytriton``: the wheel is only located
(``importlib.util.find_spec``) and its files used, and ``import tritonfast``
never imports this module.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import errno
import http.client
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set

# --- timing ----------------------------------------------------------------
READY_TIMEOUT_S = 120.0  # the tests' raw repository (25 Python-backend stubs) starts in ~12 s on 2 idle cores
READY_POLL_INTERVAL_S = 0.2
PROBE_TIMEOUT_S = 2.0  # one readiness GET; the server answers in milliseconds once listening
# On SIGTERM tritonserver first waits up to --exit-timeout-secs (default 30)
# for open client connections, and only the rest of that budget is left to
# unload the models (which stops their stubs and frees their shared memory).
# So stop() unloads the models through the repository API first, and the exit
# timeout only bounds the wait for idle keep-alive connections.
UNLOAD_TIMEOUT_S = 20.0  # ~1 s per model in parallel; 4 instances of a model take ~5 s
EXIT_TIMEOUT_S = 2
STOP_GRACE_S = 15.0  # SIGTERM -> SIGKILL; above the exit timeouts (PyTriton's too)
STOP_POLL_INTERVAL_S = 0.05
LOG_TAIL_LINES = 30  # how much of the server log a start-up error quotes ...
LOG_ERROR_LINES = 20  # ... besides its first error lines (the cause is often far from the end)
# glog error lines ("E1124 14:58:00.38 ..."), protobuf's "[libprotobuf ERROR", Python tracebacks.
_LOG_ERROR_LINE = re.compile(r"^E\d{4} |ERROR|Error|Traceback")

# --- server configuration --------------------------------------------------
RESPONSE_CACHE_BYTES = 64 * 1024 * 1024  # room for a few cached responses of the *_cached models
# Each Python-backend stub talks to Triton through its own shared-memory pool.
# Starting small keeps ~25 idle stubs cheap; growing in large steps makes a
# 256 MiB request (input + output live in the pool at once) take few resizes.
PYTHON_SHM_DEFAULT_BYTES = 4 * 1024 * 1024
PYTHON_SHM_GROWTH_BYTES = 64 * 1024 * 1024
LOOPBACK = "127.0.0.1"  # where the servers listen unless told otherwise (Triton's default is 0.0.0.0)
# HTTP headers matching this reach the models as request parameters
# (``x-tf-*`` for tritonfast's tests, ``header*`` as in PyTriton's example).
HTTP_HEADER_FORWARD_PATTERN = "x-tf-.*|header.*"

# Each Python-backend stub's shared-memory pool is a file here; the server
# unlinks them when it unloads its models, stop() sweeps what a killed one left.
SHM_DIR = Path("/dev/shm")

INSTALL_HINT = 'pip install nvidia-pytriton (or pip install -e ".[test]" in a clone of tritonfast)'


class ServerError(RuntimeError):
    """The bundled server cannot be started or stopped serving; the message says why."""


# =============================================================================
# Model repository
# =============================================================================


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str  # Triton datatype without the TYPE_ prefix, e.g. "FP32"
    dims: tuple[int, ...] = (-1,)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    behaviour: str  # key of the behaviours write_model_repository is given
    max_batch_size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    instance_count: int = 1
    response_cache: bool = False


def identity(name: str, datatype: str, max_batch_size: int = 16, response_cache: bool = False) -> ModelSpec:
    """``INPUT0`` returned as ``OUTPUT0``, both of ``datatype`` with dims [-1]."""
    # BYTES goes through numpy (object arrays have no DLPack form); the rest stay copy-free.
    return ModelSpec(
        name=name,
        behaviour="identity_numpy" if datatype == "BYTES" else "identity_dlpack",
        max_batch_size=max_batch_size,
        inputs=(TensorSpec("INPUT0", datatype),),
        outputs=(TensorSpec("OUTPUT0", datatype),),
        response_cache=response_cache,
    )


# Bodies of ``TritonPythonModel._respond(self, request)`` per behaviour. The
# generated module has INPUTS and OUTPUTS: the spec's tensor names, in order.
BEHAVIOURS: Dict[str, str] = {
    "identity_dlpack": """
        tensor = _input(request, INPUTS[0])
        return _response(pb_utils.Tensor.from_dlpack(OUTPUTS[0], tensor.to_dlpack()))
    """,
    "identity_numpy": """
        return _response(pb_utils.Tensor(OUTPUTS[0], _input(request, INPUTS[0]).as_numpy()))
    """,
    "add_sub": """
        a = _input(request, INPUTS[0]).as_numpy()
        b = _input(request, INPUTS[1]).as_numpy()
        return _response(pb_utils.Tensor(OUTPUTS[0], a + b), pb_utils.Tensor(OUTPUTS[1], a - b))
    """,
}

_MODEL_PY = '''\
"""Generated by tritonfast._example_server: model {name!r} ({behaviour})."""
import time

import numpy as np
import triton_python_backend_utils as pb_utils

INPUTS = {inputs!r}
OUTPUTS = {outputs!r}


def _input(request, name):
    return pb_utils.get_input_tensor_by_name(request, name)


def _response(*outputs):
    return pb_utils.InferenceResponse(output_tensors=list(outputs))


class TritonPythonModel:
    def execute(self, requests):
        return [self._respond(request) for request in requests]

    def _respond(self, request):
{body}'''


def _tensor_config(tensor: TensorSpec) -> str:
    # model_config.proto calls the BYTES datatype TYPE_STRING.
    data_type = "TYPE_STRING" if tensor.datatype == "BYTES" else f"TYPE_{tensor.datatype}"
    dims = ", ".join(str(d) for d in tensor.dims)
    return f'  {{ name: "{tensor.name}", data_type: {data_type}, dims: [ {dims} ] }}'


def _config_pbtxt(spec: ModelSpec) -> str:
    lines = [
        f'name: "{spec.name}"',
        'backend: "python"',
        f"max_batch_size: {spec.max_batch_size}",
        "input [",
        ",\n".join(_tensor_config(t) for t in spec.inputs),
        "]",
        "output [",
        ",\n".join(_tensor_config(t) for t in spec.outputs),
        "]",
        f"instance_group [ {{ count: {spec.instance_count}, kind: KIND_CPU }} ]",
    ]
    if spec.response_cache:
        lines.append("response_cache { enable: true }")
    return "\n".join(lines) + "\n"


def _model_py(spec: ModelSpec, behaviours: Mapping[str, str]) -> str:
    body = textwrap.indent(textwrap.dedent(behaviours[spec.behaviour]).strip(), " " * 8)
    return _MODEL_PY.format(
        name=spec.name, behaviour=spec.behaviour, body=body + "\n",
        inputs=tuple(t.name for t in spec.inputs), outputs=tuple(t.name for t in spec.outputs),
    )  # fmt: skip


def write_model_repository(
    path: str | os.PathLike[str], models: Iterable[ModelSpec], behaviours: Optional[Mapping[str, str]] = None
) -> Path:
    """Write a Python-backend model repository (``<model>/config.pbtxt``, ``<model>/1/model.py``).

    ``behaviours`` adds bodies of ``_respond(self, request)`` to :data:`BEHAVIOURS`.
    """
    known = {**BEHAVIOURS, **(behaviours or {})}
    root = Path(path)
    for spec in models:
        version_dir = root / spec.name / "1"
        version_dir.mkdir(parents=True, exist_ok=True)
        (root / spec.name / "config.pbtxt").write_text(_config_pbtxt(spec))
        (version_dir / "model.py").write_text(_model_py(spec, known))
    return root


# =============================================================================
# The bundled binary and the environment it needs
# =============================================================================


def pytriton_package_dir() -> Path:
    """Where the ``pytriton`` package is installed (found without importing it)."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ServerError(f"nvidia-pytriton is not installed; it bundles the tritonserver binary: {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations)))


def bundled_server_dir() -> Path:
    return pytriton_package_dir() / "tritonserver"


def tritonserver_binary() -> Path:
    binary = bundled_server_dir() / "bin" / "tritonserver"
    if not binary.is_file():
        raise ServerError(f"nvidia-pytriton has no tritonserver binary at {binary} (a wheel for another "
                          f"platform, or a broken install?): {INSTALL_HINT}")
    return binary


def child_environment() -> Dict[str, str]:
    """Environment for tritonserver (or a PyTriton app) and its Python-backend stubs.

    The stub links ``libpython3.X.so``; without this interpreter's LIBDIR first
    it picks up the system libpython, which fails with ``'_thread.RLock' object
    has no attribute '_recursion_count'``. ``nvidia_pytriton.libs`` holds the
    wheel's vendored libraries (a copied stub loses its relative RUNPATH).
    """
    env = os.environ.copy()
    # A sanitizer run of the tests (tests/conftest.py) preloads ASan into this
    # process; the server is not built for it.
    for name in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS", "TRITONFAST_SANITIZED_CORE"):
        env.pop(name, None)
    lib_dirs = [str(sysconfig.get_config_var("LIBDIR"))]
    vendored = pytriton_package_dir().parent / "nvidia_pytriton.libs"
    if vendored.is_dir():
        lib_dirs.append(str(vendored))
    if env.get("LD_LIBRARY_PATH"):
        lib_dirs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(lib_dirs)
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    return env


def python_backend_stub() -> Path:
    """The wheel's Python-backend stub for this interpreter's Python version."""
    python_version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stubs = bundled_server_dir() / "python_backend_stubs"
    stub = stubs / python_version / "triton_python_backend_stub"
    if not stub.is_file():
        available = sorted(p.name for p in stubs.iterdir() if p.is_dir()) if stubs.is_dir() else []
        raise ServerError(f"nvidia-pytriton has no Python-backend stub for Python {python_version} "
                          f"(it has {available}); run this with one of those Pythons")
    return stub


def build_backend_directory(dest: Path) -> Path:
    """Create ``dest/backends/python`` with the bundled backend and this Python's stub.

    The wheel ships one stub per Python version next to the backend, so the
    backend directory is assembled here instead of modifying site-packages.
    """
    bundled = bundled_server_dir()
    stub = python_backend_stub()
    python_dir = dest / "backends" / "python"
    python_dir.mkdir(parents=True)
    for source in (bundled / "backends" / "python").iterdir():
        if source.is_file():
            (python_dir / source.name).symlink_to(source)
    shutil.copy2(stub, python_dir / stub.name)
    return dest / "backends"


def free_ports(count: int, address: str = LOOPBACK) -> List[int]:
    """Distinct ports the OS considers free right now (bound to port 0 together, read, released)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in socks:
            sock.bind((address, 0))
        return [sock.getsockname()[1] for sock in socks]


def port_problem(address: str, port: int) -> Optional[str]:
    """Why tritonserver could not listen on ``address:port`` now (None: it can).

    Binds as a server does (SO_REUSEADDR, so connections still in TIME_WAIT
    do not count), which Linux refuses while another socket listens there.
    """
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return "already in use"
            return e.strerror or str(e)
    return None


# =============================================================================
# Process-tree bookkeeping (Linux /proc)
# =============================================================================


@dataclass(frozen=True)
class Proc:
    """A process, identified by pid and start time (pids get reused)."""

    pid: int
    start_ticks: int
    ppid: int = field(compare=False)  # changes when the parent dies
    pgid: int = field(compare=False)


def read_proc(pid: int) -> Optional[Proc]:
    """The process ``pid`` if it is alive and not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may contain spaces
    if fields[0] in ("Z", "X"):
        return None
    return Proc(pid, start_ticks=int(fields[19]), ppid=int(fields[1]), pgid=int(fields[2]))


def _living_processes() -> List[Proc]:
    procs = (read_proc(int(entry)) for entry in os.listdir("/proc") if entry.isdigit())
    return [proc for proc in procs if proc is not None]


def process_family(leader: int) -> Set[Proc]:
    """Living members of the leader's process group plus all its descendants."""
    procs = _living_processes()
    family = {proc for proc in procs if proc.pgid == leader}
    children: Dict[int, List[Proc]] = {}
    for proc in procs:
        children.setdefault(proc.ppid, []).append(proc)
    pending = [leader]
    while pending:
        for child in children.get(pending.pop(), []):
            family.add(child)
            pending.append(child.pid)
    return family


def still_alive(procs: Iterable[Proc]) -> Set[Proc]:
    return {proc for proc in procs if read_proc(proc.pid) == proc}


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the forked child must not dlopen


def _set_parent_death_signal() -> None:
    """Child-side: get SIGTERM if the parent dies without calling stop()."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


# =============================================================================
# Servers
# =============================================================================


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_S) as response:
            return bool(response.status == 200)
    except (OSError, http.client.HTTPException):  # refused, reset, timed out, 4xx/5xx
        return False


def _post(url: str) -> bytes:
    """POST an empty JSON object; return the response body."""
    request = urllib.request.Request(url, data=b"{}", method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S) as response:
        body: bytes = response.read()
        return body


_RUNNING: Set[ManagedServer] = set()


@atexit.register
def _stop_running_servers() -> None:
    """Safety net for servers whose owner never called stop()."""
    for server in list(_RUNNING):
        server.stop()


class ManagedServer:
    """A child process serving Triton's HTTP/gRPC/metrics endpoints (free loopback ports unless given)."""

    description = "server"

    def __init__(
        self,
        work_dir: str | os.PathLike[str] | None,
        models: Sequence[str],
        ready_timeout_s: float,
        *,
        address: str = LOOPBACK,
        ports: Optional[Sequence[int]] = None,
    ) -> None:
        self._owns_work_dir = work_dir is None
        self.work_dir = Path(tempfile.mkdtemp(prefix="tritonfast-server-") if work_dir is None else work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.models = tuple(models)
        self.address = address
        self.http_port, self.grpc_port, self.metrics_port = free_ports(3) if ports is None else ports
        self.log_path = self.work_dir / f"{type(self).__name__.lower()}.log"
        self._process: Optional[subprocess.Popen[bytes]] = None
        self._ready_timeout_s = ready_timeout_s

    @property
    def _client_host(self) -> str:
        """Where a client on this machine reaches the server."""
        if self.address in ("0.0.0.0", ""):
            return LOOPBACK
        return f"[{self.address}]" if ":" in self.address else self.address

    @property
    def http_url(self) -> str:
        return f"http://{self._client_host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://{self._client_host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self._client_host}:{self.metrics_port}/metrics"

    @property
    def pid(self) -> Optional[int]:
        return None if self._process is None else self._process.pid

    def poll(self) -> Optional[int]:
        """The server's exit status once it has exited, else None (also None before start and after stop)."""
        return None if self._process is None else self._process.poll()

    def _command(self) -> List[str]:
        raise NotImplementedError

    def _start(self) -> None:
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_environment(),
                cwd=self.work_dir,
                start_new_session=True,  # own process group: stop() can find and kill the whole tree
                preexec_fn=_set_parent_death_signal,
            )
        _RUNNING.add(self)
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self._ready_timeout_s
        pending = [f"{self.http_url}/v2/health/ready"]
        pending += [f"{self.http_url}/v2/models/{name}/ready" for name in self.models]
        while pending:
            returncode = self._process.poll()
            if returncode is not None:
                raise ServerError(f"{self.description} exited with code {returncode}{self.log_excerpt()}")
            if time.monotonic() > deadline:
                raise ServerError(
                    f"{self.description} was not ready within {self._ready_timeout_s:.0f} s; "
                    f"still not ready: {pending}{self.log_excerpt()}"
                )
            pending = [url for url in pending if not _http_ok(url)]
            if pending:
                time.sleep(READY_POLL_INTERVAL_S)

    def log_lines(self) -> List[str]:
        try:
            return self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []

    def log_excerpt(self) -> str:
        """The log's error lines and its last lines, to quote in an error."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError as exc:
            return f"\n(no log: {exc})"
        errors = [line for line in lines if _LOG_ERROR_LINE.search(line)][:LOG_ERROR_LINES]
        tail = lines[-LOG_TAIL_LINES:]
        return (
            f"\n--- error lines of {self.log_path} ---\n" + "\n".join(errors)
            + f"\n--- last {len(tail)} lines ---\n" + "\n".join(tail)
        )  # fmt: skip

    def _shm_prefix(self, pid: int) -> str:
        """Name prefix, in SHM_DIR, of the shared memory of the server started as ``pid``."""
        raise NotImplementedError

    def _unload_models(self) -> None:
        """Shut the models down in order before the process is signalled (optional)."""

    def stop(self) -> None:
        """SIGTERM the server, SIGKILL its process group and tree if left after STOP_GRACE_S.

        Only the leader gets SIGTERM: it shuts its children down in order
        (PyTriton: models, then its tritonserver), which a SIGTERM to the
        whole group would pre-empt, leaking shared memory.
        """
        if self._process is not None and self._process.poll() is None:
            self._unload_models()
        process, self._process = self._process, None
        _RUNNING.discard(self)
        if process is None:
            return
        _terminate_tree(process)
        for leftover in SHM_DIR.glob(f"{self._shm_prefix(process.pid)}*"):
            leftover.unlink(missing_ok=True)
        if self._owns_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> ManagedServer:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


def _terminate_tree(process: subprocess.Popen[bytes]) -> None:
    family = process_family(process.pid)  # remembered: members may leave the group
    process.send_signal(signal.SIGTERM)
    survivors = _wait_for_exit(process, family, STOP_GRACE_S)
    for proc in survivors:  # the group's current members and all descendants included
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
    _wait_for_exit(process, survivors, STOP_GRACE_S)
    process.wait()


def _wait_for_exit(process: subprocess.Popen[bytes], family: Set[Proc], timeout_s: float) -> Set[Proc]:
    """Wait until ``family`` and the leader's current group and descendants are gone; return survivors."""
    deadline = time.monotonic() + timeout_s
    while True:
        process.poll()  # reaps our child, so a finished leader stops counting as alive
        survivors = still_alive(family | process_family(process.pid))
        if not survivors or time.monotonic() > deadline:
            return survivors
        time.sleep(STOP_POLL_INTERVAL_S)


class TritonServer(ManagedServer):
    """The bundled ``tritonserver`` on a model repository; ready when constructed.

    ``work_dir`` receives the private backend directory and the server log
    (a temporary directory, removed by :meth:`stop`, when omitted). ``ports``:
    HTTP, gRPC and metrics (free ones when omitted).
    """

    description = "tritonserver"

    def __init__(
        self,
        model_repository: str | os.PathLike[str],
        *,
        work_dir: str | os.PathLike[str] | None = None,
        models: Optional[Sequence[str]] = None,
        ready_timeout_s: float = READY_TIMEOUT_S,
        address: str = LOOPBACK,
        ports: Optional[Sequence[int]] = None,
    ) -> None:
        self.model_repository = Path(model_repository)
        if models is None:
            models = sorted(p.parent.name for p in self.model_repository.glob("*/config.pbtxt"))
        binary = tritonserver_binary()  # its error (no nvidia-pytriton) before anything is created
        super().__init__(work_dir, models, ready_timeout_s, address=address, ports=ports)
        self._binary = binary
        self._backend_directory = build_backend_directory(self.work_dir)
        self._shm_region_prefix = f"tritonfast-{os.getpid()}-{secrets.token_hex(4)}-"
        self._start()

    def _shm_prefix(self, pid: int) -> str:
        return self._shm_region_prefix

    def _unload_models(self) -> None:
        """Unload every model (asynchronous in Triton) and wait until none is left.

        Best effort: if the server does not cooperate, stop() still signals it
        and sweeps the shared memory its stubs leave behind.
        """
        repository = f"{self.http_url}/v2/repository"
        deadline = time.monotonic() + UNLOAD_TIMEOUT_S
        try:
            for name in self.models:
                _post(f"{repository}/models/{name}/unload")
            while time.monotonic() < deadline:
                index = json.loads(_post(f"{repository}/index"))
                if all(entry.get("state") == "UNAVAILABLE" for entry in index):
                    return
                time.sleep(READY_POLL_INTERVAL_S)
        except (OSError, http.client.HTTPException, ValueError):  # ValueError: not JSON
            pass

    def _command(self) -> List[str]:
        return [
            str(self._binary),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={self._backend_directory}",
            f"--backend-config=python,shm-region-prefix-name={self._shm_region_prefix}",
            f"--backend-config=python,shm-default-byte-size={PYTHON_SHM_DEFAULT_BYTES}",
            f"--backend-config=python,shm-growth-byte-size={PYTHON_SHM_GROWTH_BYTES}",
            f"--cache-directory={bundled_server_dir() / 'caches'}",
            f"--cache-config=local,size={RESPONSE_CACHE_BYTES}",
            f"--http-address={self.address}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.address}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.address}",
            f"--metrics-port={self.metrics_port}",
            f"--http-header-forward-pattern={HTTP_HEADER_FORWARD_PATTERN}",
            "--allow-http=true",
            "--allow-grpc=true",
            "--allow-metrics=true",
            "--allow-gpu-metrics=false",  # CPU-only; avoids DCGM probing
            "--model-control-mode=explicit",  # enables the unload API that stop() uses ...
            "--load-model=*",  # ... while still loading every model at start-up
            f"--exit-timeout-secs={EXIT_TIMEOUT_S}",
            "--exit-on-error=true",
            "--strict-readiness=true",
            "--log-verbose=0",
        ]

    def version(self) -> str:
        """Triton's version (``GET /v2``), or "?" when it does not say."""
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2", timeout=PROBE_TIMEOUT_S) as response:
                return str(json.loads(response.read()).get("version", "?"))
        except (OSError, http.client.HTTPException, ValueError, AttributeError):
            return "?"


# =============================================================================
# ``tritonfast example-server``
# =============================================================================

# The README's models. AddSub is PyTriton's add_sub example as PyTriton binds it
# (unnamed inputs become INPUT_1, INPUT_2; max_batch_size 128).
EXAMPLE_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        "AddSub", "add_sub", 128,
        (TensorSpec("INPUT_1", "FP32"), TensorSpec("INPUT_2", "FP32")),
        (TensorSpec("add", "FP32"), TensorSpec("sub", "FP32")),
    ),
    identity("identity_fp32", "FP32"),
    identity("identity_bytes", "BYTES"),
    # Served on request (--models): the response-cache variants of the README's benchmarks.
    identity("identity_fp32_cached", "FP32", response_cache=True),
    identity("identity_bytes_cached", "BYTES", response_cache=True),
)  # fmt: skip
EXAMPLE_MODELS_BY_NAME: Dict[str, ModelSpec] = {spec.name: spec for spec in EXAMPLE_MODELS}
DEFAULT_EXAMPLE_MODELS = ("AddSub", "identity_fp32", "identity_bytes")
DEFAULT_HTTP_PORT, DEFAULT_GRPC_PORT, DEFAULT_METRICS_PORT = 8000, 8001, 8002  # Triton's

EXIT_SERVER_FAILED = 1  # the server would not start, or died while serving (its log is quoted)
EXIT_USAGE = 2  # bad option, nvidia-pytriton missing, a port taken
EXIT_INTERRUPTED = 130  # Ctrl-C before the server was ready


def describe_model(spec: ModelSpec) -> str:
    """``AddSub: INPUT_1, INPUT_2 -> add, sub (FP32 [-1], max_batch_size 128)``."""
    datatypes = sorted({t.datatype for t in (*spec.inputs, *spec.outputs)})
    dims = sorted({str(list(t.dims)) for t in (*spec.inputs, *spec.outputs)})
    extra = ", response cache" if spec.response_cache else ""
    return (f"{spec.name}: {', '.join(t.name for t in spec.inputs)} -> {', '.join(t.name for t in spec.outputs)} "
            f"({'/'.join(datatypes)} {'/'.join(dims)}, max_batch_size {spec.max_batch_size}{extra})")


def _paragraphs(*texts: str) -> str:
    return "\n\n".join(textwrap.fill(text, width=78) for text in texts)


def build_parser(prog: str) -> argparse.ArgumentParser:
    catalogue = "\n".join(f"  {describe_model(spec)}" + ("" if spec.name in DEFAULT_EXAMPLE_MODELS else "  *")
                          for spec in EXAMPLE_MODELS)
    p = argparse.ArgumentParser(
        prog=prog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=_paragraphs(
            "Run a local Triton Inference Server with tritonfast's example models, in the foreground until "
            "Ctrl-C or SIGTERM.",
            "The server is the tritonserver bundled in the nvidia-pytriton wheel, on CPU, over Python-backend "
            "models written to a temporary directory; stopping it removes everything it started and wrote. "
            f"It needs nvidia-pytriton: {INSTALL_HINT}.",
        ),
        epilog=f"models (* only when named in --models):\n{catalogue}\n\n" + _paragraphs(
            "exit status: 0 stopped by Ctrl-C or SIGTERM; 1 the server failed to start or died (its log is "
            "shown); 2 bad option, nvidia-pytriton missing or a port in use; 130 interrupted before it was ready."
        ),
    )
    p.add_argument("--http-port", type=int, default=DEFAULT_HTTP_PORT, metavar="N",
                   help=f"HTTP port (default {DEFAULT_HTTP_PORT})")
    p.add_argument("--grpc-port", type=int, default=DEFAULT_GRPC_PORT, metavar="N",
                   help=f"gRPC port (default {DEFAULT_GRPC_PORT})")
    p.add_argument("--metrics-port", type=int, default=DEFAULT_METRICS_PORT, metavar="N",
                   help=f"Prometheus metrics port (default {DEFAULT_METRICS_PORT})")
    p.add_argument("--address", default=LOOPBACK, metavar="IP",
                   help=f"address to listen on (default {LOOPBACK}, this machine only; 0.0.0.0 for every interface)")
    p.add_argument("--models", default=",".join(DEFAULT_EXAMPLE_MODELS), metavar="NAME[,NAME...]",
                   help=f"models to serve (default {','.join(DEFAULT_EXAMPLE_MODELS)}; see below)")
    p.add_argument("--ready-timeout", type=float, default=READY_TIMEOUT_S, metavar="S",
                   help=f"seconds to wait for the server and its models to be ready (default {READY_TIMEOUT_S:g})")
    return p


class _Stop(Exception):
    """SIGTERM or SIGHUP arrived."""


def _raise_stop(signum: int, frame: Optional[FrameType]) -> None:
    raise _Stop(signal.Signals(signum).name)


def _chosen_models(text: str) -> List[ModelSpec]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in EXAMPLE_MODELS_BY_NAME]
    if unknown or not names:
        raise ServerError(f"--models {text!r}: " + (f"unknown model(s) {', '.join(unknown)}; " if unknown else "")
                          + f"choose from {', '.join(EXAMPLE_MODELS_BY_NAME)}")
    return [EXAMPLE_MODELS_BY_NAME[name] for name in dict.fromkeys(names)]


def _check_ports(args: argparse.Namespace) -> None:
    ports = {"--http-port": args.http_port, "--grpc-port": args.grpc_port, "--metrics-port": args.metrics_port}
    for option, port in ports.items():
        if not 1 <= port <= 65535:
            raise ServerError(f"{option} {port}: a port is between 1 and 65535")
    if len(set(ports.values())) < len(ports):
        raise ServerError(f"the HTTP, gRPC and metrics ports must differ (got {', '.join(map(str, ports.values()))})")
    for option, port in ports.items():
        problem = port_problem(args.address, port)
        if problem:
            raise ServerError(f"port {port} on {args.address} is {problem} (is another Triton server running?): "
                              f"stop it, or choose another port with {option}")


def _died_message(server: TritonServer, returncode: int, when: str) -> str:
    hint = ""
    if any("already in use" in line for line in server.log_lines()):
        hint = " (a port is in use: choose others with --http-port / --grpc-port / --metrics-port)"
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"tritonserver was killed by {signal.Signals(-returncode).name} {when}{hint}{server.log_excerpt()}"
    return f"tritonserver exited with code {returncode} {when}{hint}{server.log_excerpt()}"


def _banner(server: TritonServer, models: Sequence[ModelSpec]) -> str:
    host_port = f"localhost:{server.http_port}" if server.address in (LOOPBACK, "0.0.0.0") else \
        server.http_url.removeprefix("http://")
    lines = [
        f"Triton Inference Server {server.version()} is ready (CPU, Python backend; pid {server.pid})",
        f"  HTTP:    {server.http_url}    e.g. ModelClient(\"{host_port}\", \"{models[0].name}\")",
        f"  gRPC:    {server.grpc_url}",
        f"  metrics: {server.metrics_url}",
        "  models:",
        *(f"    {describe_model(spec)}" for spec in models),
        f"  work directory: {server.work_dir.parent} (removed on exit)",
        "Press Ctrl-C to stop.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None, prog: str = "tritonfast example-server") -> int:
    """Runs ``tritonfast example-server`` with ``argv``; returns the exit status."""
    args = build_parser(prog).parse_args(argv)

    def fail(message: str, status: int) -> int:
        sys.stderr.write(f"{prog}: error: {message}\n")
        sys.stderr.flush()
        return status

    try:
        models = _chosen_models(args.models)
        tritonserver_binary()  # nvidia-pytriton installed, with a stub for this Python?
        python_backend_stub()
        _check_ports(args)
    except ServerError as e:
        return fail(str(e), EXIT_USAGE)
    previous = {signal.SIGINT: signal.getsignal(signal.SIGINT)}
    previous.update({sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGTERM, signal.SIGHUP)})
    root = Path(tempfile.mkdtemp(prefix="tritonfast-example-server-"))
    server: Optional[TritonServer] = None
    try:
        repository = write_model_repository(root / "models", models)
        sys.stderr.write(f"{prog}: starting tritonserver with {', '.join(s.name for s in models)} ...\n")
        sys.stderr.flush()
        try:
            server = TritonServer(repository, work_dir=root / "server", models=[s.name for s in models],
                                  ready_timeout_s=args.ready_timeout, address=args.address,
                                  ports=(args.http_port, args.grpc_port, args.metrics_port))
        except ServerError as e:
            message = str(e)
            if "already in use" in message:
                message += "\n(a port is in use: choose others with --http-port / --grpc-port / --metrics-port)"
            return fail(message, EXIT_SERVER_FAILED)
        sys.stdout.write(_banner(server, models))
        sys.stdout.flush()
        while True:
            returncode = server.poll()
            if returncode is not None:
                return fail(_died_message(server, returncode, "while serving"), EXIT_SERVER_FAILED)
            time.sleep(READY_POLL_INTERVAL_S)
    except (KeyboardInterrupt, _Stop) as e:
        if server is None:
            sys.stderr.write(f"{prog}: interrupted before the server was ready\n")
            return EXIT_INTERRUPTED
        reason = "Ctrl-C" if isinstance(e, KeyboardInterrupt) else str(e)
        sys.stderr.write(f"{prog}: {reason}: stopping tritonserver ...\n")
        sys.stderr.flush()
        return 0
    finally:
        # A second Ctrl-C / SIGTERM must not cut the shutdown short (the
        # server's child processes and shared memory would outlive it).
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        try:
            if server is not None:
                server.stop()
            shutil.rmtree(root, ignore_errors=True)
        finally:
            for sig, handler in previous.items():
                if handler is not None:
                    signal.signal(sig, handler)
        if server is not None:
            sys.stderr.write(f"{prog}: stopped\n")
            sys.stderr.flush()
