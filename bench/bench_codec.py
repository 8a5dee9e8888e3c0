"""BYTES codec benchmark: tritonfast against tritonclient.utils.

Not part of the default test run (pyproject's testpaths is ["tests"]). pytest
collects a file named on its command line whatever its name, so run it as::

    python -m pytest -p no:cacheprovider bench/bench_codec.py --benchmark-only \
        --benchmark-json=bench/results.json
    python bench/report.py bench/results.json

Every group (e.g. "serialize 100000x16B") has a tritonclient row and a
tritonfast row (serialize groups also a serialize_bytes_into row, writing into
a preallocated buffer). Each benchmarked callable's result is checked once
against tritonclient's, outside the timed region.
"""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.utils as tc

import tritonfast._core as core
import tritonfast.utils as tf

# (label, element count, element size in bytes)
SIZES = [
    ("100000x16B", 100_000, 16),
    ("1000x1KiB", 1_000, 1 << 10),
    ("10x1MiB", 10, 1 << 20),
]


def _tensor(count, size):
    rng = np.random.default_rng(count * 7919 + size)
    raw = rng.integers(0, 256, count * size, dtype=np.uint8).tobytes()
    arr = np.empty(count, dtype=object)
    for i in range(count):
        arr[i] = raw[i * size : (i + 1) * size]
    return arr


_CACHE: dict = {}


def _data(label):
    """(tensor, its wire bytes per tritonclient), built once per size."""
    if label not in _CACHE:
        _, count, size = next(s for s in SIZES if s[0] == label)
        arr = _tensor(count, size)
        _CACHE[label] = (arr, tc.serialize_byte_tensor(arr).item())
    return _CACHE[label]


LABELS = [s[0] for s in SIZES]


@pytest.mark.parametrize("label", LABELS)
@pytest.mark.parametrize("impl", ["tritonclient", "tritonfast", "tritonfast-into"])
def test_serialize(benchmark, label, impl):
    arr, wire = _data(label)
    benchmark.group = f"serialize {label}"
    benchmark.extra_info["impl"] = impl
    benchmark.extra_info["op"] = "serialize"
    benchmark.extra_info["size"] = label

    if impl == "tritonclient":
        fn = lambda: tc.serialize_byte_tensor(arr)  # noqa: E731
        check = lambda r: r.item() == wire  # noqa: E731
    elif impl == "tritonfast":
        fn = lambda: tf.serialize_byte_tensor(arr)  # noqa: E731
        check = lambda r: r.shape == () and r.dtype == np.object_ and r.item() == wire  # noqa: E731
    else:
        out = bytearray(len(wire))
        fn = lambda: core.serialize_bytes_into(arr, out, 0)  # noqa: E731
        check = lambda r: r == len(wire) and out == wire  # noqa: E731

    assert check(fn())
    result = benchmark(fn)
    assert check(result)


@pytest.mark.parametrize("label", LABELS)
@pytest.mark.parametrize("impl", ["tritonclient", "tritonfast"])
def test_deserialize(benchmark, label, impl):
    arr, wire = _data(label)
    benchmark.group = f"deserialize {label}"
    benchmark.extra_info["impl"] = impl
    benchmark.extra_info["op"] = "deserialize"
    benchmark.extra_info["size"] = label

    decode = tc.deserialize_bytes_tensor if impl == "tritonclient" else tf.deserialize_bytes_tensor
    expected = arr.tolist()

    def check(r):
        return r.dtype == np.object_ and r.shape == arr.shape and r.tolist() == expected

    assert check(decode(wire))
    result = benchmark(decode, wire)
    assert check(result)
