"""Regenerate the README's end-to-end and build/parse tables in one command.

    python bench/run_all.py                  # run, print the markdown
    python bench/run_all.py --update-readme  # ... and write it between the
                                             # <!-- bench:e2e:start/end --> markers
    python bench/run_all.py --report-only    # re-print from the last JSON files

Runs ``bench/bench_parse.py`` and ``bench/bench_e2e.py`` with pytest-benchmark
(``--benchmark-json`` into ``.benchmarks/``), then prints the machine (CPU
model and count, memory, load average before the run), the versions and the
payloads, and the tables of ``bench/report.py``. Takes about 6 minutes on 2
cores. Run it on an otherwise idle machine: the server shares the cores.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = ROOT / ".benchmarks"
SUITES = {"parse": "bench_parse.py", "e2e": "bench_e2e.py"}
README = ROOT / "README.md"
START, END = "<!-- bench:e2e:start -->", "<!-- bench:e2e:end -->"

sys.path.insert(0, str(HERE))
import report  # noqa: E402


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    meminfo = Path("/proc/meminfo").read_text(encoding="utf-8")
    mem_kib = int(re.search(r"^MemTotal:\s*(\d+)", meminfo, re.M).group(1))
    load = os.getloadavg()
    return (
        f"{model.group(1).strip() if model else platform.processor()}, {os.cpu_count()} CPUs, "
        f"{mem_kib / (1 << 20):.0f} GiB, {platform.system()} {platform.release()}; "
        f"load average before the run {load[0]:.2f}"
    )


def versions(e2e: dict) -> str:
    found = next((b["extra_info"]["versions"] for b in e2e["benchmarks"] if b["extra_info"].get("versions")), {})
    names = {
        "Python": platform.python_version(),
        "numpy": found.get("numpy"),
        "tritonfast": found.get("tritonfast"),
        "tritonclient": found.get("tritonclient"),
        "grpcio": md.version("grpcio"),
        "nvidia-pytriton": found.get("nvidia-pytriton"),
        "server": found.get("server"),
    }
    return ", ".join(f"{k} {v}" for k, v in names.items() if v)


def run(suite: str) -> None:
    command = [sys.executable, "-m", "pytest", str(HERE / SUITES[suite]), "--benchmark-only",
               "-p", "no:cacheprovider", "-q", f"--benchmark-json={OUT / f'{suite}.json'}"]  # fmt: skip
    print("+", " ".join(command), file=sys.stderr, flush=True)
    subprocess.run(command, cwd=ROOT, check=True, stdout=sys.stderr)


def markdown(machine_line: str) -> str:
    parse = json.loads((OUT / "parse.json").read_text())
    e2e = json.loads((OUT / "e2e.json").read_text())
    sys.path.insert(0, str(HERE))
    from bench_e2e import CLIENTS, DURATION_S, IN_FLIGHT, PAYLOADS

    payloads = "; ".join(f"{p.name} on `{p.model}`" for p in PAYLOADS.values())
    return "\n\n".join([
        "`python bench/run_all.py --update-readme` (runs `bench/bench_parse.py` and `bench/bench_e2e.py`, "
        "then writes this section).",
        f"Machine: {machine_line}. {versions(e2e)}.",
        f"Payloads: {payloads}. Clients: {', '.join(CLIENTS)} (tritonfast-shm for 16 MiB only). "
        f"In flight: {', '.join(map(str, IN_FLIGHT))} threads; each cell runs >= {DURATION_S} s after warm-up. "
        "tritonfast: one `ModelClient(shared_memory=None)` shared by the threads; tritonclient.http, "
        "tritonclient.grpc and PyTriton `ModelClient` (HTTP): one client per thread. Client CPU: "
        "`time.process_time` of the client process over the timed phase / requests (kernel time for its "
        "sockets included, the server's not); p50/p99: per-request wall time.",
        "#### End to end",
        report.build_e2e_tables(e2e),
        "#### Request build and response parse, no server",
        report.build_parse_table(parse),
    ])  # fmt: skip


def update_readme(text: str) -> None:
    readme = README.read_text(encoding="utf-8")
    if START not in readme or END not in readme:
        raise SystemExit(f"{README}: markers {START} / {END} not found")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{START}\n{text}\n{END}{tail}", encoding="utf-8")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--update-readme", action="store_true", help="write the tables into README.md")
    parser.add_argument("--report-only", action="store_true", help="do not run; use .benchmarks/{parse,e2e}.json")
    args = parser.parse_args(argv)
    machine_line = machine()
    if not args.report_only:
        OUT.mkdir(exist_ok=True)
        for suite in SUITES:
            run(suite)
    text = markdown(machine_line)
    print(text)
    if args.update_readme:
        update_readme(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
