"""RandAugment as PaddleClas's ``TimmAutoAugment`` runs it, e.g. ``rand-m7-mstd0.5-inc1``: timm's
``rand_augment_transform`` (PaddleClas's op is its own copy of timm's), with PaddleClas's settings: bicubic
resampling, geometric ops fill with the ImageNet mean, ``translate_const = int(0.45 * img_size)``.

timm is optional for hgzoo, and this op needs it: without timm it raises an ImportError that says so
(train.py reports it as bad input, with ``--randaugment none`` to turn RandAugment off). The ``paddleclas``
wheel does not ship PaddleClas's op, so it is tested against timm's. Works on uint8 (C, H, W) tensors with
1 or 3 channels, through PIL as PaddleClas's and timm's ops do.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image, ImageOps
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from ..pretrained import IMAGENET_MEAN

__all__ = ["RandAugment", "parse_randaugment"]

# The numeric fields of timm's spec, ``rand-m{M}-n{N}-mstd{S}-mmax{X}-inc{0|1}-p{P}``, and their types.
_FIELDS = (("mstd", float), ("mmax", int), ("inc", int), ("m", int), ("n", int), ("p", float))


def _timm_rand_augment():
    try:
        from timm.data.auto_augment import rand_augment_transform
    except ImportError:
        raise ImportError("RandAugment is timm's, and timm is not installed: pip install timm") from None
    return rand_augment_transform


def _posterize(img: Image.Image, bits_to_keep: int, **_) -> Image.Image:
    """Posterize as PIL did before Pillow 13, which refuses 0 bits: 0 bits keep nothing (a black image)."""
    if bits_to_keep >= 8:
        return img
    return ImageOps.posterize(img, bits_to_keep) if bits_to_keep > 0 else Image.new(img.mode, img.size)


def _posterize_to_zero_bits(augment):
    """timm's RandAugment ``augment`` with its posterize ops able to keep 0 bits, which "increasing" posterize asks
    for at magnitude 10 (``rand-m15-...``, PP-HGNet-base's recipe) and Pillow 13 refuses. Returns ``augment``."""
    for op in augment.ops:
        if op.name.startswith("Posterize"):
            op.aug_fn = _posterize
    return augment


class RandAugment(torch.nn.Module):
    """timm's RandAugment ``spec`` with PaddleClas's ``TimmAutoAugment`` settings, on a uint8 (C, H, W) tensor.

    One-channel images are filled with the grey of the mean (PIL's ``L`` images take one fill value).
    """

    def __init__(self, spec: str, img_size: int = 224, mean: Sequence[float] = IMAGENET_MEAN) -> None:
        super().__init__()
        check_randaugment(spec)
        make = _timm_rand_augment()
        fill = tuple(min(255, round(255 * m)) for m in mean)
        self.spec = spec
        self.rgb = _posterize_to_zero_bits(
            make(spec, dict(translate_const=int(img_size * 0.45), img_mean=fill, interpolation=Image.BICUBIC)))
        self.grey = _posterize_to_zero_bits(make(spec, dict(
            translate_const=int(img_size * 0.45), img_mean=round(sum(fill) / len(fill)), interpolation=Image.BICUBIC)))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        augment = self.grey if img.shape[-3] == 1 else self.rgb
        out = F.pil_to_tensor(augment(F.to_pil_image(img)))
        return tv_tensors.Image(out) if isinstance(img, tv_tensors.Image) else out

    def extra_repr(self) -> str:
        return repr(self.spec)


def check_randaugment(spec: str) -> None:
    """Raise a one-line ValueError unless ``spec`` is a RandAugment spec timm reads (``rand-m7-mstd0.5-inc1``)."""
    parts = spec.split("-")
    if parts[0] != "rand":
        raise ValueError(f"RandAugment spec must start with 'rand-', got {spec!r}")
    for part in parts[1:]:
        for key, cast in _FIELDS:
            if part.startswith(key):
                try:
                    cast(part[len(key):])
                except ValueError:
                    raise ValueError(f"bad RandAugment field {part!r} in {spec!r}") from None
                break
        else:
            raise ValueError(f"unknown RandAugment field {part!r} in {spec!r} (known: m, n, mstd, mmax, inc, p)")


def parse_randaugment(spec: str, img_size: int = 224) -> RandAugment:
    """``"rand-m7-mstd0.5-inc1"`` → :class:`RandAugment`; ValueError for a bad spec, ImportError without timm."""
    return RandAugment(spec, img_size)
