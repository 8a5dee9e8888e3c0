"""The tensors the perf tool sends: generated (``random``, ``zero``) or read
from a perf_analyzer input-data JSON file.

Shapes come from the model's config; a variable dimension (-1) needs
``--shape NAME:d1,d2,...`` (without the batch dimension, as in perf_analyzer)
or, in a JSON file, a ``"shape"`` next to the ``"content"``.

Generated data, one request's worth reused for every request (as perf_analyzer
does): ``random`` draws numbers uniformly (floats in [0, 1), integers over
their whole range; perf_analyzer uses random bytes, which for floats include
NaNs), BYTES elements are ``--string-length`` random letters and digits, or
``--string-data``; ``zero`` sends zeros, and BYTES elements of
``--string-length`` zero bytes (perf_analyzer sends random strings there).

JSON files (perf_analyzer's format) supported here::

    {"data": [{"INPUT0": [1, 2, 3, 4]},                                  flat (or nested) values
              {"INPUT0": {"content": [1, 2, 3, 4], "shape": [2, 2]}},    with an explicit shape
              {"INPUT0": {"b64": "AACAPw..."}},                          raw bytes, base64
              {"INPUT0": {"content": {"b64": "..."}, "shape": [4]}}]}

Each entry of ``data`` is one step (one sample); request k of a batch of B takes
steps kB .. kB+B-1 (wrapping round), like perf_analyzer. BYTES values are
strings (UTF-8); their b64 form is the serialized tensor (4-byte length
prefixes). Not supported: sequence streams (a list of lists in ``data``), and
``validation_data`` (ignored with a note).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from tritonfast.exceptions import PyTritonClientError
from tritonfast.perf.errors import PerfError
from tritonfast.perf.server import ModelInfo, TensorInfo
from tritonfast.utils import deserialize_bytes_tensor, triton_to_np_dtype

DEFAULT_STRING_LENGTH = 128  # perf_analyzer's --string-length default
RANDOM_SEED = 0  # generated data is the same from run to run
_ALPHANUMERIC = np.frombuffer(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", np.uint8)

Payload = Dict[str, np.ndarray]  # one request's inputs, in the config's order


def parse_shape_option(text: str) -> Tuple[str, Tuple[int, ...]]:
    """``NAME:d1,d2,...`` (the name may itself contain ':') -> (name, dims)."""
    name, sep, dims_text = text.rpartition(":")
    if not sep or not name:
        raise PerfError(f"--shape {text!r}: expected NAME:d1,d2,... (e.g. INPUT0:16)")
    try:
        dims = tuple(int(d) for d in dims_text.split(",")) if dims_text.strip() else ()
    except ValueError:
        raise PerfError(f"--shape {text!r}: dimensions must be integers separated by commas") from None
    if any(d < 0 for d in dims):
        raise PerfError(f"--shape {text!r}: dimensions must not be negative")
    return name, dims


def _dtype(tensor: TensorInfo) -> Any:
    try:
        dtype = triton_to_np_dtype(tensor.datatype)
    except PyTritonClientError as e:
        raise PerfError(f"input {tensor.name!r}: {e}") from None
    if dtype is None:
        raise PerfError(f"input {tensor.name!r} has datatype {tensor.datatype}, which tritonfast cannot send")
    return np.dtype(dtype)


def _shape_hint(tensor: TensorInfo) -> str:
    return f"--shape {tensor.name}:" + ",".join("N" if d < 0 else str(d) for d in tensor.dims)


def check_shapes(model: ModelInfo, shapes: Dict[str, Tuple[int, ...]]) -> None:
    """--shape names must be inputs of the model, and agree with its fixed dims."""
    names = [t.name for t in model.inputs]
    for name, dims in shapes.items():
        if name not in names:
            raise PerfError(f"--shape names {name!r}, which is not an input of model {model.name!r} "
                            f"(inputs: {', '.join(names)})")
        tensor = model.inputs[names.index(name)]
        fits = len(dims) == len(tensor.dims) and all(m < 0 or m == d for m, d in zip(tensor.dims, dims))
        if not fits:
            raise PerfError(f"--shape {name}:{','.join(map(str, dims))} does not fit the model's dims "
                            f"{list(tensor.dims)} for {name!r} (give the shape without the batch dimension)")


def sample_shape(tensor: TensorInfo, shapes: Dict[str, Tuple[int, ...]], model: ModelInfo) -> Tuple[int, ...]:
    """Shape of one sample of ``tensor``; PerfError when a variable dim has no --shape."""
    dims = shapes.get(tensor.name, tensor.dims)
    if any(d < 0 for d in dims):
        raise PerfError(f"input {tensor.name!r} of model {model.name!r} has a variable dimension "
                        f"(dims {list(tensor.dims)}): give its shape with {_shape_hint(tensor)}")
    return tuple(dims)


def _strings(count: int, length: int, rng: np.random.Generator) -> np.ndarray:
    letters = _ALPHANUMERIC[rng.integers(0, len(_ALPHANUMERIC), (count, length))]
    out = np.empty(count, dtype=np.object_)
    for i in range(count):
        out[i] = letters[i].tobytes()
    return out


def _generate(tensor: TensorInfo, shape: Tuple[int, ...], zero: bool, string_length: int,
              string_data: Optional[str], rng: np.random.Generator) -> np.ndarray:
    count = math.prod(shape)
    if tensor.datatype == "BYTES":
        if string_data is not None:
            values = np.empty(count, dtype=np.object_)
            values[:] = [string_data.encode()] * count
        elif zero:
            values = np.empty(count, dtype=np.object_)
            values[:] = [b"\x00" * string_length] * count
        else:
            values = _strings(count, string_length, rng)
        return values.reshape(shape)
    dtype = _dtype(tensor)
    if zero:
        return np.zeros(shape, dtype)
    if tensor.datatype == "BOOL":
        return rng.integers(0, 2, shape).astype(dtype)
    if tensor.datatype in ("FP16", "FP32", "FP64", "BF16"):
        return rng.random(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


def generated_payloads(model: ModelInfo, shapes: Dict[str, Tuple[int, ...]], batch_size: int, zero: bool,
                       string_length: int = DEFAULT_STRING_LENGTH,
                       string_data: Optional[str] = None) -> List[Payload]:
    """One request's inputs, generated (``zero`` or random)."""
    rng = np.random.default_rng(RANDOM_SEED)
    batch = (batch_size,) if model.max_batch_size > 0 else ()
    payload = {}
    for tensor in model.inputs:
        shape = batch + sample_shape(tensor, shapes, model)
        payload[tensor.name] = _generate(tensor, shape, zero, string_length, string_data, rng)
    return [payload]


# ------------------------------------------------------------------ JSON files


def _b64(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise PerfError(f"{where}: the value of \"b64\" must be a string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise PerfError(f"{where}: invalid base64: {e}") from None


def _json_tensor(value: Any, tensor: TensorInfo, shapes: Dict[str, Tuple[int, ...]], model: ModelInfo,
                 where: str) -> np.ndarray:
    shape: Optional[Tuple[int, ...]] = None
    content: Any = value
    if isinstance(value, dict):
        if "shape" in value:
            dims = value["shape"]
            if not isinstance(dims, list) or not all(isinstance(d, int) and d >= 0 for d in dims):
                raise PerfError(f"{where}: \"shape\" must be a list of non-negative integers")
            shape = tuple(value["shape"])
        if "b64" in value:
            content = {"b64": value["b64"]}
        elif "content" in value:
            content = value["content"]
        else:
            raise PerfError(f"{where}: expected a list of values, {{\"content\": ...}} or {{\"b64\": ...}}")
    if shape is None:
        shape = sample_shape(tensor, shapes, model)
    count = math.prod(shape)
    if isinstance(content, dict):
        if set(content) != {"b64"}:
            raise PerfError(f"{where}: \"content\" must be a list of values or {{\"b64\": ...}}")
        raw = _b64(content["b64"], where)
        if tensor.datatype == "BYTES":
            try:
                array = deserialize_bytes_tensor(raw)
            except PyTritonClientError as e:
                raise PerfError(f"{where}: b64 BYTES data is not a serialized tensor: {e}") from None
        else:
            dtype = _dtype(tensor)
            if len(raw) != count * dtype.itemsize:
                raise PerfError(f"{where}: {len(raw)} bytes of b64 data do not fill shape {list(shape)} "
                                f"of {tensor.datatype} ({count * dtype.itemsize} bytes)")
            array = np.frombuffer(raw, dtype)
    elif isinstance(content, list):
        if tensor.datatype == "BYTES":
            flat = np.array(content, dtype=np.object_).reshape(-1)
            array = np.empty(flat.size, dtype=np.object_)
            array[:] = [v.encode() if isinstance(v, str) else v if isinstance(v, bytes) else str(v).encode()
                        for v in flat]
        else:
            try:
                array = np.array(content, dtype=_dtype(tensor)).reshape(-1)
            except (ValueError, TypeError, OverflowError) as e:
                raise PerfError(f"{where}: values are not {tensor.datatype}: {e}") from None
    else:
        raise PerfError(f"{where}: expected a list of values, {{\"content\": ...}} or {{\"b64\": ...}}")
    if array.size != count:
        raise PerfError(f"{where}: {array.size} values do not fill shape {list(shape)} ({count} values)")
    return array.reshape(shape)


def json_payloads(path: str, model: ModelInfo, shapes: Dict[str, Tuple[int, ...]],
                  batch_size: int) -> Tuple[List[Payload], List[str]]:
    """Requests built from a perf_analyzer input-data file, and notes for the user."""
    try:
        with open(path, "rb") as f:
            document = json.load(f)
    except OSError as e:
        raise PerfError(f"--input-data {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise PerfError(f"--input-data {path}: not valid JSON: {e}") from None
    notes = []
    if not isinstance(document, dict) or not isinstance(document.get("data"), list) or not document["data"]:
        raise PerfError(f"--input-data {path}: expected {{\"data\": [{{\"<input>\": [...]}}, ...]}}")
    if "validation_data" in document:
        notes.append(f"{path}: validation_data is ignored (tritonfast perf does not check outputs)")
    steps: List[Dict[str, np.ndarray]] = []
    for k, step in enumerate(document["data"]):
        if isinstance(step, list):
            raise PerfError(f"--input-data {path}: data[{k}] is a list: sequence streams are not supported")
        if not isinstance(step, dict):
            raise PerfError(f"--input-data {path}: data[{k}] must be an object mapping input names to values")
        unknown = sorted(set(step) - {t.name for t in model.inputs})
        if unknown:
            names = ", ".join(map(repr, unknown))
            raise PerfError(f"--input-data {path}: data[{k}] names {names}, not inputs of "
                            f"model {model.name!r} (inputs: {', '.join(t.name for t in model.inputs)})")
        values = {}
        for tensor in model.inputs:
            if tensor.name in step:
                values[tensor.name] = _json_tensor(step[tensor.name], tensor, shapes, model,
                                                   f"--input-data {path}: data[{k}] {tensor.name}")
            elif not tensor.optional:
                raise PerfError(f"--input-data {path}: data[{k}] has no value for input {tensor.name!r}")
        steps.append(values)
    batching = model.max_batch_size > 0
    requests = len(steps) // math.gcd(len(steps), batch_size)  # then the steps repeat
    payloads = []
    for r in range(requests):
        chosen = [steps[(r * batch_size + i) % len(steps)] for i in range(batch_size)]
        payload = {}
        for name in dict.fromkeys(n for step in chosen for n in step):
            parts = [step[name] for step in chosen if name in step]
            if len(parts) != batch_size or any(p.shape != parts[0].shape for p in parts):
                raise PerfError(f"--input-data {path}: cannot batch {name!r} of steps with different shapes "
                                f"or with the input missing in some (request {r}, batch size {batch_size})")
            payload[name] = np.stack(parts) if batching else parts[0]
        payloads.append(payload)
    return payloads, notes


def describe_payload(payload: Payload, model: ModelInfo) -> str:
    """``INPUT0 FP32 [1, 16]``, for each input of one request."""
    datatypes = {t.name: t.datatype for t in model.inputs}
    return ", ".join(f"{name} {datatypes[name]} {list(a.shape)}" for name, a in payload.items())
