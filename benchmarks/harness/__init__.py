"""The benchmark harness: latency across inference backends, with output checks and peer (timm) comparisons,
and the accuracy drift of the exported formats. A tool on top of the library, not part of the ``hgzoo`` package.

``python benchmark.py --help`` and ``python benchmarks/drift.py --help`` are the command lines;
:func:`run_benchmark` and :func:`~benchmarks.harness.drift.measure_drift` the API (from the repository root)::

    from benchmarks.harness import BenchmarkConfig, run_benchmark, to_markdown
    report = run_benchmark(BenchmarkConfig(models=["pplcnetv2_base"], backends=["eager", "openvino"]))
    print(to_markdown(report))

Backends live in :mod:`benchmarks.harness.backends` (CPU) and :mod:`benchmarks.harness.gpu` (CUDA, TensorRT),
named in :mod:`benchmarks.harness.registry` (``BACKENDS``); each takes any :class:`Subject` (an hgzoo
model or its timm equivalent), so a new backend or a new peer plugs in without touching the loop.
:mod:`benchmarks.harness.machine` describes the machine for both reports.
"""
from .backends import Backend, Runner
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
from .registry import BACKENDS, get_backend
from .report import plot_latency_vs_top1, to_markdown, write_results
from .subjects import BenchmarkInputError, Subject, timm_equivalent
from .timing import TimingConfig, conv_roofline, time_interleaved

__all__ = [
    "BACKENDS", "Backend", "Runner", "get_backend", "BenchmarkConfig", "BenchmarkReport", "Measurement",
    "ModelInfo", "check_output", "resolve_models", "run_benchmark", "DEFAULT_TOLERANCES", "to_markdown",
    "write_results", "plot_latency_vs_top1", "BenchmarkInputError", "Subject", "timm_equivalent", "TimingConfig",
    "conv_roofline", "time_interleaved",
]
