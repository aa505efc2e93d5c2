"""Activation and norm layers by name or class, as timm's ``get_act_layer`` / ``get_norm_layer`` take them: the one
place where a model's ``act_layer=`` and ``norm_layer=`` are resolved."""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Union

import torch
from torch import nn

from .norm import GroupNorm, GroupNorm1, LayerNorm2d, _frozen_bn

__all__ = ["LayerType", "ACT_LAYERS", "NORM_LAYERS", "create_act", "get_act_layer", "get_norm_layer",
           "is_foldable_norm", "layer_name", "resolve_act_norm"]

#: What ``act_layer=`` / ``norm_layer=`` take: a name, a class, or a callable (``functools.partial``) that builds one.
LayerType = Union[str, type[nn.Module], Callable[..., nn.Module]]

#: timm's activation names (``timm.layers.get_act_layer``) that hgzoo resolves without timm, to torch's modules.
ACT_LAYERS: dict[str, Callable[..., nn.Module]] = {
    "relu": nn.ReLU, "relu6": nn.ReLU6, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "celu": nn.CELU, "selu": nn.SELU,
    "prelu": nn.PReLU, "silu": nn.SiLU, "swish": nn.SiLU, "mish": nn.Mish, "gelu": nn.GELU,
    "gelu_tanh": functools.partial(nn.GELU, approximate="tanh"), "sigmoid": nn.Sigmoid, "tanh": nn.Tanh,
    "hard_sigmoid": nn.Hardsigmoid, "hardsigmoid": nn.Hardsigmoid, "hard_swish": nn.Hardswish,
    "hardswish": nn.Hardswish, "identity": nn.Identity,
}

#: timm's norm names (``timm.layers.get_norm_layer``: case and underscores ignored) that hgzoo resolves without timm.
#: Each is called with the channel count alone. ``frozenbatchnorm2d`` is torchvision's, imported on first use.
NORM_LAYERS: dict[str, Callable[[], Callable[..., nn.Module]]] = {
    "batchnorm": lambda: nn.BatchNorm2d, "batchnorm2d": lambda: nn.BatchNorm2d,
    "syncbatchnorm": lambda: nn.SyncBatchNorm, "frozenbatchnorm2d": _frozen_bn,
    "groupnorm": lambda: GroupNorm, "groupnorm1": lambda: GroupNorm1, "layernorm2d": lambda: LayerNorm2d,
}


def _timm_layer(kind: str, name: str) -> Callable[..., nn.Module] | None:
    """timm's resolution of a name hgzoo does not know (None where timm is absent or does not know it either)."""
    try:
        from timm import layers
    except ImportError:
        return None
    try:
        return (layers.get_act_layer if kind == "act" else layers.get_norm_layer)(name)
    except (KeyError, AssertionError):
        return None


def _check_callable(kind: str, layer: object) -> Callable[..., nn.Module]:
    if not callable(layer):
        raise TypeError(f"{kind}_layer must be a name, a class or a callable that builds a module, got {layer!r}")
    return layer


def get_act_layer(act_layer: LayerType | None) -> Callable[..., nn.Module] | None:
    """The activation class of ``act_layer``: a name of :data:`ACT_LAYERS` (case ignored; any other name timm's
    ``get_act_layer`` knows, where timm is installed), or a class or ``functools.partial`` (used as is).
    ``None`` stays ``None`` (no activation, where the caller allows it)."""
    if act_layer is None or not isinstance(act_layer, str):
        return act_layer if act_layer is None else _check_callable("act", act_layer)
    layer = ACT_LAYERS.get(act_layer.lower()) or _timm_layer("act", act_layer.lower())
    if layer is None:
        raise ValueError(f"act_layer={act_layer!r} is not an activation hgzoo (or timm) knows; use one of "
                         f"{', '.join(sorted(ACT_LAYERS))}, or a class")
    return layer


def get_norm_layer(norm_layer: LayerType) -> Callable[..., nn.Module]:
    """The norm class of ``norm_layer``, called with the channel count: a name of :data:`NORM_LAYERS` (case and
    underscores ignored, as timm's; any other name timm's ``get_norm_layer`` knows, where timm is installed), or a
    class or ``functools.partial`` (used as is)."""
    if not isinstance(norm_layer, str):
        if norm_layer is None:
            raise ValueError("norm_layer=None: give a norm's name or class ('batchnorm2d' is the default)")
        return _check_callable("norm", norm_layer)
    key = norm_layer.replace("_", "").lower()
    layer = NORM_LAYERS[key]() if key in NORM_LAYERS else _timm_layer("norm", key)
    if layer is None:
        raise ValueError(f"norm_layer={norm_layer!r} is not a norm hgzoo (or timm) knows; use one of "
                         f"{', '.join(NORM_LAYERS)}, or a class")
    return layer


def layer_name(kind: str, layer: LayerType) -> str | None:
    """The name :func:`get_act_layer` (``kind="act"``) or :func:`get_norm_layer` (``"norm"``) resolves to
    ``layer``: ``layer`` itself if it is a name, else the first name of the table whose class it is; None for a class
    or callable no name gives (a config file can only name a layer)."""
    if isinstance(layer, str):
        return layer
    if kind == "act":
        return next((name for name, cls in ACT_LAYERS.items() if cls is layer), None)
    return next((name for name, cls in NORM_LAYERS.items() if cls() is layer), None)


def resolve_act_norm(act_layer: LayerType, norm_layer: LayerType
                     ) -> tuple[Callable[..., nn.Module], Callable[..., nn.Module]]:
    """A model's ``act_layer`` and ``norm_layer`` arguments, resolved; ``act_layer=None`` is refused (a network's
    activation cannot be left out: ``'identity'`` says so explicitly)."""
    act = get_act_layer(act_layer)
    if act is None:
        raise ValueError("act_layer=None: give an activation's name or class ('identity' for none)")
    return act, get_norm_layer(norm_layer)


def create_act(act_layer: Callable[..., nn.Module] | None) -> nn.Module:
    """An instance of ``act_layer`` (``nn.Identity`` for ``None``); ReLU in place, for callers whose input is fresh."""
    if act_layer is None:
        return nn.Identity()
    return act_layer(inplace=True) if act_layer is nn.ReLU else act_layer()


def is_foldable_norm(norm: nn.Module) -> bool:
    """Whether ``norm`` folds into the conv before it (fixed per-channel statistics): a BatchNorm (Sync, Frozen) with
    running statistics, or Identity (already folded). GroupNorm and LayerNorm normalize by each input's own."""
    if isinstance(norm, nn.Identity):
        return True
    return hasattr(norm, "eps") and all(isinstance(getattr(norm, k, None), torch.Tensor)
                                        for k in ("running_mean", "running_var"))
