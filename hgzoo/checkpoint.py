"""Self-describing checkpoints: what a checkpoint says about its model, and the model built from it.

train.py's ``best.pt`` / ``last.pt`` carry their architecture, classes, input channels, image size, class names,
evaluation preprocessing and EMA weights (``hgzoo_checkpoint`` = 2). :func:`model_from_checkpoint` builds exactly
the network a checkpoint holds, from that description, or, for plain weights (a state dict, safetensors,
``.pdparams``), from a model name and the shapes of the weights themselves. It never swaps in a random classifier
or adapts a stem: an argument that contradicts the checkpoint is a :class:`CheckpointConflictError`.
``validate.py``, ``python -m hgzoo predict`` and ``python -m hgzoo export`` read checkpoints through it::

    info = hgzoo.checkpoint.describe("runs/x/best.pt")      # model_name, num_classes, in_chans, class_names, ...
    model, info = hgzoo.checkpoint.model_from_checkpoint("runs/x/best.pt", ema=True)
    dc = hgzoo.checkpoint.data_config(info, model)          # the evaluation preprocessing it was trained with

Every file is read once, by the one safe reader (:func:`hgzoo._files.safe_load`).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._builder import EMA_KEYS, create_model, state_dict_of
from ._files import CheckpointMismatchError, CorruptCheckpointError, safe_load
from ._registry import resolve_model_name
from .pretrained import PretrainedCfg

__all__ = ["CheckpointInfo", "CheckpointConflictError", "describe", "model_from_checkpoint", "data_config",
           "eval_config", "input_channels",
           "add_weights_argument"]

_FC = "head.fc.weight"
_DATA_KEYS = ("resize_short", "crop_size", "interpolation", "resize_backend", "mean", "std")


class CheckpointConflictError(ValueError):
    """An argument (a model name, a class count, input channels, EMA weights) contradicts the checkpoint."""


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint says about the model it holds. ``None`` where it does not say."""

    path: str
    model_name: str | None
    num_classes: int | None
    in_chans: int | None
    img_size: int | None
    class_names: tuple[str, ...] | None
    has_ema: bool
    version: int | None  # train.py's ``hgzoo_checkpoint`` layout version; None for plain weights
    source: str  # where the description came from, in words
    data_config: dict | None = field(default=None, compare=False, hash=False)
    train_config: dict | None = field(default=None, compare=False, hash=False, repr=False)

    @property
    def self_describing(self) -> bool:
        return self.model_name is not None


def _read_config_beside(path: Path) -> dict | None:
    beside = path.parent / "config.yaml"
    if not beside.is_file():
        return None
    import yaml

    cfg = yaml.safe_load(beside.read_text())
    return cfg if isinstance(cfg, dict) else None


def _int_or_none(value: Any, key: str, path: Path) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CorruptCheckpointError(f"{path}: {key} must be a whole number >= 0, found {value!r}")
    return value


def _info(path: Path, obj: Any) -> CheckpointInfo:
    """The description inside ``obj`` (what the safe reader read from ``path``)."""
    d = obj if isinstance(obj, dict) else {}
    cfg = d.get("config") if isinstance(d.get("config"), dict) else None
    version = d.get("hgzoo_checkpoint") if isinstance(d.get("hgzoo_checkpoint"), int) else None
    if version is not None or isinstance(d.get("model_name"), str):
        names = d.get("class_names")
        if names is not None and not (isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names)):
            raise CorruptCheckpointError(f"{path}: class_names must be a list of strings, found {type(names).__name__}")
        dc = d.get("data_config") if isinstance(d.get("data_config"), dict) else None

        def key(name: str) -> int | None:  # the checkpoint's own key, else its run configuration's
            return _int_or_none(d[name] if name in d else (cfg or {}).get(name), name, path)

        return CheckpointInfo(
            str(path), d.get("model_name") or (cfg or {}).get("model"), key("num_classes"), key("in_chans"),
            key("img_size"), tuple(names) if names is not None else None, _has_ema(d), version,
            f"train.py checkpoint (layout {version})" if version else "train.py checkpoint",
            {k: dc[k] for k in _DATA_KEYS if k in dc} if dc else None, cfg)
    source = "the train.py configuration inside it"
    if cfg is None and Path(path).suffix.lower() in (".pt", ".pth"):
        cfg, source = _read_config_beside(path), f"{path.parent / 'config.yaml'} beside it"
    has_ema = _has_ema(d)
    if cfg and isinstance(cfg.get("model"), str):  # an older train.py checkpoint: only its run configuration
        return CheckpointInfo(str(path), cfg["model"], _int_or_none(cfg.get("num_classes"), "num_classes", path),
                              _int_or_none(cfg.get("in_chans"), "in_chans", path),
                              _int_or_none(cfg.get("img_size"), "img_size", path), None, has_ema, None, source,
                              None, cfg)
    return CheckpointInfo(str(path), None, None, None, None, None, has_ema, None, "weights only (no description)")


def _has_ema(d: dict) -> bool:
    """Whether a checkpoint holds EMA weights (timm's ``state_dict_ema``, or an older train.py file's ``ema``)."""
    return any(isinstance(d.get(k), dict) for k in EMA_KEYS)


def _read(path: str | os.PathLike) -> tuple[CheckpointInfo, Any]:
    path = Path(path)
    obj = safe_load(path)  # missing, unsafe and corrupt files are reported here, in one line
    return _info(path, obj), obj


def describe(path: str | os.PathLike) -> CheckpointInfo:
    """What the checkpoint at ``path`` says about its model (read with the safe reader)."""
    return _read(path)[0]


def _weights(obj: Any, info: CheckpointInfo, ema: bool) -> Any:
    if not ema:
        return obj
    d = obj if isinstance(obj, dict) else {}
    chosen = next((d[k] for k in EMA_KEYS if isinstance(d.get(k), dict)), None)
    if not isinstance(chosen, dict):
        raise CheckpointConflictError(f"{info.path} holds no EMA weights (train.py saves them with --ema); "
                                      "leave out --ema to use its model weights")
    return chosen


def _architecture(name: str) -> str:
    return resolve_model_name(name)[0]


def _check(flag: str, given: int | None, found: int | None, path: str, where: str) -> None:
    if given is not None and found is not None and given != found:
        raise CheckpointConflictError(f"{flag} {given} contradicts {path}, whose {where} {found}; leave out {flag} "
                                      "(the checkpoint's own value is used)")


def _shapes(sd: dict[str, torch.Tensor], model: nn.Module) -> tuple[int | None, int | None]:
    """The class count and input channels the weights themselves have (None where they do not say)."""
    fc = sd.get(_FC)
    stem = sd.get(f"{getattr(model, 'first_conv', '')}.weight")
    return (int(fc.shape[0]) if fc is not None and fc.ndim == 2 else None,
            int(stem.shape[1]) if stem is not None and stem.ndim == 4 else None)


def _load_exactly(model: nn.Module, sd: dict[str, torch.Tensor], path: str) -> None:
    """Load every tensor, or raise :class:`CheckpointMismatchError` listing what does not fit."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
              for k, v in sd.items() if k in own and own[k].shape != v.shape]
    if missing or unexpected or shapes:
        parts = [f"{title} ({len(items)}): {', '.join(items[:4])}{', ...' if len(items) > 4 else ''}"
                 for title, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes))
                 if items]
        raise CheckpointMismatchError(f"{path} does not fit {type(model).__name__}: " + "; ".join(parts) +
                                      ". Is it a checkpoint of this architecture and variant?")
    model.load_state_dict(sd, strict=False)


def model_from_checkpoint(path: str | os.PathLike, *, model_name: str | None = None, num_classes: int | None = None,
                          in_chans: int | None = None, ema: bool = False) -> tuple[nn.Module, CheckpointInfo]:
    """The model a checkpoint holds, in eval mode, with its weights (``ema=True``: its EMA weights), and its
    :class:`CheckpointInfo`.

    A self-describing checkpoint gives the architecture, classes and channels; ``model_name`` (another tag of the
    same architecture is fine), ``num_classes`` and ``in_chans`` may repeat them but not contradict them. Plain
    weights need ``model_name``; their classes and channels are read off the classifier and stem weights.
    Contradictions raise :class:`CheckpointConflictError`; weights that do not fit, :class:`CheckpointMismatchError`.
    """
    info, obj = _read(path)
    if info.model_name is not None:
        if model_name is not None and _architecture(model_name) != _architecture(info.model_name):
            raise CheckpointConflictError(f"--model {model_name} contradicts {info.path}, a checkpoint of "
                                          f"{info.model_name}; leave out --model (the checkpoint names its model)")
        _check("--num-classes", num_classes, info.num_classes, info.path, "classifier has")
        _check("--in-chans", in_chans, info.in_chans, info.path, "model takes input channels:")
        model_name = model_name or info.model_name
    elif model_name is None:
        raise CheckpointConflictError(f"{info.path} does not say which model it holds (plain weights): give --model")
    weights = _weights(obj, info, ema)
    model = create_model(model_name, num_classes=num_classes if num_classes is not None else info.num_classes,
                         in_chans=in_chans or info.in_chans or 3)
    sd = state_dict_of(weights, model, info.path)
    if info.model_name is None:  # plain weights: their own shapes say how many classes and channels
        found_classes, found_chans = _shapes(sd, model)
        _check("--num-classes", num_classes, found_classes, info.path, "classifier has")
        _check("--in-chans", in_chans, found_chans, info.path, "stem takes input channels:")
        want = (model.num_classes if found_classes is None else found_classes,
                input_channels(model) if found_chans is None else found_chans)
        if want != (model.num_classes, input_channels(model)):
            model = create_model(model_name, num_classes=want[0], in_chans=want[1])
            sd = state_dict_of(weights, model, info.path)
    _load_exactly(model, sd, info.path)
    return model.eval(), info


def data_config(info: CheckpointInfo | None, model: nn.Module, **overrides: Any) -> dict:
    """The evaluation preprocessing of ``model``: the checkpoint's own (train.py's), else the model's weight tag's;
    then ``overrides`` (``resize_short``, ``crop_size``, ``crop_pct``, ``interpolation``, ``resize_backend``,
    ``mean``, ``std``; see :func:`hgzoo.data.resolve_data_config`). A model with other than 3 input channels and
    no stored mean/std is normalized with 0.5 per channel, as train.py does."""
    pcfg = getattr(model, "pretrained_cfg", None)
    stored = info.data_config if info is not None else None
    if not stored and info is not None and info.train_config:
        from .train.data import eval_data_config  # an older checkpoint: recompute what train.py evaluated with

        full = {"mean": None, "std": None, "eval_resize_short": None, "eval_interpolation": None,
                "eval_resize_backend": None, **info.train_config}
        stored = eval_data_config(full, pcfg if isinstance(pcfg, PretrainedCfg) else None)
    return eval_config(pcfg, stored, input_channels(model), **overrides)


def eval_config(pretrained_cfg: PretrainedCfg | None, stored: dict | None = None, in_chans: int = 3,
                **overrides: Any) -> dict:
    """Evaluation preprocessing settings: ``pretrained_cfg``'s (PaddleClas's defaults without one), replaced by a
    ``stored`` configuration (a checkpoint's, or an exported file's), then ``overrides`` relative to that (a new
    ``crop_size`` alone keeps its resize/crop ratio). Other than 3 channels without a stored mean/std: 0.5 each."""
    from .data import resolve_data_config

    pcfg = pretrained_cfg if isinstance(pretrained_cfg, PretrainedCfg) else None
    base = resolve_data_config(pcfg)
    base.update({k: (tuple(v) if isinstance(v, list) else v) for k, v in (stored or {}).items() if k in _DATA_KEYS})
    if len(base["mean"]) != in_chans:
        base.update(mean=(0.5,) * in_chans, std=(0.5,) * in_chans)
    as_cfg = dataclasses.replace(pcfg or PretrainedCfg(architecture="model", tag=""), **base)
    return resolve_data_config(as_cfg, **{k: v for k, v in overrides.items() if v is not None})


def input_channels(model: nn.Module) -> int:
    """The number of input channels of ``model`` (its stem conv's, or the first conv's)."""
    first = getattr(model, "first_conv", None)
    if isinstance(first, str):
        try:
            return int(model.get_submodule(first).weight.shape[1])
        except AttributeError:
            pass
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            return int(m.weight.shape[1] * m.groups)
    raise ValueError(f"cannot tell the input channels of {type(model).__name__}: pass in_chans=")


def add_weights_argument(parser: argparse.ArgumentParser) -> None:
    """``--weights model|ema`` (and ``--ema``, the same as ``--weights ema``): which weights of a checkpoint that
    holds both (train.py's with EMA, timm's ``state_dict_ema``) a command uses."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--weights", choices=["model", "ema"], default="model",
                       help="a train.py checkpoint's model weights (default) or its EMA weights")
    group.add_argument("--ema", dest="weights", action="store_const", const="ema", help="the same as --weights ema")
