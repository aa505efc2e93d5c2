"""The backends a classifier runs on, in one vocabulary, and the one :class:`Runner` they all return.

A backend is a name (``eager``, ``reparam``, ``compile``, ``torchscript``, ``onnxruntime``, ``openvino``; tools
register more, as the benchmark harness does its ``cuda``, ``cuda-compile``, ``cuda-torchscript`` and
``tensorrt``), the device it computes on, whether it runs the re-parameterized model, and :meth:`Backend.prepare`: a
model → a :class:`Runner` at one precision.
:func:`hgzoo.deploy.runner.prepare` (``validate.py --backend``, ``predict``) and the benchmark harness both look
backends up in :data:`BACKENDS`::

    backend = get_backend("openvino")
    runner = backend.prepare(hgzoo.reparameterize(model), x, "fp32")   # x: an example batch
    logits = runner(batch)                  # float32 (N, C, H, W) -> float32 logits (CPU tensor)
    timed = runner.bind(x).run              # the bound batch, staged once: calls that time the model alone

Why a backend cannot run here is :meth:`Backend.skip_reason` (a missing package or hardware, a precision this
CPU has no native kernels for); nothing here imports an optional package before it is used.
"""
from __future__ import annotations

import contextlib
import copy
import difflib
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from . import runtimes as rt

__all__ = [
    "Runner", "Backend", "BackendError", "BACKENDS", "register_backend", "get_backend", "DTYPES",
    "cpu_precision_skip", "probe", "EagerBackend", "ReparamBackend", "CompileBackend", "TorchScriptBackend",
    "OnnxRuntimeBackend", "OpenVinoBackend", "with_channels_last",
]

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class BackendError(ValueError):
    """A backend, precision or deployed file that cannot serve the request (bad input: the message says why)."""


def _same(x: Any) -> Any:
    return x


def _logits(out: Any) -> torch.Tensor:
    """A backend's raw output as float32 logits on the CPU (a copy where the runtime reuses its buffer)."""
    if isinstance(out, (list, tuple)):
        out = out[0]
    if isinstance(out, torch.Tensor):
        return out.detach().float().cpu()
    return torch.tensor(np.asarray(out), dtype=torch.float32)


def _as_numpy(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)


@dataclass
class Runner:
    """A model ready to run: ``runner(x)`` takes a float32 (N, C, H, W) tensor and returns float32 logits.

    ``runner(x)`` is ``fetch(fn(stage(x)))``: ``stage`` puts the input where the backend reads it (on the GPU, as
    numpy), ``fn`` runs the model, ``fetch`` turns the raw output into logits. :meth:`bind` stages one batch
    once, so that :meth:`run` is the model's work alone (what a benchmark times; ``sync="cuda"``: it returns
    before the GPU has finished).
    """

    backend: str
    precision: str
    compute: str  # what computes, in words
    fn: Callable[[Any], Any]
    stage: Callable[[torch.Tensor], Any] = _same
    fetch: Callable[[Any], torch.Tensor] = _logits
    sync: str = "cpu"
    note: str = ""  # how it was prepared (a probe's choice, a compile time, versions)
    file: str | None = None  # the deployed file (None where no file is kept)
    report: Any = None  # the export's verification report, when this run exported the file
    meta: dict = field(default_factory=dict)  # what the file says about itself
    module: Any = None  # the torch module that computes (torch backends): its type, weights and layout, to inspect
    cleanup: Callable[[], None] | None = None
    _bound: Any = field(default=None, repr=False)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.fetch(self.fn(self.stage(x)))

    def bind(self, x: torch.Tensor) -> Runner:
        """Stage ``x`` for :meth:`run`; returns the runner."""
        self._bound = self.stage(x)
        return self

    def run(self) -> Any:
        """Run the bound batch once; the raw output (see :meth:`output`)."""
        if self._bound is None:
            raise RuntimeError("Runner.run() needs a batch: call bind(x) first")
        return self.fn(self._bound)

    def output(self) -> torch.Tensor:
        """The logits of the bound batch."""
        return self.fetch(self.run())

    def logits(self, images: torch.Tensor, batch: int) -> torch.Tensor:
        """Logits for ``images`` (any number), run in batches of ``batch`` (the last one padded): a runner
        prepared for one batch size (a static-shape engine) runs other images this way."""
        outs = [self(torch.from_numpy(chunk)) for chunk in rt.split_batches(images, batch)]
        return torch.cat(outs)[:len(images)]

    def close(self) -> None:
        """Remove what this runner made for itself (a file exported into a temporary folder)."""
        if self.cleanup is not None:
            self.cleanup()
            self.cleanup = None

    def describe(self) -> dict:
        """The backend, precision and file, for a results file (a file in a temporary folder is not named)."""
        temporary = self.cleanup is not None
        return {"backend": self.backend, "precision": self.precision, "compute": self.compute,
                "deployed_file": None if temporary else self.file,
                "deployed_file_kept": bool(self.file) and not temporary,
                "export_top1_agreement": getattr(self.report, "top1_agreement", None),
                "export_verified_on": getattr(self.report, "images", None)}


def cpu_precision_skip(precision: str) -> str | None:
    """Why this CPU cannot run ``precision`` natively, or None if it can."""
    if precision == "bf16" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return "this CPU has no native bf16 (needs AVX512-BF16 or AMX); it would be emulated"
    if precision == "fp16" and not torch.ops.mkldnn._is_mkldnn_fp16_supported():
        return "this CPU has no native fp16 (needs AVX512-FP16 or AMX-FP16); it would be emulated"
    return None


def probe(fns: dict[str, Callable[[], Any]], iters: int = 4,
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


class Backend:
    """One way to run a model. Subclasses set the class attributes and implement :meth:`prepare`."""

    name: str = ""
    device: str = "cpu"
    description: str = ""
    format: str | None = None  # the export format it runs (None: torch runs the model itself)
    reparameterized: bool = True  # runs the re-parameterized model: the caller hands it that form
    int8: bool = False  # has a post-training int8 path (calibrated on real images)

    def unavailable(self) -> str | None:
        """Why this backend cannot run on this machine at all (package or hardware missing), or None."""
        return None

    def precision_skip(self, precision: str) -> str | None:
        """Why this machine has no native kernels for ``precision`` on this backend, or None."""
        return cpu_precision_skip(precision) if self.device == "cpu" else None

    def skip_reason(self, precision: str) -> str | None:
        """Why this backend should not run ``precision`` here (a benchmark skips it, saying so), or None."""
        if precision == "int8" and not self.int8:
            return self.unavailable() or ("int8 runs on the onnxruntime and openvino backends (post-training "
                                          "quantization, calibrated on real images)")
        return self.unavailable() or self.precision_skip(precision)

    def prepare(self, model: nn.Module, x: torch.Tensor | None, precision: str, *, threads: int | None = None,
                cache: dict | None = None, calibration: torch.Tensor | None = None) -> Runner:
        """A :class:`Runner` of ``model`` (eval, fp32, on the CPU; never changed: a backend that casts or moves it
        works on a copy) at ``precision``.

        ``x``: an example batch; a backend that fixes its batch or picks a variant by timing prepares for it
        (None: the first call's). ``cache``: where a backend keeps what it made for this model between calls (an
        exported file per input size); ``calibration``: the images int8 is calibrated on (N, C, H, W).
        """
        raise NotImplementedError

    def release(self) -> None:
        """Free what :meth:`prepare` keeps outside its runners (after each group of measurements)."""
        return None


#: Every backend by name. :func:`register_backend` adds one (a tool's GPU backends, say).
BACKENDS: dict[str, Backend] = {}


def register_backend(backend: Backend) -> Backend:
    """Add ``backend`` to :data:`BACKENDS`; a second backend of the same name is refused."""
    if backend.name in BACKENDS and type(BACKENDS[backend.name]) is not type(backend):
        raise ValueError(f"a backend named {backend.name!r} is registered already ({type(BACKENDS[backend.name])})")
    BACKENDS[backend.name] = backend
    return backend


def get_backend(name: str) -> Backend:
    """The backend called ``name``; a :class:`BackendError` naming close matches otherwise."""
    if name in BACKENDS:
        return BACKENDS[name]
    close = difflib.get_close_matches(name, list(BACKENDS), n=3, cutoff=0.4)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    raise BackendError(f"unknown backend {name!r}.{hint} Backends: {', '.join(BACKENDS)}.")


# --- torch ---------------------------------------------------------------------------------------------------------

def _to(device: str, memory_format: torch.memory_format = torch.contiguous_format) -> Callable[[torch.Tensor], Any]:
    if device == "cpu" and memory_format == torch.contiguous_format:
        return _same
    return lambda x: x.to(device, non_blocking=True).contiguous(memory_format=memory_format)


class EagerBackend(Backend):
    """torch eager on the model as given; bf16 through ``torch.autocast`` (fp16 autocast on a CUDA device)."""

    name = "eager"
    reparameterized = False
    description = "the model as built, torch eager under inference_mode; bf16/fp16 through torch.autocast"
    label = "torch eager"  # what computes, in words (the runner's ``compute`` starts with it)

    def __init__(self, device: str | None = None, channels_last: bool = False) -> None:
        if device is not None:
            self.device = device
        self.channels_last = channels_last

    def _autocast_dtypes(self) -> dict[str, torch.dtype]:
        """The autocast dtype of each low precision (``--amp``: bf16, fp16 on a CUDA device)."""
        return {"bf16": torch.float16 if self.device.startswith("cuda") else torch.bfloat16, "fp16": torch.float16}

    def _finish(self, net: nn.Module) -> tuple[nn.Module, str]:
        """The module that runs (``net``, eval, on the device and in the layout) and a note on how it was made."""
        return net, ""

    def prepare(self, model, x, precision, *, threads=None, cache=None, calibration=None):
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        net = model if self.device == "cpu" and not self.channels_last else copy.deepcopy(model).to(
            self.device, memory_format=fmt)
        net, made = self._finish(net)
        amp = self._autocast_dtypes()
        device_type = torch.device(self.device).type

        def fn(xs: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode(), (torch.autocast(device_type, dtype=amp[precision]) if precision in amp
                                          else contextlib.nullcontext()):
                return net(xs)

        cast = {torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}.get(amp.get(precision), "fp32")
        parts = [self.label, cast] + (["channels-last"] if self.channels_last else [])
        note = "; ".join(n for n in (made, "autocast" if precision in amp else "") if n)
        return Runner(self.name, precision, ", ".join(parts), fn, stage=_to(self.device, fmt),
                      sync="cuda" if device_type == "cuda" else "cpu", note=note, module=net)


class TorchScriptBackend(EagerBackend):
    """``torch.jit.script`` of the model as given, as timm's ``validate.py`` / ``benchmark.py --torchscript`` do
    after ``--reparam`` (then: the re-parameterized model), the device move and ``--channels-last``; run as
    :class:`EagerBackend` runs the model (bf16 through ``torch.autocast``, as timm's ``--amp``).

    Neither ``torch.jit.freeze`` nor ``optimize_for_inference``: timm times the plain script, which runs eager's
    kernels (on the CPU, eager's logits bit for bit); folding conv+BN is ``--reparam``'s work, and
    ``optimize_for_inference`` swaps in MKLDNN convolutions (other numerics and layouts; torch's optimizing path is
    ``compile``)."""

    name = "torchscript"
    description = ("torch.jit.script of the model as built (re-parameterized with --reparam), as timm's "
                   "--torchscript; bf16/fp16 through torch.autocast")
    label = "TorchScript (torch.jit.script)"

    def _finish(self, net):
        t = time.perf_counter()
        with warnings.catch_warnings():  # torch 2.x deprecates TorchScript in favour of torch.compile; it still runs
            warnings.filterwarnings("ignore", message=".*torch.jit.* is deprecated", category=FutureWarning)
            scripted = torch.jit.script(net.eval())
        return scripted, f"scripted in {time.perf_counter() - t:.1f} s"


def with_channels_last(backend: Backend) -> Backend | None:
    """``backend`` running the model in channels-last memory format (timm's ``--channels-last``): a copy of a torch
    backend with the layout forced (no probe); None for a runtime (ONNX Runtime, OpenVINO, TensorRT), which takes
    an NCHW array and picks its own internal layout."""
    if backend.format is not None or not hasattr(backend, "channels_last"):
        return None
    forced = copy.copy(backend)
    forced.channels_last = True
    return forced


class ReparamBackend(Backend):
    """torch eager on the re-parameterized model with its weights cast to the precision (the whole network in that
    type), contiguous or channels-last: as asked, or whichever a probe on the example batch finds faster."""

    name = "reparam"
    description = ("re-parameterized model (conv+BN fused, branches merged), torch eager; weights cast to the "
                   "precision; channels-last where a probe finds it faster")

    def __init__(self, device: str | None = None, channels_last: bool | None = None) -> None:
        """``channels_last``: that layout (True) or contiguous (False); None: a probe on the example batch picks."""
        if device is not None:
            self.device = device
        self.channels_last = channels_last

    def _layouts(self, probing: bool) -> dict[str, torch.memory_format]:
        if self.channels_last is None and probing:
            return {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
        if self.channels_last:
            return {"channels_last": torch.channels_last}
        return {"contiguous": torch.contiguous_format}

    def _stage(self, dtype: torch.dtype, fmt: torch.memory_format) -> Callable[[torch.Tensor], Any] | None:
        """The input's staging: on the device, in the precision and layout (None on the CPU, where the cast of the
        fp32 host input is part of each call)."""
        if self.device == "cpu":
            return None
        return lambda x: x.to(device=self.device, dtype=dtype, memory_format=fmt)

    def _variant(self, model: nn.Module, dtype: torch.dtype,
                 fmt: torch.memory_format) -> tuple[nn.Module, Callable[[Any], Any]]:
        """One layout's module (a copy of ``model`` wherever it changes) and call."""
        if dtype != torch.float32 or self.device != "cpu" or fmt != torch.contiguous_format:
            model = copy.deepcopy(model).to(self.device, dtype, memory_format=fmt)
        staged = self._stage(dtype, fmt) is not None

        def fn(xs):
            with torch.inference_mode():
                return model(xs if staged else xs.to(dtype=dtype, memory_format=fmt))
        return model, fn

    def prepare(self, model, x, precision, *, threads=None, cache=None, calibration=None):
        dtype = DTYPES[precision]
        layouts = self._layouts(probing=x is not None)
        modules = {k: self._variant(model, dtype, fmt) for k, fmt in layouts.items()}
        variants = {k: fn for k, (_, fn) in modules.items()}
        best = next(iter(layouts))
        note = best + (" (no example batch to probe)" if self.channels_last is None else " (asked for)")
        if len(variants) > 1:
            inputs = {k: (self._stage(dtype, fmt) or _same)(x) for k, fmt in layouts.items()}
            sync = torch.cuda.synchronize if self.device.startswith("cuda") else None
            times = probe({k: (lambda f=f, k=k: f(inputs[k])) for k, f in variants.items()}, sync=sync)
            best = min(times, key=times.get)
            other = "channels_last" if best == "contiguous" else "contiguous"
            note = f"{best} ({times[other] / times[best]:.2f}x faster than {other} in a probe)"
        compute = f"torch eager, re-parameterized, {precision} weights, {best.replace('_', '-')}"
        return Runner(self.name, precision, compute, variants[best], stage=self._stage(dtype, layouts[best]) or _same,
                      sync="cuda" if self.device.startswith("cuda") else "cpu", note=note, module=modules[best][0])


class CompileBackend(Backend):
    """``torch.compile`` (inductor, freezing: weights folded) of the re-parameterized model, its weights cast to the
    precision; one batch size (a short batch is padded, so it never recompiles)."""

    name = "compile"
    description = "torch.compile (inductor) of the re-parameterized model; on CPU with freezing (weights folded)"

    def __init__(self, device: str | None = None, channels_last: bool = False) -> None:
        if device is not None:
            self.device = device
        self.channels_last = channels_last

    def unavailable(self):
        compilers = (os.environ.get("CXX", ""), "g++", "c++", "clang++")
        if self.device == "cpu" and not any(shutil.which(c) for c in compilers if c):
            return "torch.compile on CPU needs a C++ compiler (g++ or clang++); none found"
        return None

    def _setup(self) -> None:
        """Process-wide settings this backend needs before compiling (a GPU variant turns TF32 off)."""
        return None

    def prepare(self, model, x, precision, *, threads=None, cache=None, calibration=None):
        import torch._dynamo
        import torch._inductor.config

        self._setup()
        # Every model class keeps its compiled graphs per code object; raise the limits so that several sizes and
        # models in one process never silently fall back to eager (a benchmark also forbids recompiles).
        for attr in ("recompile_limit", "cache_size_limit"):
            if hasattr(torch._dynamo.config, attr):
                setattr(torch._dynamo.config, attr, max(getattr(torch._dynamo.config, attr), 256))
        dtype, on_cpu = DTYPES[precision], self.device == "cpu"
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        if precision != "fp32" or not on_cpu or self.channels_last:
            model = copy.deepcopy(model).to(device=self.device, dtype=dtype, memory_format=fmt)
        compiled, state = torch.compile(model, dynamic=False), {}

        def fn(xs: torch.Tensor) -> torch.Tensor:
            n, batch = len(xs), state.setdefault("batch", len(xs))
            if n < batch:
                xs = torch.cat([xs, xs[-1:].expand(batch - n, *xs.shape[1:])])
            xin = xs.to(dtype=dtype, memory_format=fmt) if on_cpu else xs
            with torch.inference_mode():
                if state.get("compiled"):
                    return compiled(xin)[:n]
                with rt.quiet(), torch._inductor.config.patch(freezing=True):  # the first call compiles
                    out = compiled(xin)[:n]
                state["compiled"] = True
                return out

        # CPU: the cast of the fp32 host input is part of a call, as for the other CPU backends; a GPU input waits
        # on the device in the model's dtype
        stage = _same if on_cpu else (lambda xs: xs.to(device=self.device, dtype=dtype, memory_format=fmt))
        layout = ", channels-last" if self.channels_last else ""
        runner = Runner(self.name, precision, f"torch.compile (inductor, freezing), re-parameterized, {precision} "
                        f"weights{layout}", fn, stage=stage, sync="cpu" if on_cpu else "cuda", module=model)
        if x is not None:
            t = time.perf_counter()
            runner(x)
            runner.note = f"inductor, freezing; compiled in {time.perf_counter() - t:.0f} s"
        return runner

    def release(self) -> None:
        """Drop dynamo's compiled graphs (with freezing they hold a copy of the weights): the next group compiles
        for another shape or precision anyway."""
        import torch._dynamo

        torch._dynamo.reset()


# --- the runtimes: an ONNX file exported once per model and input size ---------------------------------------------

class _TempDir:
    def __init__(self) -> None:
        self.path = tempfile.mkdtemp(prefix="hgzoo-run-")

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _onnx_nodes(path: str) -> int | None:
    """The number of operators in the exported graph: equal counts for two models mean the same work."""
    try:
        import onnx

        return len(onnx.load(path, load_external_data=False).graph.node)
    except Exception:  # noqa: BLE001 - only a note
        return None


def onnx_file(model: nn.Module, img_size: int, cache: dict) -> str:
    """``model`` as ONNX (fp32, dynamic batch), exported once per ``cache`` and input size; ``cache["tmpdir"]``
    holds the folder (its ``close()`` removes it)."""
    key = f"onnx@{img_size}"
    if key not in cache:
        tmp = cache.setdefault("tmpdir", _TempDir())
        path = os.path.join(tmp.path, f"model-{img_size}.onnx")
        t = time.perf_counter()
        rt.write_onnx(model, path, img_size)
        cache[key], cache[key + ":seconds"], cache[key + ":nodes"] = path, time.perf_counter() - t, _onnx_nodes(path)
    return cache[key]


def _onnx_note(cache: dict, img_size: int) -> str:
    key = f"onnx@{img_size}"
    nodes, secs = cache.get(key + ":nodes"), cache.get(key + ":seconds")
    return (f"; {nodes} ONNX nodes" if nodes else "") + (f"; export {secs:.0f} s" if secs else "")


def _int8_skip() -> str | None:
    return None if rt.has_module("skimage") else "int8 is calibrated on scikit-image's photos: pip install scikit-image"


def _own_cache(cache: dict | None) -> tuple[dict, Callable[[], None] | None]:
    """``cache``, or a fresh one that the runner removes when it closes."""
    if cache is not None:
        return cache, None
    own: dict = {}
    return own, lambda: own["tmpdir"].close() if "tmpdir" in own else None


def _calibration(calibration: torch.Tensor | None) -> torch.Tensor:
    if calibration is None:
        raise BackendError("int8 needs calibration images: a few hundred real images like the ones the model will see")
    return calibration


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    format = "onnx"
    int8 = True
    description = ("re-parameterized model → torch.onnx export (dynamic batch) → ONNX Runtime CPU provider, all graph "
                   "optimizations; int8: quantize_static (QDQ, per-channel int8 weights, uint8 activations)")

    def unavailable(self):
        if not rt.has_module("onnxruntime"):
            return "onnxruntime is not installed (pip install onnxruntime, or hgzoo[bench])"
        if not rt.has_module("onnx"):
            return "onnx is not installed (pip install onnx onnxscript, or hgzoo[bench])"
        return None

    def precision_skip(self, precision):
        if precision == "int8":
            return _int8_skip()
        if precision != "fp32":
            return f"ONNX Runtime's CPU provider has no fast {precision} convolutions on x86 (use openvino)"
        return None

    def prepare(self, model, x, precision, *, threads=None, cache=None, calibration=None):
        import onnxruntime as ort

        if x is None:
            raise BackendError("the onnxruntime backend exports for an input size: give an example batch")
        cache, cleanup = _own_cache(cache)
        size = x.shape[-1]
        key = f"ort-session@{size}:{threads}:{precision}"
        if key not in cache:
            path = onnx_file(model, size, cache)
            if precision == "int8":
                path = cache.setdefault(f"onnx-int8@{size}", rt.quantize_onnx_int8(
                    path, path[:-len(".onnx")] + "-int8.onnx", _calibration(calibration)))
            cache[key] = rt.onnx_session(path, threads)
        sess = cache[key]
        compute = "ONNX Runtime CPU, " + ("int8 QDQ" if precision == "int8" else precision)
        return Runner(self.name, precision, compute, lambda xs: sess.run(None, {"x": xs})[0], stage=_as_numpy,
                      note=f"ORT {ort.__version__}" + _onnx_note(cache, size), cleanup=cleanup)


class OpenVinoBackend(Backend):
    name = "openvino"
    format = "openvino"
    int8 = True
    description = ("re-parameterized model → ONNX → OpenVINO CPU plugin, static shape, LATENCY hint, precision hint; "
                   "int8: NNCF post-training quantization (other ops f32)")
    # compute in the precision (fp16 too: a run computes in it, where an fp16 export only stores its weights so)
    HINTS = {**rt.OPENVINO_HINTS, "fp16": "f16"}

    def unavailable(self):
        if not rt.has_module("openvino"):
            return "openvino is not installed (pip install openvino, or hgzoo[bench])"
        return None

    def precision_skip(self, precision):
        if precision == "int8":
            nncf = None if rt.has_module("nncf") else "OpenVINO int8 is quantized by NNCF: pip install nncf"
            return _int8_skip() or nncf
        return super().precision_skip(precision)

    def prepare(self, model, x, precision, *, threads=None, cache=None, calibration=None):
        import openvino as ov

        if x is None:
            raise BackendError("the openvino backend compiles for one input shape: give an example batch")
        cache, cleanup = _own_cache(cache)
        core = cache.setdefault("ov-core", ov.Core())
        try:
            ov_model, source = core.read_model(onnx_file(model, x.shape[-1], cache)), "ONNX"
        except Exception:  # noqa: BLE001 - no ONNX exporter: convert the PyTorch model directly
            with rt.quiet():
                ov_model, source = ov.convert_model(model, example_input=x), "PyTorch frontend"
        if precision == "int8":
            ov_model.reshape([-1, *[int(d) for d in x.shape[1:]]])
            ov_model = rt.quantize_openvino_int8(ov_model, _calibration(calibration))
            source += ", NNCF int8"
        ov_model.reshape([int(d) for d in x.shape])
        config = {"INFERENCE_PRECISION_HINT": self.HINTS[precision], "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        compiled = core.compile_model(ov_model, "CPU", config)
        request, port = compiled.create_infer_request(), compiled.output(0)
        compute = f"OpenVINO CPU, INFERENCE_PRECISION_HINT {self.HINTS[precision]}"
        return Runner(self.name, precision, compute, lambda xs: request.infer({0: xs}, share_inputs=True)[port],
                      stage=_as_numpy, note=f"OpenVINO {ov.__version__.split('-')[0]} from {source}"
                      + _onnx_note(cache, x.shape[-1]), cleanup=cleanup)


for _backend in (EagerBackend(), ReparamBackend(), CompileBackend(), TorchScriptBackend(), OnnxRuntimeBackend(),
                 OpenVinoBackend()):
    register_backend(_backend)
