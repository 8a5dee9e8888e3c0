"""``tritonfast perf`` (``tritonfast/perf``) against the real server (``tests/conftest.py``).

Most runs are in-process (``perf_main(argv)``, output through capsys); the exit
paths that matter as a process (``--help``, no traceback, Ctrl-C) run as
subprocesses. Windows are short (100-500 ms) or replaced by ``--request-count``
so the file stays well under a minute.
"""

from __future__ import annotations

import base64
import csv
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Tuple

import numpy as np
import pytest

import tritonfast.perf.clients as perf_clients
from tests.triton_server import free_ports
from tritonfast import ModelClient
from tritonfast.perf import data as perf_data
from tritonfast.perf.cli import EXIT_INTERRUPTED, EXIT_USAGE, main, perf_main
from tritonfast.perf.errors import PerfError
from tritonfast.perf.measure import Window, is_stable, percentile_ns
from tritonfast.perf.report import _g
from tritonfast.perf.server import ModelInfo, TensorInfo

REPO = Path(__file__).resolve().parents[1]
SUBPROCESS_TIMEOUT_S = 60.0

# perf_analyzer's `-f` header (its ReportWriter::GenerateReport): the server
# columns come with server statistics (always, over HTTP), the cache columns
# only for a model whose response cache is enabled, the last three only with
# --verbose-csv ("Avg latency" not with --percentile).
PA_HEAD = ["Concurrency", "Inferences/Second", "Client Send", "Network+Server Send/Recv", "Server Queue",
           "Server Compute Input", "Server Compute Infer", "Server Compute Output"]
PA_CACHE = ["Server Cache Hit", "Server Cache Miss"]
PA_TAIL = ["Client Recv", "p50 latency", "p90 latency", "p95 latency", "p99 latency"]
PA_VERBOSE = ["Avg latency", "request/response", "response wait"]

FAST_WINDOWS = ["-p", "100", "-r", "3"]  # 3 windows of 100 ms per level


@pytest.fixture
def url(triton_server) -> str:
    return triton_server.http_url


def perf(capsys, *argv: str) -> Tuple[int, str, str]:
    status = perf_main(list(argv), prog="tritonfast perf")
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def read_csv(path: Path) -> Tuple[List[str], List[List[str]]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def _check_rows(header: List[str], rows: List[List[str]]) -> None:
    """Every field parses; latencies are whole microseconds and ordered; sorted by throughput."""
    assert rows
    for row in rows:
        assert len(row) == len(header)
        values = dict(zip(header, row))
        assert float(values["Inferences/Second"]) > 0
        for name in header[2:]:
            assert int(values[name]) >= 0, name  # whole usec, as perf_analyzer writes them
        p = [int(values[f"p{n} latency"]) for n in (50, 90, 95, 99)]
        assert p == sorted(p) and p[0] > 0
    throughputs = [float(r[1]) for r in rows]
    assert throughputs == sorted(throughputs)


# ------------------------------------------------------------------ load modes and output files


def test_concurrency_sweep_csv_matches_perf_analyzer(capsys, url, tmp_path):
    out_csv = tmp_path / "results.csv"
    status, out, err = perf(capsys, "-m", "identity_fp32_cached", "-u", url, "--shape", "INPUT0:16",
                            "--concurrency-range", "1:8", *FAST_WINDOWS, "-f", str(out_csv))
    assert status == 0, err
    header, rows = read_csv(out_csv)
    assert header == PA_HEAD + PA_CACHE + PA_TAIL  # identity_fp32_cached has response_cache enabled
    _check_rows(header, rows)
    assert sorted(int(r[0]) for r in rows) == list(range(1, 9))
    # The readable table: one row per level, and a progress line per window on stderr.
    assert re.search(r"^\s+8\s+[\d,.]+\s", out, re.MULTILINE)
    assert "[tritonfast] concurrency 8: window 1/3" in err


def test_csv_without_cache_and_verbose_columns(capsys, url, tmp_path):
    plain, verbose, pct = tmp_path / "plain.csv", tmp_path / "verbose.csv", tmp_path / "p75.csv"
    common = ["-m", "identity_fp32", "-u", url, "--shape", "INPUT0:16", "--request-count", "50"]
    assert perf(capsys, *common, "-f", str(plain))[0] == 0
    assert perf(capsys, *common, "-f", str(verbose), "--verbose-csv")[0] == 0
    assert perf(capsys, *common, "-f", str(pct), "--verbose-csv", "--percentile", "75")[0] == 0
    assert read_csv(plain)[0] == PA_HEAD + PA_TAIL
    header, rows = read_csv(verbose)
    assert header == PA_HEAD + PA_TAIL + PA_VERBOSE
    _check_rows(header, rows)
    values = dict(zip(header, rows[0]))
    # perf_analyzer's arithmetic: request/response = send + recv, response wait = avg - send - recv.
    assert int(values["request/response"]) == int(values["Client Send"]) + int(values["Client Recv"])
    assert int(values["response wait"]) == int(values["Avg latency"]) - int(values["request/response"])
    header, rows = read_csv(pct)
    assert header == PA_HEAD + ["Client Recv", "p50 latency", "p75 latency", "p90 latency", "p95 latency",
                                "p99 latency", "request/response", "response wait"]


def test_json_counts_match_the_servers_statistics(capsys, url, tmp_path):
    out_json = tmp_path / "results.json"
    status, _, err = perf(capsys, "-m", "identity_fp32", "-u", url, "--shape", "INPUT0:16",
                          "--concurrency-range", "2", "--request-count", "120", "--json", str(out_json))
    assert status == 0, err
    document = read_json(out_json)
    assert document["tool"] == "tritonfast perf" and document["interrupted"] is False
    (result,) = document["results"]["tritonfast"]
    assert result["concurrency"] == 2 and result["requests"] == 120 and result["errors"] == 0
    assert result["stable"] is True and result["windows"] == 1
    latency = result["latency_us"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p95"] <= latency["p99"]
    assert result["throughput_infer_per_sec"] > 0 and result["client_cpu_us_per_request"] > 0
    # --request-count reads the statistics right before and after the counted requests.
    server = result["server"]
    assert server["counters"]["success"]["count"] == 120
    assert server["counters"]["queue"]["count"] == 120
    assert server["compute_infer_us"] > 0


@pytest.mark.parametrize("distribution, tolerance", [("constant", 0.10), ("poisson", 0.20)])
def test_request_rate_mode_reaches_its_rate(capsys, url, tmp_path, distribution, tolerance):
    out_csv, out_json = tmp_path / "rate.csv", tmp_path / "rate.json"
    status, out, err = perf(capsys, "-m", "identity_fp32", "-u", url, "--shape", "INPUT0:16",
                            "--request-rate-range", "200", "--request-distribution", distribution,
                            "-p", "500", "-r", "3", "-f", str(out_csv), "--json", str(out_json))
    assert status == 0, err
    header, rows = read_csv(out_csv)
    assert header == ["Request Rate"] + PA_HEAD[1:] + PA_TAIL
    assert rows[0][0] == "200"  # perf_analyzer prints the rate as a double: 200, 12.5
    (result,) = read_json(out_json)["results"]["tritonfast"]
    assert result["request_rate"] == 200
    assert abs(result["request_rate_achieved"] - 200) <= 200 * tolerance, result
    assert result["delayed_requests"] >= 0 and result["errors"] == 0
    assert "Delayed" in out


def test_request_rate_with_request_count(capsys, url, tmp_path):
    out_json = tmp_path / "rate.json"
    status, _, err = perf(capsys, "-m", "identity_fp32", "-u", url, "--shape", "INPUT0:16",
                          "--request-rate-range", "400", "--request-count", "60", "--json", str(out_json))
    assert status == 0, err
    (result,) = read_json(out_json)["results"]["tritonfast"]
    assert result["requests"] == 60 and result["server"]["counters"]["success"]["count"] == 60


@pytest.mark.parametrize("input_data", ["zero", "random"])
def test_generated_input_data(capsys, url, input_data):
    status, out, err = perf(capsys, "-m", "identity_fp32", "-u", url, "--shape", "INPUT0:16",
                            "--input-data", input_data, "--request-count", "30")
    assert status == 0, err
    assert f"({input_data} data)" in out


def test_input_data_json_file(capsys, url, tmp_path):
    four = np.array([1, 2, 3, 4], np.float32)
    document = {"data": [
        {"INPUT0": [1, 2, 3, 4]},
        {"INPUT0": {"content": [[5, 6], [7, 8]], "shape": [4]}},
        {"INPUT0": {"b64": base64.b64encode((four * 10).tobytes()).decode()}},
    ]}
    path = tmp_path / "input.json"
    path.write_text(json.dumps(document))
    out_json = tmp_path / "results.json"
    status, out, err = perf(capsys, "-m", "identity_fp32", "-u", url, "--shape", "INPUT0:4", "-b", "2",
                            "--input-data", str(path), "--request-count", "30", "--json", str(out_json))
    assert status == 0, err
    assert f"(from {path} data)" in out
    (result,) = read_json(out_json)["results"]["tritonfast"]
    assert result["errors"] == 0 and result["server"]["counters"]["inference_count"] == 60


def test_input_data_json_batches_consecutive_steps(tmp_path):
    model = ModelInfo("m", None, 8, (TensorInfo("X", "INT32", (-1,)), TensorInfo("S", "BYTES", (2,))),
                      (), False, False)
    steps = [{"X": {"content": [i, i], "shape": [2]}, "S": [f"s{i}", "é"]} for i in range(3)]
    path = tmp_path / "steps.json"
    path.write_text(json.dumps({"data": steps, "validation_data": []}))
    payloads, notes = perf_data.json_payloads(str(path), model, {}, batch_size=2)
    assert len(payloads) == 3  # 3 steps in batches of 2: (0, 1), (2, 0), (1, 2), then it repeats
    assert payloads[1]["X"].tolist() == [[2, 2], [0, 0]] and payloads[1]["X"].dtype == np.int32
    assert payloads[0]["S"].tolist() == [[b"s0", "é".encode()], [b"s1", "é".encode()]]
    assert notes and "validation_data is ignored" in notes[0]


@pytest.mark.parametrize("document, message", [
    ({"data": [{"X": [1, 2, 3]}]}, "3 values do not fill shape [2]"),
    ({"data": [{}]}, "has no value for input 'X'"),
    ({"data": [{"X": [1, 2], "Y": [1]}]}, "'Y', not inputs of model"),
    ({"data": [[{"X": [1, 2]}]]}, "sequence streams are not supported"),
    ({"data": [{"X": {"b64": "!!"}}]}, "invalid base64"),
    ({"inputs": []}, 'expected {"data"'),
])
def test_input_data_json_errors(tmp_path, document, message):
    model = ModelInfo("m", None, 8, (TensorInfo("X", "FP32", (2,)),), (), False, False)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document))
    with pytest.raises(PerfError, match=re.escape(message)):
        perf_data.json_payloads(str(path), model, {}, batch_size=1)


def test_bytes_model(capsys, url, tmp_path):
    out_json = tmp_path / "bytes.json"
    status, out, err = perf(capsys, "-m", "identity_bytes", "-u", url, "--shape", "INPUT0:4",
                            "--string-length", "8", "--request-count", "40", "--json", str(out_json))
    assert status == 0, err
    assert "INPUT0 BYTES [1, 4]" in out
    (result,) = read_json(out_json)["results"]["tritonfast"]
    assert result["requests"] == 40 and result["errors"] == 0


def test_generated_bytes_respect_string_options():
    model = ModelInfo("m", None, 4, (TensorInfo("S", "BYTES", (3,)),), (), False, False)
    (random_payload,) = perf_data.generated_payloads(model, {}, 2, zero=False, string_length=5)
    assert random_payload["S"].shape == (2, 3)
    assert all(len(v) == 5 and v.isalnum() for v in random_payload["S"].reshape(-1))
    (fixed,) = perf_data.generated_payloads(model, {}, 1, zero=False, string_data="abc")
    assert fixed["S"].tolist() == [[b"abc"] * 3]
    (zero,) = perf_data.generated_payloads(model, {}, 1, zero=True, string_length=2)
    assert zero["S"].tolist() == [[b"\x00\x00"] * 3]


@pytest.mark.parametrize("datatype", ["BOOL", "UINT8", "INT64", "FP16", "FP64"])
def test_random_data_has_the_model_dtype(datatype):
    model = ModelInfo("m", None, 0, (TensorInfo("X", datatype, (64,)),), (), False, False)
    (payload,) = perf_data.generated_payloads(model, {}, 1, zero=False)
    assert payload["X"].shape == (64,)  # no batch dimension for a non-batching model
    assert payload["X"].dtype == np.dtype({"BOOL": bool}.get(datatype, datatype.lower().replace("fp", "float")))


def test_batch_size(capsys, url, tmp_path):
    out_json = tmp_path / "batch.json"
    status, out, err = perf(capsys, "-m", "identity_fp32", "-u", url, "--shape", "INPUT0:16", "-b", "4",
                            "--request-count", "25", "--json", str(out_json))
    assert status == 0, err
    assert "INPUT0 FP32 [4, 16]" in out
    (result,) = read_json(out_json)["results"]["tritonfast"]
    assert result["server"]["counters"]["inference_count"] == 100  # 25 requests of 4
    assert result["server"]["counters"]["execution_count"] == 25


@pytest.mark.parametrize("model, batch, message", [
    ("identity_fp32", "32", "-b 32 exceeds the max_batch_size 16"),
    ("nobatch", "2", "does not support batching"),
])
def test_batch_size_errors(capsys, url, model, batch, message):
    status, _, err = perf(capsys, "-m", model, "-u", url, "--shape", "INPUT0:16", "-b", batch)
    assert status == EXIT_USAGE and message in err


def test_shared_memory_none(capsys, url):
    status, out, err = perf(capsys, "-m", "identity_fp32", "-u", url, "--shape", "INPUT0:16",
                            "--shared-memory", "none", "--request-count", "20")
    assert status == 0, err
    assert "shared memory: none" in out


def test_shared_memory_system(capsys, url):
    supported = "shared_memory" in __import__("inspect").signature(ModelClient).parameters
    status, out, err = perf(capsys, "-m", "identity_fp32", "-u", url, "--shape", "INPUT0:16",
                            "--shared-memory", "system", "--request-count", "20")
    if supported:
        assert status == 0, err
    else:
        assert status == EXIT_USAGE and "not supported by this tritonfast build" in err


def test_shared_memory_without_support_is_a_clear_error(capsys, url, monkeypatch):
    class ModelClientWithoutSharedMemory(ModelClient):
        def __init__(self, url, model_name, model_version=None, *, lazy_init=True, init_timeout_s=None,
                     inference_timeout_s=None, split_large_batches=True):
            super().__init__(url, model_name, model_version, lazy_init=lazy_init, init_timeout_s=init_timeout_s,
                             inference_timeout_s=inference_timeout_s, split_large_batches=split_large_batches)

    monkeypatch.setattr(perf_clients, "ModelClient", ModelClientWithoutSharedMemory)
    status, _, err = perf(capsys, "-m", "identity_fp32", "-u", url, "--shape", "INPUT0:16",
                          "--shared-memory", "system", "--request-count", "5")
    assert status == EXIT_USAGE
    assert err.strip() == ("tritonfast perf: error: --shared-memory system is not supported by this "
                           "tritonfast build (tritonfast.ModelClient has no shared_memory option); "
                           "use --shared-memory none")
    assert perf(capsys, "-m", "identity_fp32", "-u", url, "--shape", "INPUT0:16", "--request-count", "5")[0] == 0


def test_compare_tritonclient(capsys, url, tmp_path):
    pytest.importorskip("tritonclient.http")
    out_csv = tmp_path / "cmp.csv"
    status, out, err = perf(capsys, "-m", "identity_fp32_cached", "-u", url, "--shape", "INPUT0:16",
                            "--concurrency-range", "1:2", "--request-count", "100", "--compare", "tritonclient",
                            "-f", str(out_csv))
    assert status == 0, err
    for level in ("1", "2"):
        assert re.search(rf"^\s+{level}\s+tritonfast\s", out, re.MULTILINE)
        assert re.search(rf"^\s+{level}\s+tritonclient\s", out, re.MULTILINE)
    assert re.search(r"concurrency 2: throughput [\d.]+x, avg latency [\d.]+x, client CPU/request [\d.]+x", out)
    # Each client's rows in perf_analyzer's format: the tritonclient ones beside the main file.
    for path in (out_csv, tmp_path / "tritonclient.cmp.csv"):
        header, rows = read_csv(path)
        assert header == PA_HEAD + PA_CACHE + PA_TAIL
        _check_rows(header, rows)


def test_compare_without_tritonclient_is_a_clear_error(capsys, url, monkeypatch):
    monkeypatch.setitem(sys.modules, "tritonclient.http", None)  # makes the import fail
    status, _, err = perf(capsys, "-m", "identity_fp32", "-u", url, "--shape", "INPUT0:16",
                          "--compare", "tritonclient", "--request-count", "5")
    assert status == EXIT_USAGE and "--compare tritonclient needs the tritonclient package" in err


def test_latency_threshold_ends_an_open_sweep(capsys, url):
    status, out, err = perf(capsys, "-m", "identity_fp32", "-u", url, "--shape", "INPUT0:16",
                            "--concurrency-range", "1:0", "-l", "0.001", "--request-count", "10")
    assert status == 0, err
    assert "sweep stopped" in err
    assert not re.search(r"^\s+2\s", out, re.MULTILINE)


def test_errors_are_counted_not_hidden(capsys, url, tmp_path, monkeypatch):
    # Every third request fails (the model sees a wrong shape), the rest succeed.
    real = perf_clients.TritonfastClient.make_call

    def flaky_make_call(self):
        call, count = real(self), iter(range(10**9))

        def flaky(args):
            if next(count) % 3 == 2:
                return call(tuple(np.ones((1, 2, 3), np.float32) for _ in args))
            return call(args)

        return flaky

    out_json = tmp_path / "errors.json"
    monkeypatch.setattr(perf_clients.TritonfastClient, "make_call", flaky_make_call)
    status, out, err = perf(capsys, "-m", "identity_fp32", "-u", url, "--shape", "INPUT0:16",
                            "--request-count", "30", "--json", str(out_json))
    assert status == 0, err
    (result,) = read_json(out_json)["results"]["tritonfast"]
    assert (result["requests"], result["errors"]) == (20, 10)
    (message, count), = result["error_messages"].items()
    assert count == 10 and "PyTritonClientInferenceServerError" in message
    assert "10 x PyTritonClientInferenceServerError" in out


# ------------------------------------------------------------------ PyTriton's access token

# PyTriton's AddSub (tests/pytriton_app.py); its server restricts the statistics endpoint.
PYTRITON_ADD_SUB = ["-m", "AddSub", "--shape", "INPUT_1:4", "--shape", "INPUT_2:4", "--request-count", "20"]
REFUSED = r"the server at {url} refused its statistics endpoint \(HTTP 403: [^)]*'triton-access-token'\)"


def _table_row(out: str) -> dict:
    """The readable table's one row (concurrency 1), by column."""
    lines = out.splitlines()
    header = next(line for line in lines if line.lstrip().startswith("Concurrency ")).split()
    (row,) = [line.split() for line in lines if re.match(r"^\s+1\s+[\d,.]+\s", line)]
    return dict(zip(header, row))


def test_without_the_access_token_perf_says_why_the_server_columns_are_empty(capsys, pytriton_server, tmp_path,
                                                                          monkeypatch):
    monkeypatch.delenv("TRITONFAST_ACCESS_TOKEN", raising=False)
    url = pytriton_server.http_url
    out_json, out_csv = tmp_path / "results.json", tmp_path / "results.csv"
    status, out, err = perf(capsys, *PYTRITON_ADD_SUB, "-u", url, "--json", str(out_json), "-f", str(out_csv))
    assert status == 0, err
    reason = REFUSED.format(url=re.escape(url)) + (r": pass the server's access token with --access-token "
                                                   r"\(or \$TRITONFAST_ACCESS_TOKEN\)")
    assert len(re.findall(reason, err)) == 1, err  # said once, not per window
    assert re.search(r"^Server-side columns empty \(-\): " + reason, out, re.MULTILINE), out
    cells = _table_row(out)
    assert [cells[name] for name in ("Queue", "In", "Infer", "Out")] == ["-"] * 4
    document = read_json(out_json)
    assert document["server_statistics"]["available"] is False
    assert re.match(reason, document["server_statistics"]["reason"])
    (result,) = document["results"]["tritonfast"]
    assert result["requests"] == 20 and result["errors"] == 0 and result["server"] is None
    assert document["settings"]["access_token"] is None
    header, rows = read_csv(out_csv)  # perf_analyzer's columns, the server's at 0
    assert header == PA_HEAD + PA_TAIL
    assert [rows[0][header.index(name)] for name in PA_HEAD[4:]] == ["0"] * 4


@pytest.mark.parametrize("how", ["option", "environment"])
def test_with_the_access_token_the_server_columns_are_filled(capsys, pytriton_server, tmp_path, monkeypatch, how):
    url, token = pytriton_server.http_url, pytriton_server.access_token
    out_json = tmp_path / "results.json"
    argv = [*PYTRITON_ADD_SUB, "-u", url, "--json", str(out_json)]
    if how == "option":
        monkeypatch.delenv("TRITONFAST_ACCESS_TOKEN", raising=False)
        argv += ["--access-token", token, "--compare", "tritonclient"]  # both clients send it
    else:
        monkeypatch.setenv("TRITONFAST_ACCESS_TOKEN", token)
    status, out, err = perf(capsys, *argv)
    assert status == 0, err
    assert "refused" not in err and "Server-side columns empty" not in out
    assert "Access token: given" in out
    if how == "environment":  # one client: one row
        assert all(_table_row(out)[name] != "-" for name in ("Queue", "In", "Infer", "Out"))
    document = read_json(out_json)
    assert document["server_statistics"] == {"available": True, "reason": None}
    for client, rows in document["results"].items():
        (result,) = rows
        assert result["server"]["counters"]["success"]["count"] == 20, client
        assert result["server"]["compute_infer_us"] > 0
    assert document["settings"]["access_token"] == "(given)"
    assert token not in out_json.read_text()  # the token itself is never written out


def test_a_wrong_access_token_is_named_as_the_cause(capsys, pytriton_server, monkeypatch):
    monkeypatch.delenv("TRITONFAST_ACCESS_TOKEN", raising=False)
    url = pytriton_server.http_url
    status, out, err = perf(capsys, *PYTRITON_ADD_SUB, "-u", url, "--access-token", "not-the-token")
    assert status == 0, err
    reason = REFUSED.format(url=re.escape(url)) + r": the access token given \(--access-token"
    assert len(re.findall(reason, err)) == 1 and re.search(reason, out)


# ------------------------------------------------------------------ errors the user can fix


def test_unknown_model(capsys, url):
    status, out, err = perf(capsys, "-m", "no_such_model", "-u", url)
    assert status == EXIT_USAGE and out == ""
    assert err.startswith(f"tritonfast perf: error: unknown model 'no_such_model' on {url} (it has: add_sub, ")
    assert err.count("\n") == 1


def test_missing_shape_for_a_variable_dimension(capsys, url):
    status, _, err = perf(capsys, "-m", "identity_fp32", "-u", url)
    assert status == EXIT_USAGE
    assert err == ("tritonfast perf: error: input 'INPUT0' of model 'identity_fp32' has a variable dimension "
                   "(dims [-1]): give its shape with --shape INPUT0:N\n")


@pytest.mark.parametrize("argv, message", [
    (["--shape", "INPUT1:16"], "--shape names 'INPUT1', which is not an input"),
    (["--shape", "INPUT0:16,2"], "does not fit the model's dims [-1]"),
    (["--shape", "INPUT0:x"], "dimensions must be integers"),
    (["--concurrency-range", "4:2"], "END >= START"),
    (["--concurrency-range", "1:0"], "needs --latency-threshold"),
    (["--concurrency-range", "1", "--request-rate-range", "10"], "cannot be used together"),
    (["-r", "2"], "--max-trials must be at least 3"),
    (["-i", "grpc"], "tritonfast speaks HTTP only"),
    (["--input-data", "/nonexistent.json"], "--input-data /nonexistent.json: No such file"),
])
def test_option_errors(capsys, url, argv, message):
    status, _, err = perf(capsys, "-m", "identity_fp32", "-u", url, *argv)
    assert status == EXIT_USAGE and message in err and err.count("\n") == 1


def test_unreachable_server_exits_2_with_one_line():
    (port,) = free_ports(1)
    completed = subprocess.run([sys.executable, "-m", "tritonfast.perf", "-m", "identity_fp32",
                                "-u", f"127.0.0.1:{port}"], capture_output=True, text=True, cwd=REPO,
                               timeout=SUBPROCESS_TIMEOUT_S)
    assert completed.returncode == EXIT_USAGE
    assert completed.stdout == ""
    assert completed.stderr == (f"python -m tritonfast.perf: error: cannot reach the Triton server at "
                                f"http://127.0.0.1:{port}: connection to 127.0.0.1:{port} refused\n")


def test_ctrl_c_prints_what_was_measured_and_exits_130(url, tmp_path):
    out_csv = tmp_path / "partial.csv"
    process = subprocess.Popen(
        [sys.executable, "-m", "tritonfast.perf", "-m", "identity_fp32", "-u", url, "--shape", "INPUT0:16",
         "--concurrency-range", "1:64", "-p", "200", "-r", "5", "-f", str(out_csv)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )
    try:
        deadline = time.monotonic() + SUBPROCESS_TIMEOUT_S
        progress = []
        while time.monotonic() < deadline:  # until level 2 has measured a window
            line = process.stderr.readline()
            progress.append(line)
            if not line or "concurrency 2: window 1/" in line:
                break
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=SUBPROCESS_TIMEOUT_S)
    finally:
        process.kill()
    assert process.returncode == EXIT_INTERRUPTED, "".join(progress) + err
    assert "Traceback" not in err
    assert err.endswith("tritonfast.perf: interrupted; printed the 2 result(s) measured so far\n")
    assert re.search(r"^\s+1\s+[\d,.]+\s", out, re.MULTILINE)
    assert re.search(r"^\s+2\s+[\d,.]+\s.*\(interrupted\)$", out, re.MULTILINE)
    header, rows = read_csv(out_csv)
    assert header == PA_HEAD + PA_TAIL and sorted(r[0] for r in rows) == ["1", "2"]


# ------------------------------------------------------------------ entry points


def test_python_m_help():
    completed = subprocess.run([sys.executable, "-m", "tritonfast.perf", "--help"], capture_output=True,
                               text=True, cwd=REPO, timeout=SUBPROCESS_TIMEOUT_S)
    assert completed.returncode == 0
    assert completed.stdout.startswith("usage: python -m tritonfast.perf ")
    for option in ("--concurrency-range", "--request-rate-range", "--request-distribution", "--input-data",
                   "--shared-memory", "--stability-percentage", "--max-trials", "--request-count",
                   "--measurement-interval", "--json", "--compare", "-f FILE.csv", "--access-token",
                   "TRITONFAST_ACCESS_TOKEN"):
        assert option in completed.stdout


def test_tritonfast_command(capsys):
    text = (REPO / "pyproject.toml").read_text()
    assert re.search(r'^\[project\.scripts\]\ntritonfast = "tritonfast\.perf\.cli:main"$', text, re.MULTILINE)
    with pytest.raises(SystemExit) as exit_info:
        main(["perf", "--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("usage: tritonfast perf ")
    assert main(["--help"]) == 0
    assert "perf" in (out := capsys.readouterr().out) and "example-server" in out
    assert main(["bench"]) == EXIT_USAGE and "unknown command 'bench'" in capsys.readouterr().err
    assert main([]) == EXIT_USAGE


# ------------------------------------------------------------------ perf_analyzer's rules


def _window(throughput: float, latency_ns: int, duration_ns: int = 1_000_000_000) -> Window:
    return Window(duration_ns, [latency_ns] * int(throughput), 0, 0, 0.0, None)


def test_stability_rule():
    assert not is_stable([_window(100, 1000)] * 2, 0.1, None)  # needs 3 windows
    assert is_stable([_window(50, 9), _window(100, 1000), _window(105, 1050), _window(109, 1090)], 0.1, None)
    assert not is_stable([_window(100, 1000), _window(105, 1050), _window(111, 1000)], 0.1, None)  # throughput
    assert not is_stable([_window(100, 1000), _window(100, 1050), _window(100, 1111)], 0.1, None)  # latency
    assert not is_stable([_window(100, 1000), _window(100, 1000), _window(0, 1000)], 0.1, None)  # no successes


def test_percentile_and_number_formats():
    ns = list(range(1, 101))
    assert [percentile_ns(ns, p) for p in (50, 90, 95, 99)] == [51, 90, 95, 99]  # round(p/100 * (n-1))
    assert percentile_ns([], 50) == 0
    assert [_g(x) for x in (69.2, 1234.5678, 200.0, 12.5, 1234567.0)] == [
        "69.2", "1234.57", "200", "12.5", "1.23457e+06"]  # C++'s `ostream << double`
