#!/usr/bin/env python
"""Latency tables for hgzoo models across backends (eager, reparam, compile, ONNX Runtime, OpenVINO, CUDA,
TensorRT), checked against eager fp32, optionally beside timm's equivalent models.

    python benchmark.py --model pphgnet_small --batch-sizes 1,8 --compare timm

See ``python benchmark.py --help``; the logic is in :mod:`benchmarks.harness` (a tool beside the package).
"""
import sys

from benchmarks.harness.cli import main

if __name__ == "__main__":
    sys.exit(main())
