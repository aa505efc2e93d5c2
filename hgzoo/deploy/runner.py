"""Run a classifier on one backend of :data:`~hgzoo.deploy.backends.BACKENDS` at one precision: a torch backend
(eager, reparam, compile, torchscript) on the model, or ONNX Runtime or OpenVINO on the verified file that
:func:`~hgzoo.deploy.export` writes (or one given with ``deployed=``).

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

import copy
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .._registry import resolve_model_name
from ..checkpoint import input_channels
from ..layers import reparameterize
from . import runtimes as rt
from .api import EXTENSIONS, ExportReport, describe_compute, export, unsupported_reason
from .backends import (
    BACKENDS,
    BackendError,
    CompileBackend,
    EagerBackend,
    ReparamBackend,
    Runner,
    TorchScriptBackend,
    get_backend,
)

__all__ = ["BACKENDS", "RUN_PRECISIONS", "Runner", "BackendError", "backend_of_file", "check_request",
           "resolve_deployed", "check_deployed", "prepare"]

#: The precisions ``validate.py`` and ``predict`` run at (a benchmark adds fp16: :data:`hgzoo.deploy.PRECISIONS`).
RUN_PRECISIONS = ("fp32", "bf16", "int8")
_BACKEND_OF_SUFFIX = {".onnx": "onnxruntime", ".xml": "openvino"}


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
    fmt = BACKENDS[backend].format
    if fmt is None:  # torch runs the model
        if precision == "int8":
            raise BackendError(f"--backend {backend} has no int8 path (torch's eager int8 quantization is deprecated): "
                               "use --backend openvino or onnxruntime with --precision int8 --calibration DIR")
        return
    reason = unsupported_reason(fmt, precision)
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
    missing = rt.missing_package(BACKENDS[found].format, "fp32")
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


def _torch(model: nn.Module, backend: str, precision: str, *, reparam: bool, channels_last: bool,
           device: str) -> Runner:
    """A torch backend on a copy of ``model`` (re-parameterized where the backend runs that form, or ``reparam``),
    with ``channels_last`` and on ``device``: the library's torch backends take both; another runs as registered."""
    b = get_backend(backend)
    reparam = reparam or b.reparameterized
    model = copy.deepcopy(model).eval()
    if reparam:
        reparameterize(model)
    if type(b) in (EagerBackend, ReparamBackend, CompileBackend, TorchScriptBackend):
        b = type(b)(device, channels_last=channels_last)
    runner = b.prepare(model, None, precision)
    if reparam and not b.reparameterized:
        head, _, rest = runner.compute.partition(", ")
        runner.compute = ", ".join([head, "re-parameterized"] + ([rest] if rest else []))
    return runner


def _from_predictor(predictor: rt.Predictor, backend: str, report: ExportReport | None,
                    cleanup: Callable[[], None] | None = None) -> Runner:
    precision = predictor.precision or "fp32"
    compute = report.compute if report is not None else describe_compute(BACKENDS[backend].format, precision)
    return Runner(backend, precision, compute, predictor, fetch=torch.from_numpy, file=predictor.path, report=report,
                  meta=predictor.meta, cleanup=cleanup)


def _export_here(model: nn.Module, backend: str, precision: str, *, calibration: object, calibration_size: int,
                 data_config: dict, output: Path, threads: int | None,
                 min_top1_agreement: float | None) -> tuple[rt.Predictor, ExportReport]:
    """Export and verify ``model`` into ``output``, then load the verified file."""
    report = export(model, BACKENDS[backend].format, precision, output=output, calibration=calibration,
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

    The torch backends (eager, reparam, compile, torchscript: those of :data:`BACKENDS` without a ``format``) run a
    copy of ``model``. The runtimes run ``deployed`` (its backend and precision are the
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
    fmt = BACKENDS[backend].format
    if fmt is None:
        return _torch(model, backend, precision, reparam=reparam, channels_last=channels_last, device=str(device))
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
