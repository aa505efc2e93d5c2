"""Frozen BatchNorm, and converting a model's BatchNorms to it and back."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["FrozenBatchNorm2d", "freeze_batch_norm", "unfreeze_batch_norm"]


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d with fixed affine parameters and statistics (all buffers, never updated)."""

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features, self.eps = num_features, eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # A BatchNorm2d's state dict also holds num_batches_tracked, meaningless here (as torchvision's).
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.reshape(1, -1, 1, 1).to(x.dtype) + shift.reshape(1, -1, 1, 1).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


def freeze_batch_norm(module: nn.Module) -> nn.Module:
    """Return ``module`` with every BatchNorm2d replaced by a FrozenBatchNorm2d (in place for children)."""
    if isinstance(module, nn.BatchNorm2d):
        frozen = FrozenBatchNorm2d(module.num_features, module.eps)
        with torch.no_grad():
            if module.affine:
                frozen.weight.copy_(module.weight)
                frozen.bias.copy_(module.bias)
            frozen.running_mean.copy_(module.running_mean)
            frozen.running_var.copy_(module.running_var)
        return frozen.to(module.running_mean.device)
    for name, child in module.named_children():
        new = freeze_batch_norm(child)
        if new is not child:
            setattr(module, name, new)
    return module


def unfreeze_batch_norm(module: nn.Module) -> nn.Module:
    """Inverse of :func:`freeze_batch_norm`: FrozenBatchNorm2d back to trainable BatchNorm2d."""
    if isinstance(module, FrozenBatchNorm2d):
        bn = nn.BatchNorm2d(module.num_features, module.eps)
        with torch.no_grad():
            bn.weight.copy_(module.weight)
            bn.bias.copy_(module.bias)
            bn.running_mean.copy_(module.running_mean)
            bn.running_var.copy_(module.running_var)
        return bn.to(module.running_mean.device)
    for name, child in module.named_children():
        new = unfreeze_batch_norm(child)
        if new is not child:
            setattr(module, name, new)
    return module
