"""Run a classifier on one backend at one precision: torch eager, ``torch.compile``, or the verified file that
:func:`~hgzoo.deploy.export` writes for ONNX Runtime or OpenVINO (or one given with ``deployed=``).

``validate.py`` and ``python -m hgzoo predict`` run their batches through a :class:`Runner`, so the accuracy they
report is the accuracy of the file a user ships::

    runner = prepare(model, "openvino", "int8", calibration="calib/", data_config=dc)   # export + verify
    logits = runner(batch)                  # float32 (N, C, H, W) -> float32 logits tensor
    runner.file, runner.report              # the file used; the export's verification report
    runner.close()                          # removes a file exported into a temporary folder

A ``deployed=`` file is checked against the model before it runs: its input and output shapes, and the model
name, classes and precision :func:`~hgzoo.deploy.export` stored in it.
"""
from __future__ import annotations

import contextlib
import copy
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .._registry import resolve_model_name
from ..checkpoint import input_channels
from ..layers import reparameterize
from . import runtimes as rt
from .api import EXTENSIONS, ExportReport, describe_compute, export, unsupported_reason

__all__ = ["BACKENDS", "RUN_PRECISIONS", "Runner", "BackendError", "backend_of_file", "check_request",
           "resolve_deployed", "check_deployed", "prepare"]

BACKENDS = ("eager", "compile", "onnxruntime", "openvino")
RUN_PRECISIONS = ("fp32", "bf16", "int8")
FORMAT_OF_BACKEND = {"onnxruntime": "onnx", "openvino": "openvino"}
_BACKEND_OF_SUFFIX = {".onnx": "onnxruntime", ".xml": "openvino"}


class BackendError(ValueError):
    """A backend, precision or deployed file that cannot serve the request (bad input: the message says why)."""


@dataclass
class Runner:
    """A model ready to run: ``runner(x)`` takes a float32 (N, C, H, W) tensor and returns float32 logits."""

    backend: str
    precision: str
    compute: str  # what computes, in words
    fn: Callable[[torch.Tensor], torch.Tensor]
    file: str | None = None  # the deployed file (None for eager and compile)
    report: ExportReport | None = None  # the export's verification, when this run exported the file
    meta: dict = field(default_factory=dict)  # what the file says about itself
    cleanup: Callable[[], None] | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

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
                "export_top1_agreement": self.report.top1_agreement if self.report is not None else None,
                "export_verified_on": self.report.images if self.report is not None else None}


def backend_of_file(path: str | os.PathLike) -> str:
    """The backend that runs a deployed file, from its suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in _BACKEND_OF_SUFFIX:
        raise BackendError(f"--deployed {path}: expected an .onnx (ONNX Runtime) or .xml (OpenVINO) file written by "
                           "python -m hgzoo export")
    return _BACKEND_OF_SUFFIX[suffix]


def check_request(backend: str, precision: str, calibration: object = None) -> None:
    """Refuse, before any work, what cannot run here: int8 in torch, int8 without calibration images, a runtime
    that is not installed, a precision the runtime has no kernels for."""
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; backends: {', '.join(BACKENDS)}")
    if precision not in RUN_PRECISIONS:
        raise BackendError(f"unknown precision {precision!r}; precisions: {', '.join(RUN_PRECISIONS)}")
    if backend in ("eager", "compile"):
        if precision == "int8":
            raise BackendError(f"--backend {backend} has no int8 path (torch's eager int8 quantization is deprecated): "
                               "use --backend openvino or onnxruntime with --precision int8 --calibration DIR")
        return
    reason = unsupported_reason(FORMAT_OF_BACKEND[backend], precision)
    if reason:
        raise BackendError(f"--backend {backend} --precision {precision}: {reason}")
    if precision == "int8" and calibration is None:
        raise BackendError("--precision int8 needs --calibration DIR: a few hundred real images like the ones the "
                           "model will see (or --deployed FILE, an int8 file exported before)")


def resolve_deployed(path: str | os.PathLike, backend: str | None) -> str:
    """The backend of a ``--deployed`` file (from its suffix); ``backend``, if given, must agree."""
    found = backend_of_file(path)
    if backend is not None and backend != found:
        raise BackendError(f"--deployed {path} is a file for {found}, not for --backend {backend}")
    if not Path(path).is_file():
        raise FileNotFoundError(f"--deployed {path} not found")
    missing = rt.missing_package(FORMAT_OF_BACKEND[found], "fp32")
    if missing:
        raise BackendError(f"--deployed {path} needs packages that are not installed: {missing}")
    return found


def _arch(name: str) -> str | None:
    try:
        return resolve_model_name(name)[0]
    except ValueError:
        return None


def check_deployed(predictor: rt.Predictor, *, model: nn.Module | None, in_chans: int, img_size: int,
                   precision: str | None) -> None:
    """Refuse a deployed file that is not the model asked for: its shapes, and what export stored in it."""
    meta, problems = predictor.meta, []
    shape = predictor.input_shape
    if shape is not None and len(shape) == 4 and tuple(shape[1:]) != (in_chans, img_size, img_size):
        dims = ", ".join("N" if d is None else str(d) for d in shape)
        problems.append(f"it takes input ({dims}), the model (N, {in_chans}, {img_size}, {img_size})")
    classes = getattr(model, "num_classes", None)
    out = predictor.output_shape
    if classes is not None and out is not None and len(out) == 2 and out[1] not in (None, classes):
        problems.append(f"it outputs {out[1]} classes, the model {classes}")
    elif classes is not None and meta.get("num_classes") not in (None, classes):
        problems.append(f"it was exported from a model with {meta['num_classes']} classes, not {classes}")
    ours = getattr(getattr(model, "pretrained_cfg", None), "architecture", None)
    theirs = meta.get("model")
    if ours and theirs and _arch(theirs) and _arch(theirs) != _arch(ours):
        problems.append(f"it was exported from {theirs}, not {ours}")
    if precision is not None and meta.get("precision") not in (None, precision):
        problems.append(f"it is a {meta['precision']} file, not {precision}")
    if problems:
        raise BackendError(f"--deployed {predictor.path} does not match: " + "; ".join(problems))


def _eager(model: nn.Module, precision: str, *, compile: bool, reparam: bool, channels_last: bool,
           device: torch.device) -> Runner:
    """torch eager (or ``torch.compile``, re-parameterized) at fp32, or bf16 autocast (fp16 on CUDA)."""
    model = copy.deepcopy(model).eval().to(device)
    if reparam or compile:
        reparameterize(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    autocast = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if precision == "bf16" else contextlib.nullcontext
    net = torch.compile(model, dynamic=False) if compile else model
    fixed: list[int] = []  # compile: one batch size, so that a short last batch does not recompile

    def run(x: torch.Tensor) -> torch.Tensor:
        n = len(x)
        x = x.to(device, non_blocking=True)
        if compile:
            if not fixed:
                fixed.append(n)
            if n < fixed[0]:
                x = torch.cat([x, x[-1:].expand(fixed[0] - n, *x.shape[1:])])
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), autocast():
            return net(x)[:n].float().cpu()

    parts = ["torch.compile (inductor)" if compile else "torch eager"]
    parts += ["re-parameterized"] if reparam or compile else []
    parts += [f"{'fp16' if device.type == 'cuda' else 'bf16'} autocast" if precision == "bf16" else "fp32"]
    parts += ["channels-last"] if channels_last else []
    return Runner("compile" if compile else "eager", precision, ", ".join(parts), run)


def _from_predictor(predictor: rt.Predictor, backend: str, report: ExportReport | None,
                    cleanup: Callable[[], None] | None = None) -> Runner:
    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(predictor(x))

    precision = predictor.precision or "fp32"
    compute = report.compute if report is not None else describe_compute(FORMAT_OF_BACKEND[backend], precision)
    return Runner(backend, precision, compute, run, predictor.path, report, predictor.meta, cleanup)


def _export_here(model: nn.Module, backend: str, precision: str, *, calibration: object, calibration_size: int,
                 data_config: dict, output: Path, threads: int | None,
                 min_top1_agreement: float | None) -> tuple[rt.Predictor, ExportReport]:
    """Export and verify ``model`` into ``output``, then load the verified file."""
    report = export(model, FORMAT_OF_BACKEND[backend], precision, output=output, calibration=calibration,
                    calibration_size=calibration_size, img_size=data_config["crop_size"],
                    in_chans=input_channels(model), data_config=data_config, threads=threads,
                    min_top1_agreement=min_top1_agreement)
    return rt.load(report.path, threads=threads), report


def prepare(model: nn.Module | None, backend: str | None, precision: str | None, *, data_config: dict,
            calibration: object = None, calibration_size: int = 300, deployed: str | os.PathLike | None = None,
            save_to: str | os.PathLike | None = None, threads: int | None = None, reparam: bool = False,
            channels_last: bool = False, device: str | torch.device = "cpu",
            min_top1_agreement: float | None = None) -> Runner:
    """A :class:`Runner` for ``model`` on ``backend`` (default eager) at ``precision`` (default fp32).

    Eager and compile run a copy of ``model``. The runtimes run ``deployed`` (its backend and precision are the
    file's; given ones must agree, and the file must match ``model``), or a file exported and verified now, at
    ``save_to`` or in a temporary folder that :meth:`Runner.close` removes (``min_top1_agreement``: the
    export's bound for bf16/int8, see :func:`~hgzoo.deploy.export`).
    """
    if deployed is not None:
        backend = resolve_deployed(deployed, backend)
        predictor = rt.load(deployed, threads=threads)
        check_deployed(predictor, model=model, img_size=data_config["crop_size"],
                       in_chans=input_channels(model) if model is not None else predictor.meta.get("in_chans", 3),
                       precision=precision)
        return _from_predictor(predictor, backend, None)
    backend, precision = backend or "eager", precision or "fp32"
    check_request(backend, precision, calibration)
    if model is None:
        raise BackendError(f"--backend {backend} needs the model: give --pretrained or --checkpoint")
    if backend in ("eager", "compile"):
        return _eager(model, precision, compile=backend == "compile", reparam=reparam, channels_last=channels_last,
                      device=torch.device(device))
    fmt = FORMAT_OF_BACKEND[backend]
    folder = None if save_to is not None else Path(tempfile.mkdtemp(prefix="hgzoo-deploy-"))
    output = Path(save_to) if save_to is not None else folder / f"model-{precision}{EXTENSIONS[fmt]}"
    try:
        predictor, report = _export_here(model, backend, precision, calibration=calibration,
                                         calibration_size=calibration_size, data_config=data_config, output=output,
                                         threads=threads, min_top1_agreement=min_top1_agreement)
    except BaseException:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    cleanup = (lambda: shutil.rmtree(folder, ignore_errors=True)) if folder is not None else None
    return _from_predictor(predictor, backend, report, cleanup)
