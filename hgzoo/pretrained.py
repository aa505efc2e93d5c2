"""Pretrained configurations: where a weight tag comes from, how its images are preprocessed, what it scores."""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["PretrainedCfg", "paddle_cfg", "timm_crop_pct", "IMAGENET_MEAN", "IMAGENET_STD", "PADDLE_URL_ROOT"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PADDLE_URL_ROOT = "https://paddle-imagenet-models-name.bj.bcebos.com/dygraph/legendary_models/"
PADDLECLAS_URL = "https://github.com/PaddlePaddle/PaddleClas"

#: The keys of timm's ``PretrainedCfg`` that :meth:`PretrainedCfg.to_timm_dict` fills in.
TIMM_KEYS = ("architecture", "tag", "hf_hub_id", "input_size", "interpolation", "crop_pct", "crop_mode", "mean", "std",
             "num_classes", "pool_size", "first_conv", "classifier", "license", "origin_url", "notes")


def timm_crop_pct(crop_size: int, resize_short: int) -> float:
    """The ``crop_pct`` for which timm's ``math.floor(crop_size / crop_pct)`` is exactly ``resize_short``."""
    pct = crop_size / resize_short
    while math.floor(crop_size / pct) < resize_short:  # float rounding put the quotient just below: nudge down
        pct = math.nextafter(pct, 0.0)
    while math.floor(crop_size / pct) > resize_short:
        pct = math.nextafter(pct, 1.0)
    return pct


@dataclass(frozen=True)
class PretrainedCfg(Mapping):
    """Everything needed to get and use one set of weights (one ``arch.tag``).

    Preprocessing is PaddleClas's evaluation pipeline: decode to RGB, resize the short side to
    ``resize_short`` with ``interpolation`` (as ``resize_backend`` does it), center-crop ``crop_size``,
    scale by 1/255, normalize with ``mean``/``std``.

    It is also a read-only mapping, as timm reads its ``pretrained_cfg`` (``cfg["input_size"]``,
    ``cfg.get("crop_pct")``): every field under its own name, and timm's keys that are not fields, derived from
    the fields (:meth:`to_timm_dict`). ``extra`` may hold the model's ``first_conv`` and ``in_chans`` (a model's
    ``pretrained_cfg`` does).
    """

    architecture: str
    tag: str
    paddle_url: str | None = None
    hf_hub_id: str | None = None
    num_classes: int = 1000
    resize_short: int = 256
    crop_size: int = 224
    interpolation: str = "bilinear"
    resize_backend: str = "cv2"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    top1: float | None = None
    top5: float | None = None
    license: str = "Apache-2.0"
    source: str = "PaddleClas"
    notes: str = ""
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def name(self) -> str:
        return f"{self.architecture}.{self.tag}"

    @property
    def input_size(self) -> tuple[int, int, int]:
        """(channels, crop, crop): 3 channels unless the model's configuration says otherwise (``extra``)."""
        return (int(self.extra.get("in_chans", 3)), self.crop_size, self.crop_size)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["name"] = self.name
        return d

    @property
    def crop_pct(self) -> float:
        """timm's ``crop_pct``: ``math.floor(crop_size / crop_pct)`` is exactly ``resize_short``."""
        return timm_crop_pct(self.crop_size, self.resize_short)

    def to_timm_dict(self) -> dict[str, Any]:
        """This configuration in the keys of timm's ``PretrainedCfg`` (``timm.models.PretrainedCfg(**d)`` takes it).

        timm resizes with PIL whatever ``resize_backend`` says (antialiased, where PaddleClas's cv2 resize is not);
        the README gives the difference this makes.
        """
        return {
            "architecture": self.architecture, "tag": self.tag, "hf_hub_id": self.hf_hub_id,
            "input_size": self.input_size, "interpolation": self.interpolation, "crop_pct": self.crop_pct,
            "crop_mode": "center", "mean": tuple(self.mean), "std": tuple(self.std), "num_classes": self.num_classes,
            "pool_size": (math.ceil(self.crop_size / 32),) * 2, "first_conv": self.extra.get("first_conv"),
            "classifier": "head.fc", "license": self.license.lower(), "origin_url": PADDLECLAS_URL,
            "notes": (self.notes,) if self.notes else None,
        }

    # --- read-only mapping: fields by their own names, then timm's keys ---------------------------------------------

    def __getitem__(self, key: str) -> Any:
        if key in _FIELD_NAMES:
            return getattr(self, key)
        if key in TIMM_KEYS:
            return self.to_timm_dict()[key]
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        yield from _FIELD_NAMES
        yield from (k for k in TIMM_KEYS if k not in _FIELD_NAMES)

    def __len__(self) -> int:
        return len(_FIELD_NAMES) + sum(k not in _FIELD_NAMES for k in TIMM_KEYS)


_FIELD_NAMES = tuple(f.name for f in fields(PretrainedCfg))


def paddle_cfg(arch: str, tag: str, file: str, *, top1: float | None = None, top5: float | None = None,
               notes: str = "", resize_short: int = 256, interpolation: str = "bilinear",
               resize_backend: str = "cv2") -> PretrainedCfg:
    """The configuration of weights PaddleClas publishes as ``{PADDLE_URL_ROOT}{file}.pdparams``, mirrored on the
    Hub as ``hgzoo/{arch}.{tag}``: 1000 ImageNet classes, a 224 crop after resizing the short side to
    ``resize_short`` (PaddleClas's evaluation configs; the defaults are those of every family but PP-HGNet)."""
    return PretrainedCfg(
        architecture=arch, tag=tag, paddle_url=f"{PADDLE_URL_ROOT}{file}.pdparams", hf_hub_id=f"hgzoo/{arch}.{tag}",
        resize_short=resize_short, crop_size=224, interpolation=interpolation, resize_backend=resize_backend,
        top1=top1, top5=top5, notes=notes,
    )
