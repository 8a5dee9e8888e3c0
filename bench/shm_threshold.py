"""Where system shared memory starts to beat plain HTTP: the measurement behind
``tritonfast._shm.path.AUTO_THRESHOLD_BYTES``.

    python bench/shm_threshold.py                       # starts the test suite's server
    python bench/shm_threshold.py --url http://127.0.0.1:8000

Sequential (1, n) float32 requests to ``identity_fp32`` (the tensor goes in and
comes back) with ``ModelClient(shared_memory=None)`` and ``"system"``, for
payloads of 4 KiB to 4 MiB each way. Per payload and client: the median wall
time and client CPU (``time.process_time``) per request over several batches,
and their ratios (HTTP / shm: above 1 means shared memory wins).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tritonfast  # noqa: E402

SIZES_KIB = (4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
BATCHES = 9  # medians over this many batches per client ...
TARGET_BATCH_S = 0.2  # ... of about this long each


@contextlib.contextmanager
def _server(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    from tests.triton_server import TritonServer, write_model_repository

    with tempfile.TemporaryDirectory() as tmp:
        repository = write_model_repository(Path(tmp) / "models")
        with TritonServer(repository, work_dir=Path(tmp) / "server") as server:
            yield server.http_url


def _batch(client: tritonfast.ModelClient, x: np.ndarray, count: int) -> tuple[float, float]:
    """(wall s, CPU s) per request over ``count`` requests."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        client.infer_batch(x)
    return (time.perf_counter() - wall) / count, (time.process_time() - cpu) / count


def _compare(http: tritonfast.ModelClient, shm: tritonfast.ModelClient, x: np.ndarray) -> list:
    """[(wall, CPU) median per request] for http and shm, their batches interleaved
    so that load from other processes hits both alike."""
    for client in (http, shm):
        for _ in range(3):
            y = client.infer_batch(x)["OUTPUT0"]
        assert np.array_equal(y, x)
        del y
    count = max(5, int(TARGET_BATCH_S / max(_batch(http, x, 3)[0], 1e-5)))
    samples: list = [[], []]
    for _ in range(BATCHES):
        for i, client in enumerate((http, shm)):
            samples[i].append(_batch(client, x, count))
    return [(statistics.median(w for w, _ in s), statistics.median(c for _, c in s)) for s in samples]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running server with the test repository's identity_fp32")
    args = parser.parse_args()
    with _server(args.url) as url:
        http = tritonfast.ModelClient(url, "identity_fp32", shared_memory=None)
        shm = tritonfast.ModelClient(url, "identity_fp32", shared_memory="system")
        print("| payload each way | HTTP wall µs | shm wall µs | wall HTTP/shm "
              "| HTTP CPU µs | shm CPU µs | CPU HTTP/shm |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        try:
            for kib in SIZES_KIB:
                x = np.random.default_rng(kib).random((1, kib * 256), dtype=np.float32)
                (http_wall, http_cpu), (shm_wall, shm_cpu) = _compare(http, shm, x)
                print(f"| {kib} KiB | {http_wall * 1e6:,.0f} | {shm_wall * 1e6:,.0f} "
                      f"| {http_wall / shm_wall:.2f} | {http_cpu * 1e6:,.0f} | {shm_cpu * 1e6:,.0f} "
                      f"| {http_cpu / shm_cpu:.2f} |", flush=True)
        finally:
            http.close()
            shm.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
