"""Which preprocessing: the one answer, for every caller (training, validation, prediction, export, publishing).

:func:`resolve_preprocessing` takes, in this order, a weight tag's :class:`~hgzoo.PretrainedCfg` (PaddleClas's
defaults without one), a configuration stored with the weights (a train.py checkpoint's, an exported file's), the
model's input channel count, and the caller's overrides, and returns the evaluation settings as a dict::

    {"resize_short": 236, "crop_size": 224, "interpolation": "bicubic", "resize_backend": "pil",
     "size_rounding": "paddle", "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}

:meth:`hgzoo.PretrainedCfg.data_config` and :meth:`hgzoo.PretrainedCfg.transforms` are this function on a tag's
configuration, as torchvision's ``Weights.transforms()``. This module is plain Python: the image operations that
carry the settings out live in :mod:`hgzoo.data.transforms`.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "DATA_KEYS", "RESIZE_INTERPOLATIONS", "SIZE_ROUNDINGS",
           "resolve_preprocessing"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: The settings of a resolved configuration, as stored in checkpoints and exported files.
DATA_KEYS = ("resize_short", "crop_size", "interpolation", "resize_backend", "size_rounding", "mean", "std")
#: What a caller may override: the settings, and ``crop_pct`` (``resize_short = round(crop_size / crop_pct)``).
OVERRIDE_KEYS = DATA_KEYS + ("crop_pct",)
#: The interpolations each resize backend reproduces (:mod:`hgzoo.data.transforms` says how).
RESIZE_INTERPOLATIONS = {"cv2": ("nearest", "bilinear", "bicubic"),
                         "pil": ("nearest", "bilinear", "bicubic", "box", "hamming", "lanczos")}
#: How the long side and the crop offset are rounded: PaddleClas's way or torchvision's (timm's weights).
SIZE_ROUNDINGS = ("paddle", "torchvision")
#: PaddleClas's evaluation defaults (no weight tag): resize 256 bilinear as cv2 does, crop 224, ImageNet statistics.
PADDLE_DEFAULTS = {"resize_short": 256, "crop_size": 224, "interpolation": "bilinear", "resize_backend": "cv2",
                   "size_rounding": "paddle", "mean": IMAGENET_MEAN, "std": IMAGENET_STD}


def _of_cfg(pretrained_cfg: Any) -> dict[str, Any]:
    """The settings of a :class:`~hgzoo.PretrainedCfg` (read by attribute), or PaddleClas's defaults."""
    if pretrained_cfg is None:
        return dict(PADDLE_DEFAULTS)
    out = {k: getattr(pretrained_cfg, k, PADDLE_DEFAULTS[k]) for k in DATA_KEYS}
    out["mean"], out["std"] = tuple(out["mean"]), tuple(out["std"])
    return out


def _stored(stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """The known settings of a stored configuration (JSON gives lists: they become tuples)."""
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in (stored or {}).items()
            if k in DATA_KEYS and v is not None}


def _check(out: dict[str, Any], in_chans: int) -> None:
    if out["resize_short"] < out["crop_size"]:
        raise ValueError(f"resize_short {out['resize_short']} is smaller than crop_size {out['crop_size']}")
    backend, interpolation = str(out["resize_backend"]).lower(), str(out["interpolation"]).lower()
    if backend not in RESIZE_INTERPOLATIONS:
        raise ValueError(f"unsupported resize backend {out['resize_backend']!r}; backends: cv2, pil")
    if interpolation not in RESIZE_INTERPOLATIONS[backend]:
        raise ValueError(f"unsupported interpolation {out['interpolation']!r} for backend {backend!r}; choose from "
                         f"{', '.join(sorted(RESIZE_INTERPOLATIONS[backend]))}")
    if out["size_rounding"] not in SIZE_ROUNDINGS:
        raise ValueError(f"size_rounding must be one of {SIZE_ROUNDINGS}, got {out['size_rounding']!r}")
    for key in ("mean", "std"):
        if len(out[key]) != in_chans:
            raise ValueError(f"{key} has {len(out[key])} values; the model takes {in_chans} channels")


def resolve_preprocessing(pretrained_cfg: Any = None, stored: Mapping[str, Any] | None = None,
                          in_chans: int | None = None, **overrides: Any) -> dict[str, Any]:
    """The evaluation preprocessing settings (the keys of :data:`DATA_KEYS`).

    Args:
        pretrained_cfg: a weight tag's :class:`~hgzoo.PretrainedCfg` (a model's ``pretrained_cfg``); None:
            PaddleClas's defaults (resize 256 bilinear, crop 224, ImageNet mean and std).
        stored: settings stored with the weights (a train.py checkpoint's ``data_config``, an exported file's);
            each one given replaces the tag's.
        in_chans: the model's input channels (default: the configuration's ``input_size``, else 3). A model whose
            channel count the mean and std so far do not fit (a grayscale model on an RGB tag) is normalized with
            0.5 per channel, as train.py trains it.
        **overrides: ``resize_short``, ``crop_size``, ``crop_pct``, ``interpolation``, ``resize_backend``,
            ``size_rounding``, ``mean``, ``std``; None means not given. A new ``crop_size`` alone keeps the
            resize/crop ratio; ``crop_pct`` sets ``resize_short = round(crop_size / crop_pct)`` unless
            ``resize_short`` is also given.

    Raises:
        TypeError: an unknown override. ValueError: settings that cannot work together.
    """
    unknown = sorted(set(overrides) - set(OVERRIDE_KEYS))
    if unknown:
        raise TypeError(f"unknown key(s) for the preprocessing {', '.join(map(repr, unknown))}; known: "
                        f"{', '.join(OVERRIDE_KEYS)}")
    if in_chans is None:
        in_chans = int(getattr(pretrained_cfg, "input_size", (3,))[0])
    base = {**_of_cfg(pretrained_cfg), **_stored(stored)}
    if len(base["mean"]) != in_chans:
        base.update(mean=(0.5,) * in_chans, std=(0.5,) * in_chans)
    given = {k: v for k, v in overrides.items() if v is not None}
    out = dict(base)
    if "crop_size" in given:
        out["crop_size"] = int(given["crop_size"])
        if "resize_short" not in given and "crop_pct" not in given:
            out["resize_short"] = int(round(out["crop_size"] * base["resize_short"] / base["crop_size"]))
    if "crop_pct" in given:
        if not 0 < given["crop_pct"] <= 1:
            raise ValueError(f"crop_pct must be in (0, 1], got {given['crop_pct']}")
        out["resize_short"] = int(round(out["crop_size"] / given["crop_pct"]))
    for key in ("resize_short", "interpolation", "resize_backend", "size_rounding", "mean", "std"):
        if key in given:
            out[key] = tuple(given[key]) if key in ("mean", "std") else given[key]
    _check(out, in_chans)
    return out

