"""Paddle's default parameter initialization, for layers PaddleClas builds without an explicit initializer."""
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
