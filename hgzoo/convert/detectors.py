"""The real-time detectors' backbone layouts, as data: D-FINE / DEIM's ``HGNetv2``, RT-DETRv2's ``HGNetv2`` and
RT-DETR's (v1, v2, D-FINE's) ``PResNet``, each a two-way key map between their state-dict names and hgzoo's native
ones (``create_model("pphgnetv2_b4")`` / ``create_model("resnet50_vd")`` without the head).

Read off their code (D-FINE's ``src/nn/backbone/hgnetv2.py`` and ``presnet.py``, the PyPI package ``d-fine-project``
1.0.0; RT-DETRv2's ``rtdetrv2_pytorch/src/nn/backbone/hgnetv2.py``) and checked against D-FINE's in the tests:

* D-FINE / DEIM ``HGNetv2``: hgzoo's names, except the two aggregation convs of a block, ``aggregation.0`` and
  ``aggregation.1`` (timm's names, too).
* RT-DETRv2 ``HGNetv2``: hgzoo's (PaddleClas's) names, except the stem's two 2x2 convs, which sit in a
  ``Sequential(ZeroPad2d, Conv2d)``: ``stem.stem2a.conv.1.weight``, ``stem.stem2b.conv.1.weight``.
* ``PResNet``: ``conv1.conv1_{1,2,3}``, ``res_layers.{s}.blocks.{j}.branch2{a,b,c}``, BatchNorm ``norm``; the first
  block's shortcut is ``short`` (a conv-norm) in stage 0 and ``short.conv`` (after an average pool) in the others.

:func:`to_hgzoo` and :func:`from_hgzoo` convert a backbone state dict, or the ``backbone.*`` part of a whole
detector's, and check it against the network strictly (every key used once, none missing, every shape equal).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from .keymap import TimmKeyMap

__all__ = ["DETECTOR_KEY_MAPS", "DetectorKeyMap", "backbone_part", "from_hgzoo", "hgzoo_arch", "to_hgzoo"]


@dataclass(frozen=True)
class DetectorKeyMap:
    """One origin's backbone names. ``renames``: ordered (their template, hgzoo template) pairs, in the template
    language of :class:`~hgzoo.convert.keymap.TimmKeyMap` (applied in order theirs → hgzoo, reversed back).
    ``names``: their ``name`` / ``depth`` argument → the hgzoo architecture it builds."""

    origin: str
    description: str
    renames: tuple[tuple[str, str], ...]
    names: tuple[tuple[str, str], ...]

    @property
    def _map(self) -> TimmKeyMap:
        return TimmKeyMap(renames=self.renames)

    def to_hgzoo(self, key: str) -> str:
        return self._map.to_hgzoo(key)

    def to_theirs(self, key: str) -> str:
        return self._map.to_timm(key)


_HG_NAMES = (*((f"B{i}", f"pphgnetv2_b{i}") for i in range(7)),
             ("L", "pphgnetv2_b4"), ("X", "pphgnetv2_b5"), ("H", "pphgnetv2_b6"))

DETECTOR_KEY_MAPS: dict[str, DetectorKeyMap] = {
    "dfine": DetectorKeyMap(
        "dfine", "D-FINE / DEIM HGNetv2 (src/nn/backbone/hgnetv2.py)",
        renames=((".aggregation.0.", ".aggregation_squeeze_conv."),
                 (".aggregation.1.", ".aggregation_excitation_conv.")),
        names=_HG_NAMES),
    "rtdetrv2": DetectorKeyMap(
        "rtdetrv2", "RT-DETRv2 HGNetv2 (rtdetrv2_pytorch/src/nn/backbone/hgnetv2.py)",
        renames=(("^stem.stem2{b:a|b}.conv.1.weight$", "^stem.stem2{b}.conv.weight$"),),
        names=_HG_NAMES),
    "presnet": DetectorKeyMap(
        "presnet", "RT-DETR v1/v2 and D-FINE PResNet (src/nn/backbone/presnet.py)",
        renames=(
            ("^res_layers.{s}.blocks.{j}.", "^stages.{s}.{j}."),
            ("^stages.0.0.short.", "^stages.0.0.downsample.conv."),
            ("^stages.{s:1|2|3}.0.short.conv.", "^stages.{s:1|2|3}.0.downsample.conv."),
            *((f"^conv1.conv1_{i + 1}.", f"^stem.{i}.") for i in range(3)),
            (".branch2a.", ".conv1."), (".branch2b.", ".conv2."), (".branch2c.", ".conv3."),
            (".norm.", ".bn."),
        ),
        names=tuple((str(d), f"resnet{d}_vd") for d in (18, 34, 50, 101))),
}


def hgzoo_arch(origin: str, name: str | int) -> str:
    """The hgzoo architecture of their ``name`` (HGNetv2: ``"B0"``..``"B6"``, ``"L"``, ``"X"``, ``"H"``) or
    ``depth`` (PResNet: 18, 34, 50, 101)."""
    key_map = _key_map(origin)
    names = dict(key_map.names)
    if str(name) not in names:
        raise ValueError(f"{key_map.description} has no {name!r}; valid: {', '.join(names)}")
    return names[str(name)]


def _key_map(origin: str) -> DetectorKeyMap:
    if origin not in DETECTOR_KEY_MAPS:
        raise ValueError(f"unknown detector layout {origin!r}; valid: {', '.join(DETECTOR_KEY_MAPS)}")
    return DETECTOR_KEY_MAPS[origin]


def backbone_part(obj: object) -> dict[str, torch.Tensor]:
    """The backbone state dict in a file's contents: the file itself (a backbone file), or the ``backbone.*`` keys of
    a whole detector's checkpoint (its ``ema.module`` if it has one, as the detectors evaluate it, else ``model``)."""
    if isinstance(obj, Mapping) and isinstance(obj.get("ema"), Mapping) and "module" in obj["ema"]:
        obj = obj["ema"]["module"]
    elif isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError("not a state dict (a mapping of names to tensors), nor a detector checkpoint holding one "
                         "under 'model' or 'ema'/'module'")
    if any(k.startswith("backbone.") for k in obj):
        return {k[len("backbone."):]: v for k, v in obj.items() if k.startswith("backbone.")}
    return dict(obj)


def _reference_shapes(arch: str) -> dict[str, torch.Size]:
    """hgzoo's native backbone names and shapes of ``arch`` (its classifier's, less the head)."""
    from .._registry import model_entrypoint  # the builder, through the registry (the models sit above convert/)

    with torch.device("meta"):
        model = model_entrypoint(arch)(num_classes=0)
    return {k: v.shape for k, v in model.state_dict().items() if not k.startswith("head.")}


def _check_strict(sd: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Size], what: str) -> None:
    """Every expected key present (``num_batches_tracked`` optional: FrozenBatchNorm2d has none), none extra, every
    shape equal."""
    missing = [k for k in expected if k not in sd and not k.endswith("num_batches_tracked")]
    extra = [k for k in sd if k not in expected]
    wrong = [f"{k} {tuple(sd[k].shape)} vs {tuple(expected[k])}" for k in sd
             if k in expected and sd[k].shape != expected[k]]
    if missing or extra or wrong:
        raise ValueError(f"{what}: {len(missing)} missing (e.g. {missing[:3]}), {len(extra)} unexpected "
                         f"(e.g. {extra[:3]}), {len(wrong)} of another shape (e.g. {wrong[:3]})")


def _renamed(sd: Mapping[str, torch.Tensor], rename) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        new = rename(k)
        if new in out:
            raise ValueError(f"two keys become {new!r}")
        out[new] = v
    return out


def to_hgzoo(sd: Mapping[str, torch.Tensor], origin: str, name: str | int) -> dict[str, torch.Tensor]:
    """Their backbone state dict (or a detector checkpoint's ``backbone.*``) → hgzoo's native names, checked strictly
    against ``hgzoo_arch(origin, name)``."""
    key_map, arch = _key_map(origin), hgzoo_arch(origin, name)
    out = _renamed(backbone_part(sd), key_map.to_hgzoo)
    _check_strict(out, _reference_shapes(arch), f"{key_map.description} {name} → hgzoo {arch}")
    return out


def from_hgzoo(sd: Mapping[str, torch.Tensor], origin: str, name: str | int) -> dict[str, torch.Tensor]:
    """hgzoo's native state dict of ``hgzoo_arch(origin, name)`` (a classifier's head keys are dropped) → their
    backbone names, checked strictly."""
    key_map, arch = _key_map(origin), hgzoo_arch(origin, name)
    native = {k: v for k, v in sd.items() if not k.startswith("head.")}
    _check_strict(native, _reference_shapes(arch), f"hgzoo {arch} → {key_map.description} {name}")
    return _renamed(native, key_map.to_theirs)
