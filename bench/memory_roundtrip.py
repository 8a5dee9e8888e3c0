"""Extra peak memory of one large FP32 identity round trip, for one client.

    python bench/memory_roundtrip.py --client tritonfast --url http://127.0.0.1:8000 --mib 256

Run it in a fresh process per client (bench/bench_http.py does), so that no
other client's buffers, allocator state or peak are in the figures. It

1. imports the client and makes one small warm-up call (a (1, 16) tensor to
   the same model), so imports, the connection and the model config are done;
2. builds the input, ``(1, MiB * 2**18)`` float32, every page touched;
3. reads the resident set size (``rss_before``) and resets the peak to it;
4. makes one round trip, keeping the output alive, and reads the peak;
5. checks the output equals the input (after the peak is read: the check
   allocates a boolean array of its own).

and prints one JSON line: ``delta_bytes = peak_bytes - rss_before_bytes`` and
``ratio = delta_bytes / payload_bytes``. A client that receives straight into
the output array needs about 1x (the output itself); every extra copy of the
request or response body adds 1x.

The peak is the kernel's high-water mark of this process's resident set
(``VmHWM``, which ``getrusage().ru_maxrss`` reports too), reset at step 3 by
writing 5 to ``/proc/self/clear_refs``. Without that reset ``ru_maxrss`` is
useless here: a child started with vfork (as ``subprocess`` does) inherits its
parent's peak at exec. Where the reset is refused the script falls back on
``ru_maxrss`` and says so in ``peak_source``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from urllib.parse import urlsplit

import numpy as np

MODEL = "identity_fp32"  # raw Python-backend identity, no response cache
INPUT, OUTPUT = "INPUT0", "OUTPUT0"
WARMUP_SHAPE = (1, 16)
TIMEOUT_S = 300.0  # one 256 MiB round trip takes a few seconds; 2 busy cores can make it much slower
MIB = 1 << 20
CLIENTS = ("tritonfast", "tritonclient", "pytriton")


def _status_kib(field: str) -> int:
    """A ``kB`` line of /proc/self/status (VmRSS, VmHWM), in KiB."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> bool:
    """Set this process's peak RSS to its current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _make_infer(client: str, url: str):
    """(infer(x) -> output array, close()) for ``client``."""
    if client == "tritonfast":
        import tritonfast

        model_client = tritonfast.ModelClient(url, MODEL, inference_timeout_s=TIMEOUT_S)
        return (lambda x: model_client.infer_batch(x)[OUTPUT]), model_client.close
    if client == "pytriton":
        from pytriton.client import ModelClient

        model_client = ModelClient(url, MODEL, inference_timeout_s=TIMEOUT_S)
        return (lambda x: model_client.infer_batch(x)[OUTPUT]), model_client.close
    if client == "tritonclient":
        import tritonclient.http as httpclient

        http_client = httpclient.InferenceServerClient(
            urlsplit(url).netloc, connection_timeout=TIMEOUT_S, network_timeout=TIMEOUT_S
        )

        def infer(x: np.ndarray) -> np.ndarray:
            tensor = httpclient.InferInput(INPUT, list(x.shape), "FP32")
            tensor.set_data_from_numpy(x)
            result = http_client.infer(MODEL, [tensor], outputs=[httpclient.InferRequestedOutput(OUTPUT)])
            return result.as_numpy(OUTPUT)

        return infer, http_client.close
    raise ValueError(f"unknown client {client!r}; expected one of {CLIENTS}")


def measure(client: str, url: str, mib: int) -> dict:
    infer, close = _make_infer(client, url)
    try:
        warm = np.arange(np.prod(WARMUP_SHAPE), dtype=np.float32).reshape(WARMUP_SHAPE)
        if not np.array_equal(infer(warm), warm):
            raise AssertionError(f"{client}: warm-up output differs from its input")

        x = np.arange(mib * MIB // 4, dtype=np.float32).reshape(1, -1)  # every page written
        payload = x.nbytes
        rss_before = _status_kib("VmRSS") * 1024
        maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        peak_reset = _reset_peak()

        start = time.perf_counter()
        y = infer(x)
        wall_s = time.perf_counter() - start

        maxrss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        rss_after = _status_kib("VmRSS") * 1024
        peak = _status_kib("VmHWM") * 1024 if peak_reset else maxrss_after
        correct = y.shape == x.shape and y.dtype == x.dtype and bool(np.array_equal(y, x))
    finally:
        close()

    delta = peak - rss_before
    return {
        "client": client,
        "model": MODEL,
        "payload_bytes": payload,
        "rss_before_bytes": rss_before,
        "peak_bytes": peak,
        "rss_after_bytes": rss_after,  # output still alive
        "delta_bytes": delta,
        "delta_mib": delta / MIB,
        "ratio": delta / payload,
        "peak_source": "VmHWM after clear_refs" if peak_reset else "ru_maxrss (peak reset refused)",
        "ru_maxrss_before_bytes": maxrss_before,
        "ru_maxrss_after_bytes": maxrss_after,
        "wall_s": wall_s,
        "correct": correct,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--client", required=True, choices=CLIENTS)
    parser.add_argument("--url", required=True, help="Triton HTTP endpoint, e.g. http://127.0.0.1:8000")
    parser.add_argument("--mib", type=int, default=256, help="payload size in MiB (default 256)")
    args = parser.parse_args(argv)
    result = measure(args.client, args.url, args.mib)
    print(json.dumps(result), flush=True)
    return 0 if result["correct"] else 1


if __name__ == "__main__":
    sys.exit(main())
