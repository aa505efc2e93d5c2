"""Deployment: re-parameterization, and export to ONNX / OpenVINO / TorchScript at fp32, fp16, bf16 or int8,
verified against the eager fp32 model on real images.

    import hgzoo
    model = hgzoo.create_model("pphgnet_small", pretrained=True)
    report = hgzoo.deploy.export(model, format="openvino", precision="int8", calibration="calib_images/",
                                 output="pphgnet_small-int8.xml")
    print(report)                                   # top-1 agreement with fp32, errors, what runs
    predictor = hgzoo.deploy.load("pphgnet_small-int8.xml")
    logits = predictor(batch)                       # float32 (N, 3, 224, 224) -> numpy logits

``python -m hgzoo export --help`` is the command line. :mod:`hgzoo.deploy.backends` names the backends a model runs
on (``BACKENDS``: eager, reparam, compile, torchscript, onnxruntime, openvino; tools register more) and the one
``Runner`` they return; :mod:`hgzoo.deploy.runner` prepares one, from a model or an exported file, for
``validate.py --backend`` and ``predict``; and :mod:`hgzoo.deploy.evaluate` is the
overlapped, timed pass over labelled images behind ``validate.py``. The benchmark harness and the accuracy drift
study that use this API are tools beside the package (``benchmarks/``).
"""
from ..layers import reparameterize
from .api import (
    EXTENSIONS,
    FORMATS,
    FP32_MAX_REL_ERR,
    MIN_TOP1_AGREEMENT,
    PRECISIONS,
    ExportError,
    ExportReport,
    ExportVerificationError,
    agreement,
    describe_compute,
    export,
    unsupported_reason,
    verdict,
)
from .backends import BACKENDS, Backend, BackendError, Runner, get_backend, register_backend
from .images import ImageSet, eval_transform, image_set, sample_photo_views
from .runtimes import Predictor, load

__all__ = [
    "reparameterize", "export", "load", "Predictor", "ExportReport", "ExportError", "ExportVerificationError",
    "FORMATS", "PRECISIONS", "EXTENSIONS", "FP32_MAX_REL_ERR", "MIN_TOP1_AGREEMENT", "unsupported_reason",
    "describe_compute", "agreement", "verdict", "eval_transform",
    "image_set", "ImageSet", "sample_photo_views", "BACKENDS", "Backend", "BackendError", "Runner", "get_backend",
    "register_backend",
]
