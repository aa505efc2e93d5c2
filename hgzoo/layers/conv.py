"""Convolution building blocks: conv-BN-activation, the learnable affine block, the learnable downsample."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import fuse_conv_bn_weights

from .create import LayerType, create_act, get_act_layer, get_norm_layer, is_foldable_norm

__all__ = ["ConvBNAct", "LearnableAffine", "LearnableDownsample", "pad_same", "fuse_conv_bn"]


def pad_same(x: torch.Tensor, kernel_size: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """Pad like Paddle/TensorFlow "SAME": the output is ceil(in / stride), the odd pixel goes right/bottom."""
    ih, iw = x.shape[-2:]
    pad_h = max((math.ceil(ih / stride) - 1) * stride + kernel_size - ih, 0)
    pad_w = max((math.ceil(iw / stride) - 1) * stride + kernel_size - iw, 0)
    if pad_h or pad_w:
        x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=value)
    return x


# FX (torch.fx.symbolic_trace, torchvision's create_feature_extractor) records pad_same as one call, evaluated with
# the real input's shape, instead of tracing its shape arithmetic (data-dependent control flow, which FX refuses).
torch.fx.wrap("pad_same")


def fuse_conv_bn(conv: nn.Conv2d, bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the (weight, bias) of one conv equal to ``bn(conv(x))`` in eval mode: torch's
    ``fuse_conv_bn_weights``, as tensors (a multi-branch conv sums them before making one conv).

    ``bn`` may be a BatchNorm2d, a SyncBatchNorm, a FrozenBatchNorm2d, or Identity (the conv is already fused); a norm
    without running statistics (GroupNorm, LayerNorm2d) cannot be folded and raises ``ValueError``.
    """
    if not is_foldable_norm(bn):
        raise ValueError(f"{type(bn).__name__} cannot be folded into a conv (it normalizes by each input's own "
                         "statistics): fuse()/reparameterize need a BatchNorm-family norm_layer")
    w = conv.weight
    b = conv.bias if conv.bias is not None else torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
    if isinstance(bn, nn.Identity):
        return w, b
    fw, fb = fuse_conv_bn_weights(w, b, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias)
    return fw.detach(), fb.detach()


class LearnableAffine(nn.Module):
    """``scale * x + bias`` with one learnable scalar each (PP-HGNetV2's "LAB")."""

    def __init__(self, scale_value: float = 1.0, bias_value: float = 0.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([scale_value]))
        self.bias = nn.Parameter(torch.tensor([bias_value]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x + self.bias


class ConvBNAct(nn.Module):
    """Conv (no bias) → norm (``bn``, BatchNorm by default) → optional activation → optional learnable affine.

    Args:
        padding: ``None`` for symmetric ``(k - 1) // 2``, an int, or ``"same"`` for Paddle's
            asymmetric "SAME" padding (zeros on the right/bottom first).
        act_layer: activation name or class (:func:`~hgzoo.layers.get_act_layer`), or ``None`` for none. The affine
            block only follows an activation, as in PaddleClas.
        norm_layer: norm name or class (:func:`~hgzoo.layers.get_norm_layer`), called with ``out_chs``; it stays
            the ``bn`` attribute whatever its type, so state-dict keys do not change.
        dilation: the conv's dilation; the default padding becomes ``dilation * (kernel_size - 1) // 2`` (the same
            output size). Not built with ``"same"`` padding.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | str | None = None,
        groups: int = 1,
        act_layer: LayerType | None = nn.ReLU,
        use_lab: bool = False,
        norm_layer: LayerType = nn.BatchNorm2d,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        self.same_pad = padding == "same"
        if isinstance(padding, str) and not self.same_pad:
            raise ValueError(f"padding must be None, an int or 'same', got {padding!r}")
        if self.same_pad and dilation != 1:
            raise ValueError(f"padding='same' is built for dilation 1 only, got {dilation!r}; use padding=None")
        pad = 0 if self.same_pad else (dilation * (kernel_size - 1) // 2 if padding is None else padding)
        self.kernel_size, self.stride = kernel_size, stride
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, pad, dilation, groups=groups, bias=False)
        self.bn = get_norm_layer(norm_layer)(out_chs)
        act_layer = get_act_layer(act_layer)
        # ReLU runs in place on the BN output (a fresh tensor): one pass over memory fewer, as torchvision does.
        self.act = create_act(act_layer)
        self.lab = LearnableAffine() if (use_lab and act_layer is not None) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.same_pad:
            x = pad_same(x, self.kernel_size, self.stride)
        return self.lab(self.act(self.bn(self.conv(x))))

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fold the BatchNorm into the conv (eval-mode statistics)."""
        if isinstance(self.bn, nn.Identity):
            return
        w, b = fuse_conv_bn(self.conv, self.bn)
        c = self.conv
        fused = nn.Conv2d(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding, c.dilation,
                          groups=c.groups, bias=True, device=w.device, dtype=w.dtype)
        fused.weight.copy_(w)
        fused.bias.copy_(b)
        self.conv, self.bn = fused, nn.Identity()


class LearnableDownsample(ConvBNAct):
    """PP-HGNet's learnable downsampling (LDS): a depthwise conv with stride 2 and BN, no activation (stride 1, and
    a ``dilation``, in a dilated stage)."""

    def __init__(self, channels: int, kernel_size: int = 3, stride: int = 2,
                 norm_layer: LayerType = nn.BatchNorm2d, dilation: int = 1) -> None:
        super().__init__(channels, channels, kernel_size, stride, groups=channels, act_layer=None,
                         norm_layer=norm_layer, dilation=dilation)
