"""What the perf tool asks Triton besides inferences: readiness, the model's
configuration, and its statistics (``GET /v2/models/<m>[/versions/<v>]/stats``).

These go through tritonfast's own transport (``request(method, target, headers,
body, timeout_s, idempotent) -> (status, body)``), on connections separate from
the load's, and fail fast: the tool does not wait for a server that is not there.
Each carries the ``triton-access-token`` header when the tool has a token:
PyTriton servers (``TritonSecurityConfig``) refuse their statistics endpoint
without it, which :class:`StatisticsRefused` reports.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict, List, Optional, Tuple

from tritonfast import _core
from tritonfast._transport import create_transport
from tritonfast._url import TritonUrl
from tritonfast.exceptions import PyTritonClientError, PyTritonClientInvalidUrlError
from tritonfast.perf.errors import PerfError

# Bound on each management request (readiness, config, stats). The server
# answers these in milliseconds; a stats request competes with the load, so
# allow it some slack, but never hang the tool on a black-holed address.
MANAGEMENT_TIMEOUT_S = 10.0
# How many of the server's model names an "unknown model" error lists.
KNOWN_MODELS_SHOWN = 12

ACCESS_TOKEN_HEADER = "triton-access-token"  # Triton's --http-restricted-api header, as PyTriton sets it

# Triton's per-model statistics kept for each window, as "<name>" -> (count, ns).
STAT_NAMES = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output",
              "cache_hit", "cache_miss")


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    name: str
    datatype: str  # Triton datatype, e.g. "FP32", "BYTES"
    dims: Tuple[int, ...]  # without the batch dimension; -1: variable
    optional: bool = False


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    name: str
    version: Optional[str]  # None: the server's latest
    max_batch_size: int
    inputs: Tuple[TensorInfo, ...]
    outputs: Tuple[TensorInfo, ...]
    response_cache: bool
    decoupled: bool


@dataclasses.dataclass(frozen=True)
class ServerStats:
    """Cumulative counters of one model, summed over its versions."""

    inference_count: int = 0
    execution_count: int = 0
    counters: Tuple[Tuple[int, int], ...] = tuple((0, 0) for _ in STAT_NAMES)  # (count, ns) per STAT_NAMES

    def count(self, name: str) -> int:
        return self.counters[STAT_NAMES.index(name)][0]

    def ns(self, name: str) -> int:
        return self.counters[STAT_NAMES.index(name)][1]

    def __add__(self, other: "ServerStats") -> "ServerStats":
        return ServerStats(
            self.inference_count + other.inference_count,
            self.execution_count + other.execution_count,
            tuple((a[0] + b[0], a[1] + b[1]) for a, b in zip(self.counters, other.counters)),
        )

    def __sub__(self, other: "ServerStats") -> "ServerStats":
        return ServerStats(
            self.inference_count - other.inference_count,
            self.execution_count - other.execution_count,
            tuple((a[0] - b[0], a[1] - b[1]) for a, b in zip(self.counters, other.counters)),
        )

    def avg_ns(self, name: str) -> int:
        """Average time per counted event, in integer ns as perf_analyzer computes it."""
        count, ns = self.counters[STAT_NAMES.index(name)]
        return ns // count if count > 0 else 0

    def as_dict(self) -> Dict[str, Any]:
        return {
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            **{name: {"count": c, "ns": ns} for name, (c, ns) in zip(STAT_NAMES, self.counters)},
        }


def _datatype(data_type: str) -> str:
    name = data_type[len("TYPE_"):] if data_type.startswith("TYPE_") else data_type
    return "BYTES" if name == "STRING" else name


def _tensors(items: List[dict]) -> Tuple[TensorInfo, ...]:
    return tuple(
        TensorInfo(item["name"], _datatype(item["data_type"]), tuple(int(d) for d in item["dims"]),
                   bool(item.get("optional", False)))
        for item in items
    )


def _error_message(body: bytes) -> str:
    try:
        return str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return body.decode("utf-8", "replace").strip() or "(empty response)"


class StatisticsRefused(PerfError):
    """The server refused its statistics endpoint (HTTP 401 / 403: restricted, as PyTriton's are)."""

    def __init__(self, message: str, status: int, reason: str):
        super().__init__(message)
        self.status = status
        self.reason = reason  # the server's own words


def _is_refusal(status: int, message: str) -> bool:
    # Triton answers a restricted API without the header with 403 "This API is
    # restricted, expecting header 'triton-access-token'"; proxies in front use 401.
    return status in (401, 403) or "restricted" in message.lower()


class Server:
    """Management requests to one Triton server."""

    def __init__(self, url: str, ssl_context: Any = None, access_token: Optional[str] = None):
        try:
            self.url = TritonUrl.from_url(url)
        except PyTritonClientInvalidUrlError as e:
            raise PerfError(str(e)) from None
        self.display_url = self.url.with_scheme
        self._headers: List[Tuple[str, str]] = [(ACCESS_TOKEN_HEADER, access_token)] if access_token else []
        self._transport = create_transport(self.url, ssl_context)

    def close(self) -> None:
        self._transport.close()

    def get(self, target: str, method: str = "GET") -> Tuple[int, bytes]:
        try:
            return self._transport.request(method, target, self._headers, None, MANAGEMENT_TIMEOUT_S, True)
        except PyTritonClientError as e:
            raise PerfError(f"cannot reach the Triton server at {self.display_url}: {e}") from None

    def check_ready(self) -> None:
        status, body = self.get("/v2/health/ready")
        if status != 200:
            raise PerfError(f"the Triton server at {self.display_url} is not ready "
                            f"(HTTP {status}: {_error_message(body)})")

    def _model_names(self) -> List[str]:
        try:
            status, body = self.get("/v2/repository/index", method="POST")
            if status == 200:
                return sorted({entry["name"] for entry in json.loads(body) if entry.get("state") == "READY"})
        except (PerfError, ValueError, KeyError, TypeError):
            pass
        return []

    def model_info(self, name: str, version: Optional[str]) -> ModelInfo:
        """The model's config; PerfError naming the server's models when it has no such model."""
        base = _core.model_target(name, version or "", "")
        status, body = self.get(f"{base}/config")
        described = f"{name!r}" + (f" version {version}" if version else "")
        if status != 200:
            message = _error_message(body)
            if status in (400, 404) and ("unknown model" in message.lower() or "not found" in message.lower()):
                known = self._model_names()
                listed = ", ".join(known[:KNOWN_MODELS_SHOWN])
                listed += ", ..." if len(known) > KNOWN_MODELS_SHOWN else ""
                hint = f" (it has: {listed})" if known else ""
                raise PerfError(f"unknown model {described} on {self.display_url}{hint}")
            raise PerfError(f"fetching the config of model {described} from {self.display_url} failed "
                            f"with HTTP {status}: {message}")
        try:
            config = json.loads(body)
            info = ModelInfo(
                name=name,
                version=version,
                max_batch_size=int(config.get("max_batch_size", 0)),
                inputs=_tensors(config.get("input", [])),
                outputs=_tensors(config.get("output", [])),
                response_cache=bool((config.get("response_cache") or {}).get("enable", False)),
                decoupled=bool((config.get("model_transaction_policy") or {}).get("decoupled", False)),
            )
        except (ValueError, KeyError, TypeError) as e:
            raise PerfError(f"the config of model {described} from {self.display_url} "
                            f"cannot be read: {e!r}") from None
        status, body = self.get(f"{base}/ready")
        if status != 200:
            raise PerfError(f"model {described} is not ready on {self.display_url} "
                            f"(HTTP {status}: {_error_message(body)})")
        return info

    def stats(self, model: ModelInfo) -> ServerStats:
        """The model's cumulative statistics (every version when none was chosen)."""
        target = _core.model_target(model.name, model.version or "", "/stats")
        status, body = self.get(target)
        if status != 200:
            message = _error_message(body)
            if _is_refusal(status, message):
                raise StatisticsRefused(f"the server at {self.display_url} refused its statistics endpoint "
                                        f"(HTTP {status}: {message})", status, message)
            raise PerfError(f"fetching statistics of model {model.name!r} from {self.display_url} failed "
                            f"with HTTP {status}: {message}")
        total = ServerStats()
        for entry in json.loads(body).get("model_stats", []):
            if entry.get("name") != model.name:
                continue
            inference = entry.get("inference_stats", {})
            total = total + ServerStats(
                int(entry.get("inference_count", 0)),
                int(entry.get("execution_count", 0)),
                tuple((int(inference.get(n, {}).get("count", 0)), int(inference.get(n, {}).get("ns", 0)))
                      for n in STAT_NAMES),
            )
        return total
