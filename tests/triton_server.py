"""Real Triton Inference Server processes for the tests and benchmarks.

Both servers run the ``tritonserver`` binary bundled in the ``nvidia-pytriton``
wheel, so neither a container nor a system-wide Triton install is needed:

* :class:`TritonServer` runs the bare binary on a raw Python-backend model
  repository; :func:`write_model_repository` writes one holding the models
  listed in :data:`MODELS`.
* :class:`PyTritonServer` runs ``tests/pytriton_app.py``, which binds models
  with PyTriton (``Triton.bind``); it is the reference for PyTriton parity.

Each server runs in its own process group on free loopback ports, is ready
(server and every model) when its constructor returns, and ``stop()`` (also
run by ``with`` and at interpreter exit) shuts it down in order, then kills
whatever is left of its process tree, so no ``tritonserver`` or
``triton_python_backend_stub`` process and no shared memory outlives it.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
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
from typing import Iterable, Sequence

# --- timing ----------------------------------------------------------------
READY_TIMEOUT_S = 120.0  # the raw repository (25 Python-backend stubs) starts in ~12 s on 2 idle cores
READY_POLL_INTERVAL_S = 0.2
PROBE_TIMEOUT_S = 2.0  # one readiness GET; the server answers in milliseconds once listening
# On SIGTERM tritonserver first waits up to --exit-timeout-secs (default 30)
# for open client connections, and only the rest of that budget is left to
# unload the models (which stops their stubs and frees their shared memory).
# So stop() unloads the models through the repository API first, and the exit
# timeout only bounds the wait for idle keep-alive connections.
UNLOAD_TIMEOUT_S = 20.0  # ~1 s per model in parallel; `slow` (4 instances) takes ~5 s
EXIT_TIMEOUT_S = 2
# PyTriton stops its tritonserver before unloading its models, so there the
# exit timeout must cover idle connections *and* unloading (~3 s for 3 models).
PYTRITON_EXIT_TIMEOUT_S = 8
STOP_GRACE_S = 15.0  # SIGTERM -> SIGKILL; above both exit timeouts
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
LOOPBACK = "127.0.0.1"  # the servers listen here only (Triton's default is 0.0.0.0)
# HTTP headers matching this reach the models as request parameters
# (``x-tf-*`` for our own tests, ``header*`` as in PyTriton's example).
HTTP_HEADER_FORWARD_PATTERN = "x-tf-.*|header.*"
PYTRITON_HEADER_FORWARD_PATTERN = "header.*"  # PyTriton's use_parameters_and_headers example

# Each Python-backend stub's shared-memory pool is a file here; the server
# unlinks them when it unloads its models, stop() sweeps what a killed one left.
SHM_DIR = Path("/dev/shm")

RAISES_MESSAGE = "intentional failure in model 'raises'"
PYTRITON_APP = Path(__file__).with_name("pytriton_app.py")
PYTRITON_MODEL_NAMES = ("AddSub", "Identity", "ParamsAndHeaders")  # bound by pytriton_app.py


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
    behaviour: str  # key of _RESPOND_BODIES
    max_batch_size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    instance_count: int = 1
    response_cache: bool = False


# Datatypes with an identity_<datatype lowercase> model. BF16 works because the
# identity passes tensors through DLPack; the model never needs a numpy bf16.
IDENTITY_DATATYPES = (
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "BF16", "FP32", "FP64", "BYTES",
)  # fmt: skip


def _identity(name: str, datatype: str, max_batch_size: int = 16, response_cache: bool = False) -> ModelSpec:
    # BYTES goes through numpy (object arrays have no DLPack form); the rest stay copy-free.
    return ModelSpec(
        name=name,
        behaviour="identity_numpy" if datatype == "BYTES" else "identity_dlpack",
        max_batch_size=max_batch_size,
        inputs=(TensorSpec("INPUT0", datatype),),
        outputs=(TensorSpec("OUTPUT0", datatype),),
        response_cache=response_cache,
    )


def _model_specs() -> tuple[ModelSpec, ...]:
    fp32_in, fp32_out = TensorSpec("INPUT0", "FP32"), TensorSpec("OUTPUT0", "FP32")
    return (
        *(_identity(f"identity_{dt.lower()}", dt) for dt in IDENTITY_DATATYPES),
        _identity("identity_fp32_cached", "FP32", response_cache=True),
        _identity("identity_bytes_cached", "BYTES", response_cache=True),
        _identity("batch2", "FP32", max_batch_size=2),
        _identity("nobatch", "FP32", max_batch_size=0),
        ModelSpec(
            "add_sub", "add_sub", 16,
            (fp32_in, TensorSpec("INPUT1", "FP32")),
            (fp32_out, TensorSpec("OUTPUT1", "FP32")),
        ),
        ModelSpec(
            "slow", "sleep_echo", 0,
            (TensorSpec("SECONDS", "FP32", (1,)),), (TensorSpec("OUTPUT0", "FP32", (1,)),),
            instance_count=4,  # lets several slow requests run at once
        ),
        ModelSpec("raises", "fail", 16, (fp32_in,), (fp32_out,)),
        ModelSpec("tile4", "tile4", 16, (fp32_in,), (fp32_out,)),  # 4x the input's bytes out
        ModelSpec("echo_params", "echo_params", 0, (fp32_in,), (TensorSpec("PARAMS", "BYTES", (1,)),)),
        # OUTPUT0 holds LENGTH[0] elements whatever INPUT0's shape: an output that
        # grows while the input shapes stay the same (generative, detection models).
        ModelSpec("grow", "grow", 0, (fp32_in, TensorSpec("LENGTH", "INT32", (1,))), (fp32_out,)),
    )  # fmt: skip


MODELS: tuple[ModelSpec, ...] = _model_specs()
MODELS_BY_NAME: dict[str, ModelSpec] = {spec.name: spec for spec in MODELS}

# Bodies of ``TritonPythonModel._respond(self, request)`` per behaviour.
_RESPOND_BODIES = {
    "identity_dlpack": """
        tensor = _input(request, "INPUT0")
        return _response(pb_utils.Tensor.from_dlpack("OUTPUT0", tensor.to_dlpack()))
    """,
    "identity_numpy": """
        return _response(pb_utils.Tensor("OUTPUT0", _input(request, "INPUT0").as_numpy()))
    """,
    "add_sub": """
        a = _input(request, "INPUT0").as_numpy()
        b = _input(request, "INPUT1").as_numpy()
        return _response(pb_utils.Tensor("OUTPUT0", a + b), pb_utils.Tensor("OUTPUT1", a - b))
    """,
    "tile4": """
        return _response(pb_utils.Tensor("OUTPUT0", np.tile(_input(request, "INPUT0").as_numpy(), 4)))
    """,
    "sleep_echo": """
        seconds = _input(request, "SECONDS").as_numpy()
        time.sleep(float(seconds[0]))
        return _response(pb_utils.Tensor("OUTPUT0", seconds))
    """,
    "fail": f"""
        return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError({RAISES_MESSAGE!r}))
    """,
    "grow": """
        length = int(_input(request, "LENGTH").as_numpy()[0])
        return _response(pb_utils.Tensor("OUTPUT0", np.full(length, 1.5, np.float32)))
    """,
    "echo_params": """
        params = np.array([request.parameters().encode("utf-8")], dtype=np.object_)
        return _response(pb_utils.Tensor("PARAMS", params))
    """,
}

_MODEL_PY = '''\
"""Generated by tests/triton_server.py: model {name!r} ({behaviour})."""
import time

import numpy as np
import triton_python_backend_utils as pb_utils


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


def _model_py(spec: ModelSpec) -> str:
    body = textwrap.indent(textwrap.dedent(_RESPOND_BODIES[spec.behaviour]).strip(), " " * 8)
    return _MODEL_PY.format(name=spec.name, behaviour=spec.behaviour, body=body + "\n")


def write_model_repository(path: str | os.PathLike, models: Iterable[ModelSpec] = MODELS) -> Path:
    """Write a Python-backend model repository (``<model>/config.pbtxt``, ``<model>/1/model.py``)."""
    root = Path(path)
    for spec in models:
        version_dir = root / spec.name / "1"
        version_dir.mkdir(parents=True, exist_ok=True)
        (root / spec.name / "config.pbtxt").write_text(_config_pbtxt(spec))
        (version_dir / "model.py").write_text(_model_py(spec))
    return root


# =============================================================================
# The bundled binary and the environment it needs
# =============================================================================


def _pytriton_package_dir() -> Path:
    spec = importlib.util.find_spec("pytriton")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("nvidia-pytriton is not installed; it bundles the tritonserver binary the tests run")
    return Path(next(iter(spec.submodule_search_locations)))


def _bundled_server_dir() -> Path:
    return _pytriton_package_dir() / "tritonserver"


def tritonserver_binary() -> Path:
    return _bundled_server_dir() / "bin" / "tritonserver"


def child_environment() -> dict[str, str]:
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
    lib_dirs = [sysconfig.get_config_var("LIBDIR")]
    vendored = _pytriton_package_dir().parent / "nvidia_pytriton.libs"
    if vendored.is_dir():
        lib_dirs.append(str(vendored))
    if env.get("LD_LIBRARY_PATH"):
        lib_dirs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(lib_dirs)
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    return env


def build_backend_directory(dest: Path) -> Path:
    """Create ``dest/backends/python`` with the bundled backend and this Python's stub.

    The wheel ships one stub per Python version next to the backend, so the
    backend directory is assembled here instead of modifying site-packages.
    """
    bundled = _bundled_server_dir()
    python_version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = bundled / "python_backend_stubs" / python_version / "triton_python_backend_stub"
    if not stub.is_file():
        available = sorted(p.name for p in (bundled / "python_backend_stubs").iterdir() if p.is_dir())
        raise RuntimeError(f"nvidia-pytriton has no Python-backend stub for Python {python_version} (has {available})")
    python_dir = dest / "backends" / "python"
    python_dir.mkdir(parents=True)
    for source in (bundled / "backends" / "python").iterdir():
        if source.is_file():
            (python_dir / source.name).symlink_to(source)
    shutil.copy2(stub, python_dir / stub.name)
    return dest / "backends"


def free_ports(count: int) -> list[int]:
    """Distinct ports the OS considers free right now (bound to port 0 together, read, released)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in socks:
            sock.bind((LOOPBACK, 0))
        return [sock.getsockname()[1] for sock in socks]


# =============================================================================
# Process-tree bookkeeping (Linux /proc)
# =============================================================================


@dataclass(frozen=True)
class _Proc:
    """A process, identified by pid and start time (pids get reused)."""

    pid: int
    start_ticks: int
    ppid: int = field(compare=False)  # changes when the parent dies
    pgid: int = field(compare=False)


def _read_proc(pid: int) -> _Proc | None:
    """The process ``pid`` if it is alive and not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may contain spaces
    if fields[0] in ("Z", "X"):
        return None
    return _Proc(pid, start_ticks=int(fields[19]), ppid=int(fields[1]), pgid=int(fields[2]))


def _living_processes() -> list[_Proc]:
    procs = (_read_proc(int(entry)) for entry in os.listdir("/proc") if entry.isdigit())
    return [proc for proc in procs if proc is not None]


def _process_family(leader: int) -> set[_Proc]:
    """Living members of the leader's process group plus all its descendants."""
    procs = _living_processes()
    family = {proc for proc in procs if proc.pgid == leader}
    children: dict[int, list[_Proc]] = {}
    for proc in procs:
        children.setdefault(proc.ppid, []).append(proc)
    pending = [leader]
    while pending:
        for child in children.get(pending.pop(), []):
            family.add(child)
            pending.append(child.pid)
    return family


def _still_alive(procs: Iterable[_Proc]) -> set[_Proc]:
    return {proc for proc in procs if _read_proc(proc.pid) == proc}


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the forked child must not dlopen


def _set_parent_death_signal() -> None:
    """Child-side: get SIGTERM if the test process dies without calling stop()."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


# =============================================================================
# Servers
# =============================================================================


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_S) as response:
            return response.status == 200
    except (OSError, http.client.HTTPException):  # refused, reset, timed out, 4xx/5xx
        return False


def _post(url: str) -> bytes:
    """POST an empty JSON object; return the response body."""
    request = urllib.request.Request(url, data=b"{}", method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S) as response:
        return response.read()


_RUNNING: set[_ManagedServer] = set()


@atexit.register
def _stop_running_servers() -> None:
    """Safety net for servers whose owner never called stop()."""
    for server in list(_RUNNING):
        server.stop()


class _ManagedServer:
    """A child process serving Triton's HTTP/gRPC/metrics endpoints on free ports."""

    description = "server"

    def __init__(self, work_dir: str | os.PathLike | None, models: Sequence[str], ready_timeout_s: float) -> None:
        self._owns_work_dir = work_dir is None
        self.work_dir = Path(tempfile.mkdtemp(prefix="tritonfast-server-") if work_dir is None else work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.models = tuple(models)
        self.http_port, self.grpc_port, self.metrics_port = free_ports(3)
        self.log_path = self.work_dir / f"{type(self).__name__.lower()}.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._ready_timeout_s = ready_timeout_s

    @property
    def http_url(self) -> str:
        return f"http://{LOOPBACK}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://{LOOPBACK}:{self.grpc_port}"

    def _command(self) -> list[str]:
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
        deadline = time.monotonic() + self._ready_timeout_s
        pending = [f"{self.http_url}/v2/health/ready"]
        pending += [f"{self.http_url}/v2/models/{name}/ready" for name in self.models]
        while pending:
            returncode = self._process.poll()
            if returncode is not None:
                raise RuntimeError(f"{self.description} exited with code {returncode}{self._log_excerpt()}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.description} was not ready within {self._ready_timeout_s:.0f} s; "
                    f"still not ready: {pending}{self._log_excerpt()}"
                )
            pending = [url for url in pending if not _http_ok(url)]
            if pending:
                time.sleep(READY_POLL_INTERVAL_S)

    def _log_excerpt(self) -> str:
        """The log's error lines and its last lines, to quote in a start-up error."""
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

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _terminate_tree(process: subprocess.Popen[bytes]) -> None:
    family = _process_family(process.pid)  # remembered: members may leave the group
    process.send_signal(signal.SIGTERM)
    survivors = _wait_for_exit(process, family, STOP_GRACE_S)
    for proc in survivors:  # the group's current members and all descendants included
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
    _wait_for_exit(process, survivors, STOP_GRACE_S)
    process.wait()


def _wait_for_exit(process: subprocess.Popen[bytes], family: set[_Proc], timeout_s: float) -> set[_Proc]:
    """Wait until ``family`` and the leader's current group and descendants are gone; return survivors."""
    deadline = time.monotonic() + timeout_s
    while True:
        process.poll()  # reaps our child, so a finished leader stops counting as alive
        survivors = _still_alive(family | _process_family(process.pid))
        if not survivors or time.monotonic() > deadline:
            return survivors
        time.sleep(STOP_POLL_INTERVAL_S)


class TritonServer(_ManagedServer):
    """The bundled ``tritonserver`` on a model repository; ready when constructed.

    ``work_dir`` receives the private backend directory and the server log
    (a temporary directory, removed by :meth:`stop`, when omitted).
    """

    description = "tritonserver"

    def __init__(
        self,
        model_repository: str | os.PathLike,
        *,
        work_dir: str | os.PathLike | None = None,
        models: Sequence[str] | None = None,
        ready_timeout_s: float = READY_TIMEOUT_S,
    ) -> None:
        self.model_repository = Path(model_repository)
        if models is None:
            models = sorted(p.parent.name for p in self.model_repository.glob("*/config.pbtxt"))
        super().__init__(work_dir, models, ready_timeout_s)
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

    def _command(self) -> list[str]:
        return [
            str(tritonserver_binary()),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={self._backend_directory}",
            f"--backend-config=python,shm-region-prefix-name={self._shm_region_prefix}",
            f"--backend-config=python,shm-default-byte-size={PYTHON_SHM_DEFAULT_BYTES}",
            f"--backend-config=python,shm-growth-byte-size={PYTHON_SHM_GROWTH_BYTES}",
            f"--cache-directory={_bundled_server_dir() / 'caches'}",
            f"--cache-config=local,size={RESPONSE_CACHE_BYTES}",
            f"--http-address={LOOPBACK}",
            f"--http-port={self.http_port}",
            f"--grpc-address={LOOPBACK}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={LOOPBACK}",
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


class PyTritonServer(_ManagedServer):
    """``tests/pytriton_app.py`` (models bound with PyTriton); ready when constructed.

    PyTriton starts its own tritonserver child inside this process group, so
    :meth:`stop` takes it down too. ``work_dir`` receives the log and PyTriton's
    workspace.
    """

    description = "PyTriton app"

    def __init__(
        self, *, work_dir: str | os.PathLike | None = None, ready_timeout_s: float = READY_TIMEOUT_S
    ) -> None:
        super().__init__(work_dir, PYTRITON_MODEL_NAMES, ready_timeout_s)
        self._start()

    def _shm_prefix(self, pid: int) -> str:
        return f"pytrtion{pid}-"  # PyTriton's own naming (sic), from its Triton._shm_prefix()

    def _command(self) -> list[str]:
        return [
            sys.executable,
            str(PYTRITON_APP),
            f"--address={LOOPBACK}",
            f"--http-port={self.http_port}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-port={self.metrics_port}",
            f"--header-forward-pattern={PYTRITON_HEADER_FORWARD_PATTERN}",
            f"--exit-timeout-secs={PYTRITON_EXIT_TIMEOUT_S}",
            f"--workspace={self.work_dir / 'workspace'}",
        ]
