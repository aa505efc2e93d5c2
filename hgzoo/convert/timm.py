"""timm state dicts, both ways, for every family timm has (``hgnet_*``, ``hgnetv2_*``, ``lcnetv2_*``, ``hrnet_w*``,
``resnet*d``).

The key maps are data: each family's ``TIMM_KEY_MAP`` (a :class:`~hgzoo.convert.keymap.TimmKeyMap`) sits in its model
file beside its ``PADDLE_KEY_MAP``, so that everything a family's layouts need is read in one place. This module
applies them, plus the three cases that are not renames:

* **HRNet's head conv biases** (timm's Microsoft-trained ``hrnet_w*``): ``BN(conv(x) + b)`` equals ``BN'(conv(x))``
  with ``running_mean' = running_mean - b`` (``(conv + b - mean) = (conv - (mean - b))``); the reverse writes zero
  biases and keeps the means.
* **ResNet18/34-d's first block** has no projection in timm; PaddleClas's has a 1x1 conv + BN, filled with an exact
  identity (conv = I, BN weight 1, bias 0, mean 0, var = 1 - eps). The reverse refuses a projection that is not the
  identity.
* **The dropout convention**: PaddleClas's PP-LCNetV2 and PPHGNet_base heads (and hgzoo's) multiply by ``1 - p`` at
  eval, right before the fc; timm's do not. A checkpoint trained with timm's convention gets its fc weight divided by
  ``1 - p`` (hgzoo → timm: multiplied), so the converted model gives its source's own logits. The bias is not scaled
  (it comes after the dropout), so top-1 is the source's too: the converted logits are the source's, exactly.
"""
from __future__ import annotations

import importlib
import sys

import torch
from torch import nn

from .._files import CheckpointMismatchError
from .._registry import list_models, model_entrypoint
from ..layers.head import Dropout
from .keymap import TimmArch, TimmKeyMap

__all__ = [
    "timm_to_hgzoo", "hgzoo_to_timm", "looks_like_timm", "find_timm_arch", "timm_archs_of", "dropout_scale",
    "timm_key_maps",
]

_FC = ("head.fc.weight", "head.fc.bias")
_IDENTITY_TOLERANCE = 1e-6


def timm_key_maps() -> list[TimmKeyMap]:
    """Every family's timm key maps (the ``TIMM_KEY_MAP*`` of each model file), in registry order."""
    out: list[TimmKeyMap] = []
    for module_name in dict.fromkeys(model_entrypoint(n).__module__ for n in list_models()):
        module = sys.modules.get(module_name) or importlib.import_module(module_name)
        for attr in sorted(a for a in vars(module) if a.startswith("TIMM_KEY_MAP")):
            key_map = getattr(module, attr)
            if isinstance(key_map, TimmKeyMap) and key_map not in out:
                out.append(key_map)
    return out


def find_timm_arch(timm_name: str) -> tuple[TimmKeyMap, TimmArch]:
    """The key map and arch record of a timm architecture name (``"hgnet_small"``; a ``.tag`` is ignored).

    Raises ``ValueError`` for a timm network that has the name but not the structure of an hgzoo one
    (``resnet200d``), and for one hgzoo has no counterpart of, listing those it has.
    """
    name = timm_name.partition(".")[0]
    for key_map in timm_key_maps():
        reason = key_map.refusal(name)
        if reason:
            raise ValueError(f"timm's {name} is refused: {reason}")
        arch = key_map.arch(name)
        if arch is not None:
            return key_map, arch
    known = sorted(a.timm for m in timm_key_maps() for a in m.archs)
    raise ValueError(f"timm architecture {name!r} has no hgzoo counterpart; the ones that do: {', '.join(known)}")


def timm_archs_of(hgzoo_arch: str) -> list[TimmArch]:
    """timm's architectures that are ``hgzoo_arch`` (``hrnet_w18_c`` → ``hrnet_w18``, ``hrnet_w18_ssld``)."""
    return [a for m in timm_key_maps() for a in m.archs if a.hgzoo == hgzoo_arch]


def _key_map_of(model: nn.Module) -> TimmKeyMap:
    key_map = getattr(model, "timm_key_map", None)
    if not isinstance(key_map, TimmKeyMap):
        raise ValueError(f"{type(model).__name__} has no timm counterpart (no timm_key_map), so it has no timm layout")
    return key_map


def dropout_scale(model: nn.Module) -> float:
    """``1 - p`` when ``model``'s head multiplies by it at eval (Paddle's ``downscale_in_infer``), else 1."""
    head = getattr(model, "head", None)
    d = getattr(head, "dropout", None)
    if isinstance(d, Dropout) and d.mode == "downscale_in_infer" and d.p > 0:
        return 1.0 - d.p
    return 1.0


def looks_like_timm(keys, model: nn.Module) -> bool:
    """Whether state-dict ``keys`` are in timm's layout of ``model``'s family: not all ``model``'s own names, and
    nine in ten of them become ``model``'s names through the family's timm key map."""
    key_map = getattr(model, "timm_key_map", None)
    keys = [k for k in keys if not k.endswith("num_batches_tracked")]
    if not isinstance(key_map, TimmKeyMap) or not keys:
        return False
    own = set(model.state_dict())
    if all(k in own for k in keys):
        return False
    hits = sum(key_map.to_hgzoo(k) in own or key_map.fold_target(key_map.to_hgzoo(k)) is not None for k in keys)
    return hits >= 0.9 * len(keys)


def _identity_conv_bn(model: nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    """An exact identity for the conv-BN module at ``prefix``: conv = I, BN weight 1, bias 0, mean 0, var 1 - eps."""
    module = model.get_submodule(prefix.rstrip("."))
    conv, bn = module.conv, module.bn
    if conv.in_channels != conv.out_channels or conv.kernel_size != (1, 1) or conv.groups != 1:
        raise CheckpointMismatchError(f"{prefix}: a {conv} cannot be an identity")
    n = conv.out_channels
    return {
        f"{prefix}conv.weight": torch.eye(n).reshape(n, n, 1, 1),
        f"{prefix}bn.weight": torch.ones(n), f"{prefix}bn.bias": torch.zeros(n),
        f"{prefix}bn.running_mean": torch.zeros(n), f"{prefix}bn.running_var": torch.full((n,), 1.0 - bn.eps),
    }


def _rename(sd: dict[str, torch.Tensor], key_map: TimmKeyMap, name: str) -> tuple[dict, dict]:
    out, origin = {}, {}
    for k, v in sd.items():
        if k.endswith("num_batches_tracked"):
            continue
        new = key_map.to_hgzoo(k)
        if new in origin:
            raise CheckpointMismatchError(f"{name}: timm keys {origin[new]!r} and {k!r} both map to {new!r}")
        origin[new], out[new] = k, v
    return out, origin


def _check_fits(out: dict, origin: dict, model: nn.Module, key_map: TimmKeyMap, name: str) -> None:
    from .paddle import _mismatch_report

    target = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    stem = f"{getattr(model, 'first_conv', '')}.weight"
    unexpected = [f"{origin.get(k, k)} (as {k})" for k in out if k not in target and k not in _FC]
    missing = sorted(k for k in target if k not in out and k not in _FC)
    mismatched = []
    for k, v in out.items():
        if k in target and k not in _FC and tuple(v.shape) != tuple(target[k].shape):
            other_chans = k == stem and v.ndim == 4 and v.shape[0] == target[k].shape[0]
            if not other_chans:  # another in_chans: the loader adapts the RGB stem weights
                mismatched.append(f"{origin.get(k, k)}: checkpoint {tuple(v.shape)} vs model {tuple(target[k].shape)}")
    if missing or unexpected or mismatched:
        # A timm network named like one of ours but built otherwise fails here: say so by name.
        notes = "".join(f"\n  (is it timm's {t}? {reason})" for t, reason in key_map.refused)
        raise CheckpointMismatchError(f"{name} (timm layout): " + _mismatch_report(type(model).__name__, missing,
                                                                                  unexpected, mismatched) + notes)


def timm_to_hgzoo(sd: dict[str, torch.Tensor], model: nn.Module, *, dropout_convention: str = "timm",
                  name: str = "the checkpoint") -> dict[str, torch.Tensor]:
    """A timm state dict of ``model``'s family as ``model``'s state dict.

    The classifier is kept whatever its class count (the loader re-initialises one that does not fit), and so is an
    RGB stem for a model with other ``in_chans`` (the loader adapts it). ``dropout_convention``: ``"timm"`` for a
    checkpoint trained with timm's dropout (the fc weight is divided by :func:`dropout_scale`), ``"paddle"`` for one
    holding PaddleClas's own tensors (timm's mirrors of Paddle's weights; loaded as they are). Raises
    :class:`CheckpointMismatchError` listing every missing, unexpected and mismatched key.
    """
    if dropout_convention not in ("timm", "paddle"):
        raise ValueError(f"dropout_convention must be 'timm' or 'paddle', got {dropout_convention!r}")
    key_map = _key_map_of(model)
    out, origin = _rename(sd, key_map, name)
    own = model.state_dict()
    for key in [k for k in out if k not in own]:
        bn = key_map.fold_target(key)
        if bn is not None and f"{bn}running_mean" in out:
            bias = out.pop(key)
            out[f"{bn}running_mean"] = out[f"{bn}running_mean"] - bias.to(out[f"{bn}running_mean"].dtype)
    for prefix in key_map.identity_shortcuts:
        keys = [k for k in own if k.startswith(prefix) and not k.endswith("num_batches_tracked")]
        if keys and not any(k in out for k in keys):
            out.update(_identity_conv_bn(model, prefix))
    _check_fits(out, origin, model, key_map, name)
    if dropout_convention == "timm" and "head.fc.weight" in out and dropout_scale(model) != 1.0:
        out["head.fc.weight"] = out["head.fc.weight"] / dropout_scale(model)
    result = {k: (v.to(own[k].dtype) if k in own else v.float()).contiguous() for k, v in out.items()}
    for k, v in own.items():
        if k.endswith("num_batches_tracked"):
            result[k] = torch.zeros_like(v)
    return result


def _identity_error(sd: dict, prefix: str, eps: float) -> float:
    """How far the conv-BN at ``prefix`` is from the identity map (the largest deviation of its effective affine)."""
    w = sd[f"{prefix}conv.weight"].double()
    n = w.shape[0]
    scale = sd[f"{prefix}bn.weight"].double() / torch.sqrt(sd[f"{prefix}bn.running_var"].double() + eps)
    shift = sd[f"{prefix}bn.bias"].double() - sd[f"{prefix}bn.running_mean"].double() * scale
    effective = w.reshape(n, -1) * scale[:, None]
    if effective.shape != (n, n):
        return float("inf")
    return float(max((effective - torch.eye(n, dtype=torch.float64)).abs().max(), shift.abs().max()))


def hgzoo_to_timm(sd: dict[str, torch.Tensor], model: nn.Module, hgzoo_arch: str, timm_name: str,
                  *, name: str = "the checkpoint") -> dict[str, torch.Tensor]:
    """``model``'s state dict ``sd`` (an ``hgzoo_arch``) as timm's ``timm_name`` state dict, for timm's definition of
    the network: its fc weight times :func:`dropout_scale`, HRNet's head conv biases zero, and ResNet18/34-d's
    identity projection dropped (refused if it is not the identity)."""
    key_map, arch = find_timm_arch(timm_name)
    if arch.hgzoo != hgzoo_arch:
        raise ValueError(f"timm's {arch.timm} is hgzoo's {arch.hgzoo}, not {hgzoo_arch}")
    sd = dict(sd)
    if arch.identity_shortcut:
        for prefix in key_map.identity_shortcuts:
            eps = model.get_submodule(f"{prefix}bn").eps
            err = _identity_error(sd, prefix, eps)
            if err > _IDENTITY_TOLERANCE:
                raise ValueError(
                    f"{name}: the first block's projection shortcut ({prefix.rstrip('.')}) is not the identity (it "
                    f"differs by {err:.3g}); timm's {arch.timm} has no projection there, so these weights have no timm "
                    "equivalent")
            sd = {k: v for k, v in sd.items() if not k.startswith(prefix)}
    if arch.head_conv_bias:
        for k in [k for k in sd if k.endswith("conv.weight")]:
            bias = k[: -len("weight")] + "bias"
            if key_map.fold_target(bias) is not None:
                sd[bias] = torch.zeros(sd[k].shape[0], dtype=sd[k].dtype)
    if "head.fc.weight" in sd and dropout_scale(model) != 1.0:
        sd["head.fc.weight"] = sd["head.fc.weight"] * dropout_scale(model)
    out = {}
    for k, v in sd.items():
        new = key_map.to_timm(k)
        if new in out:
            raise CheckpointMismatchError(f"{name}: two keys map to timm's {new!r}")
        out[new] = v.contiguous()
    return out
