"""timm's data-config entry points, for timm code that runs hgzoo models.

``resolve_model_data_config(model)`` returns what timm's function of that name returns (``input_size``,
``interpolation``, ``mean``, ``std``, ``crop_pct``, ``crop_mode``), so that ``timm.data.create_transform(**config)``
and ``timm.data.create_loader(..., **config)`` preprocess as close to PaddleClas as timm's ops allow: ``crop_pct`` is
chosen so that timm's ``math.floor(crop / crop_pct)`` is PaddleClas's resize (232, 236 or 256). What timm cannot do:
PaddleClas's cv2 resize does not antialias (timm's PIL resize does), it rounds the long side where torchvision
truncates it, and it floors the crop offset where torchvision rounds. ``hgzoo.data.create_transform`` reproduces
PaddleClas exactly; the README gives the measured difference.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from torch import nn

from ..preprocessing import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["resolve_model_data_config", "resolve_timm_data_config", "TIMM_TRANSFORM_KEYS", "from_timm_keywords"]

#: timm's ``create_transform`` keywords that :func:`hgzoo.data.create_transform` also takes, with timm's meaning.
TIMM_TRANSFORM_KEYS = ("input_size", "crop_mode", "is_training")

DEFAULT_CROP_PCT = 0.875  # timm's defaults, for a model without a pretrained config
DEFAULT_CROP_MODE = "center"


def _norm(args: Mapping[str, Any], key: str, cfg: Mapping[str, Any], default: tuple, in_chans: int) -> tuple:
    if args.get(key) is not None:
        value = tuple(args[key])
        if len(value) == 1:
            return value * in_chans
        if len(value) != in_chans:
            raise ValueError(f"{key} has {len(value)} values for {in_chans} input channels")
        return value
    return tuple(cfg.get(key) or default)


def _size(args: Mapping[str, Any], cfg: Mapping[str, Any], use_test_size: bool) -> tuple[tuple, int]:
    """(input_size, the channel count that mean/std values from ``args`` must match), as timm resolves them."""
    in_chans = next((int(args[k]) for k in ("in_chans", "chans") if args.get(k) is not None), 3)
    if args.get("input_size") is not None:
        size = tuple(args["input_size"])
        if len(size) != 3:
            raise ValueError(f"input_size must be (C, H, W), got {args['input_size']!r}")
        return size, size[0]
    if args.get("img_size") is not None:
        return (in_chans, int(args["img_size"]), int(args["img_size"])), in_chans
    if use_test_size and cfg.get("test_input_size") is not None:
        return tuple(cfg["test_input_size"]), in_chans
    return tuple(cfg.get("input_size") or (in_chans, 224, 224)), in_chans


def resolve_timm_data_config(args: Mapping[str, Any] | None = None, pretrained_cfg: Mapping[str, Any] | None = None,
                             model: nn.Module | None = None, use_test_size: bool = False,
                             verbose: bool = False) -> dict[str, Any]:
    """timm's ``resolve_data_config``: the same arguments, precedence and keys. ``args`` (a dict of command-line
    values, e.g. ``vars(args)``) overrides ``pretrained_cfg``, which defaults to ``model.pretrained_cfg``."""
    if model is None and not args and not pretrained_cfg:
        raise TypeError("resolve_data_config needs at least one of model=, args= or pretrained_cfg=")
    args = args or {}
    cfg = pretrained_cfg or (getattr(model, "pretrained_cfg", None) if model is not None else None) or {}
    input_size, in_chans = _size(args, cfg, use_test_size)
    crop_pct = args.get("crop_pct") or (cfg.get("test_crop_pct") if use_test_size else None) or cfg.get("crop_pct")
    out = {
        "input_size": input_size,
        "interpolation": args.get("interpolation") or cfg.get("interpolation") or "bicubic",
        "mean": _norm(args, "mean", cfg, IMAGENET_MEAN, in_chans),
        "std": _norm(args, "std", cfg, IMAGENET_STD, in_chans),
        "crop_pct": crop_pct or DEFAULT_CROP_PCT,
        "crop_mode": args.get("crop_mode") or cfg.get("crop_mode") or DEFAULT_CROP_MODE,
    }
    if verbose:
        print("data config: " + ", ".join(f"{k}={v}" for k, v in out.items()))
    return out


def resolve_model_data_config(model: nn.Module, args: Mapping[str, Any] | None = None,
                              pretrained_cfg: Mapping[str, Any] | None = None, use_test_size: bool = False,
                              verbose: bool = False) -> dict[str, Any]:
    """timm's ``resolve_model_data_config``: :func:`resolve_timm_data_config` with the model first."""
    return resolve_timm_data_config(args, pretrained_cfg, model, use_test_size, verbose)


def from_timm_keywords(overrides: Mapping[str, Any], in_chans: int) -> tuple[dict[str, Any], int]:
    """timm's ``create_transform`` keywords as hgzoo's preprocessing overrides: ``(overrides, in_chans)``.

    With ``input_size`` (C, H, W; H = W) the pipeline is timm's evaluation one: crop H, resize the short side to
    ``floor(H / crop_pct)``, PIL's resize with torchvision's rounding (unless ``resize_backend``/``size_rounding``
    are given). ``crop_mode`` must be ``'center'``; ``is_training=True`` is refused (hgzoo's training transform is
    PaddleClas's crop and flip, ``training=True``, not timm's augmentation).
    """
    out = dict(overrides)
    if out.pop("is_training", False):
        raise ValueError("is_training=True: hgzoo's training transform is PaddleClas's crop and flip (training=True); "
                         "timm's augmentation is timm.data.create_transform's")
    mode = out.pop("crop_mode", None)
    if mode not in (None, "center"):
        raise ValueError(f"crop_mode={mode!r} is not supported: hgzoo resizes the short side and center-crops "
                         "(crop_mode='center')")
    size = out.pop("input_size", None)
    if size is None:
        return out, in_chans
    c, h, w = (int(v) for v in size)
    if h != w:
        raise ValueError(f"input_size={tuple(size)}: the crop is square; give H = W")
    if in_chans not in (3, c) or out.get("crop_size") not in (None, h):
        raise ValueError(f"input_size={tuple(size)} contradicts in_chans={in_chans} or crop_size={out['crop_size']}")
    out["crop_size"] = h
    crop_pct = out.pop("crop_pct", None)
    if crop_pct is not None and out.get("resize_short") is None:
        if not 0 < crop_pct <= 1:
            raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
        out["resize_short"] = math.floor(h / crop_pct)  # timm's scale size
    out.setdefault("resize_backend", "pil")
    out.setdefault("size_rounding", "torchvision")
    return out, c
