"""Latency benchmarks across inference backends, with output checks and peer (timm) comparisons.

``python benchmark.py --help`` is the command line; :func:`run_benchmark` the API::

    from hgzoo.benchmark import BenchmarkConfig, run_benchmark, to_markdown
    report = run_benchmark(BenchmarkConfig(models=["pplcnetv2_base"], backends=["eager", "openvino"]))
    print(to_markdown(report))

Backends live in :mod:`hgzoo.benchmark.backends` (``BACKENDS``); each takes any :class:`Subject` (an hgzoo
model or its timm equivalent), so a new backend or a new peer plugs in without touching the loop.
"""
from .backends import BACKENDS, PRECISIONS, Backend, Runner, get_backend
from .core import (
    DEFAULT_TOLERANCES, BenchmarkConfig, BenchmarkReport, Measurement, ModelInfo, check_agreement, resolve_models,
    run_benchmark,
)
from .report import plot_latency_vs_top1, to_markdown, write_results
from .subjects import BenchmarkInputError, Subject, timm_equivalent
from .timing import TimingConfig, conv_roofline, time_interleaved

__all__ = [
    "BACKENDS", "PRECISIONS", "Backend", "Runner", "get_backend", "BenchmarkConfig", "BenchmarkReport", "Measurement",
    "ModelInfo", "check_agreement", "resolve_models", "run_benchmark", "DEFAULT_TOLERANCES", "to_markdown",
    "write_results", "plot_latency_vs_top1", "BenchmarkInputError", "Subject", "timm_equivalent", "TimingConfig",
    "conv_roofline", "time_interleaved",
]
