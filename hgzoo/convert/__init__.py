"""Paddle checkpoint conversion: the safe ``.pdparams`` reader and per-family key maps."""
from .keymap import PaddleKeyMap
from .paddle import (
    CheckpointMismatchError, CorruptCheckpointError, UnsafePickleError, convert_paddle_state_dict, load_pdparams,
)

__all__ = [
    "PaddleKeyMap", "load_pdparams", "convert_paddle_state_dict", "UnsafePickleError",
    "CorruptCheckpointError", "CheckpointMismatchError",
]
