"""The model to deploy: a registered name (random or published weights) or a checkpoint, and for a train.py
checkpoint the configuration it was trained with (its model, classes, channels and preprocessing).

``python -m hgzoo export`` and the drift study (``benchmarks/drift.py``) both start here; checkpoints are read by
:func:`hgzoo.checkpoint.model_from_checkpoint`, the one reader of self-describing checkpoints."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from .._builder import create_model
from ..checkpoint import CheckpointInfo, describe, model_from_checkpoint
from .api import ExportError

__all__ = ["build_model", "load_model", "train_config", "train_data_config"]


def train_config(checkpoint: str | Path) -> dict | None:
    """The training configuration of a train.py checkpoint: stored inside it, or ``config.yaml`` beside it."""
    return describe(checkpoint).train_config


def train_data_config(cfg: dict, model: nn.Module) -> dict:
    """train.py's evaluation preprocessing for a model trained with ``cfg``."""
    from ..train.data import eval_data_config  # on first use: hgzoo.train loads the data pipeline

    full = {"mean": None, "std": None, "eval_resize_short": None, "eval_interpolation": None,
            "eval_resize_backend": None, **cfg}
    return eval_data_config(full, getattr(model, "pretrained_cfg", None))


def load_model(name: str | None, *, pretrained: bool = False, checkpoint: str | None = None,
               num_classes: int | None = None, in_chans: int | None = None,
               ema: bool = False) -> tuple[nn.Module, CheckpointInfo | None]:
    """The model (eval mode) and, for a checkpoint, what it says about itself (:class:`CheckpointInfo`).

    Without a checkpoint: ``name`` built with its published weights (``pretrained``) or random ones."""
    if checkpoint:
        if pretrained:
            raise ExportError("give --pretrained or --checkpoint, not both")
        return model_from_checkpoint(checkpoint, model_name=name, num_classes=num_classes, in_chans=in_chans,
                                     ema=ema)
    if not name:
        raise ExportError("--model is required (or --checkpoint FILE of a train.py run)")
    if ema:
        raise ExportError("--ema takes the EMA weights of a --checkpoint; there is none")
    kwargs = {"in_chans": in_chans or 3}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    return create_model(name, pretrained=pretrained, **kwargs).eval(), None


def build_model(name: str | None, *, pretrained: bool = False, checkpoint: str | None = None,
                num_classes: int | None = None, in_chans: int | None = None,
                ema: bool = False) -> tuple[nn.Module, dict | None]:
    """The model to export (eval mode) and, for a train.py checkpoint, its training configuration."""
    model, info = load_model(name, pretrained=pretrained, checkpoint=checkpoint, num_classes=num_classes,
                             in_chans=in_chans, ema=ema)
    return model, (info.train_config if info is not None else None)
