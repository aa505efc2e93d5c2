"""The classifier head shared by every family: pool → [1x1 last conv → act → dropout] → flatten → fc."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["ClassifierHead", "Dropout", "GLOBAL_POOLS", "check_global_pool"]

#: The global poolings a head can do (timm's ``global_pool``): average, PaddleClas's only one.
GLOBAL_POOLS = ("avg",)


def check_global_pool(global_pool: str | None) -> None:
    """Refuse a ``global_pool`` (timm's argument) other than None or ``'avg'``, naming what to use instead."""
    if global_pool is not None and global_pool not in GLOBAL_POOLS:
        raise ValueError(f"global_pool={global_pool!r} is not supported: hgzoo's heads pool with 'avg' (PaddleClas's "
                         "global average pool), the only value accepted; for the unpooled map use "
                         "model.forward_features(x) or model.forward_intermediates(x)")


class Dropout(nn.Module):
    """Dropout with a choice of Paddle's two conventions.

    ``"upscale_in_train"`` is PyTorch's: scale kept units by 1/(1-p) in training, identity at eval.
    ``"downscale_in_infer"`` is what PaddleClas's PP-HGNet and PP-LCNetV2 heads use: no scaling in
    training, multiply by (1-p) at eval. Converted Paddle weights need the latter to give Paddle's logits.
    """

    def __init__(self, p: float = 0.0, mode: str = "downscale_in_infer") -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        if mode not in ("downscale_in_infer", "upscale_in_train"):
            raise ValueError(f"mode must be 'downscale_in_infer' or 'upscale_in_train', got {mode!r}")
        self.p, self.mode = p, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0:
            return x
        if self.mode == "upscale_in_train":
            return nn.functional.dropout(x, self.p, self.training)
        if self.training:
            return x * torch.empty_like(x).bernoulli_(1.0 - self.p)
        return x * (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"


class ClassifierHead(nn.Module):
    """Global average pool → optional (1x1 conv without bias → act → dropout) → flatten → fc.

    With ``hidden_size=None`` it is pool → dropout → fc. ``num_classes=0`` leaves fc as Identity.
    """

    def __init__(
        self,
        in_chs: int,
        num_classes: int,
        hidden_size: int | None = None,
        act_layer: type[nn.Module] = nn.ReLU,
        drop_rate: float = 0.0,
        dropout_mode: str = "downscale_in_infer",
    ) -> None:
        super().__init__()
        self.in_chs, self.hidden_size = in_chs, hidden_size
        self.num_features = hidden_size or in_chs
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        if hidden_size:
            self.last_conv = nn.Conv2d(in_chs, hidden_size, 1, bias=False)
            self.act = act_layer()
        else:
            self.last_conv, self.act = nn.Identity(), nn.Identity()
        self.dropout = Dropout(drop_rate, dropout_mode)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def reset(self, num_classes: int) -> None:
        ref = next(self.parameters(), None) if self.hidden_size else getattr(self.fc, "weight", None)
        kw = {} if ref is None else {"device": ref.device, "dtype": ref.dtype}
        self.fc = nn.Linear(self.num_features, num_classes, **kw) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.dropout(self.act(self.last_conv(self.global_pool(x))))
        x = self.flatten(x)
        return x if pre_logits else self.fc(x)

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fold Paddle's eval-time dropout scale (1 - p) into fc, for inference."""
        d = self.dropout
        if d.p > 0 and d.mode == "downscale_in_infer" and isinstance(self.fc, nn.Linear):
            self.fc.weight.mul_(1.0 - d.p)
            self.dropout = Dropout(0.0)
