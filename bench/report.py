"""Markdown table of a bench_codec.py run, from pytest-benchmark's JSON output.

    python bench/report.py bench/results.json

One row per group and tritonfast variant: tritonclient's mean, tritonfast's
mean, and the speed-up (tritonclient mean / tritonfast mean).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict


def _fmt(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def _impl(bench: dict) -> str:
    impl = (bench.get("extra_info") or {}).get("impl")
    if impl:
        return impl
    # Fall back on the parametrize id, e.g. "test_serialize[tritonfast-10x1MiB]".
    return (bench.get("param") or bench["name"]).split("-")[0].split("[")[-1]


def build_table(data: dict) -> str:
    means: dict[str, dict[str, float]] = defaultdict(dict)
    for bench in data["benchmarks"]:
        means[bench["group"]][_impl(bench)] = bench["stats"]["mean"]

    lines = [
        "| group | tritonfast variant | tritonclient mean | tritonfast mean | speed-up |",
        "|---|---|---:|---:|---:|",
    ]
    for group in sorted(means, key=lambda g: (g.split()[0] != "serialize", g)):
        rows = means[group]
        base = rows.get("tritonclient")
        for impl in sorted(k for k in rows if k != "tritonclient"):
            mean = rows[impl]
            ratio = f"{base / mean:.1f}x" if base else "n/a"
            lines.append(
                f"| {group} | {impl} | {_fmt(base) if base else 'n/a'} | {_fmt(mean)} | {ratio} |"
            )
    machine = data.get("machine_info", {})
    cpu = machine.get("cpu", {}).get("brand_raw", "")
    footer = f"\n{machine.get('python_implementation', '')} {machine.get('python_version', '')}"
    if cpu:
        footer += f", {cpu}"
    return "\n".join(lines) + footer.rstrip()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        print(build_table(json.load(f)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
