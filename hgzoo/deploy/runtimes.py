"""The exporters and runtimes behind :func:`hgzoo.deploy.export`: ONNX (+ ONNX Runtime's int8 quantizer),
OpenVINO (+ NNCF's int8 quantizer) and TorchScript, and :func:`load` to run any exported file.

Each optional package is imported only when its format is used; :func:`missing_package` says which one a
format needs. The backends (:mod:`hgzoo.deploy.backends`) build their ONNX and int8 models with these same
functions.
"""
from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..checkpoint import input_channels

__all__ = [
    "write_onnx", "quantize_onnx_int8", "convert_onnx_fp16", "onnx_session", "set_onnx_meta", "openvino_model",
    "quantize_openvino_int8", "save_openvino", "openvino_config", "trace_torchscript", "save_torchscript",
    "Predictor", "load", "read_meta", "quiet", "split_batches", "missing_package", "input_channels", "cpu_flags",
    "has_vnni", "openvino_has_bf16", "ort_cuda_available", "OPENVINO_HINTS", "has_module",
]

#: OpenVINO's INFERENCE_PRECISION_HINT for each precision (fp16 and int8 use f32: fp16 is weight storage only on
#: CPU, and int8 runs its quantized ops in int8 and the rest in f32).
OPENVINO_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f32", "int8": "f32"}
_META_KEY = "hgzoo"


@contextlib.contextmanager
def quiet():
    """Silence the exporters' and quantizers' progress prints and warnings (errors still raise)."""
    buf = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        warnings.simplefilter("ignore")
        yield buf


def has_module(module: str) -> bool:
    """True if ``module`` is installed (found without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_package(fmt: str, precision: str) -> str | None:
    """The ``pip install`` a format/precision needs and lacks here, or None."""
    needs = {"onnx": ["onnx", "onnxscript", "onnxruntime"], "openvino": ["onnx", "onnxscript", "openvino"],
             "torchscript": []}[fmt]
    if fmt == "openvino" and precision == "int8":
        needs.append("nncf")
    missing = [m for m in needs if not has_module(m)]
    return f"pip install {' '.join(missing)}" if missing else None


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where that is unreadable)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def has_vnni() -> bool:
    """True if the CPU has int8 dot-product instructions (AVX512-VNNI, AVX-VNNI or AMX-INT8)."""
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & cpu_flags())


def openvino_has_bf16() -> bool:
    """True if OpenVINO's CPU plugin computes bf16 natively here (AVX512-BF16 or AMX)."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def ort_cuda_available() -> bool:
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()


# --- ONNX ------------------------------------------------------------------------------------------------------------

def write_onnx(model: nn.Module, path: str | os.PathLike, img_size: int, dynamic_batch: bool = True,
                in_chans: int | None = None, external_data: bool | None = None) -> str:
    """Export ``model`` (eval, fp32) to ONNX; the input is named ``x``, the output ``logits``.

    ``dynamic_batch``: a dynamic batch axis; else a fixed batch of 1. ``external_data`` (default: only
    for weights over 1.5 GiB, near protobuf's 2 GiB limit) stores the weights in a ``.data`` file beside
    it. Uses the torch.export-based exporter; falls back to the TorchScript one if that fails.
    """
    path = str(path)
    in_chans = in_chans or input_channels(model)
    if external_data is None:
        external_data = sum(p.numel() * p.element_size() for p in model.parameters()) > 1.5 * 2**30
    # batch 2 for a dynamic axis: torch.export specializes a batch of 1
    example = torch.randn(2 if dynamic_batch else 1, in_chans, img_size, img_size)
    first_error: Exception | None = None
    with quiet():
        try:
            dyn = ({0: torch.export.Dim("batch", min=1, max=8192)},) if dynamic_batch else None
            torch.onnx.export(model, (example,), path, input_names=["x"], output_names=["logits"],
                              dynamic_shapes=dyn, dynamo=True, external_data=external_data)
            return path
        except Exception as e:  # noqa: BLE001 - try the other exporter
            first_error = e
        try:
            axes = {"x": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None
            torch.onnx.export(model, (example,), path, input_names=["x"], output_names=["logits"],
                              dynamic_axes=axes, dynamo=False, opset_version=17)
            return path
        except Exception as e:  # noqa: BLE001
            raise RuntimeError(f"ONNX export failed: {first_error}; TorchScript exporter: {e}") from e


def _onnx_batch(path: str | os.PathLike) -> int | None:
    """The fixed batch size of an ONNX model's input, or None if it is dynamic."""
    import onnx

    dim = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim[0]
    return int(dim.dim_value) if dim.HasField("dim_value") else None


def split_batches(x: torch.Tensor, batch: int | None, size: int = 16) -> list[np.ndarray]:
    """``x`` as float32 arrays of ``batch`` images (the last one padded by repeating its last image), or of up
    to ``size`` images when ``batch`` is None."""
    step = batch or size
    out = []
    for i in range(0, len(x), step):
        chunk = x[i:i + step]
        if batch is not None and len(chunk) < batch:
            chunk = torch.cat([chunk, chunk[-1:].expand(batch - len(chunk), *chunk.shape[1:])])
        out.append(np.ascontiguousarray(chunk.numpy(), dtype=np.float32))
    return out


def _infinite_pad_nodes(path: str | os.PathLike) -> list[str]:
    """Pad nodes that pad with ±inf (a "SAME" max-pool, as PP-HGNetV2's stem) and the nodes reading them: their
    range is infinite, so a quantizer must leave them in float (min/max calibration would make them garbage)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path), load_external_data=False).graph
    values = {t.name: t for t in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            values[n.output[0]] = n.attribute[0].t
    bad: list[str] = []
    for n in graph.node:
        if n.op_type != "Pad":
            continue
        fill = next((a.f for a in n.attribute if a.name == "value"), 0.0)
        if len(n.input) > 2 and n.input[2] in values:
            fill = float(numpy_helper.to_array(values[n.input[2]]).reshape(-1)[0])
        if not np.isfinite(fill):
            bad.append(n.name)
            bad += [m.name for m in graph.node if n.output[0] in m.input]
    return bad


def quantize_onnx_int8(src: str | os.PathLike, dst: str | os.PathLike, calibration: torch.Tensor,
                       workdir: str | os.PathLike | None = None) -> str:
    """Post-training static int8 quantization with ONNX Runtime (``quantize_static``): QDQ format,
    per-channel int8 weights, uint8 activations with min/max ranges from ``calibration`` (preprocessed
    images, (N, C, H, W)). Pads with an infinite fill and their readers stay in float. On a CPU without
    VNNI the weights use 7 bits (``reduce_range``), as ONNX Runtime advises against overflow there."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    chunks = split_batches(calibration, _onnx_batch(src))

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(chunks)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"x": x}

    pre = Path(workdir or Path(dst).parent) / (Path(dst).stem + ".pre.onnx")
    with quiet():
        try:
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=False)
        except Exception:  # noqa: BLE001 - pre-processing is an optimization; quantize the model as exported
            pre = Path(src)
        quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=not has_vnni(),
                        nodes_to_exclude=_infinite_pad_nodes(pre))
    if pre != Path(src):
        pre.unlink(missing_ok=True)
    return str(dst)


def convert_onnx_fp16(src: str | os.PathLike, dst: str | os.PathLike) -> str:
    """The ONNX model with fp16 weights and activations, fp32 input and output (onnxruntime's converter)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with quiet():
        model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dst))
    return str(dst)


def set_onnx_meta(path: str | os.PathLike, meta: dict) -> None:
    import onnx

    model = onnx.load(str(path))
    prop = next((p for p in model.metadata_props if p.key == _META_KEY), None) or model.metadata_props.add()
    prop.key, prop.value = _META_KEY, json.dumps(meta)
    onnx.save(model, str(path))


def onnx_session(path: str | os.PathLike, threads: int | None = None, cuda: bool = False):
    """An ONNX Runtime session with all graph optimizations (on CUDA if asked and available)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    cuda = cuda and "CUDAExecutionProvider" in ort.get_available_providers()
    providers = (["CUDAExecutionProvider"] if cuda else []) + ["CPUExecutionProvider"]
    return ort.InferenceSession(str(path), so, providers=providers)


# --- OpenVINO --------------------------------------------------------------------------------------------------------

def openvino_model(onnx_path: str | os.PathLike):
    """An OpenVINO model read from an ONNX file (the batch axis stays as the ONNX file has it)."""
    import openvino as ov

    return ov.Core().read_model(str(onnx_path))


def quantize_openvino_int8(ov_model, calibration: torch.Tensor):
    """Post-training int8 quantization with NNCF (``nncf.quantize``, its default preset: symmetric int8
    weights per channel and activations, fast bias correction); statistics from ``calibration``."""
    import nncf

    fixed = ov_model.input(0).get_partial_shape()[0]
    batch = fixed.get_length() if fixed.is_static else 1
    items = split_batches(calibration, batch)
    with quiet():
        return nncf.quantize(ov_model, nncf.Dataset(items), subset_size=len(items))


def save_openvino(ov_model, xml: str | os.PathLike, precision: str, meta: dict) -> list[str]:
    """Save the IR (``.xml`` + ``.bin``); fp16 stores the weights in fp16 (decompressed at load on CPU).

    The compute precision is a compile-time setting, not part of the IR: OpenVINO's CPU plugin computes in
    bf16 by default on CPUs that have it. ``meta["openvino_config"]`` records the setting this file was
    verified with; :func:`load` applies it.
    """
    import openvino as ov

    ov_model.set_rt_info(json.dumps({**meta, "openvino_config": openvino_config(precision)}), [_META_KEY])
    ov.save_model(ov_model, str(xml), compress_to_fp16=(precision == "fp16"))
    return [str(xml), str(Path(xml).with_suffix(".bin"))]


def openvino_config(precision: str) -> dict:
    """The compile configuration that runs an OpenVINO model at ``precision`` on the CPU."""
    return {"INFERENCE_PRECISION_HINT": OPENVINO_HINTS[precision]}


# --- TorchScript -----------------------------------------------------------------------------------------------------

class _CastIO(nn.Module):
    """Runs ``model`` in ``dtype``: the input is cast to it, the logits back to float32."""

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.model, self.dtype = model, dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.dtype)).float()


def save_torchscript(module, path: str | os.PathLike, meta: dict) -> str:
    """Save a traced module with ``meta`` inside (``hgzoo.json``). torch 2.x deprecates TorchScript in favour of
    torch.export, but it still runs, from C++ (libtorch) too; the deprecation warning is silenced here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.* is deprecated", category=FutureWarning)
        torch.jit.save(module, str(path), _extra_files={"hgzoo.json": json.dumps(meta)})
    return str(path)


def trace_torchscript(model: nn.Module, precision: str, in_chans: int, img_size: int, device: str = "cpu"):
    """A frozen TorchScript trace of ``model`` (a copy) with its weights in ``precision`` (fp32, bf16 or fp16);
    the traced module takes and returns float32."""
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    wrapped = _CastIO(copy.deepcopy(model).to(device=device, dtype=dtype), dtype).eval()
    example = torch.randn(2, in_chans, img_size, img_size, device=device)
    with quiet(), torch.no_grad():
        return torch.jit.freeze(torch.jit.trace(wrapped, example, check_trace=False))


# --- loading -------------------------------------------------------------------------------------------------------

class Predictor:
    """An exported model loaded in its runtime: ``predictor(x)`` takes a float32 (N, C, H, W) batch (tensor
    or array) and returns float32 logits (numpy). A fixed-batch model runs the input in chunks of its batch."""

    def __init__(self, path: str, fmt: str, fn: Callable[[np.ndarray], Any], batch: int | None, meta: dict,
                 device: str = "cpu", input_shape: tuple | None = None, output_shape: tuple | None = None) -> None:
        self.path, self.format, self.fn, self.batch, self.meta, self.device = path, fmt, fn, batch, meta, device
        #: the file's declared input and output shapes, None for a dynamic axis (None: the format does not say)
        self.input_shape, self.output_shape = input_shape, output_shape

    @property
    def precision(self) -> str | None:
        return self.meta.get("precision")

    def __call__(self, x: torch.Tensor | np.ndarray) -> np.ndarray:
        x = torch.as_tensor(x, dtype=torch.float32)
        outs = [np.asarray(self.fn(chunk), dtype=np.float32) for chunk in split_batches(x, self.batch)]
        return np.concatenate(outs)[:len(x)]

    def __repr__(self) -> str:
        return f"Predictor({self.format}, {self.precision}, {self.path!r})"


def _onnx_shape(value_info) -> tuple:
    return tuple(int(d.dim_value) if d.HasField("dim_value") else None for d in value_info.type.tensor_type.shape.dim)


def _openvino_shape(port) -> tuple:
    return tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())


def read_meta(path: str | os.PathLike) -> dict:
    """What :func:`hgzoo.deploy.export` stored in an ``.onnx`` or OpenVINO ``.xml`` file (model, classes, input,
    precision, preprocessing), read without compiling the model; ``{}`` for a file that stores nothing."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
        return json.loads(next((p.value for p in proto.metadata_props if p.key == _META_KEY), "{}"))
    if path.suffix.lower() == ".xml":
        import openvino as ov

        model = ov.Core().read_model(str(path))
        return json.loads(model.get_rt_info([_META_KEY]).astype(str)) if model.has_rt_info([_META_KEY]) else {}
    raise ValueError(f"{path}: unknown exported format {path.suffix!r} (expected .onnx or .xml)")


def load(path: str | os.PathLike, threads: int | None = None) -> Predictor:
    """Load a file written by :func:`hgzoo.deploy.export` (``.onnx``, OpenVINO ``.xml``, TorchScript ``.pt``)
    with the runtime it was verified with, at the precision stored in it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"exported model {path} not found")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
        meta = json.loads(next((p.value for p in proto.metadata_props if p.key == _META_KEY), "{}"))
        sess = onnx_session(path, threads, cuda=meta.get("precision") == "fp16")
        batch = _onnx_batch(path)
        device = "cuda" if "CUDAExecutionProvider" in sess.get_providers() else "cpu"
        return Predictor(str(path), "onnx", lambda x: sess.run(None, {"x": x})[0], batch, meta, device,
                         _onnx_shape(proto.graph.input[0]), _onnx_shape(proto.graph.output[0]))
    if suffix == ".xml":
        import openvino as ov

        core = ov.Core()
        model = core.read_model(str(path))
        meta = json.loads(model.get_rt_info([_META_KEY]).astype(str)) if model.has_rt_info([_META_KEY]) else {}
        dim = model.input(0).get_partial_shape()[0]
        config = dict(meta.get("openvino_config") or openvino_config(meta.get("precision", "fp32")))
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        compiled = core.compile_model(model, "CPU", config)
        port = compiled.output(0)
        request = compiled.create_infer_request()
        return Predictor(str(path), "openvino", lambda x: request.infer({0: x})[port].copy(),
                         dim.get_length() if dim.is_static else None, meta, "cpu",
                         _openvino_shape(model.input(0)), _openvino_shape(model.output(0)))
    if suffix in (".pt", ".pth", ".ts"):
        extra = {"hgzoo.json": ""}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch.jit.* is deprecated", category=FutureWarning)
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
            meta = json.loads(extra["hgzoo.json"] or "{}")
            device = meta.get("device", "cpu")
            if device != "cpu":
                if device.startswith("cuda") and not torch.cuda.is_available():
                    raise RuntimeError(f"{path} was exported for a CUDA GPU ({meta.get('precision')}); "
                                       "this machine has none")
                module = torch.jit.load(str(path), map_location=device)

        def run(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return module(torch.from_numpy(x).to(device)).float().cpu().numpy()

        return Predictor(str(path), "torchscript", run, None, meta, device)
    raise ValueError(f"{path}: unknown exported format {suffix!r} (expected .onnx, .xml or .pt)")
