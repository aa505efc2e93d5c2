"""Deployment transforms: fuse every conv+BN and merge re-parameterizable branches."""
from __future__ import annotations

from torch import nn

__all__ = ["reparameterize"]


def reparameterize(model: nn.Module) -> nn.Module:
    """Fuse, in place, every conv+BN into one conv, merge every multi-branch depthwise conv into one,
    and fold eval-time dropout scales into the classifier. For inference only: puts the model in
    eval mode, since the BatchNorm statistics are baked in. Returns the model.
    """
    model.eval()
    # Snapshot first: reparameterizing replaces submodules while we walk.
    for module in list(model.modules()):
        fn = getattr(module, "reparameterize", None)
        if module is not model and callable(fn):
            fn()
    return model
