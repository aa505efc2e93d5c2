"""Inference backends: each turns a :class:`~benchmarks.harness.subjects.Subject` and an input batch into a
:class:`Runner`, a zero-argument call that runs one batch.

A backend whose package or hardware is missing says why in :meth:`Backend.skip_reason`; nothing here
raises for a missing package at import time. Every backend accepts any subject (hgzoo or timm), so a
peer model goes through exactly the same path.
"""
from __future__ import annotations

import copy
import functools
import importlib.util
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from hgzoo.deploy.runtimes import quiet as _quiet
from hgzoo.deploy.runtimes import split_batches, write_onnx

from .subjects import Subject

__all__ = [
    "Runner", "Backend", "is_oom", "cpu_precision_skip", "int8_images", "INT8_CALIBRATION", "onnx_file",
    "CompileBackend",
]

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _to_numpy(out: Any) -> np.ndarray:
    if isinstance(out, (list, tuple)):
        out = out[0]
    if isinstance(out, torch.Tensor):
        return out.detach().float().cpu().numpy()
    return np.asarray(out, dtype=np.float32)


@dataclass
class Runner:
    """One prepared (model, backend, precision, input): ``fn()`` runs the bound batch once."""

    fn: Callable[[], Any]
    fetch: Callable[[Any], np.ndarray] = _to_numpy  # raw output → float32 logits
    sync: str = "cpu"  # "cuda": timed with CUDA events and synchronized
    note: str = ""
    run_batch: Callable[[np.ndarray], Any] | None = None  # runs another batch of the same shape (int8's image check)

    def output(self) -> np.ndarray:
        return self.fetch(self.fn())

    def outputs_for(self, images: torch.Tensor, batch: int) -> np.ndarray:
        """Logits for ``images`` (any number), run in batches of the bound batch size."""
        if self.run_batch is None:
            raise RuntimeError("this runner cannot run other inputs")
        outs = [self.fetch(self.run_batch(chunk)) for chunk in split_batches(images, batch)]
        return np.concatenate(outs)[:len(images)]


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def cpu_precision_skip(precision: str) -> str | None:
    """Why this CPU cannot run ``precision`` natively, or None if it can."""
    if precision == "bf16" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return "this CPU has no native bf16 (needs AVX512-BF16 or AMX); it would be emulated"
    if precision == "fp16" and not torch.ops.mkldnn._is_mkldnn_fp16_supported():
        return "this CPU has no native fp16 (needs AVX512-FP16 or AMX-FP16); it would be emulated"
    return None


#: How the int8 backends are calibrated, and what their outputs are checked on (the report's method section).
INT8_CALIBRATION = ("scikit-image's 7 photos × 3 crops × 2 flips (42 images), 256/224 bilinear resize-crop, ImageNet "
                    "mean/std: enough for timing, not a representative calibration set")


@functools.lru_cache(maxsize=4)
def int8_images(img_size: int) -> torch.Tensor:
    """The real images int8 is calibrated and checked on at ``img_size`` (see :data:`INT8_CALIBRATION`)."""
    from hgzoo.deploy.images import eval_transform, sample_photo_views

    tf = eval_transform(None, img_size)
    return torch.stack([tf(v) for v in sample_photo_views()])


def _int8_skip() -> str | None:
    if not _has("skimage"):
        return "int8 is calibrated on scikit-image's photos: pip install scikit-image"
    return None


def is_oom(exc: BaseException) -> bool:
    """True for an out-of-memory error from torch (CPU or CUDA), ONNX Runtime or OpenVINO."""
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    msg = str(exc).lower()
    return bool(re.search(r"out of memory|can't allocate memory|cannot allocate memory|bad_alloc|bad allocation"
                          r"|failed to allocate|not enough memory", msg))


class _TempDir:
    def __init__(self) -> None:
        self.path = tempfile.mkdtemp(prefix="hgzoo-bench-")

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def onnx_file(subject: Subject, img_size: int) -> str:
    """The subject's deployment model as ONNX (fp32, dynamic batch), exported once and cached."""
    key = f"onnx@{img_size}"
    if key not in subject.cache:
        tmp = subject.cache.setdefault("tmpdir", _TempDir())
        path = os.path.join(tmp.path, f"{subject.impl}-{subject.arch}-{img_size}.onnx")
        t = time.perf_counter()
        write_onnx(subject.deploy_model(), path, img_size)
        subject.cache[key] = path
        subject.cache[key + ":seconds"] = time.perf_counter() - t
        subject.cache[key + ":nodes"] = _onnx_nodes(path)
    return subject.cache[key]


def _onnx_nodes(path: str) -> int | None:
    """The number of operators in the exported graph: equal counts for hgzoo and a peer mean the same work."""
    try:
        import onnx

        return len(onnx.load(path, load_external_data=False).graph.node)
    except Exception:  # noqa: BLE001 - only a note in the report
        return None


def _onnx_note(subject: Subject, img_size: int) -> str:
    key = f"onnx@{img_size}"
    nodes, secs = subject.cache.get(key + ":nodes"), subject.cache.get(key + ":seconds")
    return (f"; {nodes} ONNX nodes" if nodes else "") + (f"; export {secs:.0f} s" if secs else "")


class Backend:
    """Base class. Subclasses set ``name``, ``device``, ``description`` and implement :meth:`prepare`."""

    name: str = ""
    device: str = "cpu"
    description: str = ""
    uses_deploy_model: bool = True  # runs the re-parameterized model (else the model as built)
    int8: bool = False  # has a post-training int8 path

    def unavailable(self) -> str | None:
        """Why this backend cannot run on this machine at all (package or hardware missing), or None."""
        return None

    def precision_skip(self, precision: str) -> str | None:
        return cpu_precision_skip(precision) if self.device == "cpu" else None

    def skip_reason(self, precision: str) -> str | None:
        if precision == "int8" and not self.int8:
            return self.unavailable() or ("int8 runs on the onnxruntime and openvino backends (post-training "
                                          "quantization, calibrated on real images)")
        return self.unavailable() or self.precision_skip(precision)

    def prepare(self, subject: Subject, x: torch.Tensor, precision: str, threads: int) -> Runner:
        raise NotImplementedError

    def release(self) -> None:
        """Free what :meth:`prepare` keeps outside its runners (called after each group of measurements)."""
        return None


def _probe(fns: dict[str, Callable[[], Any]], iters: int = 4,
           sync: Callable[[], None] | None = None) -> dict[str, float]:
    """Median seconds of a few calls of each candidate (after one warm-up call), for picking a variant.
    ``sync`` (e.g. ``torch.cuda.synchronize``) is called before and after each call: asynchronous devices."""
    sync = sync or (lambda: None)
    out = {}
    for key, fn in fns.items():
        fn()
        ts = []
        for _ in range(iters):
            sync()
            t = time.perf_counter()
            fn()
            sync()
            ts.append(time.perf_counter() - t)
        out[key] = float(np.median(ts))
    return out


class EagerBackend(Backend):
    name = "eager"
    uses_deploy_model = False
    description = "the model as built, torch eager under inference_mode; bf16/fp16 through torch.autocast"

    def prepare(self, subject, x, precision, threads):
        model = subject.model
        if precision == "fp32":
            def fn():
                with torch.inference_mode():
                    return model(x)
        else:
            dtype = DTYPES[precision]

            def fn():
                with torch.inference_mode(), torch.autocast("cpu", dtype=dtype):
                    return model(x)
        return Runner(fn, note="autocast" if precision != "fp32" else "")


class DeployBackend(Backend):
    name = "deploy"
    description = ("re-parameterized model (conv+BN fused, branches merged), torch eager; weights cast to the "
                   "precision; channels-last where a probe finds it faster")

    def prepare(self, subject, x, precision, threads):
        dtype = DTYPES[precision]
        base = subject.deploy_model()
        contiguous = base if precision == "fp32" else copy.deepcopy(base).to(dtype)
        channels_last = copy.deepcopy(base).to(dtype=dtype, memory_format=torch.channels_last)

        def make(model, fmt):
            def fn():
                with torch.inference_mode():
                    return model(x.to(dtype=dtype, memory_format=fmt))
            return fn

        fns = {"contiguous": make(contiguous, torch.contiguous_format),
               "channels_last": make(channels_last, torch.channels_last)}
        times = _probe(fns)
        best = min(times, key=times.get)
        other = "channels_last" if best == "contiguous" else "contiguous"
        note = f"{best} ({times[other] / times[best]:.2f}x faster than {other} in a probe)"
        return Runner(fns[best], note=note)


class CompileBackend(Backend):
    name = "compile"
    description = "torch.compile (inductor) of the re-parameterized model; on CPU with freezing (weights folded)"

    def unavailable(self):
        compilers = (os.environ.get("CXX", ""), "g++", "c++", "clang++")
        if self.device == "cpu" and not any(shutil.which(c) for c in compilers if c):
            return "torch.compile on CPU needs a C++ compiler (g++ or clang++); none found"
        return None

    def _setup(self) -> None:
        """Process-wide settings this backend needs before compiling (the GPU variant turns TF32 off)."""
        return None

    def prepare(self, subject, x, precision, threads):
        import torch._dynamo
        import torch._inductor.config

        self._setup()
        # Every model class keeps its compiled graphs per code object; raise the limits so that several
        # sizes and models in one process never silently fall back to eager (timing also forbids recompiles).
        for attr in ("recompile_limit", "cache_size_limit"):
            if hasattr(torch._dynamo.config, attr):
                setattr(torch._dynamo.config, attr, max(getattr(torch._dynamo.config, attr), 256))
        dtype = DTYPES[precision]
        model = subject.deploy_model()
        if precision != "fp32" or self.device != "cpu":
            model = copy.deepcopy(model).to(device=self.device, dtype=dtype)
        compiled = torch.compile(model, dynamic=False)
        if self.device == "cpu":  # the cast of the fp32 host input is part of a CPU call, as for the other backends
            def fn():
                with torch.inference_mode():
                    return compiled(x.to(dtype))
        else:  # the input waits on the device in the model's dtype (the GPU timing's convention)
            xin = x.to(device=self.device, dtype=dtype)

            def fn():
                with torch.inference_mode():
                    return compiled(xin)

        t = time.perf_counter()
        with _quiet(), torch._inductor.config.patch(freezing=True):
            fn()
        note = f"inductor, freezing; compiled in {time.perf_counter() - t:.0f} s"
        return Runner(fn, sync="cuda" if self.device == "cuda" else "cpu", note=note)

    def release(self) -> None:
        """Drop dynamo's compiled graphs (with freezing they hold a copy of the weights): the next group compiles
        for another shape or precision anyway."""
        import torch._dynamo

        torch._dynamo.reset()


def onnx_int8_file(subject: Subject, img_size: int) -> str:
    """The subject's ONNX model quantized to int8 by ONNX Runtime (QDQ, per-channel), made once and cached."""
    from hgzoo.deploy.runtimes import quantize_onnx_int8

    key = f"onnx-int8@{img_size}"
    if key not in subject.cache:
        src = onnx_file(subject, img_size)
        subject.cache[key] = quantize_onnx_int8(src, src[:-len(".onnx")] + "-int8.onnx", int8_images(img_size))
    return subject.cache[key]


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    int8 = True
    description = ("re-parameterized model → torch.onnx export (dynamic batch) → ONNX Runtime CPU provider, all graph "
                   "optimizations; int8: quantize_static (QDQ, per-channel int8 weights, uint8 activations)")

    def unavailable(self):
        if not _has("onnxruntime"):
            return "onnxruntime is not installed (pip install onnxruntime, or hgzoo[bench])"
        if not _has("onnx"):
            return "onnx is not installed (pip install onnx onnxscript, or hgzoo[bench])"
        return None

    def precision_skip(self, precision):
        if precision == "int8":
            return _int8_skip()
        if precision != "fp32":
            return f"ONNX Runtime's CPU provider has no fast {precision} convolutions on x86 (use openvino)"
        return None

    def prepare(self, subject, x, precision, threads):
        import onnxruntime as ort

        from hgzoo.deploy.runtimes import onnx_session

        key = f"ort-session@{x.shape[-1]}:{threads}:{precision}"
        if key not in subject.cache:
            path = onnx_int8_file(subject, x.shape[-1]) if precision == "int8" else onnx_file(subject, x.shape[-1])
            subject.cache[key] = onnx_session(path, threads)
        sess = subject.cache[key]
        xn = x.numpy()

        def fn():
            return sess.run(None, {"x": xn})[0]

        return Runner(fn, fetch=np.asarray, run_batch=lambda xb: sess.run(None, {"x": xb})[0],
                      note=f"ORT {ort.__version__}" + _onnx_note(subject, x.shape[-1]))


class OpenVinoBackend(Backend):
    name = "openvino"
    int8 = True
    description = ("re-parameterized model → ONNX → OpenVINO CPU plugin, static shape, LATENCY hint, precision hint; "
                   "int8: NNCF post-training quantization (other ops f32)")
    _HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}

    def unavailable(self):
        if not _has("openvino"):
            return "openvino is not installed (pip install openvino, or hgzoo[bench])"
        return None

    def precision_skip(self, precision):
        if precision == "int8":
            return _int8_skip() or (None if _has("nncf") else "OpenVINO int8 is quantized by NNCF: pip install nncf")
        return super().precision_skip(precision)

    def prepare(self, subject, x, precision, threads):
        import openvino as ov

        core = subject.cache.setdefault("ov-core", ov.Core())
        try:
            ov_model = core.read_model(onnx_file(subject, x.shape[-1]))
            source = "ONNX"
        except Exception:  # noqa: BLE001 - no ONNX exporter: convert the PyTorch model directly
            with _quiet():
                ov_model = ov.convert_model(subject.deploy_model(), example_input=x)
            source = "PyTorch frontend"
        if precision == "int8":
            from hgzoo.deploy.runtimes import quantize_openvino_int8

            ov_model.reshape([-1, *[int(d) for d in x.shape[1:]]])
            ov_model = quantize_openvino_int8(ov_model, int8_images(x.shape[-1]))
            source += ", NNCF int8"
        ov_model.reshape([int(d) for d in x.shape])
        config = {"INFERENCE_PRECISION_HINT": self._HINTS[precision], "INFERENCE_NUM_THREADS": threads,
                  "PERFORMANCE_HINT": "LATENCY"}
        compiled = core.compile_model(ov_model, "CPU", config)
        request = compiled.create_infer_request()
        port = compiled.output(0)
        xn = x.numpy()

        def fn():
            return request.infer({0: xn}, share_inputs=True)[port]

        return Runner(fn, fetch=np.asarray, run_batch=lambda xb: request.infer({0: xb})[port].copy(),
                      note=f"OpenVINO {ov.__version__.split('-')[0]} from {source}" + _onnx_note(subject, x.shape[-1]))
