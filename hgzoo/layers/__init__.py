"""Shared building blocks. Model files use these and never copy a layer from one another."""
from .attention import EffectiveSE, SqueezeExcite
from .conv import ConvBNAct, LearnableAffine, LearnableDownsample, create_act, fuse_conv_bn, pad_same
from .drop import DropPath, drop_path_schedule
from .head import GLOBAL_POOLS, ClassifierHead, Dropout, check_global_pool
from .init import PaddleInit, kaiming_normal_fan_in_, paddle_default_init_, paddle_init_, timm_init_, uniform_fan_in_
from .norm import FrozenBatchNorm2d, freeze_batch_norm, unfreeze_batch_norm
from .rep import RepDepthwiseConv, reparameterize

__all__ = [
    "GLOBAL_POOLS", "ClassifierHead", "ConvBNAct", "check_global_pool", "DropPath", "Dropout", "EffectiveSE",
    "FrozenBatchNorm2d", "LearnableAffine", "LearnableDownsample", "PaddleInit", "RepDepthwiseConv", "SqueezeExcite",
    "create_act", "drop_path_schedule", "freeze_batch_norm", "fuse_conv_bn", "kaiming_normal_fan_in_", "pad_same",
    "paddle_default_init_", "paddle_init_", "reparameterize", "timm_init_", "uniform_fan_in_", "unfreeze_batch_norm",
]
