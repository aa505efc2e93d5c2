"""Checkpoint conversion: the safe ``.pdparams`` reader, and per-family key maps for PaddleClas's and timm's layouts
(:mod:`hgzoo.convert.timm` for timm's, both ways)."""
from .keymap import PaddleKeyMap, TimmArch, TimmKeyMap
from .paddle import (
    CheckpointMismatchError,
    CorruptCheckpointError,
    UnsafePickleError,
    convert_paddle_state_dict,
    load_pdparams,
)

__all__ = [
    "PaddleKeyMap", "TimmKeyMap", "TimmArch", "load_pdparams", "convert_paddle_state_dict", "UnsafePickleError",
    "CorruptCheckpointError", "CheckpointMismatchError",
]
