"""Batch mixing as PaddleClas's ``OpSampler`` does it: per batch, MixUp, CutMix or nothing, with soft targets."""
from __future__ import annotations

import math
import random

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["MixUpCutMix", "one_hot_smooth"]


def one_hot_smooth(targets: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """(B,) int labels → (B, C) float targets with label smoothing ``eps``: ``(1 - eps) * onehot + eps / C``, the
    targets of ``F.cross_entropy(..., label_smoothing=eps)``, kept as tensors because MixUp/CutMix mixes them."""
    return F.one_hot(targets, num_classes).float() * (1.0 - smoothing) + smoothing / num_classes


class MixUpCutMix:
    """PaddleClas's ``OpSampler{MixupOperator, CutmixOperator}``: one op (or none) is picked per batch.

    ``mixup_prob``/``cutmix_prob`` are the probabilities of each op (PaddleClas: 0.5 each, so every batch is
    mixed); the remaining probability leaves the batch unchanged. The mixing partner is the batch reversed
    after a random permutation (PaddleClas uses a permutation). ``lam ~ Beta(alpha, alpha)``; CutMix pastes a
    box of area ``1 - lam`` and corrects ``lam`` to the pasted area. Returns ``(images, soft_targets)``.
    """

    def __init__(self, num_classes: int, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0,
                 mixup_prob: float = 0.5, cutmix_prob: float = 0.5, label_smoothing: float = 0.0) -> None:
        if mixup_prob + cutmix_prob > 1.0 + 1e-9:
            raise ValueError(f"mixup_prob + cutmix_prob must be <= 1, got {mixup_prob} + {cutmix_prob}")
        self.num_classes, self.smoothing = num_classes, label_smoothing
        self.ops = []
        if mixup_alpha > 0 and mixup_prob > 0:
            self.ops.append(("mixup", mixup_alpha, mixup_prob))
        if cutmix_alpha > 0 and cutmix_prob > 0:
            self.ops.append(("cutmix", cutmix_alpha, cutmix_prob))

    @property
    def enabled(self) -> bool:
        return bool(self.ops)

    def __call__(self, x: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = one_hot_smooth(targets, self.num_classes, self.smoothing)
        u, op = random.random(), None
        for name, alpha, prob in self.ops:
            if u < prob:
                op = (name, alpha)
                break
            u -= prob
        if op is None or x.shape[0] < 2:
            return x, y
        name, alpha = op
        lam = float(np.random.beta(alpha, alpha))
        perm = torch.randperm(x.shape[0], device=x.device)
        if name == "mixup":
            x = x * lam + x[perm] * (1.0 - lam)
        else:
            h, w = x.shape[-2:]
            cut = math.sqrt(1.0 - lam)
            ch, cw = int(h * cut), int(w * cut)
            cy, cx = random.randint(0, h - 1), random.randint(0, w - 1)
            y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
            x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
            x = x.clone()
            x[..., y0:y1, x0:x1] = x[perm][..., y0:y1, x0:x1]
            lam = 1.0 - (y1 - y0) * (x1 - x0) / float(h * w)
        return x, y * lam + y[perm] * (1.0 - lam)

