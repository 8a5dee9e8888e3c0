"""``tritonfast perf``: perf_analyzer's measurements, driven through tritonfast.

    tritonfast perf -m MODEL [-u URL] [--shape NAME:d1,d2...] [--concurrency-range START:END:STEP]
                    [--request-rate-range START:END:STEP] [-p MS] [--input-data random|zero|FILE.json]
                    [-b BATCH] [-f results.csv] [--json results.json] [--compare tritonclient]
                    [--access-token TOKEN] ...

(also ``python -m tritonfast.perf ...``). Options are perf_analyzer's where it
has them. Exit status: 0 done, 2 a problem the user can fix (one line on
stderr: bad option, unknown model, missing --shape, unreachable server, failing
first request), 130 Ctrl-C (after printing what was measured so far). A
statistics endpoint the server refuses (PyTriton's, without --access-token) is
not an error: the run goes on without the server-side columns and says why.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, TextIO, Tuple

from tritonfast.perf import data as data_module
from tritonfast.perf.clients import SHARED_MEMORY_CHOICES, TritonclientClient, TritonfastClient
from tritonfast.perf.errors import PerfError
from tritonfast.perf.load import ClosedLoop, RequestRate, Load
from tritonfast.perf.measure import (
    STABILITY_WINDOWS,
    LevelProfiler,
    LevelResult,
    Settings,
    Window,
    percentile_ns,
    summarize,
)
from tritonfast.perf.report import MODES, print_errors, table, write_csv, write_json
from tritonfast.perf.server import ModelInfo, Server, StatisticsRefused

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
DEFAULT_URL = "localhost:8000"  # perf_analyzer's default
DEFAULT_MEASUREMENT_INTERVAL_MS = 5000
DEFAULT_MAX_TRIALS = 10
DEFAULT_STABILITY_PERCENTAGE = 10.0
DEFAULT_MAX_THREADS = 16  # request-rate workers (each has one request in flight)
# Open-ended sweeps (--concurrency-range N:0 with --latency-threshold) stop here at the latest.
MAX_CONCURRENCY = 1024
REQUEST_TIMEOUT_S = 60.0  # each inference; ModelClient's default
ACCESS_TOKEN_ENV = "TRITONFAST_ACCESS_TOKEN"  # --access-token's default (keeps the token out of `ps`)


def _range(text: str, option: str, kind: type) -> Tuple[Any, Any, Any]:
    parts = text.split(":")
    if not 1 <= len(parts) <= 3 or not all(p.strip() for p in parts):
        raise PerfError(f"{option} {text!r}: expected START[:END[:STEP]]")
    try:
        values = [kind(p) for p in parts]
    except ValueError:
        raise PerfError(f"{option} {text!r}: expected {'integers' if kind is int else 'numbers'}") from None
    start = values[0]
    end = values[1] if len(values) > 1 else start
    step = values[2] if len(values) > 2 else kind(1)
    if start <= 0 or step <= 0 or end < 0 or (end and end < start):
        raise PerfError(f"{option} {text!r}: START and STEP must be positive and END >= START (or 0)")
    return start, end, step


def _levels(args: argparse.Namespace) -> Tuple[str, List[float]]:
    if args.request_rate_range is not None:
        start, end, step = _range(args.request_rate_range, "--request-rate-range", float)
        if end == 0:
            raise PerfError("--request-rate-range: END must be given (open-ended rates are not supported)")
        count = int((end - start) / step + 1e-9) + 1
        return "request_rate", [round(start + i * step, 9) for i in range(count)]
    start, end, step = _range(args.concurrency_range or "1", "--concurrency-range", int)
    if end == 0:
        if args.latency_threshold is None:
            raise PerfError("--concurrency-range with END 0 needs --latency-threshold to know when to stop")
        end = MAX_CONCURRENCY
    return "concurrency", list(range(start, end + 1, step))


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Measure a Triton model's throughput and latency through tritonfast, with "
                    "perf_analyzer's options, stability rule and CSV format.",
        epilog="Exit status: 0 done; 2 bad option, unknown model, missing --shape, unreachable server or "
               "failing first request (one line on stderr); 130 interrupted (what was measured is printed).",
    )
    p.add_argument("-m", dest="model", required=True, help="model name")
    p.add_argument("-x", dest="model_version", default=None, metavar="VERSION",
                   help="model version (default: the server's latest)")
    p.add_argument("-u", dest="url", default=DEFAULT_URL,
                   help=f"server URL, [http[s]://]host[:port] (default {DEFAULT_URL})")
    p.add_argument("-i", dest="protocol", default="http", type=str.lower, metavar="http",
                   help="protocol: http (gRPC is not supported by tritonfast)")
    p.add_argument("-b", "--batch-size", dest="batch_size", type=int, default=1, metavar="N",
                   help="batch size (default 1)")
    p.add_argument("--shape", action="append", default=[], metavar="NAME:D1,D2,...",
                   help="shape of an input with variable dims, without the batch dimension; repeatable")
    p.add_argument("--access-token", default=os.environ.get(ACCESS_TOKEN_ENV) or None, metavar="TOKEN",
                   help="the server's access token, sent as the triton-access-token header on every request "
                        f"(default: ${ACCESS_TOKEN_ENV}). PyTriton servers (TritonSecurityConfig) refuse their "
                        "statistics endpoint without it: perf then runs with the server-side columns empty "
                        "and says so")
    load = p.add_argument_group("load")
    load.add_argument("--concurrency-range", metavar="START[:END[:STEP]]",
                      help="closed loop: N requests always in flight, N from START to END (default 1); "
                           "END 0: until --latency-threshold")
    load.add_argument("--request-rate-range", metavar="START[:END[:STEP]]",
                      help="open loop: requests issued at this rate (per second), from START to END")
    load.add_argument("--request-distribution", choices=("constant", "poisson"), default="constant",
                      help="arrivals in request-rate mode (default constant)")
    load.add_argument("--max-threads", type=int, default=DEFAULT_MAX_THREADS, metavar="N",
                      help=f"worker threads in request-rate mode: requests in flight at most "
                           f"(default {DEFAULT_MAX_THREADS})")
    load.add_argument("--input-data", default="random", metavar="random|zero|FILE.json",
                      help="random (default), zero, or a perf_analyzer input-data JSON file")
    load.add_argument("--string-length", type=int, default=data_module.DEFAULT_STRING_LENGTH, metavar="N",
                      help=f"length of generated BYTES elements (default {data_module.DEFAULT_STRING_LENGTH})")
    load.add_argument("--string-data", default=None, metavar="TEXT",
                      help="use this string for every generated BYTES element")
    load.add_argument("--shared-memory", choices=SHARED_MEMORY_CHOICES, default="none",
                      help="pass tensors through shared memory (default none; needs a tritonfast with "
                           "ModelClient(shared_memory=...))")
    load.add_argument("--warmup-request-count", type=int, default=0, metavar="N",
                      help="requests to send before measuring, at the first level's load (default 0; "
                           "one checked request is always sent first)")
    m = p.add_argument_group("measurement")
    m.add_argument("-p", "--measurement-interval", type=int, default=DEFAULT_MEASUREMENT_INTERVAL_MS,
                   metavar="MS", help=f"measurement window in ms (default {DEFAULT_MEASUREMENT_INTERVAL_MS})")
    m.add_argument("-s", "--stability-percentage", type=float, default=DEFAULT_STABILITY_PERCENTAGE,
                   metavar="PCT",
                   help=f"{STABILITY_WINDOWS} consecutive windows are stable when their throughputs and "
                        f"latencies are within this percentage (default {DEFAULT_STABILITY_PERCENTAGE:g})")
    m.add_argument("-r", "--max-trials", type=int, default=DEFAULT_MAX_TRIALS, metavar="N",
                   help=f"windows per level at most (default {DEFAULT_MAX_TRIALS})")
    m.add_argument("--request-count", type=int, default=0, metavar="N",
                   help="measure exactly this many requests per level instead of windows until stable")
    m.add_argument("--percentile", type=int, default=None, metavar="P",
                   help="stabilize on this latency percentile instead of the average")
    m.add_argument("-l", "--latency-threshold", type=float, default=None, metavar="MS",
                   help="stop the sweep after a level whose latency exceeds this many ms")
    o = p.add_argument_group("output")
    o.add_argument("-f", dest="csv", default=None, metavar="FILE.csv", help="perf_analyzer-compatible CSV file")
    o.add_argument("--verbose-csv", action="store_true",
                   help="add perf_analyzer's verbose CSV columns (Avg latency, request/response, response wait)")
    o.add_argument("--json", default=None, metavar="FILE.json", help="all results as JSON")
    o.add_argument("--compare", choices=("tritonclient",), default=None,
                   help="run the same load through tritonclient.http too (a client per worker thread) "
                        "and print both")
    o.add_argument("-v", "--verbose", action="store_true", help="more progress detail on stderr")
    return p


def _validate(args: argparse.Namespace) -> None:
    if args.protocol != "http":
        raise PerfError(f"-i {args.protocol}: tritonfast speaks HTTP only; use -i http and the HTTP port")
    if args.concurrency_range is not None and args.request_rate_range is not None:
        raise PerfError("--concurrency-range and --request-rate-range cannot be used together")
    positive = {"-b": args.batch_size, "--measurement-interval": args.measurement_interval,
                "--max-trials": args.max_trials, "--max-threads": args.max_threads}
    for option, value in positive.items():
        if value <= 0:
            raise PerfError(f"{option} must be positive, got {value}")
    if args.max_trials < STABILITY_WINDOWS and not args.request_count:
        raise PerfError(f"--max-trials must be at least {STABILITY_WINDOWS} (the stability window)")
    if args.request_count < 0 or args.warmup_request_count < 0 or args.string_length < 0:
        raise PerfError("--request-count, --warmup-request-count and --string-length must not be negative")
    if args.stability_percentage <= 0:
        raise PerfError("--stability-percentage must be positive")
    if args.percentile is not None and not 1 <= args.percentile <= 99:
        raise PerfError("--percentile must be between 1 and 99")


class _Progress:
    """Plain-text progress lines on stderr."""

    def __init__(self, out: TextIO, verbose: bool):
        self._out = out
        self._verbose = verbose

    def line(self, text: str) -> None:
        self._out.write(text + "\n")
        self._out.flush()

    def window(self, client: str, mode: str, level: float, trial: int, window: Window, stable: bool,
               batch_size: int, max_trials: int) -> None:
        seconds = window.duration_ns / 1e9
        rate = len(window.latencies_ns) * batch_size / seconds if seconds else 0.0
        avg = sum(window.latencies_ns) / len(window.latencies_ns) / 1000 if window.latencies_ns else 0.0
        extra = f", {window.errors} errors" if window.errors else ""
        extra += f", {window.delayed} delayed" if window.delayed else ""
        state = " (stable)" if stable else ""
        if self._verbose:
            lat = window.latencies_ns
            cpu_us = window.cpu_s * 1e6 / window.completed if window.completed else 0.0
            p50, p99 = percentile_ns(lat, 50) / 1000, percentile_ns(lat, 99) / 1000
            extra += f", p50 {p50:,.0f} p99 {p99:,.0f} usec, CPU {cpu_us:,.1f} usec/request"
            if window.server is not None:
                s = window.server
                compute_ns = s.avg_ns("compute_input") + s.avg_ns("compute_infer") + s.avg_ns("compute_output")
                extra += (f", server queue {s.avg_ns('queue') / 1000:,.0f} compute {compute_ns / 1000:,.0f} "
                          f"usec ({s.count('success')} requests, {s.execution_count} executions)")
        self.line(f"  [{client}] {MODES[mode].lower()} {_fmt_level(mode, level)}: window {trial}/{max_trials} "
                  f"{rate:,.1f} infer/s, avg latency {avg:,.0f} usec{extra}{state}")


def _fmt_level(mode: str, level: float) -> str:
    return str(int(level)) if mode == "concurrency" else format(level, "g")


def _settings_summary(args: argparse.Namespace, mode: str, levels: List[float], model: Any, payload: Any,
                      server_url: str, clients: Sequence[str]) -> str:
    version = model.version or "latest"
    data = args.input_data if args.input_data in ("random", "zero") else f"from {args.input_data}"
    lines = ["*** tritonfast perf ***",
             f"  Model: {model.name} (version {version}) on {server_url}",
             f"  Inputs per request: {data_module.describe_payload(payload, model)} ({data} data)",
             f"  Batch size: {args.batch_size}"]
    span = (f"{_fmt_level(mode, levels[0])}" if len(levels) == 1
            else f"{_fmt_level(mode, levels[0])} to {_fmt_level(mode, levels[-1])}")
    if mode == "concurrency":
        lines.append(f"  Load: concurrency {span} (closed loop: N threads, one request each in flight)")
    else:
        lines.append(f"  Load: request rate {span}/s ({args.request_distribution} arrivals, "
                     f"{args.max_threads} worker threads)")
    if args.request_count:
        lines.append(f"  Measurement: {args.request_count} requests per level")
    else:
        lines.append(f"  Measurement: {args.measurement_interval} ms windows until {STABILITY_WINDOWS} agree "
                     f"within {args.stability_percentage:g}% on throughput and "
                     f"{'p%d' % args.percentile if args.percentile else 'average'} latency "
                     f"(at most {args.max_trials})")
    only = " (tritonfast only)" if len(clients) > 1 and args.shared_memory != "none" else ""
    lines.append(f"  Clients: {', '.join(clients)}; shared memory: {args.shared_memory}{only}")
    if args.access_token:
        lines.append("  Access token: given (triton-access-token header on every request)")
    return "\n".join(lines)


def perf_main(argv: Optional[Sequence[str]] = None, prog: str = "tritonfast perf") -> int:
    """Runs ``tritonfast perf`` with ``argv`` (default: sys.argv[1:]); returns the exit status."""
    args = build_parser(prog).parse_args(argv)
    try:
        return _run(args, prog)
    except PerfError as e:
        sys.stderr.write(f"{prog}: error: {e.message}\n")
        return EXIT_USAGE


def _run(args: argparse.Namespace, prog: str) -> int:
    _validate(args)
    mode, levels = _levels(args)
    shapes = dict(data_module.parse_shape_option(s) for s in args.shape)
    session = _Session(args, mode, Server(args.url, access_token=args.access_token))
    try:
        session.prepare(shapes, levels)
        session.sweep(levels)
    except KeyboardInterrupt:
        session.interrupted = True
        session.keep_partial_level()
    finally:
        session.close()
    measured = sum(len(rows) for rows in session.results.values())
    if session.model is not None and measured:
        _output(args, session.results, session.model, mode, session.interrupted, session.statistics_unavailable)
    if session.interrupted:
        sys.stderr.write(f"{prog}: interrupted; "
                         + (f"printed the {measured} result(s) measured so far\n" if measured
                            else "nothing was measured yet\n"))
        return EXIT_INTERRUPTED
    return 0


class _Session:
    """One run: the server, the model, the clients, and what was measured so far
    (kept where Ctrl-C can still print it)."""

    def __init__(self, args: argparse.Namespace, mode: str, server: Server):
        self.args = args
        self.mode = mode
        self.server = server
        self.model: Optional[ModelInfo] = None
        self.clients: List[Any] = []
        self.results: Dict[str, List[LevelResult]] = {}
        self.interrupted = False
        # Why the server-side columns are empty (the statistics endpoint failed when first read), or None.
        self.statistics_unavailable: Optional[str] = None
        self._estimates: Dict[str, Tuple[int, int]] = {}  # client -> (send ns, recv ns)
        self._progress = _Progress(sys.stderr, args.verbose)
        self._current: Optional[Tuple[Any, LevelProfiler, float]] = None  # the level being measured

    def close(self) -> None:
        for client in self.clients:
            client.close()
        self.server.close()

    def prepare(self, shapes: Dict[str, Tuple[int, ...]], levels: List[float]) -> None:
        """Checks the server and model, builds the inputs and clients, sends each client's
        first request (its failure ends the run) and the warm-up."""
        args = self.args
        self.server.check_ready()
        model = self.model = self.server.model_info(args.model, args.model_version)
        if model.decoupled:
            raise PerfError(f"model {model.name!r} is decoupled; tritonfast perf measures "
                            "request/response models")
        if model.max_batch_size == 0 and args.batch_size > 1:
            raise PerfError(f"model {model.name!r} does not support batching (max_batch_size 0); "
                            f"-b {args.batch_size} needs a batching model")
        if model.max_batch_size > 0 and args.batch_size > model.max_batch_size:
            raise PerfError(f"-b {args.batch_size} exceeds the max_batch_size {model.max_batch_size} "
                            f"of model {model.name!r}")
        data_module.check_shapes(model, shapes)
        self._check_statistics(model)
        if args.input_data in ("random", "zero"):
            payloads = data_module.generated_payloads(model, shapes, args.batch_size, args.input_data == "zero",
                                                      args.string_length, args.string_data)
        else:
            payloads, notes = data_module.json_payloads(args.input_data, model, shapes, args.batch_size)
            for note in notes:
                self._progress.line(f"note: {note}")
        url = self.server.display_url
        token = args.access_token
        self.clients.append(TritonfastClient(url, model, payloads, args.shared_memory, REQUEST_TIMEOUT_S, token))
        if args.compare == "tritonclient":
            self.clients.append(TritonclientClient(url, model, payloads, REQUEST_TIMEOUT_S, token))
        self.results = {c.name: [] for c in self.clients}
        names = [c.name for c in self.clients]
        print(_settings_summary(args, self.mode, levels, model, payloads[0], url, names), flush=True)
        outputs = None
        for client in self.clients:
            try:
                first = client.make_call()(client.requests[0])
            except Exception as e:  # noqa: BLE001 - the model's own complaint, on one line
                raise PerfError(f"the first request to model {model.name!r} through {client.name} failed: "
                                f"{type(e).__name__}: {e}".replace("\n", " ")) from None
            outputs = first if outputs is None else outputs  # the same response shapes for both estimates
            self._estimates[client.name] = client.estimate_send_recv_ns(outputs)
            if args.warmup_request_count:
                in_flight = int(levels[0]) if self.mode == "concurrency" else args.max_threads
                workers = max(1, min(in_flight, args.warmup_request_count))
                warm = ClosedLoop(client.make_call, client.requests, workers, budget=args.warmup_request_count)
                warm.start()
                try:
                    warm.wait()
                finally:
                    warm.stop()

    def _check_statistics(self, model: ModelInfo) -> None:
        """Reads the model's statistics once; when that fails, says why (once, on stderr) and
        measures without them (the server-side columns stay empty)."""
        try:
            self.server.stats(model)
            return
        except StatisticsRefused as e:
            if self.args.access_token:
                hint = "the access token given (--access-token / $%s) is not the server's" % ACCESS_TOKEN_ENV
            else:
                hint = ("pass the server's access token with --access-token (or $%s); for PyTriton, "
                        "Triton.get_access_token()" % ACCESS_TOKEN_ENV)
            reason = f"{e.message}: {hint}"
        except PerfError as e:
            reason = e.message
        self.statistics_unavailable = reason
        self._progress.line(f"note: no server-side statistics: {reason}")

    def sweep(self, levels: List[float]) -> None:
        """Each level, through each client in turn; stops early past --latency-threshold or
        when no request of a level succeeded."""
        args = self.args
        for level in levels:
            level_results = [self._measure(client, level) for client in self.clients]
            main = level_results[0]
            if args.latency_threshold is not None and main.stabilizing_latency_ns > args.latency_threshold * 1e6:
                self._progress.line(f"latency above --latency-threshold {args.latency_threshold:g} ms: "
                                    "sweep stopped")
                return
            if any(r.requests == 0 for r in level_results):
                self._progress.line("no request succeeded at this level: sweep stopped (the errors are listed "
                                    "with the results)")
                return

    def _measure(self, client: Any, level: float) -> LevelResult:
        args, mode, model = self.args, self.mode, self.model
        assert model is not None
        self._progress.line(f"[{client.name}] {MODES[mode].lower()} {_fmt_level(mode, level)}")
        budget = args.request_count or None
        load: Load
        if mode == "concurrency":
            load = ClosedLoop(client.make_call, client.requests, int(level), budget=budget)
        else:
            load = RequestRate(client.make_call, client.requests, level, args.request_distribution,
                               args.max_threads, budget=budget)
        settle = int(level) if mode == "concurrency" else 1

        def on_window(trial: int, window: Window, stable: bool) -> None:
            self._progress.window(client.name, mode, level, trial, window, stable, args.batch_size,
                                  1 if args.request_count else args.max_trials)

        settings = Settings(args.measurement_interval, args.stability_percentage / 100.0, args.max_trials,
                            args.percentile, args.request_count)
        stats = None if self.statistics_unavailable else (lambda: self.server.stats(model))
        profiler = LevelProfiler(load, settings, settle, stats, on_window)
        self._current = (client, profiler, level)
        profiler.run()
        self._current = None
        if not profiler.stable:
            self._progress.line(f"  [{client.name}] not stable within {args.stability_percentage:g}% after "
                                f"{args.max_trials} windows; reporting the last {STABILITY_WINDOWS}")
        return self._keep(client, profiler, level, interrupted=False)

    def _keep(self, client: Any, profiler: LevelProfiler, level: float, interrupted: bool) -> LevelResult:
        send_ns, recv_ns = self._estimates[client.name]
        result = summarize(profiler.measured_windows(), client=client.name, mode=self.mode, level=level,
                           batch_size=self.args.batch_size, percentile=self.args.percentile, send_ns=send_ns,
                           recv_ns=recv_ns, stable=profiler.stable and not interrupted, interrupted=interrupted,
                           error_messages=profiler.load.error_messages)
        self.results[client.name].append(result)
        return result

    def keep_partial_level(self) -> None:
        """After Ctrl-C: stops the level being measured and keeps its windows, if any."""
        if self._current is None:
            return
        client, profiler, level = self._current
        self._current = None
        profiler.load.stop()
        if profiler.windows:
            self._keep(client, profiler, level, interrupted=True)


def _output(args: argparse.Namespace, results: Dict[str, List[LevelResult]], model: Any, mode: str,
            interrupted: bool, statistics_unavailable: Optional[str] = None) -> None:
    sys.stdout.write("\n" + table(results, model.response_cache, statistics_unavailable))
    print_errors(results)
    sys.stdout.flush()
    main_rows = results.get("tritonfast") or []
    if args.csv and main_rows:
        write_csv(args.csv, main_rows, model.response_cache, args.verbose_csv, args.percentile)
        others = {c: rows for c, rows in results.items() if c != "tritonfast" and rows}
        for client, rows in others.items():
            write_csv(_sibling(args.csv, client), rows, model.response_cache, args.verbose_csv, args.percentile)
    if args.json:
        settings = {k: v for k, v in vars(args).items() if k not in ("csv", "json", "verbose")}
        settings["access_token"] = "(given)" if args.access_token else None  # never the token itself
        settings.update(mode=mode, model_max_batch_size=model.max_batch_size,
                        response_cache=model.response_cache, time=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        write_json(args.json, settings, results, interrupted, statistics_unavailable)


def _sibling(path: str, client: str) -> str:
    """``results.csv`` -> ``tritonclient.results.csv`` (perf_analyzer names extra CSVs by prefix too)."""
    head, tail = os.path.split(path)
    return os.path.join(head, f"{client}.{tail}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The ``tritonfast`` command: ``tritonfast perf ...``, ``tritonfast example-server ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = ("usage: tritonfast perf -m MODEL [options]   (tritonfast perf --help for the options)\n"
             "       tritonfast example-server [options]  (tritonfast example-server --help)\n")
    if argv and argv[0] == "perf":
        return perf_main(argv[1:], "tritonfast perf")
    if argv and argv[0] == "example-server":
        from tritonfast import _example_server  # only this command needs it (and nvidia-pytriton)

        return _example_server.main(argv[1:], "tritonfast example-server")
    if argv and argv[0] in ("-h", "--help"):
        sys.stdout.write(usage + "\ncommands:\n"
                         "  perf            measure a model's throughput and latency (perf_analyzer's options "
                         "and CSV)\n"
                         "  example-server  run a local Triton server (nvidia-pytriton's, on CPU) with the "
                         "README's example models\n")
        return 0
    sys.stderr.write(usage + (f"tritonfast: error: unknown command {argv[0]!r}\n" if argv else
                              "tritonfast: error: a command is required\n"))
    return EXIT_USAGE
