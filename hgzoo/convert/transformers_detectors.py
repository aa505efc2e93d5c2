"""Hugging Face transformers' detector backbones as hgzoo state dicts, and back.

transformers' D-FINE and DEIMv2 run on ``HGNetV2Backbone`` (PP-HGNetV2 B0-B6) by default, its RT-DETR and RT-DETRv2 on
``RTDetrResNetBackbone`` (ResNet-vd); each takes either. Both are hgzoo's networks under other module names, so
converting is renaming; the two key maps below are data (:class:`~hgzoo.convert.keymap.TimmKeyMap` templates, the same
machinery as timm's layouts: one template pair per rule, read transformers → hgzoo, and swapped for the way back).

One detail is not a name: transformers pads PP-HGNetV2's stem max-pool with zeros, PaddleClas (and hgzoo's default)
with -inf ("SAME"). The two agree wherever the stem's first conv outputs no negative value: always without learnable
affine blocks (B4-B6: the value is a ReLU's), and with them (B0-B3) unless that conv's affine block has a negative
bias or scale. See ``docs/detectors_transformers.md``.

* :func:`hf_to_hgzoo` takes transformers' backbone state dict (``HGNetV2Backbone`` / ``RTDetrResNetBackbone``), or a
  whole detector's (D-FINE, DEIMv2, RT-DETR, RT-DETRv2: ``*ForObjectDetection`` or ``*Model``), of which it converts
  the backbone part (``model.backbone.model.*``, ``model.conv_encoder.model.*``, ...); it returns hgzoo's names
  (``create_model(arch).state_dict()`` without the classifier head), which load strictly into
  ``create_model(arch, features_only=True).model``.
* :func:`hgzoo_to_hf` takes hgzoo's state dict of ``arch`` (a classifier's, whose ``head.*`` is dropped, or a
  features-only model's, ``model.``-prefixed) and returns transformers' backbone names, which load strictly into
  ``HGNetV2Backbone`` / ``RTDetrResNetBackbone``, or into a detector's ``model.backbone.model`` (DEIMv2's
  ``model.conv_encoder.model``).

Both are strict: every tensor of the source is used exactly once, every tensor of the target is filled, and shapes are
checked against hgzoo's ``arch``; a problem is a one-line :class:`~hgzoo.convert.CheckpointMismatchError` naming the
key. BatchNorm's ``num_batches_tracked`` is carried over where the source has it, and zero where it has not
(transformers' detectors freeze their backbone's BatchNorms, which then have none).
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from .._files import CheckpointMismatchError
from .._registry import is_model, model_entrypoint, model_family
from .keymap import TimmKeyMap

__all__ = ["HF_HGNETV2_KEY_MAP", "HF_RTDETR_RESNET_KEY_MAP", "hf_to_hgzoo", "hgzoo_to_hf"]

_NBT = "num_batches_tracked"
# A conv and its BatchNorm: transformers' ``convolution`` / ``normalization``, hgzoo's ``conv`` / ``bn``.
_CONV_BN = (
    (".convolution.weight$", ".conv.weight$"),
    (".normalization.{p:weight|bias|running_mean|running_var|num_batches_tracked}$",
     ".bn.{p:weight|bias|running_mean|running_var|num_batches_tracked}$"),
)

#: ``HGNetV2Backbone`` (``embedder`` = the stem, ``encoder.stages``; aggregation convs by position) ↔ PP-HGNetV2.
HF_HGNETV2_KEY_MAP = TimmKeyMap(renames=(
    ("^embedder.", "^stem."),
    ("^encoder.stages.", "^stages."),
    (".aggregation.0.", ".aggregation_squeeze_conv."),
    (".aggregation.1.", ".aggregation_excitation_conv."),
    *_CONV_BN,
))

#: ``RTDetrResNetBackbone`` ↔ ResNet-vd. A block's convs are ``layer.0-2`` there and ``conv1-3`` here. The shortcut of
#: a strided block is ``shortcut.1`` there (``shortcut.0`` is the parameter-free average pool); the stride-1
#: projection of the first stage's first block is ``shortcut`` itself.
HF_RTDETR_RESNET_KEY_MAP = TimmKeyMap(renames=(
    ("^embedder.embedder.{i}.", "^stem.{i}."),
    *((f"^encoder.stages.{{s}}.layers.{{j}}.layer.{k}.", f"^stages.{{s}}.{{j}}.conv{k + 1}.") for k in range(3)),
    ("^encoder.stages.{s:1|2|3}.layers.{j}.shortcut.1.", "^stages.{s:1|2|3}.{j}.downsample.conv."),
    ("^encoder.stages.0.layers.{j}.shortcut.", "^stages.0.{j}.downsample.conv."),
    *_CONV_BN,
))

# Where a backbone sits in transformers' detectors: ``DFineForObjectDetection``, ``RTDetrForObjectDetection`` and
# ``RTDetrV2ForObjectDetection`` (``model.backbone`` is a conv encoder whose ``model`` is the backbone), then their
# ``*Model`` (``backbone.model``); ``Deimv2ForObjectDetection`` and ``Deimv2Model`` call the encoder ``conv_encoder``.
_HF_DETECTOR_PREFIXES = ("model.backbone.model.", "backbone.model.", "model.conv_encoder.model.", "conv_encoder.model.")


def _meta_model(arch: str) -> nn.Module:
    """hgzoo's ``arch`` on the meta device (its structure and shapes, no memory), checked to have a counterpart."""
    if not is_model(arch):
        raise ValueError(f"{arch!r} is not an hgzoo architecture; transformers' detector backbones are "
                         "pphgnetv2_b0..b6 (HGNetV2Backbone) and resnet*_vd (RTDetrResNetBackbone)")
    with torch.device("meta"):
        model: nn.Module = model_entrypoint(arch)()
    if model_family(arch).name not in ("PP-HGNetV2", "ResNet-vd"):
        raise ValueError(f"{arch} has no transformers backbone; those that do are pphgnetv2_b0..b6 (HGNetV2Backbone) "
                         "and resnet*_vd (RTDetrResNetBackbone)")
    return model


def _origin(arch: str) -> tuple[TimmKeyMap, str, dict[str, torch.Size]]:
    """The key map of ``arch``, transformers' class name for it, and hgzoo's backbone tensors (name → shape)."""
    model = _meta_model(arch)
    if model_family(arch).name == "PP-HGNetV2":
        key_map, hf_class = HF_HGNETV2_KEY_MAP, "HGNetV2Backbone"
    else:
        key_map, hf_class = HF_RTDETR_RESNET_KEY_MAP, "RTDetrResNetBackbone"
    shapes = {k: v.shape for k, v in model.state_dict().items() if not k.startswith("head.")}
    return key_map, hf_class, shapes


def _hf_backbone_part(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The backbone's tensors of a transformers state dict: a whole detector's ``...backbone.model.*``, or all."""
    for prefix in _HF_DETECTOR_PREFIXES:
        if any(k.startswith(prefix) for k in state_dict):
            return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    return dict(state_dict)


def _hgzoo_backbone_part(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """hgzoo's backbone tensors: a features-only model's (``model.*``) or a classifier's without its ``head.*``."""
    if state_dict and all(k.startswith("model.") for k in state_dict):
        return {k[len("model."):]: v for k, v in state_dict.items()}
    return {k: v for k, v in state_dict.items() if not k.startswith("head.")}


def _check_complete(out: dict, shapes: Mapping[str, torch.Size], name_of, where: str) -> None:
    """Every tensor of the target is there (``num_batches_tracked`` is filled with 0 where the source has none)."""
    missing = [k for k in shapes if k not in out and not k.endswith(_NBT)]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointMismatchError(f"{where}: {name_of(missing[0])!r} is missing{more}")
    for k in shapes:
        if k.endswith(_NBT) and k not in out:
            out[k] = torch.zeros((), dtype=torch.long)


def hf_to_hgzoo(state_dict: Mapping[str, torch.Tensor], arch: str) -> dict[str, torch.Tensor]:
    """transformers' backbone state dict (or a detector's, whose backbone part is taken) as hgzoo's ``arch``.

    Returns hgzoo's backbone names (as ``create_model(arch).state_dict()``, without ``head.*``), for
    ``create_model(arch, features_only=True).model.load_state_dict(...)``. Raises :class:`CheckpointMismatchError`
    (one line, naming the key) for a tensor that is not one of ``arch``'s, a missing one, or another shape.
    """
    key_map, hf_class, shapes = _origin(arch)
    where = f"transformers' {hf_class} → hgzoo's {arch}"
    out: dict[str, torch.Tensor] = {}
    for k, v in _hf_backbone_part(state_dict).items():
        new = key_map.to_hgzoo(k)
        if new not in shapes or key_map.to_timm(new) != k:
            raise CheckpointMismatchError(f"{where}: {k!r} is not a tensor of {arch} (it would be {new!r})")
        if tuple(v.shape) != tuple(shapes[new]):
            raise CheckpointMismatchError(f"{where}: {k!r} has shape {tuple(v.shape)}, {arch}'s {new!r} has "
                                          f"{tuple(shapes[new])}: is it another variant?")
        out[new] = v
    _check_complete(out, shapes, key_map.to_timm, where)
    return out


def hgzoo_to_hf(state_dict: Mapping[str, torch.Tensor], arch: str) -> dict[str, torch.Tensor]:
    """hgzoo's ``arch`` state dict (a classifier's, whose ``head.*`` is dropped, or a features-only model's) as
    transformers' ``HGNetV2Backbone`` / ``RTDetrResNetBackbone`` state dict.

    Load it with ``backbone.load_state_dict(...)``, or into a detector with ``detector.model.backbone.model
    .load_state_dict(...)``. Raises :class:`CheckpointMismatchError` (one line, naming the key) for a tensor that is
    not one of ``arch``'s, a missing one, or another shape.
    """
    key_map, hf_class, shapes = _origin(arch)
    where = f"hgzoo's {arch} → transformers' {hf_class}"
    own: dict[str, torch.Tensor] = {}
    for k, v in _hgzoo_backbone_part(state_dict).items():
        if k not in shapes:
            raise CheckpointMismatchError(f"{where}: {k!r} is not a tensor of {arch}")
        if tuple(v.shape) != tuple(shapes[k]):
            raise CheckpointMismatchError(f"{where}: {k!r} has shape {tuple(v.shape)}, {arch}'s has "
                                          f"{tuple(shapes[k])}: is it another variant?")
        own[k] = v
    _check_complete(own, shapes, str, where)
    out: dict[str, torch.Tensor] = {}
    for k, v in own.items():
        new = key_map.to_timm(k)
        if key_map.to_hgzoo(new) != k or new in out:
            raise CheckpointMismatchError(f"{where}: {k!r} has no unique transformers name (got {new!r})")
        out[new] = v
    return out
