"""PyTriton reference server for the tests (started by ``tests.triton_server.PyTritonServer``).

Usage: python tests/pytriton_app.py --address IP --http-port N --grpc-port N --metrics-port N
           --header-forward-pattern RE --exit-timeout-secs N --workspace DIR --access-token TOKEN

Binds, with PyTriton's own ``Triton.bind``:

* ``AddSub``: PyTriton's add_sub_python example, verbatim in behaviour.
* ``Identity``: ``INPUT_1`` float64 (-1,) and ``INPUT_2`` bytes (1,) echoed as
  ``OUTPUT_1`` / ``OUTPUT_2``.
* ``ParamsAndHeaders``: PyTriton's use_parameters_and_headers example.

PyTriton's default security settings stay (statistics, repository, shared
memory, trace and logging endpoints restricted), with the token given.
"""

import argparse
import signal

import numpy as np
from pytriton.decorators import batch
from pytriton.model_config import ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

MAX_BATCH_SIZE = 128  # as in PyTriton's examples


@batch
def _add_sub(**inputs):
    a_batch, b_batch = inputs.values()
    return {"add": a_batch + b_batch, "sub": a_batch - b_batch}


@batch
def _identity(INPUT_1, INPUT_2):  # noqa: N803 - PyTriton passes inputs by tensor name
    return {"OUTPUT_1": INPUT_1, "OUTPUT_2": INPUT_2}


def _params_and_headers(requests):
    responses = []
    for request in requests:
        a_batch, b_batch = request.values()
        scaled_add = (a_batch + b_batch) / float(request.parameters["header_divisor"])
        scaled_sub = (a_batch - b_batch) * float(request.parameters["parameter_multiplier"])
        responses.append({"scaled_add": scaled_add, "scaled_sub": scaled_sub})
    return responses


def _fp32_vector(name=None):
    return Tensor(name=name, dtype=np.float32, shape=(-1,))


def _bind_models(triton: Triton) -> None:
    config = ModelConfig(max_batch_size=MAX_BATCH_SIZE)
    triton.bind(
        model_name="AddSub",
        infer_func=_add_sub,
        inputs=[_fp32_vector(), _fp32_vector()],  # unnamed: PyTriton names them INPUT_1, INPUT_2
        outputs=[_fp32_vector("add"), _fp32_vector("sub")],
        config=config,
        strict=True,
    )
    triton.bind(
        model_name="Identity",
        infer_func=_identity,
        inputs=[
            Tensor(name="INPUT_1", dtype=np.float64, shape=(-1,)),
            Tensor(name="INPUT_2", dtype=np.bytes_, shape=(1,)),
        ],
        outputs=[
            Tensor(name="OUTPUT_1", dtype=np.float64, shape=(-1,)),
            Tensor(name="OUTPUT_2", dtype=np.bytes_, shape=(1,)),
        ],
        config=config,
        strict=True,
    )
    triton.bind(
        model_name="ParamsAndHeaders",
        infer_func=_params_and_headers,
        inputs=[_fp32_vector(), _fp32_vector()],
        outputs=[_fp32_vector("scaled_add"), _fp32_vector("scaled_sub")],
        config=config,
        strict=True,
    )


def _raise_keyboard_interrupt(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not interrupt the shutdown
    raise KeyboardInterrupt  # Triton.serve() stops cleanly on KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True, help="for the HTTP, gRPC and metrics endpoints")
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--header-forward-pattern", required=True)
    parser.add_argument("--exit-timeout-secs", type=int, required=True)
    parser.add_argument("--workspace", required=True)
    parser.add_argument("--access-token", required=True, help="for the restricted endpoints")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    config = TritonConfig(
        http_address=args.address,
        http_port=args.http_port,
        grpc_address=args.address,
        grpc_port=args.grpc_port,
        metrics_address=args.address,
        metrics_port=args.metrics_port,
        http_header_forward_pattern=args.header_forward_pattern,
        exit_timeout_secs=args.exit_timeout_secs,
        allow_gpu_metrics=False,  # CPU-only; avoids DCGM probing
        log_verbose=0,
    )
    security = TritonSecurityConfig(access_token=args.access_token)  # default restricted endpoints
    with Triton(config=config, workspace=args.workspace, security_config=security) as triton:
        _bind_models(triton)
        triton.serve()


if __name__ == "__main__":
    main()
