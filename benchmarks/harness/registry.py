"""Every backend by name: the CPU backends (:mod:`.backends`) and the GPU ones (:mod:`.gpu`)."""
from __future__ import annotations

import difflib

from .backends import Backend, CompileBackend, DeployBackend, EagerBackend, OnnxRuntimeBackend, OpenVinoBackend
from .gpu import CudaBackend, CudaCompileBackend, TensorRTBackend
from .subjects import BenchmarkInputError

__all__ = ["BACKENDS", "get_backend"]

BACKENDS: dict[str, Backend] = {b.name: b for b in (
    EagerBackend(), DeployBackend(), CompileBackend(), OnnxRuntimeBackend(), OpenVinoBackend(),
    CudaBackend(), CudaCompileBackend(), TensorRTBackend(),
)}


def get_backend(name: str) -> Backend:
    """The backend called ``name``; a clear :class:`BenchmarkInputError` (with close matches) otherwise."""
    if name in BACKENDS:
        return BACKENDS[name]
    close = difflib.get_close_matches(name, list(BACKENDS), n=3, cutoff=0.4)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    raise BenchmarkInputError(f"unknown backend {name!r}.{hint} Backends: {', '.join(BACKENDS)}.")
