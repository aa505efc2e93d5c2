"""PP-LCNetV2, PaddleClas's CPU-oriented lightweight backbone.

Reproduces ``ppcls/arch/backbone/legendary_models/pp_lcnet_v2.py`` (PaddleClas 2.6): with the same
weights, eval-mode logits match PaddleClas's. Every block is a depthwise-separable conv; the last two
stages merge 5x5, 3x3 (and at stride 1, 1x1) depthwise branches that re-parameterize into one conv.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .._registry import PADDLECLAS_CITATION, ModelFamily, register_model
from ..convert.keymap import PaddleKeyMap, TimmArch, TimmKeyMap
from ..layers import (
    ClassifierHead,
    ConvBNAct,
    DropPath,
    LayerType,
    PaddleInit,
    RepDepthwiseConv,
    SqueezeExcite,
    create_act,
    drop_path_schedule,
    get_act_layer,
    kaiming_normal_fan_in_,
    resolve_act_norm,
)
from ..pretrained import generate_default_cfgs, paddle_cfg
from ._base import ClassifierModel

__all__ = ["PPLCNetV2", "RepDepthwiseSeparable", "make_divisible", "PPLCNETV2", "VARIANTS", "default_cfgs"]

PPLCNETV2 = ModelFamily("PP-LCNetV2", (PADDLECLAS_CITATION, """@article{cui2021pplcnet,
  title = {PP-LCNet: A Lightweight CPU Convolutional Neural Network},
  author = {Cui, Cheng and Gao, Tingquan and Wei, Shengyu and Du, Yuning and Guo, Ruoyu and Dong, Shuilong and
            Lu, Bin and Zhou, Ying and Lv, Xueying and Liu, Qiwen and Hu, Xiaoguang and Yu, Dianhai and Ma, Yanjun},
  journal = {arXiv preprint arXiv:2109.15099},
  year = {2021}
}"""))


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``v`` to the nearest multiple of ``divisor``, never going below 90% of ``v``."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class RepDepthwiseSeparable(nn.Module):
    """Depthwise conv → [SE] → pointwise conv(s) → [+ shortcut].

    With ``use_rep`` the depthwise conv is a :class:`~hgzoo.layers.RepDepthwiseConv` (a sum of
    conv-BN branches) and the activation follows the sum; otherwise it is one conv-BN-act. With
    ``split_pw`` the pointwise conv is two: down to ``out_chs // 2``, then up to ``out_chs``. The
    shortcut exists only at stride 1 with equal widths.
    """

    __constants__ = ["split_pw", "use_shortcut"]  # TorchScript compiles only the branch these select

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        dw_size: int = 3,
        split_pw: bool = False,
        use_rep: bool = False,
        use_se: bool = False,
        use_shortcut: bool = False,
        act_layer: LayerType = nn.ReLU,
        drop_path_rate: float = 0.0,
        norm_layer: LayerType = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        act_layer = get_act_layer(act_layer)
        self.use_shortcut = use_shortcut and stride == 1 and in_chs == out_chs
        if use_rep:
            self.dw_conv: nn.Module = RepDepthwiseConv(in_chs, dw_size, stride, norm_layer=norm_layer)
            self.act: nn.Module = create_act(act_layer)
        else:
            self.dw_conv = ConvBNAct(in_chs, in_chs, dw_size, stride, groups=in_chs, act_layer=act_layer,
                                     norm_layer=norm_layer)
            self.act = nn.Identity()
        self.se = SqueezeExcite(in_chs, in_chs // 4, act_layer) if use_se else nn.Identity()
        if split_pw:
            mid_chs = out_chs // 2
            self.pw_conv_1 = ConvBNAct(in_chs, mid_chs, 1, act_layer=act_layer, norm_layer=norm_layer)
            self.pw_conv_2 = ConvBNAct(mid_chs, out_chs, 1, act_layer=act_layer, norm_layer=norm_layer)
        else:
            self.pw_conv = ConvBNAct(in_chs, out_chs, 1, act_layer=act_layer, norm_layer=norm_layer)
        self.split_pw = split_pw
        self.drop_path = DropPath(drop_path_rate) if self.use_shortcut and drop_path_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.se(self.act(self.dw_conv(x)))
        x = self.pw_conv_2(self.pw_conv_1(x)) if self.split_pw else self.pw_conv(x)
        if self.use_shortcut:
            x = self.drop_path(x) + shortcut
        return x


@dataclass(frozen=True)
class StageCfg:
    """One stage: its base width (scaled by the variant), depthwise kernel and block options."""

    channels: int
    kernel_size: int
    split_pw: bool
    use_rep: bool
    use_se: bool
    use_shortcut: bool


# PaddleClas's NET_CONFIG, shared by every variant. Each stage doubles the width; its first block has stride 2.
STAGES = (
    StageCfg(64, 3, split_pw=False, use_rep=False, use_se=False, use_shortcut=False),
    StageCfg(128, 3, split_pw=False, use_rep=False, use_se=False, use_shortcut=False),
    StageCfg(256, 5, split_pw=True, use_rep=True, use_se=True, use_shortcut=False),
    StageCfg(512, 5, split_pw=False, use_rep=True, use_se=False, use_shortcut=True),
)


# Paddle's keys match ours except for the re-parameterizable branches and the head.
PADDLE_KEY_MAP = PaddleKeyMap(
    renames=(
        (r"\.dw_conv_list\.", ".dw_conv.branches."),
        (r"^last_conv\.", "head.last_conv."),
        (r"^fc\.", "head.fc."),
    ),
    # The unused pre-fused conv of the re-parameterizable blocks. The plain blocks' dw_conv is a
    # conv-BN whose keys are dw_conv.conv.* / dw_conv.bn.*, which this does not match.
    drop=(r"\.dw_conv\.(weight|bias)$",),
)

# timm's port (``lcnetv2_*``) lists the re-parameterizable branches directly, calls the SE convs fc1/fc2, puts the
# split pointwise convs in a Sequential and keeps the head's conv and fc at the top level.
TIMM_KEY_MAP = TimmKeyMap(
    renames=(
        (".dw_conv_list.{k}.", ".dw_conv.branches.{k}."),
        (".se.fc1.", ".se.conv1."),
        (".se.fc2.", ".se.conv2."),
        (".pw_conv.0.", ".pw_conv_1."),
        (".pw_conv.1.", ".pw_conv_2."),
        ("^conv_head.", "^head.last_conv."),
        ("^classifier.", "^head.fc."),
    ),
    archs=tuple(TimmArch(f"lcnetv2_{v}", f"pplcnetv2_{v}") for v in ("small", "base", "large")),
)


class PPLCNetV2(ClassifierModel):
    """PP-LCNetV2: a stem (3x3 conv, stride 2, and one depthwise-separable block), four stages, and a
    head of global pool → 1x1 conv to ``class_expand`` → act → dropout → fc.

    The head's dropout is Paddle's ``downscale_in_infer``: no scaling in training, times ``1 - p`` at eval.

    Parameter counts: PaddleClas also creates, in every re-parameterizable block, the fused depthwise conv
    (``dw_conv``, with bias) that ``re_parameterize`` fills in; it is unused before that yet counted
    (4,193,448 / 6,800,360 / 10,716,840 for small / base / large). It is not carried here: a parameter
    without gradient trips DDP's unused-parameter check, and :meth:`RepDepthwiseConv.reparameterize`
    creates the fused conv when it is needed. Our counts are 4,128,552 / 6,687,208 / 10,542,120, and
    the converter knowingly drops those placeholder keys (``stages.{2,3}.N.dw_conv.weight/bias``).

    Args:
        scale: width multiplier.
        depths: blocks per stage.
        num_classes: classifier outputs; 0 for no fc.
        in_chans: input channels.
        drop_rate: dropout before the fc.
        drop_path_rate: stochastic depth of the residual blocks, rising linearly over all blocks to this value.
        use_last_conv: whether the head has the 1x1 conv (and act, dropout) before the fc.
        class_expand: output width of that conv.
        act_layer: the activation used throughout (the SE's inner one included; its sigmoid gate stays), a name or
            class (:func:`~hgzoo.layers.get_act_layer`). Default ReLU (PaddleClas's).
        norm_layer: the norm, a name or class (:func:`~hgzoo.layers.get_norm_layer`): every BatchNorm (the
            re-parameterizable branches' included), under the same state-dict keys. Default BatchNorm2d.
    """

    family = PPLCNETV2
    first_conv = "stem.0.conv"
    paddle_key_map = PADDLE_KEY_MAP
    timm_key_map = TIMM_KEY_MAP
    bn_weight_decay = False  # pp_lcnet_v2.py: ParamAttr(regularizer=L2Decay(0.0)) on every BN
    # PaddleClas: Kaiming-normal convs in the conv-BN layers (given as they are built), Paddle's defaults elsewhere
    # (SE, head). Applied after the defaults, as hgzoo always has: the same weights from the same seed.
    paddle_init = PaddleInit(after=((ConvBNAct, kaiming_normal_fan_in_),))

    def __init__(
        self,
        scale: float,
        depths: tuple[int, int, int, int],
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.2,
        drop_path_rate: float = 0.0,
        use_last_conv: bool = True,
        class_expand: int = 1280,
        act_layer: LayerType = nn.ReLU,
        norm_layer: LayerType = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        act_layer, norm_layer = resolve_act_norm(act_layer, norm_layer)
        if len(depths) != len(STAGES):
            raise ValueError(f"depths must have {len(STAGES)} entries, got {depths}")
        stem_chs = make_divisible(32 * scale)
        in_chs = make_divisible(64 * scale)
        self.stem = nn.Sequential(
            ConvBNAct(in_chans, stem_chs, 3, stride=2, act_layer=act_layer, norm_layer=norm_layer),
            RepDepthwiseSeparable(stem_chs, in_chs, stride=1, dw_size=3, act_layer=act_layer, norm_layer=norm_layer),
        )

        # Stochastic depth rises linearly over every block (stem block first); only residual blocks use it.
        rates = drop_path_schedule(drop_path_rate, (1, *depths))[1:]
        reduction = 2
        stages, self.feature_info = [], []
        for i, (cfg, stage_rates) in enumerate(zip(STAGES, rates)):
            out_chs = make_divisible(cfg.channels * 2 * scale)
            blocks = []
            for j, rate in enumerate(stage_rates):
                blocks.append(RepDepthwiseSeparable(
                    in_chs, out_chs, stride=2 if j == 0 else 1, dw_size=cfg.kernel_size,
                    split_pw=cfg.split_pw, use_rep=cfg.use_rep, use_se=cfg.use_se,
                    use_shortcut=cfg.use_shortcut, act_layer=act_layer, drop_path_rate=rate, norm_layer=norm_layer,
                ))
                in_chs = out_chs
            reduction *= 2
            stages.append(nn.Sequential(*blocks))
            self.feature_info.append({"num_chs": out_chs, "reduction": reduction, "module": f"stages.{i}"})
        self.stages = nn.ModuleList(stages)
        self.num_features = in_chs

        self.head = ClassifierHead(
            in_chs, num_classes, hidden_size=class_expand if use_last_conv else None,
            act_layer=act_layer, drop_rate=drop_rate,
        )
        self._init_weights()


@dataclass(frozen=True)
class VariantCfg:
    """A PP-LCNetV2 variant: width multiplier and blocks per stage."""

    scale: float
    depths: tuple[int, int, int, int]


VARIANTS = {
    "pplcnetv2_small": VariantCfg(scale=0.75, depths=(2, 2, 4, 2)),
    "pplcnetv2_base": VariantCfg(scale=1.0, depths=(2, 2, 6, 2)),
    "pplcnetv2_large": VariantCfg(scale=1.25, depths=(2, 2, 8, 2)),
}


def _create(name: str, **kwargs) -> PPLCNetV2:
    v = VARIANTS[name]
    return PPLCNetV2(v.scale, v.depths, **kwargs)


# The weights table. Evaluation preprocessing of ppcls/configs/ImageNet/PPLCNetV2/*.yaml: resize short 256 (cv2,
# bilinear), crop 224: paddle_cfg's defaults.
_DOC = "PaddleClas docs/zh_CN/models/ImageNet1k/PP-LCNetV2.md"
_UNPUBLISHED = (
    "Listed in ppcls MODEL_URLS (PaddleClas 2.6); PaddleClas publishes no accuracy for it "
    f"({_DOC}: 'more models and weights to come')."
)

default_cfgs = generate_default_cfgs({
    "pplcnetv2_small.paddle_in1k": paddle_cfg(
        "PPLCNetV2_small_pretrained", timm="lcnetv2_small.paddle_in1k", notes=_UNPUBLISHED),
    "pplcnetv2_base.ssld_in1k": paddle_cfg(
        "PPLCNetV2_base_ssld_pretrained", top1=80.07, top5=94.87, timm="lcnetv2_base.ssld_in1k",
        notes=f"SSLD distillation. Accuracy from {_DOC}."),
    "pplcnetv2_base.paddle_in1k": paddle_cfg(
        "PPLCNetV2_base_pretrained", top1=77.04, top5=93.27, timm="lcnetv2_base.paddle_in1k",
        notes=f"Accuracy from {_DOC}."),
    "pplcnetv2_large.paddle_in1k": paddle_cfg(
        "PPLCNetV2_large_pretrained", timm="lcnetv2_large.paddle_in1k", notes=_UNPUBLISHED),
})


# The builders: the variant's network (VARIANTS) with its weight tags (default_cfgs); the first tag is the default.

@register_model("PPLCNetV2_small", default_cfgs)
def pplcnetv2_small(num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.2, drop_path_rate: float = 0.0,
                    use_last_conv: bool = True, class_expand: int = 1280,
                    act_layer: LayerType = nn.ReLU, norm_layer: LayerType = nn.BatchNorm2d) -> PPLCNetV2:
    """PP-LCNetV2 small (scale 0.75, depths 2-2-4-2)."""
    return _create("pplcnetv2_small", **locals())


@register_model("PPLCNetV2_base", default_cfgs)
def pplcnetv2_base(num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.2, drop_path_rate: float = 0.0,
                   use_last_conv: bool = True, class_expand: int = 1280,
                   act_layer: LayerType = nn.ReLU, norm_layer: LayerType = nn.BatchNorm2d) -> PPLCNetV2:
    """PP-LCNetV2 base (scale 1.0, depths 2-2-6-2)."""
    return _create("pplcnetv2_base", **locals())


@register_model("PPLCNetV2_large", default_cfgs)
def pplcnetv2_large(num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.2, drop_path_rate: float = 0.0,
                    use_last_conv: bool = True, class_expand: int = 1280,
                    act_layer: LayerType = nn.ReLU, norm_layer: LayerType = nn.BatchNorm2d) -> PPLCNetV2:
    """PP-LCNetV2 large (scale 1.25, depths 2-2-8-2)."""
    return _create("pplcnetv2_large", **locals())
