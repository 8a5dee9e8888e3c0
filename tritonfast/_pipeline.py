"""The request pipeline every front end shares: pure steps, no I/O.

A front end (``ModelClient``, ``AsyncioModelClient``, and the tritonclient-style
clients to come; ``FuturesModelClient`` runs on a ``ModelClient``) is a thin
layer that calls these steps around one transport call::

    check_call(...)                      arguments: inputs, parameters, headers
    config = <ready>(ready_config...)    readiness and config: sans-I/O exchanges
    plan = plan_infer(...)               batch axis, naming, oversize batches split
    headers = request_headers(...)       the access token and the caller's headers
    route = shm.route(named, config)     shared memory or plain HTTP (tritonfast._shm.path)
    result = <transport>.infer(...)      the one I/O call per part (awaited in asyncio)
    finish_infer(plan, results)          chunks concatenated, the batch axis taken off
    except ...: raise infer_error(...)   server/transport error -> tritonfast exception

Multi-request exchanges (waiting for the server or model, fetching the config,
the repository API) are generators: they yield :class:`Request` and
:class:`Sleep` steps and receive each request's ``(status, body)``, or have the
transport's exception thrown into them. :func:`run` drives one with blocking
calls; :func:`run_async` awaits the same steps. So sync and async differ only
in the I/O call, never in a hand-copied twin of the logic.

The fast lane (``_core.InferPlan``) is not a pipeline step: it does a plain
request in one C++ call and hands anything else back, unsent, to this path.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from typing import Any, Awaitable, Callable, Dict, Generator, List, NamedTuple, Optional, Tuple, Union

import numpy as np

from tritonfast import _core
from tritonfast._url import TritonUrl
from tritonfast.exceptions import (
    ProtocolError,
    PyTritonClientConnectionError,
    PyTritonClientInferenceServerError,
    PyTritonClientModelDoesntSupportBatchingError,
    PyTritonClientModelUnavailableError,
    PyTritonClientTimeoutError,
    PyTritonClientValueError,
    TlsError,
    _ServerError,
)
from tritonfast.model_config import TritonModelConfig, parse_model_config

LATEST_MODEL_VERSION = "<latest>"
DEFAULT_INFERENCE_TIMEOUT_S = 60.0
DEFAULT_INIT_TIMEOUT_S = 300.0

# Readiness polling: the first retry comes after this many seconds, each next
# one after twice as long, up to the maximum (PyTriton polls once a second).
POLL_FIRST_S = 0.05
POLL_MAX_S = 1.0
# A model the server reports as unknown for this long, while the server itself
# is ready, is unavailable: a grace period for servers that register models
# after they start (PyTriton binds models once tritonserver is up).
UNKNOWN_MODEL_GRACE_S = 3.0
# Waiting for the chunks of a split batch: their requests' timeouts plus this.
CHUNK_WAIT_SLACK_S = 1.0

ParamValue = Union[str, int, bool]
Headers = List[Tuple[str, str]]


# =============================================================================
# The model a client talks to
# =============================================================================


class ModelRef:
    """A model on a server: its name, version, the url (for messages) and the
    request targets derived from them."""

    __slots__ = ("name", "version", "url", "path", "infer_target", "repository_target")

    def __init__(self, url: str, name: str, version: Optional[str]):
        self.url = url
        self.name = name
        self.version = version
        self.path = _core.model_target(name, version or "", "")
        self.infer_target = _core.model_target(name, version or "", "/infer")
        self.repository_target = _core.model_target(name, "", "").replace(
            "/v2/models/", "/v2/repository/models/", 1)

    def describe(self) -> str:
        return f"{self.name}/{self.version or LATEST_MODEL_VERSION}"


class ModelClientState:
    """What every front end of one model keeps, checked and defaulted once: the
    url, the model and its targets, timeouts, access token and options (no I/O).
    ``ModelClient`` and ``AsyncioModelClient`` both start from it."""

    _LOGGER: logging.Logger  # the front end's

    def _init_state(self, url: str, model_name: str, model_version: Optional[Any], init_timeout_s: Optional[float],
                    inference_timeout_s: Optional[float], model_config: Optional[TritonModelConfig],
                    ensure_model_is_ready: bool, access_token: Optional[str], split_large_batches: bool,
                    ssl_context: Any, max_response_body_bytes: Optional[int]) -> None:
        self._triton_url = TritonUrl.from_url(url)
        self._url = self._triton_url.with_scheme
        if model_version is not None and not isinstance(model_version, (str, int)):
            raise PyTritonClientValueError(f"model_version must be a str, got {type(model_version).__name__}")
        if max_response_body_bytes is not None and (
                not isinstance(max_response_body_bytes, int) or max_response_body_bytes <= 0):
            raise PyTritonClientValueError(
                f"max_response_body_bytes must be a positive int, got {max_response_body_bytes!r}")
        self._model_name = model_name
        self._model_version = None if model_version is None else str(model_version)
        self._init_timeout_s = DEFAULT_INIT_TIMEOUT_S if init_timeout_s is None else init_timeout_s
        self._inference_timeout_s = DEFAULT_INFERENCE_TIMEOUT_S if inference_timeout_s is None else inference_timeout_s
        self._access_token = access_token
        self._auth_headers = {"triton-access-token": access_token} if access_token else {}
        self._auth_header_list = list(self._auth_headers.items())
        self._split_large_batches = split_large_batches
        self._ssl_context = ssl_context
        self._max_response_body_bytes = max_response_body_bytes
        self._model_config = model_config
        # True once the model was seen ready and its config is cached.
        self._model_ready = model_config is not None and not ensure_model_is_ready
        self._request_ids = _core.RequestIds()  # "0", "1", ... as PyTriton
        self._model = ModelRef(self._url, model_name, self._model_version)

    def _infer_error(self, e: Exception) -> Exception:
        """The PyTriton exception for a failed inference request (logged on the front
        end's logger when the transport, not the server, failed)."""
        if not isinstance(e, _ServerError):
            self._LOGGER.error("inference of %s on %s failed: %s", self._model.describe(), self._url, e)
        return infer_error(e, self._model, self._inference_timeout_s)

    def _request_timeout(self, step: "Request") -> float:
        """A management request's timeout: the inference timeout, cut to its deadline."""
        return max(0.0, min(self._inference_timeout_s, step.deadline - time.monotonic()))


# =============================================================================
# Arguments and inputs
# =============================================================================


def check_call(inputs: tuple, named_inputs: dict, parameters: Optional[dict], headers: Optional[dict]) -> None:
    """PyTriton's argument checks of ``infer_sample`` / ``infer_batch``."""
    if not inputs and not named_inputs:
        raise PyTritonClientValueError("Provide input data")
    if inputs and named_inputs:
        raise PyTritonClientValueError("Use either positional either keyword method arguments convention")
    _check_mapping(parameters)
    _check_mapping(headers)


def _check_mapping(parameters_or_headers: Optional[Dict[str, ParamValue]]) -> None:
    if parameters_or_headers is None:
        return
    if not isinstance(parameters_or_headers, dict):
        raise PyTritonClientValueError("Parameters and headers must be a dictionary")
    for key, value in parameters_or_headers.items():
        if not isinstance(key, str):
            raise PyTritonClientValueError("Parameter/header key must be a string")
        if not isinstance(value, (str, int, bool)):
            raise PyTritonClientValueError("Parameter/header value must be a string, integer or boolean")


def check_batching(config: TritonModelConfig) -> None:
    """``infer_batch`` on a model without batching is PyTriton's error."""
    if config.max_batch_size <= 0:
        raise PyTritonClientModelDoesntSupportBatchingError(
            f"Model {config.model_name} doesn't support batching - use infer_sample method instead"
        )


def check_not_decoupled(config: Optional[TritonModelConfig]) -> None:
    if config is not None and config.decoupled:
        raise PyTritonClientInferenceServerError("Model config is decoupled. Use DecoupledModelClient instead.")


def add_batch_axis(inputs: tuple, named_inputs: dict) -> Tuple[tuple, dict]:
    """``infer_sample`` on a batching model: a batch axis of 1 on every input."""
    return (tuple(x[np.newaxis, ...] for x in inputs),
            {name: x[np.newaxis, ...] for name, x in named_inputs.items()})


def name_inputs(config: TritonModelConfig, inputs: tuple, named_inputs: dict) -> Dict[str, Any]:
    if named_inputs:
        return named_inputs
    # PyTriton's rule: positional inputs follow the config's order; extras are dropped.
    return {spec.name: x for spec, x in zip(config.inputs or (), inputs)}


def request_headers(auth_headers: Dict[str, str], auth_list: Headers, headers: Optional[dict]) -> Headers:
    """The request's headers: the access token's, then the caller's (which win)."""
    if headers:
        return [(k, str(v)) for k, v in {**auth_headers, **headers}.items()]
    return auth_list


# =============================================================================
# One call's requests: the batch axis, naming, oversize batches
# =============================================================================


class InferPlan(NamedTuple):
    """The requests of one ``infer_sample`` / ``infer_batch`` call, and how their
    results become the call's result (:func:`finish_infer`)."""

    parts: List[Dict[str, Any]]  # named inputs of each request (several: a split batch)
    split: bool  # the parts are chunks of one batch, their outputs concatenated
    first_rows: bool  # infer_sample on a batching model: the batch axis taken off


def plan_infer(sample: bool, config: TritonModelConfig, inputs: tuple, named_inputs: dict,
               split_large_batches: bool) -> InferPlan:
    """What an ``infer_sample`` (``sample``) or ``infer_batch`` call sends, after
    :func:`check_call`: PyTriton's batch axis and naming rules, and a batch over
    ``max_batch_size`` split into chunks (``split_large_batches``)."""
    batching = config.max_batch_size > 0
    if sample:
        if batching:
            inputs, named_inputs = add_batch_axis(inputs, named_inputs)
        return InferPlan([name_inputs(config, inputs, named_inputs)], False, batching)
    check_batching(config)
    named = name_inputs(config, inputs, named_inputs)
    if split_large_batches:
        chunks = plan_chunks(named, config.max_batch_size)
        if chunks is not None:
            return InferPlan(chunks, True, False)
    return InferPlan([named], False, False)


def finish_infer(plan: InferPlan, results: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The call's result from its requests' results, in the order of ``plan.parts``."""
    result = merge_chunks(results) if plan.split else results[0]
    return first_rows(result) if plan.first_rows else result



def plan_chunks(inputs: Dict[str, Any], max_batch_size: int) -> Optional[List[Dict[str, Any]]]:
    """Chunks of at most ``max_batch_size`` rows, or None when no split is needed
    (or possible: inputs disagree on their batch size)."""
    batch = 0
    for x in inputs.values():
        if not isinstance(x, np.ndarray) or x.ndim == 0 or x.shape[0] <= max_batch_size:
            return None
        if not batch:
            batch = x.shape[0]
        elif x.shape[0] != batch:
            return None
    return [
        {name: x[start:start + max_batch_size] for name, x in inputs.items()}
        for start in range(0, batch, max_batch_size)
    ]


def chunks_deadline(chunks: int, concurrency: int, inference_timeout_s: float) -> float:
    """When waiting for a split batch's chunks gives up: each chunk's request is
    bounded by the inference timeout and chunks beyond ``concurrency`` wait their
    turn; the wait itself is bounded too, so no state of a worker (a fork, a bug)
    can hang the caller."""
    rounds = -(-chunks // concurrency)
    return time.monotonic() + rounds * inference_timeout_s + CHUNK_WAIT_SLACK_S


def chunks_timeout_error(chunks: int, model: ModelRef, inference_timeout_s: float) -> PyTritonClientTimeoutError:
    return PyTritonClientTimeoutError(
        f"Timeout occurred during inference request. Timeout: {inference_timeout_s} s "
        f"Message: {chunks} chunks of a split batch did not finish in time (model {model.describe()})"
    )


def merge_chunks(results: List[Dict[str, np.ndarray]]) -> Dict[str, np.ndarray]:
    return {name: np.concatenate([r[name] for r in results]) for name in results[0]}


# =============================================================================
# Responses and errors
# =============================================================================


def first_row(name: str, out: Any) -> Any:
    """PyTriton's ``out[0]`` for infer_sample on a batching model; an output without
    a row to take is the server's fault (as in the fast lane, csrc/bindings/)."""
    shape = getattr(out, "shape", None)
    if shape is None or len(shape) == 0 or shape[0] < 1:
        shape_list = list(shape) if shape is not None else []
        raise ProtocolError(
            f"output '{name}' has shape {shape_list}: infer_sample on a batching model takes the "
            "first row of every output, and this one has "
            + ("no batch axis" if not shape_list else "an empty batch axis")
        )
    return out[0]


def first_rows(result: Dict[str, Any]) -> Dict[str, Any]:
    return {name: first_row(name, out) for name, out in result.items()}


def infer_error(e: Exception, model: ModelRef, inference_timeout_s: float) -> Exception:
    """The PyTriton exception for a failed inference request (``_ServerError`` or
    a timeout/connection error from the transport)."""
    if isinstance(e, _ServerError):
        message = e.message
        if "unknown model" in message.lower():
            return PyTritonClientModelUnavailableError(
                f"Model {model.describe()} is not available on {model.url}: {message}"
            )
        return PyTritonClientInferenceServerError(f"Error occurred during inference request. Message: {message}")
    # PyTriton's wording for timeouts; a broken connection says what it is.
    what = "Connection failed" if isinstance(e, PyTritonClientConnectionError) else "Timeout occurred"
    return type(e)(
        f"{what} during inference request. Timeout: {inference_timeout_s} s "
        f"Message: {e} (model {model.describe()})"
    )


def error_message(body: bytes) -> str:
    """Triton's ``{"error": ...}`` text of an error answer, or the body itself."""
    try:
        return str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return body.decode("utf-8", "replace") or "(empty response)"


# =============================================================================
# Sans-I/O exchanges: readiness, config, repository
# =============================================================================


class Request(NamedTuple):
    """One management request; its timeout is the client's, cut to ``deadline``."""

    method: str
    target: str
    deadline: float
    body: Optional[bytes] = None
    idempotent: bool = True


class Sleep(NamedTuple):
    seconds: float


Exchange = Generator[Union[Request, Sleep], Any, Any]


def run(exchange: Exchange, request: Callable[[Request], Tuple[int, bytes]],
        sleep: Callable[[float], None] = time.sleep) -> Any:
    """Drives ``exchange`` with blocking calls; returns what it returns."""
    value: Any = None
    error: Optional[BaseException] = None
    while True:
        try:
            step = exchange.send(value) if error is None else exchange.throw(error)
        except StopIteration as done:
            return done.value
        value = error = None
        try:
            if isinstance(step, Sleep):
                sleep(step.seconds)
            else:
                value = request(step)
        except Exception as e:  # noqa: BLE001 - thrown into the exchange, which decides
            error = e


async def run_async(exchange: Exchange, request: Callable[[Request], Awaitable[Tuple[int, bytes]]],
                    sleep: Optional[Callable[[float], Awaitable[Any]]] = None) -> Any:
    """Drives ``exchange`` with awaited calls (the asyncio front end's :func:`run`);
    returns what it returns. A cancellation is not thrown into the exchange: it ends it."""
    if sleep is None:
        import asyncio  # here, not at import: sync users never load asyncio

        sleep = asyncio.sleep
    value: Any = None
    error: Optional[BaseException] = None
    while True:
        try:
            step = exchange.send(value) if error is None else exchange.throw(error)
        except StopIteration as done:
            return done.value
        value = error = None
        try:
            if isinstance(step, Sleep):
                await sleep(step.seconds)
            else:
                value = await request(step)
        except Exception as e:  # noqa: BLE001 - thrown into the exchange, which decides
            error = e


def _poll(target: str, deadline: float) -> Exchange:
    """A readiness request's ``(status, body)``; None while the server is not
    reachable (refused, reset, or no answer in time)."""
    try:
        return (yield Request("GET", target, deadline))
    except TlsError:
        raise  # an untrusted certificate stays untrusted: no point waiting
    except PyTritonClientTimeoutError:
        return None


def _retry_after(deadline: float, delay: float) -> Exchange:
    """Sleeps before the next poll; False (and no sleep) once the deadline has passed."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return False
    yield Sleep(min(delay, remaining))
    return True


def _server_ready(deadline: float) -> Exchange:
    response = yield from _poll("/v2/health/ready", deadline)
    return response is not None and response[0] == 200


def wait_for_server(url: str, timeout_s: float) -> Exchange:
    """Until the server is live and ready; PyTritonClientTimeoutError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    delay = POLL_FIRST_S
    while not (yield from _server_ready(deadline)):
        if not (yield from _retry_after(deadline, delay)):
            raise PyTritonClientTimeoutError(f"Waiting for server to be ready timed out. ({url}, {timeout_s} s)")
        delay = min(2 * delay, POLL_MAX_S)


def _model_known(model: ModelRef, deadline: float) -> Exchange:
    """False when the server says it has no such model or version; None if unsure."""
    response = yield from _poll(model.path, deadline)
    if response is None:
        return None
    status, body = response
    if status == 200:
        return True
    message = error_message(body).lower()
    if "unknown model" in message or "not found" in message:
        return False
    return None


def wait_for_model(model: ModelRef, deadline: float) -> Exchange:
    """Until the model is ready: PyTritonClientTimeoutError at ``deadline``,
    PyTritonClientModelUnavailableError once a ready server has not known the
    model for ``UNKNOWN_MODEL_GRACE_S``."""
    delay = POLL_FIRST_S
    unknown_since: Optional[float] = None
    server_seen = False
    while True:
        response = yield from _poll(f"{model.path}/ready", deadline)
        status = None if response is None else response[0]
        server_seen = server_seen or response is not None
        if status == 200:
            return
        if status is not None and (yield from _server_ready(deadline)):
            if (yield from _model_known(model, deadline)) is False:
                now = time.monotonic()
                unknown_since = now if unknown_since is None else unknown_since
                if now - unknown_since >= UNKNOWN_MODEL_GRACE_S:
                    raise PyTritonClientModelUnavailableError(
                        f"Model {model.describe()} is not available on {model.url}: "
                        "the server does not know this model or version"
                    )
            else:
                unknown_since = None
        if not (yield from _retry_after(deadline, delay)):
            if not server_seen:
                raise PyTritonClientTimeoutError(f"Waiting for server to be ready timed out. ({model.url})")
            raise PyTritonClientTimeoutError(
                f"Waiting for model {model.describe()} to be ready timed out. ({model.url})"
            )
        delay = min(2 * delay, POLL_MAX_S)


def fetch_config(model: ModelRef, deadline: float) -> Exchange:
    """The model's config (returned by the exchange)."""
    status, body = yield Request("GET", f"{model.path}/config", deadline)
    if status != 200:
        raise PyTritonClientInferenceServerError(
            f"Fetching the config of model {model.describe()} from {model.url} failed "
            f"with HTTP {status}: {error_message(body)}"
        )
    return parse_model_config(json.loads(body))


def ready_config(model: ModelRef, deadline: float) -> Exchange:
    """Waits for the model, then fetches its config (returned)."""
    yield from wait_for_model(model, deadline)
    return (yield from fetch_config(model, deadline))


def load_payload(config: Optional[str], files: Optional[dict]) -> dict:
    """The repository API's load request: a config JSON string and
    ``{"<version>/<file name>": bytes}`` files."""
    parameters: Dict[str, Any] = {}
    if config is not None:
        parameters["config"] = config
    for path, content in (files or {}).items():
        parameters[f"file:{path}"] = base64.b64encode(content).decode("ascii")
    return {"parameters": parameters}


def repository(model: ModelRef, action: str, payload: dict, deadline: float) -> Exchange:
    """``load`` or ``unload`` through the repository API."""
    status, body = yield Request("POST", f"{model.repository_target}/{action}", deadline,
                                 json.dumps(payload).encode(), idempotent=False)
    if status != 200:
        raise PyTritonClientInferenceServerError(
            f"{action} of model {model.name} on {model.url} failed with HTTP {status}: {error_message(body)}"
        )
