"""The GPU backends: CUDA eager, ``torch.compile`` and TorchScript on the GPU, and TensorRT.

Every GPU runner is timed between CUDA events on torch's current stream, synchronized
(:func:`benchmarks.harness.timing.time_call`), with its input already on the device. fp32 means true fp32:
:func:`cuda_fp32_exact` turns TF32 off (torch lets cuDNN convolutions use TF32 by default on Ampere and
later, which rounds their inputs to 10 mantissa bits), and the TensorRT engine is built without its TF32 flag.
fp16 and bf16 cast the weights and activations (the whole network in that type), as a TensorRT FP16 engine does.
"""
from __future__ import annotations

import copy
import time
from typing import Any

import torch

from hgzoo.deploy import Backend, BackendError, Runner, register_backend
from hgzoo.deploy.backends import DTYPES, CompileBackend, ReparamBackend, TorchScriptBackend, onnx_file
from hgzoo.deploy.runtimes import has_module as _has
from hgzoo.deploy.runtimes import quiet as _quiet

__all__ = ["cuda_fp32_exact", "cuda_unavailable", "CudaBackend", "CudaCompileBackend", "CudaTorchScriptBackend",
           "TensorRTBackend"]


def cuda_fp32_exact() -> None:
    """True fp32 on the GPU for this process: no TF32 in cuDNN convolutions or cuBLAS matmuls; cuDNN autotuning on
    (it picks among exact fp32 algorithms). The GPU backends call it before building anything."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = True


def cuda_unavailable() -> str | None:
    """Why torch cannot run on a CUDA GPU here, or None."""
    if torch.version.cuda is None and torch.version.hip is None:
        return f"this torch build ({torch.__version__}) has no CUDA support"
    if not torch.cuda.is_available():
        return "no CUDA GPU on this machine (torch.cuda.is_available() is False)"
    return None


def _bf16_skip(precision: str) -> str | None:
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        return f"{torch.cuda.get_device_name()} has no bf16"
    return None


class CudaBackend(ReparamBackend):
    """hgzoo's ``reparam`` path on the GPU, on the model as built (not re-parameterized): weights and input cast
    to the precision, the input staged on the device, the faster memory layout picked by a probe."""

    name = "cuda"
    device = "cuda"
    reparameterized = False
    description = ("the model as built, torch eager on the GPU, weights and input cast to the precision (TF32 off for "
                   "fp32), contiguous or channels-last, whichever a probe finds faster")

    def unavailable(self):
        return cuda_unavailable()

    def precision_skip(self, precision):
        return _bf16_skip(precision)

    def prepare(self, model, x, precision, *, threads=None, cache=None, calibration=None):
        cuda_fp32_exact()  # the probe's first calls also run cuDNN's autotuning
        runner = super().prepare(model, x, precision, threads=threads, cache=cache, calibration=calibration)
        runner.note += f"; {torch.cuda.get_device_name()}"
        return runner


class CudaCompileBackend(CompileBackend):
    name = "cuda-compile"
    device = "cuda"
    reparameterized = True
    description = ("torch.compile (inductor, default mode, freezing) of the re-parameterized model on the GPU, weights "
                   "and input cast to the precision (TF32 off for fp32)")

    def unavailable(self):
        return cuda_unavailable()

    def precision_skip(self, precision):
        return _bf16_skip(precision)

    def _setup(self) -> None:
        cuda_fp32_exact()


class CudaTorchScriptBackend(TorchScriptBackend):
    name = "cuda-torchscript"
    device = "cuda"
    description = ("torch.jit.script of the model as built on the GPU (timm's benchmark.py --torchscript --device "
                   "cuda); fp16/bf16 through torch.autocast in that dtype, as timm's --amp (TF32 off for fp32)")

    def unavailable(self):
        return cuda_unavailable()

    def precision_skip(self, precision):
        return _bf16_skip(precision)

    def _autocast_dtypes(self):
        return {"bf16": torch.bfloat16, "fp16": torch.float16}  # each precision its own dtype, as the table says

    def prepare(self, model, x, precision, *, threads=None, cache=None, calibration=None):
        cuda_fp32_exact()
        return super().prepare(model, x, precision, threads=threads, cache=cache, calibration=calibration)


_TRT_DTYPES = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16}  # TensorRT DataType names


def _trt_engine(path: str, shape: tuple[int, ...], precision: str) -> Any:
    """A TensorRT engine for the ONNX file at ``path`` (input ``x``, output ``logits``), static ``shape``:
    fp32 with TF32 off, or the FP16/BF16 builder flag (TensorRT picks the faster precision per layer)."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if int(trt.__version__.split(".")[0]) < 10:  # TensorRT 10 networks are always explicit-batch (flag deprecated)
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(path):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse the ONNX file: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 2 << 30)
    if precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)
    else:
        flag = {"fp16": "FP16", "bf16": "BF16"}[precision]
        if not hasattr(trt.BuilderFlag, flag):
            raise RuntimeError(f"TensorRT {trt.__version__} has no {flag} builder flag")
        config.set_flag(getattr(trt.BuilderFlag, flag))
    profile = builder.create_optimization_profile()
    profile.set_shape("x", shape, shape, shape)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT failed to build the engine (see the TensorRT log above)")
    engine = trt.Runtime(logger).deserialize_cuda_engine(serialized)
    if engine is None:
        raise RuntimeError("TensorRT could not load the engine it built")
    return engine


class TensorRTBackend(Backend):
    name = "tensorrt"
    device = "cuda"
    description = ("re-parameterized model → ONNX → TensorRT engine (static shape; fp32 with TF32 off, or the "
                   "FP16/BF16 builder flag; fp32 input and output), run on its own CUDA stream ordered with torch's; "
                   "or torch-tensorrt if only that is installed")

    def unavailable(self):
        reason = cuda_unavailable()
        if reason:
            return reason
        if not (_has("tensorrt") or _has("torch_tensorrt")):
            return "neither tensorrt nor torch-tensorrt is installed (pip install tensorrt)"
        return None

    def precision_skip(self, precision):
        return _bf16_skip(precision)

    def prepare(self, model, x, precision, *, threads=None, cache=None, calibration=None):
        cuda_fp32_exact()
        if x is None:
            raise BackendError("the tensorrt backend builds an engine for one input shape: give an example batch")
        if _has("tensorrt"):
            return self._prepare_trt(model, x, precision, {} if cache is None else cache)
        return self._prepare_torch_trt(model, x, precision)

    def _prepare_trt(self, model: torch.nn.Module, x: torch.Tensor, precision: str, cache: dict) -> Runner:
        import tensorrt as trt

        shape = tuple(int(d) for d in x.shape)
        t = time.perf_counter()
        engine = _trt_engine(onnx_file(model, x.shape[-1], cache), shape, precision)
        seconds = time.perf_counter() - t
        context = engine.create_execution_context()
        context.set_input_shape("x", shape)
        xg = torch.empty(shape, device="cuda")  # the engine's input buffer, at its address: stage copies a batch in
        out_type = engine.get_tensor_dtype("logits").name
        if out_type not in _TRT_DTYPES:
            raise RuntimeError(f"the TensorRT engine's output is {out_type}, expected a float type")
        out = torch.empty(tuple(context.get_tensor_shape("logits")), device="cuda", dtype=_TRT_DTYPES[out_type])
        context.set_tensor_address("x", xg.data_ptr())
        context.set_tensor_address("logits", out.data_ptr())
        # TensorRT's own stream (the legacy default stream makes enqueueV3 synchronize), ordered after and before
        # torch's current stream, on which time_call records its CUDA events: the events bracket the engine's work.
        stream = torch.cuda.Stream()
        keep = (engine, context, xg)  # the engine must outlive its context; the buffers their addresses

        def fn(xs: torch.Tensor) -> torch.Tensor:  # xs: the input buffer, as stage returns it
            current = torch.cuda.current_stream()
            stream.wait_stream(current)
            if not keep[1].execute_async_v3(stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            current.wait_stream(stream)
            return out

        note = f"TensorRT {trt.__version__}, engine built in {seconds:.0f} s; {torch.cuda.get_device_name()}"
        return Runner(self.name, precision, f"TensorRT engine, {precision}", fn, stage=lambda xs: _staged(xs, xg),
                      sync="cuda", note=note)

    def _prepare_torch_trt(self, model: torch.nn.Module, x: torch.Tensor, precision: str) -> Runner:
        import torch_tensorrt

        dtype = DTYPES[precision]
        model = copy.deepcopy(model).cuda()
        xg = x.to("cuda")
        t = time.perf_counter()
        with _quiet():
            trt_model = torch_tensorrt.compile(model, ir="dynamo", inputs=[xg], enabled_precisions={dtype},
                                               disable_tf32=(precision == "fp32"))
        seconds = time.perf_counter() - t

        def fn(xs: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return trt_model(xs)

        return Runner(self.name, precision, f"torch-tensorrt, {precision}", fn, stage=lambda xs: xs.to("cuda"),
                      sync="cuda", note=f"torch-tensorrt {torch_tensorrt.__version__}, compiled in {seconds:.0f} s")


def _staged(x: torch.Tensor, buffer: torch.Tensor) -> torch.Tensor:
    """``x`` copied into the engine's input ``buffer`` (bound to its address): a bound batch costs no copy per call."""
    buffer.copy_(x)
    return buffer


for _backend in (CudaBackend(), CudaCompileBackend(), CudaTorchScriptBackend(), TensorRTBackend()):
    register_backend(_backend)
