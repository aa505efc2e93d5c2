"""Shared building blocks. Model files use these and never copy a layer from one another."""
from .attention import EffectiveSE, SqueezeExcite
from .conv import ConvBNAct, LearnableAffine, LearnableDownsample, fuse_conv_bn, pad_same
from .create import (
    LayerType,
    create_act,
    get_act_layer,
    get_norm_layer,
    is_foldable_norm,
    layer_name,
    resolve_act_norm,
)
from .drop import DropPath, drop_path_schedule
from .head import GLOBAL_POOLS, ClassifierHead, Dropout, check_global_pool
from .init import PaddleInit, kaiming_normal_fan_in_, paddle_default_init_, paddle_init_, timm_init_, uniform_fan_in_
from .norm import GroupNorm, GroupNorm1, LayerNorm2d, freeze_batch_norm, unfreeze_batch_norm
from .rep import RepDepthwiseConv, reparameterize

__all__ = [
    "GLOBAL_POOLS", "ClassifierHead", "ConvBNAct", "check_global_pool", "DropPath", "Dropout", "EffectiveSE",
    "FrozenBatchNorm2d", "LearnableAffine", "LearnableDownsample", "PaddleInit", "RepDepthwiseConv", "SqueezeExcite",
    "GroupNorm", "GroupNorm1", "LayerNorm2d", "LayerType", "create_act", "get_act_layer", "get_norm_layer",
    "is_foldable_norm", "layer_name", "resolve_act_norm", "drop_path_schedule", "freeze_batch_norm", "fuse_conv_bn",
    "kaiming_normal_fan_in_", "pad_same", "paddle_default_init_", "paddle_init_", "reparameterize", "timm_init_",
    "uniform_fan_in_", "unfreeze_batch_norm",
]


def __getattr__(name: str):
    if name == "FrozenBatchNorm2d":  # torchvision's, imported on first use (see norm.py)
        from .norm import _frozen_bn

        return _frozen_bn()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
