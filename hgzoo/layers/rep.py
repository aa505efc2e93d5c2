"""Re-parameterization: PP-LCNetV2's multi-branch depthwise conv, and :func:`reparameterize`, which fuses a whole
model for inference."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .conv import ConvBNAct, fuse_conv_bn
from .create import LayerType, is_foldable_norm

__all__ = ["RepDepthwiseConv", "reparameterize"]


class RepDepthwiseConv(nn.Module):
    """Sum of depthwise conv-BN branches with kernels ``kernel_size, kernel_size - 2, ..., 1``.

    The 1x1 branch exists only at stride 1. No activation: the caller applies it after the sum.
    :meth:`reparameterize` merges all branches into one ``kernel_size`` depthwise conv with bias.
    Unlike PaddleClas, the merged conv is created only then, so training never carries an unused
    parameter (which would also trip DDP's unused-parameter check).
    """

    def __init__(self, channels: int, kernel_size: int, stride: int = 1,
                 norm_layer: LayerType = nn.BatchNorm2d) -> None:
        super().__init__()
        self.channels, self.kernel_size, self.stride = channels, kernel_size, stride
        self.branches = nn.ModuleList(
            ConvBNAct(channels, channels, k, stride, groups=channels, act_layer=None, norm_layer=norm_layer)
            for k in range(kernel_size, 0, -2)
            if not (k == 1 and stride != 1)
        )
        self.fused: nn.Conv2d | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused is not None:
            return self.fused(x)
        else:
            out = self.branches[0](x)
            for i, branch in enumerate(self.branches):
                if i > 0:
                    out += branch(x)  # `out` is this module's own fresh tensor
            return out

    @torch.no_grad()
    def reparameterize(self) -> None:
        if self.fused is not None:
            return
        weight, bias = 0, 0
        for branch in self.branches:
            w, b = fuse_conv_bn(branch.conv, branch.bn)
            p = (self.kernel_size - w.shape[-1]) // 2
            weight = weight + F.pad(w, (p, p, p, p))
            bias = bias + b
        k = self.kernel_size
        fused = nn.Conv2d(self.channels, self.channels, k, self.stride, (k - 1) // 2, groups=self.channels,
                          bias=True, device=weight.device, dtype=weight.dtype)
        fused.weight.copy_(weight)
        fused.bias.copy_(bias)
        self.fused = fused
        del self.branches


def reparameterize(model: nn.Module) -> nn.Module:
    """Fuse, in place, every conv+BN into one conv, merge every multi-branch depthwise conv into one,
    and fold eval-time dropout scales into the classifier. For inference only: puts the model in
    eval mode, since the BatchNorm statistics are baked in. Returns the model. A norm that cannot be folded
    (GroupNorm, LayerNorm2d: ``norm_layer=``) raises ``ValueError`` before anything changes.
    """
    for name, module in model.named_modules():
        norm = getattr(module, "bn", None) if isinstance(module, ConvBNAct) else None
        if norm is not None and not is_foldable_norm(norm):
            raise ValueError(f"{name}.bn is a {type(norm).__name__}, which cannot be folded into its conv (it "
                             "normalizes by each input's own statistics): fuse() needs a BatchNorm-family norm_layer")
    model.eval()
    # Snapshot first: reparameterizing replaces submodules while we walk.
    for module in list(model.modules()):
        fn = getattr(module, "reparameterize", None)
        if module is not model and callable(fn):
            fn()
    return model
