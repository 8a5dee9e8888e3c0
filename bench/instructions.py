"""Client instructions per small request, counted by callgrind: repeatable where
wall and CPU time are not (a shared 2-vCPU VM).

    python bench/instructions.py [--requests 2000]

Starts the test suite's tritonserver with the response-cache identity model,
runs a client process under ``valgrind --tool=callgrind`` twice (N and 3N
1x16 FP32 ``ModelClient.infer_batch`` calls, after a warm-up) and prints the
difference divided by 2N: the instructions one request costs the client, from
the ``infer_batch`` call to the returned dict, kernel work excluded (the fast
lane, and with ``--general`` the general path).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.triton_server import MODELS_BY_NAME, TritonServer, write_model_repository  # noqa: E402

CLIENT = """
import sys
if sys.argv[4]:  # another tritonfast tree: bypass the editable install's finder
    sys.meta_path = [f for f in sys.meta_path if type(f).__name__ != "ScikitBuildRedirectingFinder"]
    sys.path.insert(0, sys.argv[4])
import numpy as np
from tritonfast import ModelClient
port, count, general = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
headers = {"x-tf-path": "general"} if general else None
with ModelClient(f"http://127.0.0.1:{port}", "identity_fp32_cached", shared_memory=None) as client:
    x = np.ones((1, 16), np.float32)
    for _ in range(200):
        client.infer_batch(x, headers=headers)
    for _ in range(count):
        client.infer_batch(x, headers=headers)
"""


def instructions(port: int, count: int, general: bool, tree: str = "") -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                        sys.executable, "-c", CLIENT, str(port), str(count), "1" if general else "0", tree],
                       check=True, capture_output=True)
        summary = re.search(r"^summary: (\d+)", out.read_text(), re.M)
        assert summary, "no summary line in the callgrind output"
        return int(summary.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--general", action="store_true", help="the general path (a header set)")
    parser.add_argument("--tree", nargs="+", default=[""], metavar="DIR",
                        help="directories holding a tritonfast package to measure instead of the installed one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        repository = write_model_repository(Path(root) / "models", [MODELS_BY_NAME["identity_fp32_cached"]])
        with TritonServer(repository, work_dir=Path(root) / "server") as server:
            n = args.requests
            for tree in args.tree:
                low = instructions(server.http_port, n, args.general, tree)
                high = instructions(server.http_port, 3 * n, args.general, tree)
                print(f"{(high - low) / (2 * n):,.0f} instructions per request "
                      f"({'general path' if args.general else 'fast lane'}; {2 * n} requests)"
                      + (f" {tree}" if tree else ""), flush=True)


if __name__ == "__main__":
    main()
