"""The perf tool's output: a readable table, perf_analyzer's CSV, and JSON.

The CSV is what ``perf_analyzer -f FILE`` writes (its ``ReportWriter``), column
for column: ``Concurrency`` or ``Request Rate``, ``Inferences/Second``,
``Client Send``, ``Network+Server Send/Recv``, ``Server Queue``, ``Server
Compute Input``, ``Server Compute Infer``, ``Server Compute Output``, then
``Server Cache Hit`` and ``Server Cache Miss`` only when the model's response
cache is enabled, ``Client Recv``, ``p50 latency`` ... ``p99 latency`` (plus
``p<N> latency`` for ``--percentile N``), and with ``--verbose-csv``: ``Avg
latency`` (not with ``--percentile``), ``request/response`` and ``response
wait``. Times are whole microseconds (ns / 1000, truncated), rates printed like
C++'s ``ostream << double`` (6 significant digits), rows sorted by increasing
throughput, all as perf_analyzer does. "Network+Server Send/Recv" is, as
there, the client's average wait (latency - send - recv) less the server's
accounted time (queue + compute + cache), floored at 0.
"""

from __future__ import annotations

import csv
import json
import math
import platform
import sys
from typing import Any, Dict, List, Optional, Sequence, TextIO

from tritonfast.perf.measure import LevelResult

MODES = {"concurrency": "Concurrency", "request_rate": "Request Rate"}


def _g(value: float) -> str:
    """A double as C++'s default ``ostream <<`` prints it (%g, 6 significant digits)."""
    return format(value, ".6g")


def _level_text(result: LevelResult) -> str:
    return str(int(result.level)) if result.mode == "concurrency" else _g(result.level)


def csv_header(mode: str, response_cache: bool, percentiles: Sequence[int], verbose: bool,
               percentile: Optional[int]) -> List[str]:
    header = [MODES[mode], "Inferences/Second", "Client Send", "Network+Server Send/Recv", "Server Queue",
              "Server Compute Input", "Server Compute Infer", "Server Compute Output"]
    if response_cache:
        header += ["Server Cache Hit", "Server Cache Miss"]
    header += ["Client Recv"] + [f"p{p} latency" for p in percentiles]
    if verbose:
        if not percentile:
            header.append("Avg latency")
        header += ["request/response", "response wait"]
    return header


def server_breakdown_ns(result: LevelResult) -> Dict[str, int]:
    """Averages per request of Triton's queue / compute / cache times, and the
    network+server remainder, in ns (perf_analyzer's arithmetic)."""
    s = result.server
    if s is None:
        zero = {k: 0 for k in ("queue", "compute_input", "compute_infer", "compute_output",
                               "cache_hit", "cache_miss")}
        return {**zero, "network": max(0, result.latency_avg_ns - result.send_ns - result.recv_ns)}
    compute_count = s.count("compute_input")
    compute_ns = s.ns("compute_input") + s.ns("compute_infer") + s.ns("compute_output")
    avg_compute = compute_ns // compute_count if compute_count else 0
    out = {name: s.avg_ns(name) for name in ("queue", "compute_input", "compute_infer", "compute_output",
                                             "cache_hit", "cache_miss")}
    accounted = out["queue"] + avg_compute + out["cache_hit"] + out["cache_miss"]
    client_wait = max(0, result.latency_avg_ns - result.send_ns - result.recv_ns)
    out["network"] = max(0, client_wait - accounted)
    return out


def csv_row(result: LevelResult, response_cache: bool, verbose: bool, percentile: Optional[int]) -> List[str]:
    b = server_breakdown_ns(result)
    row = [_level_text(result), _g(result.infer_per_sec), str(result.send_ns // 1000), str(b["network"] // 1000),
           str(b["queue"] // 1000), str(b["compute_input"] // 1000), str(b["compute_infer"] // 1000),
           str(b["compute_output"] // 1000)]
    if response_cache:
        row += [str(b["cache_hit"] // 1000), str(b["cache_miss"] // 1000)]
    row.append(str(result.recv_ns // 1000))
    row += [str(ns // 1000) for _, ns in sorted(result.latency_percentiles_ns.items())]
    if verbose:
        avg_us, send_us, recv_us = result.latency_avg_ns // 1000, result.send_ns // 1000, result.recv_ns // 1000
        if not percentile:
            row.append(str(avg_us))
        row += [str(send_us + recv_us), str(max(0, avg_us - send_us - recv_us))]
    return row


def write_csv(path: str, results: Sequence[LevelResult], response_cache: bool, verbose: bool,
              percentile: Optional[int]) -> None:
    if not results:
        return
    percentiles = sorted(results[0].latency_percentiles_ns)
    with open(path, "w", newline="") as f:
        # perf_analyzer writes plain comma-joined fields and "\n" line ends.
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(csv_header(results[0].mode, response_cache, percentiles, verbose, percentile))
        for result in sorted(results, key=lambda r: r.infer_per_sec):
            writer.writerow(csv_row(result, response_cache, verbose, percentile))


def _us(ns: float) -> float:
    return round(ns / 1000.0, 1)


def result_json(result: LevelResult) -> Dict[str, Any]:
    b = server_breakdown_ns(result)
    return {
        result.mode: result.level,
        "client": result.client,
        "batch_size": result.batch_size,
        "throughput_infer_per_sec": round(result.infer_per_sec, 3),
        "request_rate_achieved": round(result.request_rate, 3),
        "requests": result.requests,
        "errors": result.errors,
        "error_messages": result.error_messages,
        "delayed_requests": result.delayed,
        "windows": result.windows,
        "stable": result.stable,
        "interrupted": result.interrupted,
        "duration_s": round(result.duration_ns / 1e9, 6),
        "latency_us": {"avg": _us(result.latency_avg_ns),
                       **{f"p{p}": _us(ns) for p, ns in sorted(result.latency_percentiles_ns.items())}},
        "client_send_us": _us(result.send_ns),
        "client_recv_us": _us(result.recv_ns),
        "network_server_send_recv_us": _us(b["network"]),
        "client_cpu_us_per_request": round(result.cpu_us_per_request, 2),
        "server": None if result.server is None else {
            "queue_us": _us(b["queue"]), "compute_input_us": _us(b["compute_input"]),
            "compute_infer_us": _us(b["compute_infer"]), "compute_output_us": _us(b["compute_output"]),
            "cache_hit_us": _us(b["cache_hit"]), "cache_miss_us": _us(b["cache_miss"]),
            "counters": result.server.as_dict(),
        },
    }


def write_json(path: str, settings: Dict[str, Any], results: Dict[str, List[LevelResult]],
               interrupted: bool, statistics_unavailable: Optional[str] = None) -> None:
    from tritonfast import __version__

    document = {
        "tool": "tritonfast perf",
        "tritonfast_version": __version__,
        "python": platform.python_version(),
        "settings": settings,
        "interrupted": interrupted,
        # Whether the server-side figures ("server" of each result) could be read, and if not, why.
        "server_statistics": {"available": statistics_unavailable is None, "reason": statistics_unavailable},
        "notes": {
            "latency": "client-side, from before the client call to after it returns, in microseconds",
            "client_send_us / client_recv_us": "CPU time to build one request / parse one response of this "
                                               "shape, measured separately (see tritonfast.perf.clients)",
            "client_cpu_us_per_request": "time.process_time() of this process over the windows / requests",
            "server": "averages of Triton's statistics over the windows (GET /v2/models/<m>/stats deltas)",
        },
        "results": {client: [result_json(r) for r in rows] for client, rows in results.items()},
    }
    with open(path, "w") as f:
        json.dump(document, f, indent=2)
        f.write("\n")


# ------------------------------------------------------------------ table


def _num(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def table(results: Dict[str, List[LevelResult]], response_cache: bool,
          statistics_unavailable: Optional[str] = None) -> str:
    """Rows per level (and per client with --compare), latencies in usec; ``statistics_unavailable``:
    why the server-side columns are empty."""
    clients = list(results)
    first = next((rows[0] for rows in results.values() if rows), None)
    if first is None:
        return "no results\n"
    rate_mode = first.mode == "request_rate"
    percentiles = sorted(first.latency_percentiles_ns)
    header = [MODES[first.mode]] + (["Client"] if len(clients) > 1 else []) + ["Infer/s"]
    header += ["Avg"] + [f"p{p}" for p in percentiles]
    header += ["Send", "Recv", "Net+Srv", "Queue", "In", "Infer", "Out"]
    if response_cache:
        header += ["Hit", "Miss"]
    header += ["CPU/req", "Errors"] + (["Delayed", "Req/s"] if rate_mode else []) + ["Windows"]
    rows: List[List[str]] = []
    levels: List[float] = []
    for rows_of in results.values():
        levels += [row.level for row in rows_of if row.level not in levels]
    ratios: List[str] = []
    for level in levels:
        per_client = {c: next((r for r in results[c] if r.level == level), None) for c in clients}
        for client, r in per_client.items():
            if r is None:
                continue
            b = server_breakdown_ns(r)
            row = [_level_text(r)] + ([client] if len(clients) > 1 else []) + [_num(r.infer_per_sec, 1)]
            row.append(_num(r.latency_avg_ns / 1000))
            row += [_num(r.latency_percentiles_ns[p] / 1000) for p in percentiles]
            row += [_num(r.send_ns / 1000, 1), _num(r.recv_ns / 1000, 1), _num(b["network"] / 1000)]
            server_columns = ["queue", "compute_input", "compute_infer", "compute_output"]
            server_columns += ["cache_hit", "cache_miss"] if response_cache else []
            row += [_num(b[name] / 1000) if r.server is not None else "-" for name in server_columns]
            row += [_num(r.cpu_us_per_request, 1), _num(r.errors)]
            if rate_mode:
                row += [_num(r.delayed), _num(r.request_rate, 1)]
            mark = "" if r.stable else (" (interrupted)" if r.interrupted else " (unstable)")
            row.append(f"{r.windows}{mark}")
            rows.append(row)
        fast, slow = per_client.get("tritonfast"), per_client.get("tritonclient")
        if fast is not None and slow is not None:
            ratios.append(f"  {MODES[first.mode].lower()} {_level_text(fast)}: "
                          f"throughput {_ratio(fast.infer_per_sec, slow.infer_per_sec)}, "
                          f"avg latency {_ratio(fast.latency_avg_ns, slow.latency_avg_ns)}, "
                          f"client CPU/request {_ratio(fast.cpu_us_per_request, slow.cpu_us_per_request)}")
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows]
    lines.append("Times in usec per request: latency percentiles and Avg as seen by the client; Send / Recv: "
                 "request build / response parse CPU time (estimated separately); Net+Srv: network and server "
                 "time not accounted below; Queue, In, Infer, Out" + (", Hit, Miss" if response_cache else "")
                 + ": Triton's statistics; CPU/req: this process's CPU time per request.")
    if statistics_unavailable:
        lines.append(f"Server-side columns empty (-): {statistics_unavailable}.")
    if ratios:
        lines.append("tritonfast / tritonclient:")
        lines += ratios
    return "\n".join(lines) + "\n"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b and not math.isnan(a / b) else "n/a"


def print_errors(results: Dict[str, List[LevelResult]], out: Optional[TextIO] = None) -> None:
    """One line per distinct error message: client, level, count and message."""
    out = sys.stdout if out is None else out
    for client, rows in results.items():
        for r in rows:
            for message, count in r.error_messages.items():
                out.write(f"{client} {MODES[r.mode].lower()} {_level_text(r)}: {count} x {message}\n")
