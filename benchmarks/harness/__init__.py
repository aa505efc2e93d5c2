"""The benchmark harness: latency across inference backends, with output checks and peer (timm) comparisons,
and the accuracy drift of the exported formats. A tool on top of the library, not part of the ``hgzoo`` package.

``python benchmark.py --help`` and ``python benchmarks/drift.py --help`` are the command lines;
:func:`run_benchmark` and :func:`~benchmarks.harness.drift.measure_drift` the API (from the repository root)::

    from benchmarks.harness import BenchmarkConfig, run_benchmark, to_markdown
    report = run_benchmark(BenchmarkConfig(models=["pplcnetv2_base"], backends=["eager", "openvino"]))
    print(to_markdown(report))

Backends are hgzoo's (:data:`hgzoo.deploy.BACKENDS`: eager, reparam, compile, torchscript, onnxruntime, openvino),
and the GPU ones :mod:`benchmarks.harness.gpu` registers there (cuda, cuda-compile, cuda-torchscript, tensorrt);
each returns hgzoo's one :class:`~hgzoo.deploy.Runner`. :func:`~benchmarks.harness.backends.prepare_subject` runs
any :class:`Subject` (an hgzoo model or its timm equivalent) on any of them, so a new backend
(:func:`hgzoo.deploy.register_backend`) or a new peer plugs in without touching the loop.
:mod:`benchmarks.harness.machine` describes the machine for both reports.
"""
from hgzoo.deploy import BACKENDS  # hgzoo's one registry, with the GPU backends registered (by .core)

from .backends import prepare_subject
from .core import (
    DEFAULT_TOLERANCES,
    BenchmarkConfig,
    BenchmarkReport,
    Measurement,
    ModelInfo,
    check_output,
    resolve_models,
    run_benchmark,
)
from .report import plot_latency_vs_top1, to_markdown, write_results
from .subjects import BenchmarkInputError, Subject, timm_equivalent
from .timing import TimingConfig, conv_roofline, time_interleaved

__all__ = [
    "BACKENDS", "prepare_subject", "BenchmarkConfig", "BenchmarkReport", "Measurement",
    "ModelInfo", "check_output", "resolve_models", "run_benchmark", "DEFAULT_TOLERANCES", "to_markdown",
    "write_results", "plot_latency_vs_top1", "BenchmarkInputError", "Subject", "timm_equivalent", "TimingConfig",
    "conv_roofline", "time_interleaved",
]
