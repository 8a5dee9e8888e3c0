"""tritonfast/_core.pyi must describe the compiled module (mypy's stubtest)."""

import subprocess
import sys
from pathlib import Path

ALLOWLIST = Path(__file__).with_name("stubtest_allowlist.txt")


def test_core_stubs_match_the_extension():
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "tritonfast._core", "--allowlist", str(ALLOWLIST)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_package_type_checks():
    # tritonfast ships py.typed: users' mypy reads these annotations, and stubtest
    # (above) refuses to run while the package has type errors.
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
