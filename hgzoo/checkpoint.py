"""Self-describing checkpoints: what a checkpoint says about its model, and the model built from it.

train.py's ``best.pt`` / ``last.pt`` carry their architecture, classes, input channels, image size, class names,
evaluation preprocessing and EMA weights (``hgzoo_checkpoint`` = 2). :func:`model_from_checkpoint` builds exactly
the network a checkpoint holds, from that description, or, for plain weights (a state dict, safetensors,
``.pdparams``), from a model name and the shapes of the weights themselves. It never swaps in a random classifier
or adapts a stem: an argument that contradicts the checkpoint is a :class:`CheckpointConflictError`.
This is the one reader of train.py's checkpoints: predict, validate, export and publishing read them through it, and
:func:`load_model` gives them a model from a name or a checkpoint alike::

    info = hgzoo.checkpoint.read_info("runs/x/best.pt")     # model_name, num_classes, in_chans, class_names, ...
    model, info = hgzoo.checkpoint.model_from_checkpoint("runs/x/best.pt", ema=True)
    dc = hgzoo.checkpoint.data_config(info, model)          # the evaluation preprocessing it was trained with

Every file is read once, by the one safe reader (:func:`hgzoo._files.safe_load`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._builder import EMA_KEYS, create_model, state_dict_of
from ._files import CheckpointMismatchError, CorruptCheckpointError, safe_load
from ._registry import resolve_model_name
from .preprocessing import DATA_KEYS, resolve_preprocessing
from .pretrained import PretrainedCfg

__all__ = ["CheckpointInfo", "CheckpointConflictError", "read_info", "model_from_checkpoint", "train_checkpoint",
           "load_model",
           "data_config", "run_data_config",
           "input_channels"]

_FC = "head.fc.weight"


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
    epoch: int | None = None  # train.py: the epoch of these weights, and their validation top-1 / top-5
    top1: float | None = None
    top5: float | None = None

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


def _number(d: dict, key: str, kind: type, path: Path) -> Any:
    value = d.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CorruptCheckpointError(f"{path}: {key} must be a number, found {value!r}")
    return kind(value)


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
            {k: dc[k] for k in DATA_KEYS if k in dc} if dc else None, cfg, _number(d, "epoch", int, path),
            _number(d, "top1", float, path), _number(d, "top5", float, path))
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


def read_info(path: str | os.PathLike) -> CheckpointInfo:
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
    return _model_from(*_read(path), model_name, num_classes, in_chans, ema)


def train_checkpoint(path: str | os.PathLike, *, ema: bool = False) -> tuple[nn.Module, CheckpointInfo]:
    """:func:`model_from_checkpoint` for a file that must be a train.py checkpoint (``best.pt`` / ``last.pt``):
    anything else is a :class:`CheckpointConflictError` that says so."""
    info, obj = _read(path)
    if info.version is None:
        raise CheckpointConflictError(f"{info.path} is not a train.py checkpoint (no 'hgzoo_checkpoint' key); "
                                      "publish a model with save_pretrained(model, folder)")
    return _model_from(info, obj, None, None, None, ema)


def _model_from(info: CheckpointInfo, obj: Any, model_name: str | None, num_classes: int | None,
                in_chans: int | None, ema: bool) -> tuple[nn.Module, CheckpointInfo]:
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


def load_model(name: str | None = None, *, checkpoint: str | os.PathLike | None = None, pretrained: bool = True,
               num_classes: int | None = None, in_chans: int | None = None,
               ema: bool = False) -> tuple[nn.Module, CheckpointInfo | None]:
    """A model from a name or a checkpoint, in eval mode, and what the checkpoint says about it (None without one).

    With ``checkpoint``: :func:`model_from_checkpoint` (``name`` may name its model). Without: ``name`` built with
    its published weights (``pretrained``) or random ones, with ``num_classes`` / ``in_chans`` if given. predict,
    validate, export and publish all start here."""
    if checkpoint is not None:
        return model_from_checkpoint(checkpoint, model_name=name, num_classes=num_classes, in_chans=in_chans,
                                     ema=ema)
    if not name:
        raise CheckpointConflictError("give a model name (--model) or a checkpoint (--checkpoint FILE)")
    if ema:
        raise CheckpointConflictError("--ema takes the EMA weights of a --checkpoint; there is none")
    kwargs = {k: v for k, v in (("num_classes", num_classes), ("in_chans", in_chans)) if v is not None}
    return create_model(name, pretrained=pretrained, **kwargs).eval(), None


#: train.py's run settings that set its evaluation preprocessing, and the setting each one overrides.
_EVAL_SETTINGS = (("img_size", "crop_size"), ("eval_resize_short", "resize_short"),
                  ("eval_interpolation", "interpolation"), ("eval_resize_backend", "resize_backend"), ("mean", "mean"),
                  ("std", "std"))


def data_config(info: CheckpointInfo | None, model: nn.Module, **overrides: Any) -> dict:
    """The evaluation preprocessing of ``model``: its weight tag's, replaced by the checkpoint's own (train.py's),
    then ``overrides`` (:func:`hgzoo.preprocessing.resolve_preprocessing`, for the model's input channels)."""
    stored = info.data_config if info is not None else None
    if not stored and info is not None and info.train_config:  # an older checkpoint: only its run's settings
        stored = run_data_config(info.train_config, model)
    return resolve_preprocessing(_pretrained_cfg(model), stored, input_channels(model), **overrides)


def run_data_config(settings: dict, model: nn.Module) -> dict:
    """What train.py evaluates ``model`` with, from the run's ``settings`` (its configuration)."""
    overrides = {key: settings.get(setting) for setting, key in _EVAL_SETTINGS}
    return resolve_preprocessing(_pretrained_cfg(model), None, input_channels(model), **overrides)


def _pretrained_cfg(model: nn.Module) -> PretrainedCfg | None:
    pcfg = getattr(model, "pretrained_cfg", None)
    return pcfg if isinstance(pcfg, PretrainedCfg) else None


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
