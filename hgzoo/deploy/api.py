"""``export``: re-parameterize, export, verify against eager fp32 on real images, then move into place."""
from __future__ import annotations

import copy
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from .._files import write_failure
from ..layers import reparameterize
from ..preprocessing import resolve_preprocessing
from ..pretrained import PretrainedCfg
from . import runtimes as rt
from .images import ImageSource, eval_transform, image_set, split_indices

__all__ = [
    "export", "ExportReport", "ExportError", "ExportVerificationError", "FORMATS", "PRECISIONS", "EXTENSIONS",
    "FP32_MAX_REL_ERR", "MIN_TOP1_AGREEMENT", "unsupported_reason", "describe_compute", "agreement", "verdict",
]

FORMATS = ("onnx", "openvino", "torchscript")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
EXTENSIONS = {"onnx": ".onnx", "openvino": ".xml", "torchscript": ".pt"}

#: fp32 must match eager fp32 to within this relative error (max |Δ| / max |reference|), the parity bar.
FP32_MAX_REL_ERR = 1e-4
#: Lower precisions are judged by how often their top-1 class equals eager fp32's on the verification images.
#: Their logits' errors are reported, not judged: how far they move depends on the weights, not on the export.
MIN_TOP1_AGREEMENT = {"fp16": 0.97, "bf16": 0.95, "int8": 0.90}


class ExportError(ValueError):
    """An export that cannot be made as asked (unsupported precision, missing calibration, ...)."""


class ExportVerificationError(RuntimeError):
    """The exported model disagrees with the eager fp32 model beyond the tolerance; ``.report`` has the figures."""

    def __init__(self, message: str, report: "ExportReport") -> None:
        super().__init__(message)
        self.report = report


@dataclass
class ExportReport:
    """What was exported and how closely it matches the eager fp32 model on real images."""

    path: str
    format: str
    precision: str
    compute: str  # what actually runs, in words
    files: list[str]
    img_size: int
    in_chans: int
    dynamic_batch: bool
    verified: bool
    n_images: int = 0
    images: str = ""  # where the verification images came from
    max_abs_err: float | None = None
    max_rel_err: float | None = None  # max |Δ| / max |eager fp32|, over all images and classes
    top1_agreement: float | None = None  # share of images whose top-1 class equals eager fp32's
    criterion: str = ""
    passed: bool | None = None
    calibration: str = ""
    n_calibration: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def __str__(self) -> str:
        def f(v: float | None, spec: str) -> str:
            return "-" if v is None else format(v, spec)

        status = "not verified" if not self.verified else ("PASSED" if self.passed else "FAILED")
        written = self.path if self.files else f"not written ({self.path})"
        lines = [
            f"hgzoo export: {status}",
            f"  file            {written}" + (f" (+ {', '.join(Path(p).name for p in self.files[1:])})"
                                               if len(self.files) > 1 else ""),
            f"  format          {self.format}, {self.precision}: {self.compute}",
            f"  input           (N, {self.in_chans}, {self.img_size}, {self.img_size}), "
            + ("dynamic batch" if self.dynamic_batch else "batch 1"),
        ]
        if self.n_calibration:
            lines.append(f"  calibration     {self.n_calibration} images: {self.calibration}")
        if self.verified:
            lines += [
                f"  verified on     {self.n_images} images: {self.images}",
                f"  top-1 agreement {f(self.top1_agreement, '.2%')} with eager fp32",
                f"  max abs err     {f(self.max_abs_err, '.3g')}",
                f"  max rel err     {f(self.max_rel_err, '.3g')} (max |diff| / max |eager fp32 logit|)",
                f"  criterion       {self.criterion}",
            ]
        lines += [f"  note            {n}" for n in self.notes]
        lines.append(f"  took            {self.seconds:.1f} s")
        return "\n".join(lines)


def describe_compute(fmt: str, precision: str) -> str:
    """What an exported model computes in, in words (the report's ``compute``)."""
    return {
        ("onnx", "fp32"): "fp32, ONNX Runtime",
        ("onnx", "fp16"): "fp16 weights and activations (fp32 input/output), for ONNX Runtime's CUDA provider, "
                          "TensorRT",
        ("onnx", "int8"): "int8 QDQ (ONNX Runtime quantize_static: per-channel int8 weights, uint8 activations)",
        ("openvino", "fp32"): "fp32 (compile with INFERENCE_PRECISION_HINT f32)",
        ("openvino", "bf16"): "bf16 compute (compile with INFERENCE_PRECISION_HINT bf16), fp32 weights in the file",
        ("openvino", "fp16"): "fp16 weights in the file (half the size), decompressed at load: fp32 compute on CPU",
        ("openvino", "int8"): "int8 (NNCF post-training quantization), the other ops in fp32 (hint f32)",
        ("torchscript", "fp32"): "fp32, frozen TorchScript trace",
        ("torchscript", "bf16"): "bf16 weights and compute (frozen trace; fp32 input/output)",
        ("torchscript", "fp16"): "fp16 weights and compute (frozen trace; fp32 input/output)",
    }[(fmt, precision)]


def _torch_fp16_device() -> str | None:
    if torch.cuda.is_available():
        return "cuda"
    if torch.ops.mkldnn._is_mkldnn_fp16_supported():
        return "cpu"
    return None


def _torch_bf16_native() -> bool:
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def unsupported_reason(fmt: str, precision: str) -> str | None:
    """Why this machine cannot export and verify ``fmt`` at ``precision`` (naming the fallback), or None."""
    if fmt not in FORMATS:
        return f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}"
    if precision not in PRECISIONS:
        return f"unknown precision {precision!r}; precisions: {', '.join(PRECISIONS)}"
    pip = rt.missing_package(fmt, precision)
    if pip:
        return f"format={fmt!r} precision={precision!r} needs packages that are not installed: {pip}"
    if fmt == "onnx":
        if precision == "bf16":
            return ("ONNX Runtime's CPU provider has no bf16 kernels for these models: use format='openvino', "
                    "precision='bf16' (OpenVINO runs bf16 natively on CPUs with AVX512-BF16/AMX), or "
                    "format='torchscript', precision='bf16'")
        if precision == "fp16" and not rt.ort_cuda_available():
            return ("fp16 ONNX runs in fp16 only on a GPU (onnxruntime-gpu's CUDA provider); this machine has none, "
                    "and ONNX Runtime's CPU provider would cast back to fp32 around most ops. Fallbacks: "
                    "format='openvino', precision='bf16' (on CPUs with AVX512-BF16/AMX), format='openvino', "
                    "precision='fp16' (fp16 weights, fp32 compute), or precision='int8'")
    if fmt == "openvino" and precision == "bf16" and not rt.openvino_has_bf16():
        return ("this CPU has no native bf16 (needs AVX512-BF16 or AMX): OpenVINO would silently run fp32. Fallbacks: "
                "precision='fp32', or precision='int8' (calibrated)")
    if fmt == "torchscript":
        if precision == "int8":
            return ("int8 TorchScript is not supported (torch's eager int8 quantization is deprecated): use "
                    "format='onnx' (ONNX Runtime) or format='openvino' (NNCF) with precision='int8'")
        if precision == "bf16" and not _torch_bf16_native():
            return ("this CPU has no native bf16 (needs AVX512-BF16 or AMX); torch would emulate it slowly. Fallbacks: "
                    "precision='fp32', or format='onnx'/'openvino' with precision='int8'")
        if precision == "fp16" and _torch_fp16_device() is None:
            return ("fp16 TorchScript needs a CUDA GPU or a CPU with native fp16 (AVX512-FP16/AMX-FP16); this machine "
                    "has neither. Fallbacks: precision='bf16' (on CPUs with AVX512-BF16/AMX), or format='openvino', "
                    "precision='fp16' (fp16 weights, fp32 compute)")
    return None


def agreement(out: np.ndarray, ref: np.ndarray) -> dict:
    """Max abs error, relative error (max |Δ| / max |ref|) and top-1 agreement of ``out`` against ``ref``."""
    out = np.asarray(out, dtype=np.float64).reshape(ref.shape)
    ref = np.asarray(ref, dtype=np.float64)
    if not np.all(np.isfinite(out)):
        return {"max_abs_err": math.inf, "max_rel_err": math.inf, "top1_agreement": 0.0, "finite": False}
    abs_err = float(np.abs(out - ref).max()) if out.size else 0.0
    top1 = float((out.argmax(-1) == ref.argmax(-1)).mean()) if ref.ndim == 2 else 1.0
    return {"max_abs_err": abs_err, "max_rel_err": abs_err / max(float(np.abs(ref).max()), 1e-12),
            "top1_agreement": top1, "finite": True}


def verdict(precision: str, stats: dict, min_top1_agreement: float | None = None,
            max_rel_err: float | None = None) -> tuple[bool, str]:
    """Whether an export at ``precision`` whose :func:`agreement` with eager fp32 is ``stats`` passes, and the
    criterion in words: fp32 by relative error (:data:`FP32_MAX_REL_ERR`), the lower precisions by top-1
    agreement (:data:`MIN_TOP1_AGREEMENT`). Non-finite outputs never pass."""
    if precision == "fp32":
        bound = FP32_MAX_REL_ERR if max_rel_err is None else max_rel_err
        return bool(stats["finite"] and stats["max_rel_err"] <= bound), f"max rel err <= {bound:.0e}"
    bound = MIN_TOP1_AGREEMENT[precision] if min_top1_agreement is None else min_top1_agreement
    return bool(stats["finite"] and stats["top1_agreement"] >= bound), f"top-1 agreement >= {bound:.0%}"


@dataclass(frozen=True)
class _Plan:
    """One export request, checked and resolved: what to write, where, for which input and preprocessing."""

    format: str
    precision: str
    output: Path
    img_size: int
    in_chans: int
    dynamic_batch: bool
    transform: Callable
    meta: dict  # stored in the file, for hgzoo.deploy.load and for the reader


def _default_output(model: nn.Module, fmt: str, precision: str) -> Path:
    name = getattr(getattr(model, "pretrained_cfg", None), "architecture", None) or type(model).__name__.lower()
    return Path(f"{name}-{precision}{EXTENSIONS[fmt]}")


def _plan(model: nn.Module, fmt: str, precision: str, output: str | os.PathLike | None, calibration: object,
          calibration_size: int, verify_size: int, dynamic_batch: bool, img_size: int | None, in_chans: int | None,
          transform: Callable | None, data_config: dict | None) -> _Plan:
    """Check the request before any work (:class:`ExportError`, or ``TypeError`` for clashing arguments)."""
    reason = unsupported_reason(fmt, precision)
    if reason:
        raise ExportError(reason)
    if precision == "int8" and calibration is None:
        raise ExportError("int8 needs calibration images: pass calibration= a folder of a few hundred real images, "
                          "an image list, a Dataset or a tensor, from the data the model will see "
                          "(CLI: --calibration DIR_OR_LIST)")
    if transform is not None and data_config is not None:
        raise TypeError("pass either transform= or data_config= (overrides of the default transform), not both")
    if calibration_size < 1 or verify_size < 1:
        raise ExportError(f"calibration_size and verify_size must be positive, got {calibration_size}, {verify_size}")
    for name, value in (("img_size", img_size), ("in_chans", in_chans)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ExportError(f"{name} must be a whole number >= 1, got {value!r}")
    pcfg = getattr(model, "pretrained_cfg", None)
    pcfg = pcfg if isinstance(pcfg, PretrainedCfg) else None  # e.g. timm's dicts: PaddleClas's defaults
    in_chans = in_chans or rt.input_channels(model)
    img_size = img_size or getattr(pcfg, "crop_size", None) or 224
    tf = transform or eval_transform(pcfg, img_size, in_chans, data_config)
    output = Path(output) if output is not None else _default_output(model, fmt, precision)
    if output.suffix.lower() != EXTENSIONS[fmt]:
        raise ExportError(f"output {output} should end in {EXTENSIONS[fmt]} for format={fmt!r}")
    if not output.parent.exists():
        raise ExportError(f"output folder {output.parent} does not exist; create it first (mkdir -p {output.parent})")
    meta = {"model": getattr(pcfg, "architecture", None) or type(model).__name__, "format": fmt,
            "precision": precision, "img_size": img_size, "in_chans": in_chans, "dynamic_batch": dynamic_batch,
            "num_classes": getattr(model, "num_classes", None)}
    if transform is None:  # how the file's input is made, for hgzoo.deploy.load's users (validate.py, predict)
        dc = resolve_preprocessing(pcfg, None, in_chans, **{"crop_size": img_size, **(data_config or {})})
        meta.update(mean=list(dc["mean"]), std=list(dc["std"]),
                    data_config={k: (list(v) if isinstance(v, tuple) else v) for k, v in dc.items()})
    return _Plan(fmt, precision, output, img_size, in_chans, dynamic_batch, tf, meta)


def _select_images(calibration, calibration_size: int, verify, verify_size: int, int8: bool, tf: Callable,
                   seed: int) -> tuple[torch.Tensor | None, str, torch.Tensor | None, str, list[str]]:
    """The calibration batch (int8 only) and the verification batch, with their descriptions and notes.

    Verification images come from ``verify`` if it is a source; else from the calibration source, disjoint from the
    calibration images where it is large enough; else from scikit-image's photos."""
    cal_x, cal_desc, notes = None, "", []
    cal_set = image_set(calibration, tf) if calibration is not None else None
    ver_idx = None
    if cal_set is not None:
        cal_idx, ver_idx, overlap = split_indices(len(cal_set), calibration_size if int8 else 0, verify_size, seed)
        if int8:
            cal_x, cal_desc = cal_set.load(cal_idx), cal_set.description
            if len(cal_idx) < min(calibration_size, 100):
                notes.append(f"only {len(cal_idx)} calibration images: a few hundred represent the data better")
            if overlap and verify is True:
                notes.append("the calibration source is small: the verification images include calibration images")
    if verify is False:
        notes.append("verify=False: the file was NOT checked against the model")
        return cal_x, cal_desc, None, "", notes
    if verify is True and cal_set is not None:
        ver_set = cal_set
    else:
        ver_set = image_set(None if verify is True else verify, tf)
        ver_idx = split_indices(len(ver_set), 0, verify_size, seed)[1]
    return cal_x, cal_desc, ver_set.load(ver_idx), ver_set.description, notes


def _write_artifact(deploy: nn.Module, plan: _Plan, base: Path, calibration: torch.Tensor | None) -> list[str]:
    """Write the file(s) for ``plan`` at ``base`` (+ the format's extension), in a work folder; the first is the
    one to open."""
    fmt, precision, meta = plan.format, plan.precision, plan.meta
    path = base.with_suffix(EXTENSIONS[fmt])
    if fmt == "torchscript":
        device = _torch_fp16_device() if precision == "fp16" else "cpu"
        module = rt.trace_torchscript(deploy, precision, plan.in_chans, plan.img_size, device=device)
        return [rt.save_torchscript(module, path, {**meta, "device": device})]
    fp32_onnx = base.with_name(base.name + ".fp32.onnx")
    rt.write_onnx(deploy, fp32_onnx, plan.img_size, dynamic_batch=plan.dynamic_batch, in_chans=plan.in_chans)
    if fmt == "onnx":
        if precision == "fp32":
            fp32_onnx.replace(path)
        elif precision == "int8":
            rt.quantize_onnx_int8(fp32_onnx, path, calibration)
        elif precision == "fp16":
            rt.convert_onnx_fp16(fp32_onnx, path)
        rt.set_onnx_meta(path, meta)
        return [str(path)]
    ov_model = rt.openvino_model(fp32_onnx)
    if precision == "int8":
        ov_model = rt.quantize_openvino_int8(ov_model, calibration)
    return rt.save_openvino(ov_model, path, precision, meta)


def _eager_logits(model: nn.Module, x: torch.Tensor, batch: int = 32) -> np.ndarray:
    with torch.inference_mode():
        return torch.cat([model(x[i:i + batch]).float() for i in range(0, len(x), batch)]).numpy()


def _verify(report: ExportReport, file: str, reference: nn.Module, images: torch.Tensor, description: str,
            min_top1: float | None, max_rel: float | None, threads: int | None) -> None:
    """Run ``images`` through the written file and the eager fp32 model; fill ``report`` with the figures and the
    verdict (see :func:`verdict`)."""
    stats = agreement(rt.load(file, threads=threads)(images), _eager_logits(reference, images))
    report.n_images, report.images = len(images), description
    report.max_abs_err, report.max_rel_err = stats["max_abs_err"], stats["max_rel_err"]
    report.top1_agreement = stats["top1_agreement"]
    report.passed, report.criterion = verdict(report.precision, stats, min_top1, max_rel)
    if report.precision != "fp32":
        report.criterion += " (logit errors reported, not judged)"


def _refuse(report: ExportReport) -> ExportVerificationError:
    """The error for a file that failed verification: its figures, and what to try."""
    hint = ("Try more representative calibration images, or a higher precision; min_top1_agreement= sets the bound."
            if report.precision != "fp32" else
            "This is a bug in the export path: please report it with the model name.")
    return ExportVerificationError(
        f"the exported {report.format} {report.precision} model disagrees with the eager fp32 model on "
        f"{report.n_images} images ({report.images}): top-1 agreement {report.top1_agreement:.1%}, max abs err "
        f"{report.max_abs_err:.3g}, max rel err {report.max_rel_err:.3g}; required: {report.criterion}. "
        f"Nothing was written to {report.path}. {hint}", report)


def _move_into_place(files: list[str], output: Path) -> list[str]:
    """Rename the verified files to ``output`` (and its companions): the companion files first, the file that
    is opened last."""
    targets = [output.with_suffix(Path(f).suffix) for f in files]
    for src, dst in reversed(list(zip(files, targets))):
        os.replace(src, dst)
    return [str(t) for t in targets]


def export(
    model: nn.Module,
    format: str = "onnx",  # noqa: A002 - the natural name, as in torch.onnx / timm
    precision: str = "fp32",
    *,
    output: str | os.PathLike | None = None,
    calibration: ImageSource | None = None,
    calibration_size: int = 300,
    verify: bool | ImageSource = True,
    verify_size: int = 64,
    dynamic_batch: bool = True,
    img_size: int | None = None,
    in_chans: int | None = None,
    transform: Callable | None = None,
    data_config: dict | None = None,
    min_top1_agreement: float | None = None,
    max_rel_err: float | None = None,
    threads: int | None = None,
    seed: int = 0,
) -> ExportReport:
    """Export ``model`` for deployment and check the file against the model itself.

    The model is copied and re-parameterized (conv+BN fused, branches merged); the caller's model is not
    changed. The artifact is written to a temporary file beside ``output``, loaded in its runtime, compared
    with the eager fp32 model on real images, and renamed to ``output`` only if it agrees. Otherwise
    :class:`ExportVerificationError` is raised with the figures and nothing is left at ``output``.

    Args:
        model: the model to export (any image classifier taking (N, C, H, W) float32).
        format: ``"onnx"`` (.onnx), ``"openvino"`` (.xml + .bin IR) or ``"torchscript"`` (.pt).
        precision: ``"fp32"``, ``"fp16"``, ``"bf16"`` or ``"int8"`` (see :func:`describe_compute`;
            :func:`unsupported_reason` says what this machine cannot do, and the fallback).
        output: the file to write (default: ``<architecture>-<precision><ext>`` in the current folder).
        calibration: real images for int8 (required for int8): a folder, an image/label list file, a
            ``Dataset``, an (N, C, H, W) tensor or a list of paths. ``calibration_size`` of them are used.
        verify: ``True`` (default): verify on ``verify_size`` images of the calibration source, disjoint
            from the calibration images where the source is large enough, or scikit-image's photos
            (+ crops and flips) without one; an image source: verify on that; ``False``: skip (not advised).
        dynamic_batch: a dynamic batch axis (ONNX, OpenVINO); else a fixed batch of 1.
        img_size, in_chans: the input (default: the pretrained config's crop size, the stem's channels).
        transform: the preprocessing of the calibration/verification images (uint8 (C, H, W) → float);
            default: the model's pretrained config's eval preprocessing at ``img_size``, with ``data_config``
            overrides (``mean``, ``std``, ``resize_short``, ``interpolation``, ...).
        min_top1_agreement: the bound for fp16/bf16/int8 (default :data:`MIN_TOP1_AGREEMENT`).
        max_rel_err: the bound for fp32 (default :data:`FP32_MAX_REL_ERR`).
    """
    t_start = time.perf_counter()
    plan = _plan(model, format, precision, output, calibration, calibration_size, verify_size, dynamic_batch,
                 img_size, in_chans, transform, data_config)
    cal_x, cal_desc, ver_x, ver_desc, notes = _select_images(calibration, calibration_size, verify, verify_size,
                                                             precision == "int8", plan.transform, seed)
    if ver_x is not None and ver_x.shape[1:] != (plan.in_chans, plan.img_size, plan.img_size):
        raise ExportError(f"the verification images are {tuple(ver_x.shape[1:])} after preprocessing; the export "
                          f"takes ({plan.in_chans}, {plan.img_size}, {plan.img_size}): check transform/img_size")
    if format == "openvino":
        notes.append(f"run it with hgzoo.deploy.load, or core.compile_model(xml, 'CPU', {{'INFERENCE_PRECISION_HINT': "
                     f"'{rt.OPENVINO_HINTS[precision]}'}}): OpenVINO's CPU default is bf16 on CPUs that have it")
    report = ExportReport(str(plan.output), format, precision, describe_compute(format, precision), [],
                          plan.img_size, plan.in_chans, dynamic_batch, verified=verify is not False,
                          calibration=cal_desc, n_calibration=0 if cal_x is None else len(cal_x), notes=notes)
    workdir = None
    try:
        workdir = Path(tempfile.mkdtemp(prefix=f".{plan.output.name}.", dir=plan.output.parent))
        deploy = reparameterize(copy.deepcopy(model).float().cpu())
        files = _write_artifact(deploy, plan, workdir / plan.output.stem, cal_x)
        if ver_x is not None:
            _verify(report, files[0], copy.deepcopy(model).float().cpu().eval(), ver_x, ver_desc,
                    min_top1_agreement, max_rel_err, threads)
            if not report.passed:
                report.seconds = time.perf_counter() - t_start
                raise _refuse(report)
        report.files = _move_into_place(files, plan.output)
    except Exception as e:
        cause = write_failure(e)  # a full disk, a size limit, a read-only folder: name the file asked for
        if cause is not None:
            raise OSError(cause.errno, os.strerror(cause.errno), str(plan.output)) from None
        raise
    finally:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
    report.seconds = time.perf_counter() - t_start
    return report
