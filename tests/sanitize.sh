#!/usr/bin/env bash
# Runs tests over an ASan/UBSan build of tritonfast._core (the extension the
# package imports is replaced by it; see tests/conftest.py):
#   bash tests/sanitize.sh [pytest arguments]
# Without arguments: the tests that reach every C++ entry point (codec, framing
# and parser, fast lane, transport faults, shared memory, hardening: the
# concurrent-rewrite races included). Builds into build/sanitize (~2 min the
# first time, incremental after).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
build=build/sanitize
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTRITONFAST_SANITIZE=ON \
  -DSKBUILD_PROJECT_NAME=tritonfast -DSKBUILD_PROJECT_VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)" \
  -Dpybind11_DIR="$("$python" -m pybind11 --cmakedir)" -DPython_EXECUTABLE="$(command -v "$python")" >/dev/null
cmake --build "$build" -j2 >/dev/null
core=$(ls "$build"/_core*.so)
cxx=${CXX:-g++}
if [ $# -eq 0 ]; then
  set -- tests/test_hardening.py tests/test_codec.py tests/test_http_parser.py tests/test_fast_lane.py \
    tests/test_faults.py tests/test_shm.py tests/test_client_shm.py tests/test_client.py tests/test_futures_client.py \
    tests/test_futures_lane.py
  # GCC 12's ASan runtime does not lock its allocator around fork(): a child
  # forked while another thread is inside malloc with the GIL released (the
  # general path's response parsing, here) deadlocks in ASan itself (seen:
  # the child stuck in SizeClassAllocator64::GetFromAllocator, never reaching
  # tritonfast code). That case runs in the main, unsanitized run; its
  # fast-lane twin (no allocation without the GIL) and the other fork tests
  # run here.
  set -- "$@" --deselect "tests/test_hardening.py::test_parent_and_forked_child_never_read_each_others_responses[general-path]"
fi
# Python itself is not instrumented: ASan must come first in the process (and
# libstdc++ with it, or ASan's __cxa_throw interceptor finds no real one), and
# leaks at interpreter exit are CPython's (the C++ suites check leaks).
env LD_PRELOAD="$("$cxx" -print-file-name=libasan.so):$("$cxx" -print-file-name=libstdc++.so)" \
  ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:halt_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  TRITONFAST_SANITIZED_CORE="$core" \
  "$python" -m pytest -p no:cacheprovider -q "$@"
