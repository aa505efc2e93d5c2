"""``python -m hgzoo train`` and ``train.py``: train an hgzoo model with its PaddleClas recipe.

Exit codes: 0 done, 1 the run failed (a diverging loss, a full disk), 2 bad input (a flag, a file, an image
that would not decode).
"""
from __future__ import annotations

from .base import BadInput, guarded_main

__all__ = ["main"]


def _train(argv: list[str] | None) -> int:
    from ..data.transforms import ImageDecodeError
    from ..train.config import resolve_config
    from ..train.engine import run

    cfg = resolve_config(argv)
    try:
        run(cfg)
    except ImageDecodeError as e:
        raise BadInput(f"{e} (remove or fix the file; the last checkpoint is kept)") from None
    finally:
        import torch.distributed as dist
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Train as the arguments say (see ``--help``); returns the exit code."""
    from ..train.config import ConfigError

    return guarded_main(_train, argv, bad_input=(ConfigError,), failed=(FloatingPointError,))
