"""The classifier head shared by every family: pool → [1x1 last conv → act → dropout] → flatten → fc."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ClassifierHead", "Dropout", "GLOBAL_POOLS", "GlobalPool2d", "check_global_pool"]

#: The global poolings a head can do (timm's ``global_pool``, as its ``SelectAdaptivePool2d``): ``''`` none (the head
#: keeps the map), ``'avg'`` (PaddleClas's), ``'max'``, ``'avgmax'`` (the mean of the two) and ``'catavgmax'`` (both,
#: concatenated: twice the channels).
GLOBAL_POOLS = ("", "avg", "max", "avgmax", "catavgmax")


def check_global_pool(global_pool: str | None) -> None:
    """Refuse a ``global_pool`` (timm's argument) that is neither None nor one of :data:`GLOBAL_POOLS`."""
    if global_pool is not None and global_pool not in GLOBAL_POOLS:
        raise ValueError(f"global_pool={global_pool!r} is not supported; use one of "
                         f"{', '.join(map(repr, GLOBAL_POOLS))} (timm's SelectAdaptivePool2d), or None for 'avg'")


class GlobalPool2d(nn.Module):
    """A global pooling to 1x1 other than the average (``nn.AdaptiveAvgPool2d(1)`` does that one): ``'max'``,
    ``'avgmax'`` ((avg + max) / 2) or ``'catavgmax'`` (avg and max concatenated on channels)."""

    def __init__(self, pool_type: str) -> None:
        super().__init__()
        if pool_type not in ("max", "avgmax", "catavgmax"):
            raise ValueError(f"GlobalPool2d takes 'max', 'avgmax' or 'catavgmax', got {pool_type!r}")
        self.pool_type = pool_type

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_max = F.adaptive_max_pool2d(x, 1)
        if self.pool_type == "max":
            return x_max
        x_avg = F.adaptive_avg_pool2d(x, 1)
        if self.pool_type == "avgmax":
            return 0.5 * (x_avg + x_max)
        return torch.cat([x_avg, x_max], dim=1)

    def extra_repr(self) -> str:
        return f"pool_type={self.pool_type}"


def _pool(pool_type: str) -> nn.Module:
    if pool_type == "avg":
        return nn.AdaptiveAvgPool2d(1)
    return nn.Identity() if pool_type == "" else GlobalPool2d(pool_type)


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
    """Global pool → optional (1x1 conv without bias → act → dropout) → flatten → fc.

    With ``hidden_size=None`` it is pool → dropout → fc. ``num_classes=0`` leaves fc as Identity. ``pool_type`` is
    one of :data:`GLOBAL_POOLS`, as timm's: with ``''`` nothing is pooled or flattened (the 1x1 conv, if any, runs on
    the map) and ``num_classes`` must be 0; ``'catavgmax'`` doubles the pooled width, so it cannot feed the 1x1 conv
    of PaddleClas's head (timm refuses it there too). ``num_features`` is the width of the pre-logits output.
    """

    def __init__(
        self,
        in_chs: int,
        num_classes: int,
        hidden_size: int | None = None,
        act_layer: type[nn.Module] = nn.ReLU,
        drop_rate: float = 0.0,
        dropout_mode: str = "downscale_in_infer",
        pool_type: str = "avg",
    ) -> None:
        super().__init__()
        self.in_chs, self.hidden_size = in_chs, hidden_size
        if hidden_size:
            self.last_conv = nn.Conv2d(in_chs, hidden_size, 1, bias=False)
            self.act = act_layer()
        else:
            self.last_conv, self.act = nn.Identity(), nn.Identity()
        self.dropout = Dropout(drop_rate, dropout_mode)
        self._set_pool(pool_type, num_classes)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def _set_pool(self, pool_type: str, num_classes: int) -> None:
        check_global_pool(pool_type)
        if pool_type == "" and num_classes > 0:
            raise ValueError("global_pool='' (no pooling) leaves a feature map, which a classifier cannot take: "
                             "give num_classes=0 with it (timm's reset_classifier(0, ''))")
        if pool_type == "catavgmax" and self.hidden_size:
            raise ValueError("global_pool='catavgmax' doubles the pooled width, which this head's 1x1 last conv "
                             "cannot take (timm refuses it too); use 'avgmax', or use_last_conv=False")
        self.pool_type = pool_type
        self.global_pool = _pool(pool_type)
        self.flatten = nn.Flatten(1) if pool_type else nn.Identity()
        self.num_features = self.hidden_size or self.in_chs * (2 if pool_type == "catavgmax" else 1)

    def _new_fc(self, num_classes: int) -> None:
        ref = next(self.parameters(), None) if self.hidden_size else getattr(self.fc, "weight", None)
        kw = {} if ref is None else {"device": ref.device, "dtype": ref.dtype}
        self.fc = nn.Linear(self.num_features, num_classes, **kw) if num_classes > 0 else nn.Identity()

    def reset(self, num_classes: int, pool_type: str | None = None) -> None:
        """A fresh fc with ``num_classes`` outputs (0: none), and the pooling ``pool_type`` (None: keep it)."""
        self._set_pool(self.pool_type if pool_type is None else pool_type, num_classes)
        self._new_fc(num_classes)

    def set_pool(self, pool_type: str) -> None:
        """Pool with ``pool_type`` instead; the fc is kept unless its input width changes."""
        num_classes = self.fc.out_features if isinstance(self.fc, nn.Linear) else 0
        self._set_pool(pool_type, num_classes)
        if isinstance(self.fc, nn.Linear) and self.fc.in_features != self.num_features:
            self._new_fc(num_classes)

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
