"""Markdown tables of a bench/ run, from pytest-benchmark's JSON output.

    python bench/report.py bench/results.json        # bench_codec.py
    python bench/report.py .benchmarks/http.json     # bench_http.py
    python bench/report.py .benchmarks/shm.json      # bench_shm.py
    python bench/report.py .benchmarks/aio.json      # bench_asyncio.py

bench_codec.py: one row per group and tritonfast variant: tritonclient's mean,
tritonfast's mean, and the speed-up (tritonclient mean / tritonfast mean).

bench_http.py and bench_shm.py (benchmarks whose ``extra_info["kind"]`` is
"http"): one table per group, one row per client: client CPU, wall time and
minor page faults per request, and each client's CPU and wall time over those
of tritonfast's plain HTTP path. Then the peak-memory table
(``kind`` "memory"): extra peak RSS of one round trip and its ratio to the
payload. A JSON file holding both kinds prints both.

bench_e2e.py (``kind`` "e2e"): one table per payload, one row per in-flight
level and client: client CPU per request, throughput, p50/p99 latency, minor
faults, and CPU and throughput against tritonfast's plain HTTP row.

bench_asyncio.py (``kind`` "aio"): one table per group (payload, in flight),
one row per client and loop: client CPU (mean and median round), wall time and
minor faults per request, and CPU against tritonfast's AsyncioModelClient on
asyncio's loop; then issue 11's targets, each measured and met or not.

bench_parse.py (``kind`` "parse"): build / parse mean and median per client
and each client's mean over tritonfast's.
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
    """The codec table (benchmarks without an ``extra_info["kind"]``)."""
    means: dict[str, dict[str, float]] = defaultdict(dict)
    for bench in data["benchmarks"]:
        if _kind(bench):
            continue
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
    return "\n".join(lines) + _footer(data)


def _kind(bench: dict) -> str | None:
    return (bench.get("extra_info") or {}).get("kind")


def _footer(data: dict) -> str:
    machine = data.get("machine_info", {})
    cpu = machine.get("cpu", {})
    footer = f"\n{machine.get('python_implementation', '')} {machine.get('python_version', '')}"
    if cpu.get("brand_raw"):
        footer += f", {cpu['brand_raw']}"
    if cpu.get("count"):
        footer += f", {cpu['count']} CPUs"
    versions = next(
        (b["extra_info"]["versions"] for b in data["benchmarks"] if (b.get("extra_info") or {}).get("versions")),
        None,
    )
    if versions:
        footer += "; " + ", ".join(f"{name} {version}" for name, version in versions.items())
    return footer.rstrip()


CLIENT_ORDER = ("tritonfast", "tritonfast-threads", "tritonfast-http", "tritonfast-shm", "tritonclient", "tritonclient-grpc", "pytriton")
CLIENT_LABELS = {
    "tritonfast-threads": "tritonfast, threads sharing one `ModelClient`",
    "tritonfast-http": "tritonfast, `shared_memory=None` (HTTP)",
    "tritonfast-shm": 'tritonfast, `shared_memory="auto"` (system shm)',
    "tritonclient": "tritonclient.http",
    "tritonclient-grpc": "tritonclient.grpc",
    "pytriton": "PyTriton ModelClient",
}
# The row the ratio columns divide by: tritonfast's plain HTTP path.
BASE_IMPLS = ("tritonfast", "tritonfast-http")


def _client_order(impl: str) -> tuple:
    return (CLIENT_ORDER.index(impl) if impl in CLIENT_ORDER else len(CLIENT_ORDER), impl)


def _ratio(value: float, base: float | None) -> str:
    if not base:
        return "n/a"
    ratio = value / base
    return f"{ratio:.2f}x" if ratio < 1 else f"{ratio:.1f}x"


def _cpu_table(title: str, rows: dict, base_impl: str, base_label: str, labels: dict, order_key,
               wall_ratio: bool) -> list:
    """A group's table lines: CPU (mean, median round), wall and minor faults per
    request per client, and the CPU (and wall) ratios to ``base_impl``'s row."""
    base = rows.get(base_impl, {})
    wall_head, wall_rule = (f" wall vs {base_label} |", "---:|") if wall_ratio else ("", "")
    lines = [
        title,
        "",
        "| client | CPU µs/request | CPU µs/request, median | wall µs/request | minor faults/request "
        f"| CPU vs {base_label} | median CPU vs {base_label} |{wall_head}",
        "|---|---:|---:|---:|---:|---:|---:|" + wall_rule,
    ]
    for impl in sorted(rows, key=order_key):
        info = rows[impl]
        cpu, median = info["cpu_us_per_request"], info["cpu_us_per_request_median"]
        wall = f" {_ratio(info['wall_us_per_request'], base.get('wall_us_per_request'))} |" if wall_ratio else ""
        lines.append(
            f"| {labels.get(impl, impl)} | {cpu:,.1f} | {median:,.1f} | {info['wall_us_per_request']:,.1f} "
            f"| {info['minflt_per_request']:,.1f} | {_ratio(cpu, base.get('cpu_us_per_request'))} "
            f"| {_ratio(median, base.get('cpu_us_per_request_median'))} |{wall}"
        )
    return lines


def build_http_tables(data: dict) -> str:
    """Per group: CPU, wall and minor faults per request, and CPU / tritonfast's CPU."""
    groups: dict[str, dict[str, dict]] = defaultdict(dict)
    for bench in data["benchmarks"]:
        if _kind(bench) == "http":
            groups[bench["group"]][bench["extra_info"]["impl"]] = bench["extra_info"]
    sections = []
    for group in groups:  # run order: sequential small, large, then concurrent
        rows = groups[group]
        base_impl = next((impl for impl in BASE_IMPLS if impl in rows), "tritonfast")
        lines = _cpu_table(f"**{group}**", rows, base_impl, base_impl, CLIENT_LABELS, _client_order, wall_ratio=True)
        requests = {info["requests"] for info in rows.values()}
        lines.append(f"\n{'/'.join(str(r) for r in sorted(requests))} timed requests per client.")
        sections.append("\n".join(lines))
    if sections:
        sections.append(
            "CPU: `time.process_time` of the client process (all its threads), the benchmarks' timer; "
            "mean over all timed requests, and the median round / requests per round. "
            "Wall: elapsed time / requests (with requests in flight at once, the inverse of throughput). "
            "Minor faults: `getrusage(RUSAGE_SELF).ru_minflt`."
        )
    return "\n\n".join(sections)


def build_memory_table(data: dict) -> str:
    rows = {
        bench["extra_info"]["impl"]: bench["extra_info"]
        for bench in data["benchmarks"]
        if _kind(bench) == "memory"
    }
    if not rows:
        return ""
    mib = 1 << 20
    payloads = {info["payload_bytes"] for info in rows.values()}
    title = "/".join(f"{p / mib:g}" for p in sorted(payloads))
    lines = [
        f"**{title} MiB FP32 round trip: extra peak memory** (fresh process per client)",
        "",
        "| client | RSS before MiB | peak MiB | extra peak MiB | extra / payload | wall s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for impl in sorted(rows, key=_client_order):
        info = rows[impl]
        lines.append(
            f"| {CLIENT_LABELS.get(impl, impl)} | {info['rss_before_bytes'] / mib:,.0f} "
            f"| {info['peak_bytes'] / mib:,.0f} | {info['delta_mib']:,.0f} | {info['ratio']:.2f}x "
            f"| {info['wall_s']:.2f} |"
        )
    sources = {info["peak_source"] for info in rows.values()}
    lines.append(f"\nPeak: {', '.join(sorted(sources))}.")
    return "\n".join(lines)


E2E_LABELS = {**CLIENT_LABELS, "tritonfast": "**tritonfast**", "tritonfast-shm": 'tritonfast `shared_memory="auto"`'}


def _us(us: float) -> str:
    return f"{us / 1000:,.1f} ms" if us >= 10_000 else f"{us:,.0f} µs"


def build_e2e_tables(data: dict) -> str:
    """Per payload: CPU/request, throughput, p50/p99, faults at each in-flight level."""
    cells: dict[str, dict[int, dict[str, dict]]] = defaultdict(lambda: defaultdict(dict))
    for bench in data["benchmarks"]:
        if _kind(bench) == "e2e":
            info = bench["extra_info"]
            cells[info["payload"]][info["in_flight"]][info["impl"]] = info
    sections = []
    for payload, levels in cells.items():
        model = next(iter(next(iter(levels.values())).values()))["model"]
        lines = [
            f"**{payload}** (`{model}`)",
            "",
            "| in flight | client | client CPU / request | throughput req/s | p50 | p99 | minor faults / request "
            "| CPU vs tritonfast | throughput vs tritonfast |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for n in sorted(levels):
            rows = levels[n]
            base = rows.get("tritonfast", {})
            for i, impl in enumerate(sorted(rows, key=_client_order)):
                info = rows[impl]
                lines.append(
                    f"| {n if i == 0 else ''} | {E2E_LABELS.get(impl, impl)} | {_us(info['cpu_us_per_request'])} "
                    f"| {info['throughput_rps']:,.0f} | {_us(info['p50_us'])} | {_us(info['p99_us'])} "
                    f"| {info['minflt_per_request']:,.1f} "
                    f"| {_ratio(info['cpu_us_per_request'], base.get('cpu_us_per_request'))} "
                    f"| {_ratio(info['throughput_rps'], base.get('throughput_rps'))} |"
                )
        counts = [info["requests"] for rows in levels.values() for info in rows.values()]
        lines.append(f"\n{min(counts):,}-{max(counts):,} timed requests per cell.")
        sections.append("\n".join(lines))
    return "\n\n".join(sections)


AIO_LABELS = {
    "tritonfast-aio": "tritonfast AsyncioModelClient, asyncio loop",
    "tritonfast-aio-uvloop": "tritonfast AsyncioModelClient, uvloop",
    "tritonfast-sync": "tritonfast ModelClient (sync, no loop)",
    "tritonclient-http-aio": "tritonclient.http.aio",
    "tritonclient-grpc-aio": "tritonclient.grpc.aio",
    "pytriton-aio": "PyTriton AsyncioModelClient",
    "floor": "floor: bare asyncio Protocol, asyncio loop",
    "floor-uvloop": "floor: bare asyncio Protocol, uvloop",
}
AIO_BASE = "tritonfast-aio"
# Issue 11's targets: (payload, in flight, peer, at most tritonfast CPU / peer CPU).
# The floor is compared on the same loop as tritonfast's row (see _aio_peer).
AIO_TARGETS = (
    ("1x16 FP32", 64, "tritonclient-http-aio", 1 / 5),
    ("1x16 FP32", 64, "pytriton-aio", 1 / 5),
    ("1x16 FP32", 64, "tritonclient-grpc-aio", 1 / 3),
    ("1x16 FP32", 64, "floor", 2.0),
    ("1x16 FP32", 1, "tritonfast-sync", 1.5),
    ("16 MiB FP32", 1, "tritonclient-http-aio", 1 / 4),
)


def _aio_peer(peer: str, impl: str) -> str:
    return f"{peer}-uvloop" if peer == "floor" and impl.endswith("-uvloop") else peer


def _bound(limit: float) -> str:
    return f"{limit:g}x" if limit >= 1 else f"1/{1 / limit:.0f}"


def build_aio_tables(data: dict) -> str:
    """Per (payload, in flight): CPU, wall, faults per request, CPU / tritonfast's asyncio row; then the targets."""
    groups: dict[str, dict[str, dict]] = defaultdict(dict)
    cells: dict[tuple[str, int], dict[str, dict]] = defaultdict(dict)
    for bench in data["benchmarks"]:
        if _kind(bench) == "aio":
            info = bench["extra_info"]
            groups[bench["group"]][info["impl"]] = info
            cells[info["payload"], info["in_flight"]][info["impl"]] = info
    if not groups:
        return ""
    order = list(AIO_LABELS)
    sections = []
    for group, rows in groups.items():  # run order
        model = next(iter(rows.values()))["model"]
        lines = _cpu_table(f"**{group}** (`{model}`)", rows, AIO_BASE, "tritonfast asyncio", AIO_LABELS,
                           lambda i: (order.index(i) if i in order else len(order), i), wall_ratio=False)
        requests = sorted({info["requests"] for info in rows.values()})
        lines.append(f"\n{'/'.join(f'{r:,}' for r in requests)} timed requests per client.")
        sections.append("\n".join(lines))

    lines = [
        "**Issue 11 targets** (tritonfast's CPU per request over the peer's: mean, and median round)",
        "",
        "| payload, in flight | tritonfast | peer | at most | measured (median) | met |",
        "|---|---|---|---:|---:|---|",
    ]
    for payload, in_flight, peer, limit in AIO_TARGETS:
        rows = cells.get((payload, in_flight), {})
        for impl in ("tritonfast-aio", "tritonfast-aio-uvloop"):
            other = _aio_peer(peer, impl)
            if impl not in rows or other not in rows:
                continue
            mine, theirs = rows[impl], rows[other]
            ratio = mine["cpu_us_per_request"] / theirs["cpu_us_per_request"]
            median = mine["cpu_us_per_request_median"] / theirs["cpu_us_per_request_median"]
            lines.append(
                f"| {payload}, {in_flight} | {AIO_LABELS[impl].split(', ')[-1]} | {AIO_LABELS.get(other, other)} "
                f"| {_bound(limit)} ({limit:.3f}) | {ratio:.3f} ({median:.3f}) | {'yes' if ratio <= limit else '**no**'} |"
            )
    sections.append("\n".join(lines))
    sections.append(
        "CPU: `time.process_time` of the client process (all its threads), the benchmarks' timer; "
        "mean over all timed requests, and the median round / requests per round. "
        "Wall: elapsed time / requests (with requests in flight at once, the inverse of throughput). "
        "Minor faults: `getrusage(RUSAGE_SELF).ru_minflt`. Peers run on the asyncio loop; "
        "tritonfast's uvloop row is compared with them and with the uvloop floor."
    )
    return "\n\n".join(sections)


def build_parse_table(data: dict) -> str:
    """Build / parse without a server: mean (median) per client, ratio to tritonfast's mean."""
    groups: dict[str, dict[str, dict]] = defaultdict(dict)
    for bench in data["benchmarks"]:
        if _kind(bench) == "parse":
            groups[bench["group"]][bench["extra_info"]["impl"]] = bench["stats"]
    if not groups:
        return ""
    impls = sorted({impl for rows in groups.values() for impl in rows}, key=_client_order)
    header = " | ".join(CLIENT_LABELS.get(i, i) for i in impls)
    lines = [
        f"| step, payload | {header} | " + " | ".join(f"{CLIENT_LABELS.get(i, i)} / tritonfast" for i in impls[1:]) + " |",
        "|---|" + "---:|" * (2 * len(impls) - 1),
    ]
    for group in sorted(groups, key=lambda g: (not g.startswith("build"), g)):
        rows = groups[group]
        base = rows.get("tritonfast", {}).get("mean")
        cells = [f"{_fmt(rows[i]['mean'])} ({_fmt(rows[i]['median'])})" if i in rows else "n/a" for i in impls]
        ratios = [_ratio(rows[i]["mean"], base) if i in rows else "n/a" for i in impls[1:]]
        lines.append(f"| {group} | " + " | ".join(cells + ratios) + " |")
    lines.append("\nMean (median) wall time per call, one thread, no server.")
    return "\n".join(lines)


def build_report(data: dict) -> str:
    sections = []
    codec = any(not _kind(bench) for bench in data["benchmarks"])
    if codec:
        sections.append(build_table(data))  # ends with the footer
    parts = (build_http_tables(data), build_memory_table(data), build_e2e_tables(data), build_aio_tables(data),
             build_parse_table(data))
    sections.extend(s for s in parts if s)
    if not codec:
        sections.append(_footer(data).strip())
    return "\n\n".join(sections)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        print(build_report(json.load(f)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
