"""How the benchmark runs a :class:`~benchmarks.harness.subjects.Subject` on a backend of hgzoo's one vocabulary
(:data:`hgzoo.deploy.BACKENDS`: eager, reparam, compile, torchscript, onnxruntime, openvino from the library;
cuda, cuda-compile, cuda-torchscript and tensorrt registered by :mod:`.gpu`), and what int8 is calibrated and checked
on.

Every backend accepts any subject (hgzoo or timm), so a peer model goes through exactly the same path: a backend
that runs the re-parameterized model gets the subject's deployment form (timm's own re-parameterization for a timm
model), and its exported files are kept in the subject's cache for the other batch sizes.
"""
from __future__ import annotations

import functools
import re

import torch

from hgzoo.deploy import Backend, Runner

from .subjects import Subject

__all__ = ["prepare_subject", "is_oom", "int8_images", "INT8_CALIBRATION"]

#: How the int8 backends are calibrated, and what their outputs are checked on (the report's method section).
INT8_CALIBRATION = ("scikit-image's 7 photos × 3 crops × 2 flips (42 images), 256/224 bilinear resize-crop, ImageNet "
                    "mean/std: enough for timing, not a representative calibration set")


@functools.lru_cache(maxsize=4)
def int8_images(img_size: int) -> torch.Tensor:
    """The real images int8 is calibrated and checked on at ``img_size`` (see :data:`INT8_CALIBRATION`)."""
    from hgzoo.deploy import eval_transform, sample_photo_views

    tf = eval_transform(None, img_size)
    return torch.stack([tf(v) for v in sample_photo_views()])


def prepare_subject(backend: Backend, subject: Subject, x: torch.Tensor, precision: str, threads: int) -> Runner:
    """``backend``'s :class:`~hgzoo.deploy.Runner` of ``subject`` at ``precision``, bound to the batch ``x``."""
    model = subject.deploy_model() if backend.reparameterized else subject.model
    calibration = int8_images(x.shape[-1]) if precision == "int8" else None
    runner = backend.prepare(model, x, precision, threads=threads, cache=subject.cache, calibration=calibration)
    return runner.bind(x)


def is_oom(exc: BaseException) -> bool:
    """True for an out-of-memory error from torch (CPU or CUDA), ONNX Runtime or OpenVINO."""
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    msg = str(exc).lower()
    return bool(re.search(r"out of memory|can't allocate memory|cannot allocate memory|bad_alloc|bad allocation"
                          r"|failed to allocate|not enough memory", msg))
