"""The exported names and the exception tree."""

import pickle

import pytest

import tritonfast
from tritonfast import exceptions


def test_exported_names():
    assert tritonfast.__all__ == sorted(tritonfast.__all__)
    assert set(tritonfast.__all__) == {
        "AsyncioModelClient",
        "FuturesModelClient",
        "ModelClient",
        "TritonModelConfig",
        "__version__",
        "exceptions",
        "utils",
    }


def test_exception_names_match_pytriton():
    pytriton_exceptions = pytest.importorskip("pytriton.client.exceptions")
    theirs = {n for n in dir(pytriton_exceptions) if n.startswith("PyTritonClient")}
    ours = {n for n in exceptions.__all__ if n.startswith("PyTritonClient")}
    assert theirs <= ours
    for name in theirs:
        their_bases = {b.__name__ for b in getattr(pytriton_exceptions, name).__mro__}
        our_bases = {b.__name__ for b in getattr(exceptions, name).__mro__}
        assert their_bases <= our_bases, name


@pytest.mark.parametrize("name", exceptions.__all__)
def test_exceptions_carry_message_and_pickle(name):
    cls = getattr(exceptions, name)
    e = cls("what went wrong")
    assert str(e) == e.message == "what went wrong"
    assert e.args == ("what went wrong",)
    assert isinstance(e, exceptions.PyTritonClientError)
    copy = pickle.loads(pickle.dumps(e))
    assert type(copy) is cls and copy.message == "what went wrong"


def test_codec_errors_are_value_errors():
    assert issubclass(exceptions.EncodeError, ValueError)
    assert issubclass(exceptions.DecodeError, ValueError)
    assert issubclass(exceptions.ProtocolError, exceptions.DecodeError)


def test_connection_errors_are_timeouts_as_in_pytriton():
    assert issubclass(exceptions.PyTritonClientConnectionError, exceptions.PyTritonClientTimeoutError)


# =============================================================================
# tritonclient's module paths
# =============================================================================

TRITONCLIENT_UTILS_NAMES = (
    "np_to_triton_dtype", "triton_to_np_dtype", "serialize_byte_tensor", "deserialize_bytes_tensor",
    "serialized_byte_size", "InferenceServerException", "raise_error",
)  # fmt: skip


def test_utils_has_tritonclient_names():
    import tritonfast.utils as ours

    theirs = pytest.importorskip("tritonclient.utils")
    for name in TRITONCLIENT_UTILS_NAMES:
        assert hasattr(theirs, name), name  # the list is tritonclient's
        assert callable(getattr(ours, name)), name


def test_shared_memory_modules_have_tritonclient_function_names():
    import tritonfast.utils.cuda_shared_memory as our_cuda
    import tritonfast.utils.shared_memory as our_system

    theirs = pytest.importorskip("tritonclient.utils.shared_memory")
    public = {n for n in dir(theirs) if not n.startswith("_") and callable(getattr(theirs, n))
              and getattr(getattr(theirs, n), "__module__", "").startswith("tritonclient.utils.shared_memory")}
    assert {"create_shared_memory_region", "set_shared_memory_region", "get_contents_as_numpy",
            "mapped_shared_memory_regions", "destroy_shared_memory_region", "SharedMemoryException"} <= public
    assert public <= set(dir(our_system)), public - set(dir(our_system))
    for name in ("create_shared_memory_region", "get_raw_handle", "set_shared_memory_region",
                 "set_shared_memory_region_from_dlpack", "get_contents_as_numpy",
                 "allocated_shared_memory_regions", "destroy_shared_memory_region", "CudaSharedMemoryException"):
        assert callable(getattr(our_cuda, name)), name


@pytest.mark.parametrize("old, new", [("shm", "shared_memory"), ("cuda_shm", "cuda_shared_memory")])
def test_old_shared_memory_paths_are_the_new_modules_and_warn(old, new):
    import importlib
    import sys

    sys.modules.pop(f"tritonfast.{old}", None)
    with pytest.warns(DeprecationWarning, match=f"tritonfast.{old} is deprecated.*tritonfast.utils.{new}") as seen:
        if old == "shm":
            import tritonfast.shm as module
        else:
            import tritonfast.cuda_shm as module
    assert module is importlib.import_module(f"tritonfast.utils.{new}")
    assert seen[0].filename == __file__  # attributed to the importing line, not importlib


def test_inference_server_exception_behaves_as_tritonclients():
    from tritonfast.utils import InferenceServerException, raise_error

    theirs = pytest.importorskip("tritonclient.utils")
    for args in (("boom",), ("boom", "400"), ("boom", "503", {"k": 1})):
        ours_e, theirs_e = InferenceServerException(*args), theirs.InferenceServerException(*args)
        assert str(ours_e) == str(theirs_e), args
        assert (ours_e.message(), ours_e.status(), ours_e.debug_details()) == (
            theirs_e.message(), theirs_e.status(), theirs_e.debug_details())
    copy = pickle.loads(pickle.dumps(InferenceServerException("boom", "400", "details")))
    assert (str(copy), copy.status(), copy.debug_details()) == ("[400] boom", "400", "details")
    with pytest.raises(InferenceServerException, match="^went wrong$") as raised:
        raise_error("went wrong")
    assert raised.value.__suppress_context__


# =============================================================================
# Layout: no import cycle between tritonfast's modules
# =============================================================================


def _module_level_imports(path, module, package_modules):
    """tritonfast modules imported when ``module`` is executed (module-level
    imports, those under ``if``/``try`` included; not those inside functions)."""
    import ast

    tree = ast.parse(path.read_text())
    found = set()

    def visit(body):
        for node in body:
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = module.split(".")
                    keep = len(parts) - node.level + (path.name == "__init__.py")
                    base = ".".join(parts[:keep] + ([base] if base else []))
                # "from pkg import name": the submodule pkg.name, or pkg's own attribute.
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in package_modules else base
                         for a in node.names]
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    inner = getattr(node, field, None)
                    if isinstance(node, (ast.If, ast.Try)) and inner:
                        visit(inner if field != "handlers" else [n for h in inner for n in h.body])
                continue
            for name in names:
                # Importing a.b.c runs a.b first; a module's own enclosing packages
                # are already being imported, so only the others count.
                parts = name.split(".")
                for k in range(2, len(parts) + 1):
                    candidate = ".".join(parts[:k])
                    enclosing = module.startswith(candidate + ".") and k < len(parts)
                    if candidate in package_modules and candidate != module and not enclosing:
                        found.add(candidate)

    visit(tree.body)
    return found


def test_no_import_cycle_between_tritonfast_modules():
    from pathlib import Path

    root = Path(tritonfast.__file__).parent
    modules = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    # The top-level package only re-exports; every module imports it first, so it is left out.
    graph = {m: _module_level_imports(p, m, modules) - {"tritonfast"} for m, p in modules.items() if m != "tritonfast"}
    assert graph["tritonfast.client"] >= {"tritonfast._pipeline", "tritonfast._transport"}  # the graph is real

    visiting, done = [], set()

    def walk(node):
        if node in done:
            return
        if node in visiting:
            cycle = visiting[visiting.index(node):] + [node]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        visiting.append(node)
        for dep in sorted(graph.get(node, ())):
            walk(dep)
        visiting.pop()
        done.add(node)

    for node in sorted(graph):
        walk(node)


@pytest.mark.parametrize("cls", [tritonfast.ModelClient, tritonfast.FuturesModelClient])
def test_public_methods_say_what_they_do(cls):
    import inspect

    undocumented = [name for name, member in inspect.getmembers(cls)
                    if not name.startswith("_") and not inspect.getdoc(member)]
    assert not undocumented, f"help({cls.__name__}) shows these empty: {undocumented}"
    for name in ("infer_sample", "infer_batch"):
        doc = inspect.getdoc(getattr(cls, name))
        assert "Returns" in doc or "Future of" in doc, name
        assert "Raises" in doc or "raises" in doc, name


def test_sync_users_never_load_asyncio():
    import subprocess
    import sys

    code = ("import sys, tritonfast\n"
            "from tritonfast import FuturesModelClient, ModelClient\n"
            "assert 'asyncio' not in sys.modules, 'import tritonfast loaded asyncio'\n"
            "from tritonfast import AsyncioModelClient\n"
            "assert 'asyncio' in sys.modules and AsyncioModelClient.__name__ == 'AsyncioModelClient'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
