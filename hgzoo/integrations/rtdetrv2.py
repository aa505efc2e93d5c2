"""RT-DETRv2's ``HGNetv2`` (``rtdetrv2_pytorch/src/nn/backbone/hgnetv2.py``), built by hgzoo, and its ``PResNet``
(the same as RT-DETR v1's and D-FINE's, :class:`hgzoo.integrations.rtdetr.PResNet`).

It differs from D-FINE's in its arguments (no ``freeze_stem_only``, no ``local_model_dir``), its defaults
(``freeze_at=-1``, ``freeze_norm=False``, ``pretrained=False``), its freeze rule (the stem and the first
``min(freeze_at, 4)`` stages) and its names: PaddleClas's aggregation names, and the stem's 2x2 convs inside a
``Sequential(ZeroPad2d, Conv2d)`` (``stem.stem2a.conv.1.weight``). RT-DETRv2's code is not on PyPI: this class is
tested against D-FINE's code plus these documented differences, not against its own.
"""
from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ..layers import ConvBNAct
from .rtdetr import HGNetv2Base, PResNet
from .rtdetr import register_backbones as _register

__all__ = ["HGNetv2", "PResNet", "register_backbones"]


def _zero_pad_first(layer: ConvBNAct) -> None:
    """RT-DETRv2's 2x2 "same" conv: the same right/bottom zero pad, as a ZeroPad2d before the conv (``conv.1``)."""
    layer.same_pad = False
    layer.conv = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), layer.conv)


class HGNetv2(HGNetv2Base):
    """RT-DETRv2's ``HGNetv2``: ``name`` ``"L"``, ``"X"``, ``"H"`` (also ``"B0"``..``"B6"``), ``use_lab``,
    ``return_idx``, ``freeze_at`` (the stem and ``min(freeze_at, 4)`` stages), ``freeze_norm``, ``pretrained``
    (``True``: their file in torch's hub cache if there, else hgzoo's weights held to be the same; a path or URL).
    hgzoo's: ``stem_pool`` (``"zero"``, theirs; ``"same"``, PaddleClas's) and ``freeze_eval``."""

    origin = "rtdetrv2"

    def __init__(self, name: str, use_lab: bool = False, return_idx: Sequence[int] = (1, 2, 3), freeze_at: int = -1,
                 freeze_norm: bool = False, pretrained: bool | str = False, stem_pool: str = "zero",
                 freeze_eval: bool = False) -> None:
        super().__init__()
        self._build(name, use_lab, return_idx, stem_pool)
        _zero_pad_first(self.stem.stem2a)
        _zero_pad_first(self.stem.stem2b)
        if isinstance(freeze_at, bool) or not isinstance(freeze_at, int):
            raise TypeError(f"freeze_at must be an int (-1: nothing frozen), got {freeze_at!r}")
        self._finish(min(freeze_at, len(self.stages)), freeze_at >= 0, freeze_norm, freeze_eval)
        self._load_pretrained(pretrained)

    def _their_key(self) -> tuple[str, str]:
        # Their files are L/X/H (B4/B5/B6); B0-B3 have none, and take D-FINE's.
        name = {"B4": "L", "B5": "X", "B6": "H"}.get(self.name, self.name)
        return (self.origin, name) if name in ("L", "X", "H") else ("dfine", name)

    def _prepare_deploy(self) -> None:
        for layer in (self.stem.stem2a, self.stem.stem2b):
            if isinstance(layer.conv, nn.Sequential):
                layer.conv, layer.same_pad = layer.conv[1], True


def register_backbones(package: str) -> None:
    """RT-DETRv2's line in its ``src/nn/backbone/__init__.py``: registers this :class:`HGNetv2`, :class:`PResNet` and
    :class:`~hgzoo.integrations.rtdetr.HGZooBackbone` in place of theirs."""
    _register(package, HGNetv2)
