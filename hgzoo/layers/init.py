"""Parameter initialization: PaddleClas's (Paddle's defaults and each family's explicit initializers), and timm's
convention for training from scratch."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

__all__ = ["PaddleInit", "kaiming_normal_fan_in_", "paddle_default_", "paddle_default_init_", "paddle_init_",
           "timm_init_", "uniform_fan_in_"]

Layer = nn.Conv2d | nn.Linear
#: One of PaddleClas's initializers, applied to one conv or Linear layer in place.
Initializer = Callable[[Layer], None]


def _zero_bias(layer: Layer) -> None:
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def _fan_in(layer: Layer) -> int:
    if isinstance(layer, nn.Linear):
        return layer.in_features
    return layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]


def paddle_default_(layer: Layer) -> None:
    """Paddle's default when a layer is given no initializer.

    - ``paddle.nn.Conv2D``: weight ~ Normal(0, sqrt(2 / (kh * kw * in_channels))), with the layer's *total*
      input channels, whatever its groups; bias zero.
    - ``paddle.nn.Linear``: Xavier-uniform weight, zero bias.

    torch's defaults differ (Kaiming-uniform with a = sqrt(5), about 2.4x narrower, and non-zero biases).
    """
    if isinstance(layer, nn.Conv2d):
        fan = layer.in_channels * layer.kernel_size[0] * layer.kernel_size[1]
        nn.init.normal_(layer.weight, 0.0, math.sqrt(2.0 / fan))
    else:
        nn.init.xavier_uniform_(layer.weight)
    _zero_bias(layer)


def kaiming_normal_fan_in_(layer: Layer) -> None:
    """Paddle's ``KaimingNormal()``: weight ~ Normal(0, sqrt(2 / fan_in)), fan_in counting one group's channels;
    zero bias (Paddle's default bias)."""
    nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
    _zero_bias(layer)


def uniform_fan_in_(layer: Layer) -> None:
    """Paddle's ``Uniform(-stdv, stdv)`` with ``stdv = 1 / sqrt(fan_in)`` (PaddleClas's fc and HRNet's SE); zero
    bias."""
    bound = _fan_in(layer) ** -0.5
    nn.init.uniform_(layer.weight, -bound, bound)
    _zero_bias(layer)


#: ``(T, initializer)``: the initializer of every conv and Linear layer that is a ``T`` or sits directly in one.
Rule = tuple[type[nn.Module], Initializer]


@dataclass(frozen=True)
class PaddleInit:
    """How PaddleClas initializes a family, in the two places its code does it.

    Args:
        build: the initializers PaddleClas gives its layers as it builds them (a ``ParamAttr``); every other conv
            and Linear gets Paddle's default (:func:`paddle_default_`).
        after: those its ``_init_weights`` applies afterwards, over the built model.

    The first rule that matches a layer applies; layers are visited in ``named_modules()`` order, so one seed gives
    one set of weights.
    """

    build: tuple[Rule, ...] = ()
    after: tuple[Rule, ...] = ()


def _layers(module: nn.Module) -> list[tuple[nn.Module | None, Layer]]:
    """Every conv and Linear layer of ``module`` with the module that holds it, in ``named_modules()`` order."""
    named = dict(module.named_modules())
    return [(named.get(name.rpartition(".")[0]) if name else None, m) for name, m in named.items()
            if isinstance(m, (nn.Conv2d, nn.Linear))]


def _rule(rules: tuple[Rule, ...], parent: nn.Module | None, layer: Layer) -> Initializer | None:
    return next((init for cls, init in rules if isinstance(layer, cls) or isinstance(parent, cls)), None)


def paddle_init_(module: nn.Module, init: PaddleInit) -> nn.Module:
    """Initialize ``module`` as PaddleClas does (``init``): each layer's build-time initializer or Paddle's
    default, then the ``after`` pass. BatchNorm (weight 1, bias 0) and learnable affine blocks (scale 1, bias 0)
    keep the values they are built with, as in Paddle."""
    layers = _layers(module)
    for parent, layer in layers:
        (_rule(init.build, parent, layer) or paddle_default_)(layer)
    for parent, layer in layers:
        rule = _rule(init.after, parent, layer)
        if rule is not None:
            rule(layer)
    return module


def paddle_default_init_(module: nn.Module) -> nn.Module:
    """Paddle's defaults on every conv and Linear in ``module`` (:func:`paddle_default_`): PaddleClas's
    initialization of a layer its code gives no initializer."""
    return paddle_init_(module, PaddleInit())


def timm_init_(module: nn.Module) -> nn.Module:
    """Re-initialize ``module`` as timm (and torchvision) initialize a model built for training from scratch.

    What timm's ``LCNetV2``, ``HighPerfGpuNet`` (PP-HGNet/V2), ``HighResolutionNet`` and ``ResNet`` share:

    - every ``Conv2d``: Kaiming-normal weight, ``mode="fan_out"``, ReLU gain; zero bias;
    - every ``BatchNorm2d``: weight 1, bias 0 (running statistics reset);
    - every ``Linear``: torch's default weight (Kaiming-uniform, a = sqrt(5)); zero bias.

    The main difference to PaddleClas's initialization is the depthwise convs: fan_out counts every output
    channel (std sqrt(2 / (C k^2))), where PaddleClas's Kaiming fan_in gives sqrt(2 / k^2). timm's ResNet also
    zeroes the last BatchNorm of each residual branch (``zero_init_last``); this does not. Learnable affine
    blocks (PP-HGNetV2) and other parameters keep their values (scale 1, bias 0 when built).
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            m.reset_parameters()
        elif isinstance(m, nn.Linear):
            m.reset_parameters()
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module
