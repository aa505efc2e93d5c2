"""Parameter initialization: Paddle's defaults (how PaddleClas builds its models), and timm's convention for
training from scratch."""
from __future__ import annotations

import math

from torch import nn


def paddle_default_init_(module: nn.Module) -> nn.Module:
    """Initialize every ``Conv2d`` and ``Linear`` in ``module`` as Paddle does when no initializer is given.

    - ``paddle.nn.Conv2D``: weight ~ Normal(0, sqrt(2 / (kh * kw * in_channels))), with the layer's *total*
      input channels, whatever its groups; bias zero.
    - ``paddle.nn.Linear``: Xavier-uniform weight, zero bias.

    torch's defaults differ (Kaiming-uniform with a = sqrt(5), about 2.4x narrower, and non-zero biases). Model
    files call this first and then apply PaddleClas's explicit initializers on top.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


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
