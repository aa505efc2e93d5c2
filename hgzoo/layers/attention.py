"""Channel attention: PP-HGNet's effective SE (one 1x1 conv) and the classic two-layer SE."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["EffectiveSE", "SqueezeExcite"]


class EffectiveSE(nn.Module):
    """ESE: ``x * sigmoid(conv1x1(avgpool(x)))``. PaddleClas uses a plain sigmoid here."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv(x.mean((2, 3), keepdim=True)))


class SqueezeExcite(nn.Module):
    """SE: ``x * sigmoid(conv2(act(conv1(avgpool(x)))))``, with 1x1 convs (with bias).

    PaddleClas's HRNet writes the two layers as Linear; the converter reshapes those weights to 1x1 convs.
    Kept, not torchvision's ``SqueezeExcitation``: that computes the same (ReLU, plain sigmoid, no rounding of
    ``rd_channels``) but names its convs ``fc1``/``fc2``, which would rename every converted checkpoint's keys.
    """

    def __init__(self, channels: int, rd_channels: int, act_layer: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, rd_channels, 1, bias=True)
        self.act = act_layer()
        self.conv2 = nn.Conv2d(rd_channels, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.conv2(self.act(self.conv1(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(s)
