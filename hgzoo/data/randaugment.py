"""timm-style RandAugment as PaddleClas's ``TimmAutoAugment`` uses it, e.g. ``rand-m7-mstd0.5-inc1``.

Written on ``torchvision.transforms.v2.functional`` for uint8 (C, H, W) tensors (1 or 3 channels).
``rand-m{M}-n{N}-mstd{S}-inc{0|1}-p{P}``: ``N`` ops (default 2) drawn with replacement, each applied with
probability ``P`` (0.5) at a magnitude drawn from ``gauss(M, S)`` clipped to [0, 10]; ``inc1`` uses the
"increasing" op set whose strength grows with the magnitude. Difference from timm/PaddleClas: geometric
ops resample bilinearly (torchvision's tensor affine has no bicubic) and fill with grey 128.
"""
from __future__ import annotations

import math
import random

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

__all__ = ["RandAugment", "parse_randaugment"]

_MAX = 10.0
_FILL = 128


def _sign(v: float) -> float:
    return -v if random.random() < 0.5 else v


def _blend(img: torch.Tensor, other: torch.Tensor, factor: float) -> torch.Tensor:
    return (other.float() + factor * (img.float() - other.float())).clamp_(0, 255).to(torch.uint8)


def _affine(img, angle=0.0, translate=(0, 0), shear=(0.0, 0.0)):
    return F.affine(img, angle=angle, translate=list(translate), scale=1.0, shear=list(shear),
                    interpolation=InterpolationMode.BILINEAR, fill=[_FILL] * img.shape[-3])


def _solarize_add(img: torch.Tensor, add: int) -> torch.Tensor:
    out = img.int()
    return torch.where(img < 128, (out + add).clamp(0, 255), out).to(torch.uint8)


def _op(name: str, img: torch.Tensor, m: float, increasing: bool) -> torch.Tensor:
    level = m / _MAX
    h, w = img.shape[-2:]
    if name == "AutoContrast":
        return F.autocontrast(img)
    if name == "Equalize":
        return F.equalize(img)
    if name == "Invert":
        return F.invert(img)
    if name == "Rotate":
        return _affine(img, angle=_sign(30.0 * level))
    if name == "Posterize":
        bits = 4 - int(level * 4) if increasing else int(level * 4)
        return F.posterize(img, max(bits, 0)) if bits < 8 else img
    if name == "Solarize":
        thresh = 256 - int(level * 256) if increasing else int(level * 256)
        return F.solarize(img, thresh) if thresh < 256 else img
    if name == "SolarizeAdd":
        return _solarize_add(img, int(level * 110))
    if name in ("Color", "Contrast", "Brightness", "Sharpness"):
        factor = 1.0 + _sign(level * 0.9) if increasing else level * 1.8 + 0.1
        factor = max(factor, 0.0)
        if name == "Color":
            return F.adjust_saturation(img, factor) if img.shape[-3] == 3 else img
        if name == "Contrast":
            return F.adjust_contrast(img, factor)
        if name == "Brightness":
            return _blend(img, torch.zeros_like(img), factor)
        return F.adjust_sharpness(img, factor)
    if name == "ShearX":
        return _affine(img, shear=(math.degrees(math.atan(_sign(0.3 * level))), 0.0))
    if name == "ShearY":
        return _affine(img, shear=(0.0, math.degrees(math.atan(_sign(0.3 * level)))))
    if name == "TranslateXRel":
        return _affine(img, translate=(int(round(_sign(0.45 * level) * w)), 0))
    if name == "TranslateYRel":
        return _affine(img, translate=(0, int(round(_sign(0.45 * level) * h))))
    raise KeyError(name)


_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color",
        "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")


class RandAugment(torch.nn.Module):
    """RandAugment on uint8 tensors with timm's magnitude noise (``mstd``) and increasing op set (``inc``)."""

    def __init__(self, magnitude: float = 9.0, num_layers: int = 2, magnitude_std: float = 0.0,
                 increasing: bool = False, prob: float = 0.5) -> None:
        super().__init__()
        self.magnitude, self.num_layers, self.magnitude_std = magnitude, num_layers, magnitude_std
        self.increasing, self.prob = increasing, prob

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        for name in random.choices(_OPS, k=self.num_layers):
            if random.random() > self.prob:
                continue
            m = self.magnitude
            if self.magnitude_std > 0:
                m = random.gauss(m, self.magnitude_std)
            img = _op(name, img, min(max(m, 0.0), _MAX), self.increasing)
        return img

    def extra_repr(self) -> str:
        return (f"magnitude={self.magnitude}, num_layers={self.num_layers}, magnitude_std={self.magnitude_std}, "
                f"increasing={self.increasing}, prob={self.prob}")


def parse_randaugment(spec: str) -> RandAugment:
    """``"rand-m7-mstd0.5-inc1"`` → :class:`RandAugment`; a clear ValueError for anything else."""
    parts = spec.split("-")
    if parts[0] != "rand":
        raise ValueError(f"RandAugment spec must start with 'rand-', got {spec!r}")
    kw: dict = {}
    for part in parts[1:]:
        for key, name, cast in (("mstd", "magnitude_std", float), ("inc", "increasing", lambda v: bool(int(v))),
                                ("m", "magnitude", float), ("n", "num_layers", int), ("p", "prob", float)):
            if part.startswith(key):
                try:
                    kw[name] = cast(part[len(key):])
                except ValueError:
                    raise ValueError(f"bad RandAugment field {part!r} in {spec!r}") from None
                break
        else:
            raise ValueError(f"unknown RandAugment field {part!r} in {spec!r} (known: m, n, mstd, inc, p)")
    return RandAugment(**kw)
