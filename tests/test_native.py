"""The C++ core's own tests (csrc/tests/*.cpp), built with AddressSanitizer and
UndefinedBehaviorSanitizer and run: this is the project's sanitizer build in CI.

They cover what Python cannot reach directly: the framing fed byte by byte and
fuzzed, and the transport against raw-socket servers that stall, reset, close
mid-body or never read.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CORE_SOURCES = sorted(str(p) for p in (REPO / "csrc" / "core").glob("*.cpp"))
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer"]
# Fuzz iterations of test_framing under the sanitizers (~5 s); the file's own default is 200,000.
FRAMING_FUZZ_ITERATIONS = "50000"
# Fuzz iterations of test_shm (ElementReader and range checks) under the sanitizers (~2 s).
SHM_FUZZ_ITERATIONS = "100000"
BUILD_TIMEOUT_S = 300
RUN_TIMEOUT_S = 300


def _compiler() -> str:
    cxx = shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++")
    if cxx is None:
        pytest.fail("no C++ compiler found (set CXX): the native tests need one, as does the build")
    return cxx


@pytest.mark.parametrize(("name", "args"), [
    ("test_framing", [FRAMING_FUZZ_ITERATIONS]),
    ("test_transport", []),
    ("test_shm", [SHM_FUZZ_ITERATIONS]),
])
def test_native_suite(name: str, args: list, tmp_path: Path) -> None:
    binary = tmp_path / name
    build = subprocess.run(
        [_compiler(), "-std=c++17", "-O1", "-g", *SANITIZE, "-pthread", f"-I{REPO / 'csrc'}",
         str(REPO / "csrc" / "tests" / f"{name}.cpp"), *CORE_SOURCES, "-o", str(binary), "-ldl"],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
    )
    assert build.returncode == 0, f"building {name} failed:\n{build.stderr[-4000:]}"
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    run = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=env)
    output = run.stdout + run.stderr
    sys.stdout.write(output[-2000:])
    assert run.returncode == 0, f"{name} failed (exit {run.returncode}):\n{output[-6000:]}"
