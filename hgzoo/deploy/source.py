"""The model to deploy: a registered name (random or published weights) or a checkpoint, and for a train.py
checkpoint the configuration it was trained with (its model, classes, channels and preprocessing).

``python -m hgzoo export`` and the drift study (``benchmarks/drift.py``) both start here."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from .._builder import create_model, load_checkpoint
from .._files import safe_load
from .api import ExportError

__all__ = ["build_model", "train_config", "train_data_config"]


def train_config(checkpoint: str | Path) -> dict | None:
    """The training configuration of a train.py checkpoint: stored inside it, or ``config.yaml`` beside it."""
    checkpoint = Path(checkpoint)
    if checkpoint.suffix.lower() in (".pt", ".pth"):
        state = safe_load(checkpoint)  # unsafe, corrupt or missing files are reported here, in one line
        if isinstance(state, dict) and isinstance(state.get("config"), dict):
            return state["config"]
    beside = checkpoint.parent / "config.yaml"
    if beside.is_file():
        import yaml

        cfg = yaml.safe_load(beside.read_text())
        return cfg if isinstance(cfg, dict) else None
    return None


def train_data_config(cfg: dict, model: nn.Module) -> dict:
    """train.py's evaluation preprocessing for a model trained with ``cfg``."""
    from ..train.data import eval_data_config  # on first use: hgzoo.train loads the data pipeline

    full = {"mean": None, "std": None, "eval_resize_short": None, "eval_interpolation": None,
            "eval_resize_backend": None, **cfg}
    return eval_data_config(full, getattr(model, "pretrained_cfg", None))


def build_model(name: str | None, *, pretrained: bool = False, checkpoint: str | None = None,
                num_classes: int | None = None, in_chans: int | None = None) -> tuple[nn.Module, dict | None]:
    """The model to export (eval mode) and, for a train.py checkpoint, its training configuration (whose model,
    classes and channels are the defaults)."""
    cfg = train_config(checkpoint) if checkpoint else None
    name = name or (cfg or {}).get("model")
    if not name:
        raise ExportError("--model is required (the checkpoint carries no train.py configuration naming it)")
    if num_classes is None and cfg and cfg.get("num_classes"):
        num_classes = int(cfg["num_classes"])
    if in_chans is None:
        in_chans = int(cfg.get("in_chans") or 3) if cfg else 3
    kwargs = {"in_chans": in_chans}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    model = create_model(name, pretrained=pretrained, **kwargs)
    if checkpoint:
        load_checkpoint(model, checkpoint)
    return model.eval(), cfg
