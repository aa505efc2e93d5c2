"""The public face of hgzoo's file handling (implemented in :mod:`hgzoo._files`): the one safe reader of
checkpoints (``.pth``/``.pt`` torch zips, safetensors, PaddleClas ``.pdparams``; no code runs on load) and the
one atomic writer. Tools beside the package (``benchmarks/``, the root scripts) import them from here.
"""
from ._files import (
    CheckpointMismatchError,
    CorruptCheckpointError,
    UnsafePickleError,
    atomic_open,
    atomic_write,
    load_pdparams,
    read_safetensors,
    safe_load,
)

__all__ = [
    "safe_load", "read_safetensors", "load_pdparams", "atomic_open", "atomic_write", "UnsafePickleError",
    "CorruptCheckpointError", "CheckpointMismatchError",
]
