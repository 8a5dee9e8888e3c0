"""The model configuration object, with the fields of PyTriton's ``TritonModelConfig``.

``ModelClient.model_config`` returns a :class:`TritonModelConfig` parsed from the
server's ``/v2/models/<name>/config`` JSON the way PyTriton's parser does.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from tritonfast.exceptions import PyTritonClientValueError
from tritonfast.utils import triton_to_np_dtype

__all__ = [
    "DeviceKind",
    "DynamicBatcher",
    "QueuePolicy",
    "ResponseCache",
    "TensorSpec",
    "TimeoutAction",
    "TritonModelConfig",
    "parse_model_config",
]


class DeviceKind(enum.Enum):
    KIND_AUTO = "KIND_AUTO"
    KIND_CPU = "KIND_CPU"
    KIND_GPU = "KIND_GPU"


class TimeoutAction(enum.Enum):
    REJECT = "REJECT"
    DELAY = "DELAY"


@dataclasses.dataclass
class QueuePolicy:
    timeout_action: TimeoutAction = TimeoutAction.REJECT
    default_timeout_microseconds: int = 0
    allow_timeout_override: bool = False
    max_queue_size: int = 0


@dataclasses.dataclass
class DynamicBatcher:
    max_queue_delay_microseconds: int = 0
    preferred_batch_size: Optional[list] = None
    preserve_ordering: bool = False
    priority_levels: int = 0
    default_priority_level: int = 0
    default_queue_policy: Optional[QueuePolicy] = None
    priority_queue_policy: Optional[Dict[int, QueuePolicy]] = None


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple
    dtype: Any
    optional: Optional[bool] = False


@dataclasses.dataclass
class ResponseCache:
    enable: bool


@dataclasses.dataclass
class TritonModelConfig:
    model_name: str
    model_version: int = 1
    max_batch_size: int = 4
    batching: bool = True
    batcher: Optional[DynamicBatcher] = None
    instance_group: Dict[DeviceKind, Optional[int]] = dataclasses.field(default_factory=dict)
    decoupled: bool = False
    backend_parameters: Dict[str, str] = dataclasses.field(default_factory=dict)
    inputs: Optional[Sequence[TensorSpec]] = None
    outputs: Optional[Sequence[TensorSpec]] = None
    response_cache: Optional[ResponseCache] = None
    model_warmup: Optional[List[Any]] = None

    @property
    def backend(self) -> str:
        return "python"


def _tensor_dtype(data_type: str, where: str) -> Any:
    name = data_type[len("TYPE_"):] if data_type.startswith("TYPE_") else data_type
    if name == "STRING":
        return np.bytes_
    if name == "BOOL":
        return np.dtype("bool")
    dtype = triton_to_np_dtype(name)
    if dtype is None:
        raise PyTritonClientValueError(f"{where}: unsupported data_type {data_type!r}")
    return dtype


def _tensor_specs(items: List[dict], kind: str) -> Optional[List[TensorSpec]]:
    specs = []
    for i, item in enumerate(items):
        where = f"model config {kind} {i}"
        try:
            name, data_type, dims = item["name"], item["data_type"], item["dims"]
        except KeyError as e:
            raise PyTritonClientValueError(f"{where} has no {e.args[0]!r}") from e
        specs.append(
            TensorSpec(
                name=name,
                shape=tuple(int(d) for d in dims),
                dtype=_tensor_dtype(data_type, f"{where} ({name})"),
                optional=bool(item.get("optional", False)),
            )
        )
    return specs or None


def _queue_policy(d: Optional[dict]) -> Optional[QueuePolicy]:
    if not d:
        return None
    return QueuePolicy(
        timeout_action=TimeoutAction(d.get("timeout_action", "REJECT")),
        default_timeout_microseconds=int(d.get("default_timeout_microseconds", 0)),
        allow_timeout_override=bool(d.get("allow_timeout_override", False)),
        max_queue_size=int(d.get("max_queue_size", 0)),
    )


def _batcher(d: Optional[dict]) -> Optional[DynamicBatcher]:
    if d is None:
        return None
    priority = d.get("priority_queue_policy")
    return DynamicBatcher(
        max_queue_delay_microseconds=int(d.get("max_queue_delay_microseconds", 0)),
        preferred_batch_size=[int(x) for x in d["preferred_batch_size"]] if d.get("preferred_batch_size") else None,
        preserve_ordering=bool(d.get("preserve_ordering", False)),
        priority_levels=int(d.get("priority_levels", 0)),
        default_priority_level=int(d.get("default_priority_level", 0)),
        default_queue_policy=_queue_policy(d.get("default_queue_policy")),
        priority_queue_policy={int(k): p for k, p in ((k, _queue_policy(v)) for k, v in priority.items())
                               if p is not None} if priority else None,
    )


def parse_model_config(d: dict) -> TritonModelConfig:
    """Builds a :class:`TritonModelConfig` from the server's config JSON."""
    if "name" not in d:
        raise PyTritonClientValueError("model config has no 'name'")
    max_batch_size = int(d.get("max_batch_size", 0))
    parameters = d.get("parameters") or {}
    if isinstance(parameters, list):
        backend_parameters = {k: "" for k in parameters}
    else:
        backend_parameters = {k: v.get("string_value", "") for k, v in parameters.items()}
    cache = d.get("response_cache")
    return TritonModelConfig(
        model_name=d["name"],
        max_batch_size=max_batch_size,
        batching=max_batch_size > 0,
        batcher=_batcher(d.get("dynamic_batching")),
        instance_group={DeviceKind(g["kind"]): g.get("count") for g in d.get("instance_group", [])},
        decoupled=bool((d.get("model_transaction_policy") or {}).get("decoupled", False)),
        backend_parameters=backend_parameters,
        inputs=_tensor_specs(d.get("input", []), "input"),
        outputs=_tensor_specs(d.get("output", []), "output"),
        response_cache=ResponseCache(enable=bool(cache.get("enable", False))) if cache is not None else None,
        model_warmup=d.get("model_warmup") or None,
    )
