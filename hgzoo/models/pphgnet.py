"""PP-HGNet and PP-HGNetV2, PaddleClas's GPU-oriented backbones.

Reproduces ``ppcls/arch/backbone/legendary_models/pp_hgnet.py`` and ``pp_hgnet_v2.py`` (PaddleClas 2.6):
with the same weights, eval-mode logits match PaddleClas's.

Both are built from HG blocks: a chain of convs whose outputs (and the block input) are concatenated
and aggregated by 1x1 convs, with an identity shortcut on every block of a stage but the first. A stage
starts with a learnable downsample (a depthwise 3x3 stride-2 conv-BN), except the first.

* v1: a three-conv stem and a 3x3 max-pool; 3x3 conv-BN-ReLU layers; aggregation by one 1x1 conv
  followed by an effective-SE gate.
* v2: a stem of 2x2 "SAME" convs and a 2x2 "SAME" max-pool; in the last two stages, light layers
  (1x1 conv-BN, then depthwise 5x5 conv-BN-ReLU); aggregation by two 1x1 convs (squeeze to half
  the output width, then excite); no SE. B0-B3 add a learnable affine block (``scale * x + bias``)
  after every activation, the head's included.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .._registry import PADDLECLAS_CITATION, ModelFamily, register_model
from ..convert.keymap import PaddleKeyMap, TimmArch, TimmKeyMap
from ..layers import (
    ClassifierHead,
    ConvBNAct,
    DropPath,
    EffectiveSE,
    LayerType,
    LearnableAffine,
    LearnableDownsample,
    PaddleInit,
    drop_path_schedule,
    kaiming_normal_fan_in_,
    pad_same,
    resolve_act_norm,
)
from ..pretrained import generate_default_cfgs, paddle_cfg
from ._base import ClassifierModel

torch.fx.wrap("pad_same")  # MaxPool2dSame calls it here: FX keeps it as one call (see hgzoo.layers.conv)

__all__ = [
    "HGBlock", "HGBlockV2", "HGStage", "LightConvBNAct", "MaxPool2dSame", "PPHGNet", "PPHGNetV2", "StageCfg",
    "StemV2", "check_stem_pool", "PPHGNET", "PPHGNETV2", "VARIANTS", "default_cfgs",
]

PPHGNET = ModelFamily("PP-HGNet", (PADDLECLAS_CITATION,))
PPHGNETV2 = ModelFamily("PP-HGNetV2", (PADDLECLAS_CITATION,))


class _DenseAggregate(nn.Module):
    """Run ``layers`` in sequence and concatenate the input with every layer's output (channels)."""

    def _aggregate(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return torch.cat(feats, dim=1)


class HGBlock(_DenseAggregate):
    """PP-HGNet (v1) block: ``layer_num`` 3x3 conv-BN-ReLU, concat with the input, 1x1 conv-BN-ReLU, ESE,
    and, if ``residual``, an identity shortcut. ``dilation``: of the 3x3 convs (a dilated stage)."""

    def __init__(self, in_chs: int, mid_chs: int, out_chs: int, layer_num: int, residual: bool = False,
                 drop_path_rate: float = 0.0, act_layer: LayerType = nn.ReLU,
                 norm_layer: LayerType = nn.BatchNorm2d, dilation: int = 1) -> None:
        super().__init__()
        self.residual = residual
        conv = partial(ConvBNAct, act_layer=act_layer, norm_layer=norm_layer)
        self.layers = nn.ModuleList(conv(in_chs if i == 0 else mid_chs, mid_chs, 3, dilation=dilation)
                                    for i in range(layer_num))
        self.aggregation_conv = conv(in_chs + layer_num * mid_chs, out_chs, 1)
        self.att = EffectiveSE(out_chs)
        self.drop_path = DropPath(drop_path_rate) if residual and drop_path_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.att(self.aggregation_conv(self._aggregate(x)))
        return self.drop_path(out) + x if self.residual else out


class LightConvBNAct(nn.Module):
    """PP-HGNetV2's light layer: 1x1 conv-BN (no activation, hence no affine block), then a depthwise
    ``kernel_size`` conv-BN-ReLU (with the affine block if ``use_lab``), dilated by ``dilation``."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, use_lab: bool = False,
                 act_layer: LayerType = nn.ReLU, norm_layer: LayerType = nn.BatchNorm2d, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = ConvBNAct(in_chs, out_chs, 1, act_layer=None, norm_layer=norm_layer)
        self.conv2 = ConvBNAct(out_chs, out_chs, kernel_size, groups=out_chs, act_layer=act_layer, use_lab=use_lab,
                               norm_layer=norm_layer, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


class HGBlockV2(_DenseAggregate):
    """PP-HGNetV2 block: ``layer_num`` conv layers (plain ``kernel_size`` conv-BN-ReLU, or light layers),
    concat with the input, 1x1 squeeze to ``out_chs // 2``, 1x1 excite to ``out_chs`` (both conv-BN-ReLU),
    and, if ``residual``, an identity shortcut. ``dilation``: of the ``kernel_size`` convs (a dilated stage)."""

    def __init__(self, in_chs: int, mid_chs: int, out_chs: int, layer_num: int, residual: bool = False,
                 drop_path_rate: float = 0.0, kernel_size: int = 3, light_block: bool = False,
                 use_lab: bool = False, act_layer: LayerType = nn.ReLU, norm_layer: LayerType = nn.BatchNorm2d,
                 dilation: int = 1) -> None:
        super().__init__()
        self.residual = residual
        layers = dict(use_lab=use_lab, act_layer=act_layer, norm_layer=norm_layer)
        layer: Callable[[int, int], nn.Module] = (
            partial(LightConvBNAct, kernel_size=kernel_size, dilation=dilation, **layers) if light_block
            else partial(ConvBNAct, kernel_size=kernel_size, dilation=dilation, **layers)
        )
        self.layers = nn.ModuleList(layer(in_chs if i == 0 else mid_chs, mid_chs) for i in range(layer_num))
        self.aggregation_squeeze_conv = ConvBNAct(in_chs + layer_num * mid_chs, out_chs // 2, 1, **layers)
        self.aggregation_excitation_conv = ConvBNAct(out_chs // 2, out_chs, 1, **layers)
        self.drop_path = DropPath(drop_path_rate) if residual and drop_path_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.aggregation_squeeze_conv(self._aggregate(x))
        out = self.aggregation_excitation_conv(out)
        return self.drop_path(out) + x if self.residual else out


@dataclass(frozen=True)
class StageCfg:
    """One stage: widths, number of blocks, whether it downsamples, and its layers."""

    in_chs: int
    mid_chs: int
    out_chs: int
    depth: int
    downsample: bool
    layer_num: int
    light_block: bool = False  # v2 only: 1x1 + depthwise layers
    kernel_size: int = 3  # v2 only


class HGStage(nn.Module):
    """An optional learnable downsample (depthwise 3x3, stride 2, BN), then ``cfg.depth`` blocks, each made by
    ``make_block(cfg, in_chs, residual, drop_path_rate)``; every block but the first has an identity shortcut.

    A dilated stage (``output_stride`` 16 / 8, as timm's ResNet-d): with ``dilation > first_dilation`` the downsample
    keeps stride 1 and the previous stage's dilation (``first_dilation``); with ``dilation > 1`` the blocks are made
    with ``make_block(..., dilation=dilation)``, which dilates their kxk convs (1x1 convs are unchanged)."""

    def __init__(self, cfg: StageCfg, drop_path_rates: Sequence[float],
                 make_block: Callable[..., nn.Module], norm_layer: LayerType = nn.BatchNorm2d, dilation: int = 1,
                 first_dilation: int = 1) -> None:
        super().__init__()
        stride = 1 if dilation > first_dilation else 2
        self.downsample = LearnableDownsample(cfg.in_chs, stride=stride, norm_layer=norm_layer,
                                              dilation=first_dilation) if cfg.downsample else nn.Identity()
        dilated = {"dilation": dilation} if dilation > 1 else {}
        self.blocks = nn.Sequential(*(
            make_block(cfg, cfg.in_chs if i == 0 else cfg.out_chs, i > 0, rate, **dilated)
            for i, rate in enumerate(drop_path_rates)
        ))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class MaxPool2dSame(nn.Module):
    """Max-pool with Paddle's ``padding="SAME"``: the padding (right/bottom first) never wins the max,
    as if it were -inf. Zero padding (``pad_value=0.0``, as D-FINE, DEIM, RT-DETRv2 and transformers pad PP-HGNetV2's
    stem pool) differs wherever a window's real values are all negative."""

    def __init__(self, kernel_size: int, stride: int = 1, pad_value: float = float("-inf")) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.pad_value = kernel_size, stride, pad_value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pad_same(x, self.kernel_size, self.stride, value=self.pad_value)
        return F.max_pool2d(x, self.kernel_size, self.stride)


STEM_POOLS = {"same": float("-inf"), "zero": 0.0}


def check_stem_pool(stem_pool: str) -> float:
    """The pad value of a stem-pool option: ``"same"`` (PaddleClas, -inf) or ``"zero"`` (the detectors)."""
    if stem_pool not in STEM_POOLS:
        raise ValueError(f"stem_pool must be 'same' (PaddleClas) or 'zero' (D-FINE, DEIM, RT-DETRv2), "
                         f"got {stem_pool!r}")
    return STEM_POOLS[stem_pool]


class StemV2(nn.Module):
    """PP-HGNetV2 stem (stride 4): 3x3/2 conv, then two branches concatenated: a 2x2 "SAME" max-pool
    and two 2x2 "SAME" convs (zero-padded right/bottom); then 3x3/2 and 1x1 convs.

    ``stem_pool``: ``"same"`` pads the pool as PaddleClas (-inf), ``"zero"`` as the detectors (zeros); they differ
    only where a window's values are all negative, which a negative affine bias (``use_lab``) makes happen."""

    def __init__(self, in_chs: int, mid_chs: int, out_chs: int, use_lab: bool = False,
                 stem_pool: str = "same", act_layer: LayerType = nn.ReLU,
                 norm_layer: LayerType = nn.BatchNorm2d) -> None:
        super().__init__()
        conv = partial(ConvBNAct, use_lab=use_lab, act_layer=act_layer, norm_layer=norm_layer)
        self.stem1 = conv(in_chs, mid_chs, 3, stride=2)
        self.stem2a = conv(mid_chs, mid_chs // 2, 2, padding="same")
        self.stem2b = conv(mid_chs // 2, mid_chs, 2, padding="same")
        self.stem3 = conv(mid_chs * 2, mid_chs, 3, stride=2)
        self.stem4 = conv(mid_chs, out_chs, 1)
        self.pool = MaxPool2dSame(2, stride=1, pad_value=check_stem_pool(stem_pool))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem1(x)
        x = torch.cat([self.pool(x), self.stem2b(self.stem2a(x))], dim=1)
        return self.stem4(self.stem3(x))


class ReLUAffine(nn.Module):
    """ReLU (or ``act_layer``) followed by a learnable affine block: the v2 head's activation when ``use_lab``."""

    def __init__(self, act_layer: LayerType = nn.ReLU) -> None:
        super().__init__()
        self.act = act_layer()
        self.lab = LearnableAffine()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lab(self.act(x))


# Paddle's keys match ours except for the head (and v2's head affine block, top-level ``lab.*`` in Paddle).
PADDLE_KEY_MAP = PaddleKeyMap(renames=(
    (r"^last_conv\.", "head.last_conv."),
    (r"^lab\.", "head.act.lab."),
    (r"^fc\.", "head.fc."),
))


# timm's ports (``hgnet_*``, ``hgnetv2_*``) name the aggregation convs by position and keep the head's conv, ReLU and
# affine block in one Sequential; v1's stem is one level deeper. Everything else has our names.
_TIMM_HEAD = (
    ("^head.last_conv.2.{p:scale|bias}$", "^head.act.lab.{p:scale|bias}$"),
    ("^head.last_conv.0.weight$", "^head.last_conv.weight$"),
)
TIMM_KEY_MAP_V1 = TimmKeyMap(
    renames=(
        ("^stem.stem.{n}.", "^stem.{n}."),
        (".aggregation.0.", ".aggregation_conv."),
        (".aggregation.1.", ".att."),
        *_TIMM_HEAD,
    ),
    archs=tuple(TimmArch(f"hgnet_{v}", f"pphgnet_{v}") for v in ("tiny", "small", "base")),
)
TIMM_KEY_MAP_V2 = TimmKeyMap(
    renames=(
        (".aggregation.0.", ".aggregation_squeeze_conv."),
        (".aggregation.1.", ".aggregation_excitation_conv."),
        *_TIMM_HEAD,
    ),
    archs=tuple(TimmArch(f"hgnetv2_b{i}", f"pphgnetv2_b{i}") for i in range(7)),
)


class _HGNetBase(ClassifierModel):
    paddle_key_map = PADDLE_KEY_MAP
    bn_weight_decay = False  # pp_hgnet.py / pp_hgnet_v2.py: ParamAttr(regularizer=L2Decay(0.0)) on every BN
    # PaddleClas: Paddle's defaults (zero ESE conv biases, Xavier-uniform fc), then its _init_weights: Kaiming-normal
    # convs (BN ones/zeros, as built).
    paddle_init = PaddleInit(after=((nn.Conv2d, kaiming_normal_fan_in_),))

    def _build_stages(self, stages: tuple[StageCfg, ...], drop_path_rate: float,
                      make_block: Callable[..., nn.Module], norm_layer: LayerType = nn.BatchNorm2d,
                      output_stride: int = 32) -> None:
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride!r}")
        rates = drop_path_schedule(drop_path_rate, [s.depth for s in stages])
        reduction, dilation, self.feature_info, modules = 4, 1, [], []
        for i, s in enumerate(stages):
            # As timm's ResNet-d: a downsample that would take the stride past output_stride becomes a dilation.
            first_dilation = dilation
            if s.downsample and reduction >= output_stride:
                dilation *= 2
            elif s.downsample:
                reduction *= 2
            modules.append(HGStage(s, rates[i], make_block, norm_layer, dilation, first_dilation))
            self.feature_info.append({"num_chs": s.out_chs, "reduction": reduction, "module": f"stages.{i}"})
        self.stages = nn.ModuleList(modules)
        self.num_features = stages[-1].out_chs


class PPHGNet(_HGNetBase):
    """PP-HGNet (v1): stem (3x3/2, 3x3, 3x3 conv-BN-ReLU) and 3x3/2 max-pool (``stem_pool``, stride 4), four
    stages of :class:`HGBlock`, and a head of global pool → 1x1 conv to ``class_expand`` → ReLU → dropout → fc.

    The head's dropout is Paddle's ``downscale_in_infer``: no scaling in training, times ``1 - p`` at eval
    (PPHGNet_base uses p = 0.2).

    Args:
        stem_chs: output widths of the three stem convs.
        stages: the four stages.
        num_classes: classifier outputs; 0 for no fc.
        in_chans: input channels.
        drop_rate: dropout before the fc.
        drop_path_rate: stochastic depth of the residual blocks, rising linearly over all blocks to this value.
        use_last_conv: whether the head has the 1x1 conv (and ReLU, dropout) before the fc.
        class_expand: output width of that conv.
        act_layer: the activation, a name or class (:func:`~hgzoo.layers.get_act_layer`): every ReLU (stem, blocks,
            head); the ESE gate's sigmoid stays. Default ReLU (PaddleClas's).
        norm_layer: the norm, a name or class (:func:`~hgzoo.layers.get_norm_layer`): every BatchNorm (the learnable
            downsamples' included), under the same state-dict keys. Default BatchNorm2d (PaddleClas's).
        output_stride: 32 (PaddleClas's classifier), or 16 / 8 for dense prediction (DeepLab-style): the last stage's
            downsample (16), or the last two's (8), keeps stride 1, and the 3x3 convs from there on dilate by 2 (then
            4), as timm's ResNet-d does; the weights (and their keys) are unchanged.
    """

    family = PPHGNET
    first_conv = "stem.0.conv"
    timm_key_map = TIMM_KEY_MAP_V1

    def __init__(self, stem_chs: tuple[int, ...], stages: tuple[StageCfg, ...], num_classes: int = 1000,
                 in_chans: int = 3, drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 use_last_conv: bool = True, class_expand: int = 2048, act_layer: LayerType = nn.ReLU,
                 norm_layer: LayerType = nn.BatchNorm2d, output_stride: int = 32) -> None:
        super().__init__()
        self.act_layer, self.norm_layer = resolve_act_norm(act_layer, norm_layer)
        chs = (in_chans, *stem_chs)
        self.stem = nn.Sequential(*(
            ConvBNAct(chs[i], chs[i + 1], 3, stride=2 if i == 0 else 1, act_layer=self.act_layer,
                      norm_layer=self.norm_layer) for i in range(len(stem_chs))
        ))
        self.stem_pool = nn.MaxPool2d(3, stride=2, padding=1)
        self._build_stages(stages, drop_path_rate, self._make_block, self.norm_layer, output_stride)
        self.head = ClassifierHead(self.num_features, num_classes, class_expand if use_last_conv else None,
                                   act_layer=self.act_layer, drop_rate=drop_rate)
        self._init_weights()

    def _make_block(self, s: StageCfg, in_chs: int, residual: bool, drop_path_rate: float,
                    dilation: int = 1) -> HGBlock:
        return HGBlock(in_chs, s.mid_chs, s.out_chs, s.layer_num, residual=residual, drop_path_rate=drop_path_rate,
                       act_layer=self.act_layer, norm_layer=self.norm_layer, dilation=dilation)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem_pool(self.stem(x))


class PPHGNetV2(_HGNetBase):
    """PP-HGNetV2: :class:`StemV2` (stride 4), four stages of :class:`HGBlockV2`, and a head of global pool
    → 1x1 conv to ``class_expand`` → ReLU (→ learnable affine if ``use_lab``) → dropout → fc.

    Args:
        stem_chs: (mid, out) widths of the stem.
        stages: the four stages.
        use_lab: learnable affine blocks after every activation (B0-B3).
        stem_pool: padding of the stem's max-pool, ``"same"`` (PaddleClas, the default) or ``"zero"`` (D-FINE, DEIM,
            RT-DETRv2, transformers); see :class:`StemV2`.
        num_classes, in_chans, drop_rate, drop_path_rate, use_last_conv, class_expand, output_stride: as
            :class:`PPHGNet` (a dilated stage dilates its depthwise 5x5 convs).
        act_layer: the activation, a name or class: every ReLU (stem, blocks, head); with ``use_lab`` the ReLU of
            each ReLU + affine pair, the affine block kept. Default ReLU (PaddleClas's).
        norm_layer: the norm, a name or class: every BatchNorm, under the same state-dict keys. Default BatchNorm2d.

    PaddleClas trains the affine blocks' scale and bias with a 0.01 learning-rate multiplier.
    """

    family = PPHGNETV2
    first_conv = "stem.stem1.conv"
    timm_key_map = TIMM_KEY_MAP_V2

    def __init__(self, stem_chs: tuple[int, int], stages: tuple[StageCfg, ...], use_lab: bool = False,
                 num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 use_last_conv: bool = True, class_expand: int = 2048, stem_pool: str = "same",
                 act_layer: LayerType = nn.ReLU, norm_layer: LayerType = nn.BatchNorm2d,
                 output_stride: int = 32) -> None:
        super().__init__()
        self.use_lab = use_lab
        self.act_layer, self.norm_layer = resolve_act_norm(act_layer, norm_layer)
        self.stem = StemV2(in_chans, stem_chs[0], stem_chs[1], use_lab=use_lab, stem_pool=stem_pool,
                           act_layer=self.act_layer, norm_layer=self.norm_layer)
        self._build_stages(stages, drop_path_rate, self._make_block, self.norm_layer, output_stride)
        self.head = ClassifierHead(self.num_features, num_classes, class_expand if use_last_conv else None,
                                   act_layer=partial(ReLUAffine, self.act_layer) if use_lab else self.act_layer,
                                   drop_rate=drop_rate)
        self._init_weights()

    def _make_block(self, s: StageCfg, in_chs: int, residual: bool, drop_path_rate: float,
                    dilation: int = 1) -> HGBlockV2:
        return HGBlockV2(in_chs, s.mid_chs, s.out_chs, s.layer_num, residual=residual, drop_path_rate=drop_path_rate,
                         kernel_size=s.kernel_size, light_block=s.light_block, use_lab=self.use_lab,
                         act_layer=self.act_layer, norm_layer=self.norm_layer, dilation=dilation)


@dataclass(frozen=True)
class VariantCfg:
    """A variant: PP-HGNet (``version`` 1) or PP-HGNetV2 (2), stem widths, stages, affine blocks (v2 only)."""

    version: Literal[1, 2]
    stem_chs: tuple[int, ...]
    stages: tuple[StageCfg, ...]
    use_lab: bool = False


def _v1(layer_num: int, *rows: tuple[int, int, int, int]) -> tuple[StageCfg, ...]:
    # rows: (in, mid, out, depth); every stage but the first downsamples.
    return tuple(StageCfg(i, m, o, d, downsample=k > 0, layer_num=layer_num) for k, (i, m, o, d) in enumerate(rows))


def _v2(layer_num: int, *rows: tuple[int, int, int, int]) -> tuple[StageCfg, ...]:
    # rows: (in, mid, out, depth); stages 3-4 use light 5x5 layers; every stage but the first downsamples.
    return tuple(StageCfg(i, m, o, d, downsample=k > 0, layer_num=layer_num, light_block=k >= 2,
                          kernel_size=5 if k >= 2 else 3) for k, (i, m, o, d) in enumerate(rows))


VARIANTS: dict[str, VariantCfg] = {
    "pphgnet_tiny": VariantCfg(1, (48, 48, 96), _v1(
        5, (96, 96, 224, 1), (224, 128, 448, 1), (448, 160, 512, 2), (512, 192, 768, 1))),
    "pphgnet_small": VariantCfg(1, (64, 64, 128), _v1(
        6, (128, 128, 256, 1), (256, 160, 512, 1), (512, 192, 768, 2), (768, 224, 1024, 1))),
    "pphgnet_base": VariantCfg(1, (96, 96, 160), _v1(
        7, (160, 192, 320, 1), (320, 224, 640, 2), (640, 256, 960, 3), (960, 288, 1280, 2))),
    "pphgnetv2_b0": VariantCfg(2, (16, 16), _v2(
        3, (16, 16, 64, 1), (64, 32, 256, 1), (256, 64, 512, 2), (512, 128, 1024, 1)), use_lab=True),
    "pphgnetv2_b1": VariantCfg(2, (24, 32), _v2(
        3, (32, 32, 64, 1), (64, 48, 256, 1), (256, 96, 512, 2), (512, 192, 1024, 1)), use_lab=True),
    "pphgnetv2_b2": VariantCfg(2, (24, 32), _v2(
        4, (32, 32, 96, 1), (96, 64, 384, 1), (384, 128, 768, 3), (768, 256, 1536, 1)), use_lab=True),
    "pphgnetv2_b3": VariantCfg(2, (24, 32), _v2(
        5, (32, 32, 128, 1), (128, 64, 512, 1), (512, 128, 1024, 3), (1024, 256, 2048, 1)), use_lab=True),
    "pphgnetv2_b4": VariantCfg(2, (32, 48), _v2(
        6, (48, 48, 128, 1), (128, 96, 512, 1), (512, 192, 1024, 3), (1024, 384, 2048, 1))),
    "pphgnetv2_b5": VariantCfg(2, (32, 64), _v2(
        6, (64, 64, 128, 1), (128, 128, 512, 2), (512, 256, 1024, 5), (1024, 512, 2048, 2))),
    "pphgnetv2_b6": VariantCfg(2, (48, 96), _v2(
        6, (96, 96, 192, 2), (192, 192, 512, 3), (512, 384, 1024, 6), (1024, 768, 2048, 3))),
}


def _create(name: str, **kwargs) -> PPHGNet | PPHGNetV2:
    v = VARIANTS[name]
    if v.version == 1:
        return PPHGNet(v.stem_chs, v.stages, **kwargs)
    return PPHGNetV2(v.stem_chs, v.stages, use_lab=v.use_lab, **kwargs)


# The weights table. Evaluation preprocessing from ppcls/configs/ImageNet/PPHGNet*/*.yaml: resize short 232
# (PPHGNet_tiny, every PPHGNetV2) or 236 (PPHGNet_small/base), bicubic, PIL; crop 224.
_EVAL_232 = dict(resize_short=232, interpolation="bicubic", resize_backend="pil")
_EVAL_236 = dict(resize_short=236, interpolation="bicubic", resize_backend="pil")
_DOC_V1 = "PaddleClas docs/zh_CN/models/ImageNet1k/PP-HGNet.md"
_DOC_V2 = "PaddleClas docs/zh_CN/models/ImageNet1k/PP-HGNetV2.md"
# PP-HGNetV2 B0-B6: the SSLD stage-2 accuracy (top-1, top-5) from PP-HGNetV2.md.
_V2_ACCURACY = ((77.77, 93.91), (79.18, 94.57), (81.74, 95.88), (82.98, 96.43), (83.57, 96.72), (84.75, 97.32),
                (86.30, 97.84))


def _v2_weights(b: int, top1: float, top5: float) -> dict[str, dict]:
    """The two SSLD tags every PP-HGNetV2 variant publishes (also in timm's Hub repos, as hgnetv2_b*)."""
    return {
        f"pphgnetv2_b{b}.ssld_stage2_ft_in1k": paddle_cfg(
            f"PPHGNetV2_B{b}_ssld_pretrained", top1=top1, top5=top5, **_EVAL_232,
            timm=f"hgnetv2_b{b}.ssld_stage2_ft_in1k",
            notes=f"SSLD stage 2 (distillation fine-tuned on ImageNet-1k). Accuracy (stage-2) from {_DOC_V2}. "
                  "PaddleClas's SSLD stage-2 config (PPHGNetV2_B4_ssld_stage2.yaml) evaluates at resize 236; "
                  "the model configs say 232."),
        f"pphgnetv2_b{b}.ssld_stage1_in22k_in1k": paddle_cfg(
            f"PPHGNetV2_B{b}_ssld_stage1_pretrained", **_EVAL_232, timm=f"hgnetv2_b{b}.ssld_stage1_in22k_in1k",
            notes="SSLD stage 1 (distilled on ImageNet-1k + mined ImageNet-22k images); what PaddleClas's "
                  "pretrained=True loads, and what it recommends for downstream fine-tuning. "
                  f"No accuracy published ({_DOC_V2})."),
    }


default_cfgs = generate_default_cfgs({
    "pphgnet_tiny.ssld_in1k": paddle_cfg(
        "PPHGNet_tiny_ssld_pretrained", top1=81.95, top5=96.12, **_EVAL_232, timm="hgnet_tiny.ssld_in1k",
        notes=f"SSLD distillation. Accuracy from {_DOC_V1}."),
    "pphgnet_tiny.paddle_in1k": paddle_cfg(
        "PPHGNet_tiny_pretrained", top1=79.83, top5=95.04, **_EVAL_232, timm="hgnet_tiny.paddle_in1k",
        notes=f"Accuracy from {_DOC_V1}."),
    "pphgnet_small.ssld_in1k": paddle_cfg(
        "PPHGNet_small_ssld_pretrained", top1=83.82, top5=96.81, **_EVAL_236, timm="hgnet_small.ssld_in1k",
        notes=f"SSLD distillation. Accuracy from {_DOC_V1}."),
    "pphgnet_small.paddle_in1k": paddle_cfg(
        "PPHGNet_small_pretrained", top1=81.51, top5=95.82, **_EVAL_236, timm="hgnet_small.paddle_in1k",
        notes=f"Accuracy from {_DOC_V1}."),
    "pphgnet_base.ssld_in1k": paddle_cfg(
        "PPHGNet_base_ssld_pretrained", top1=85.00, top5=97.35, **_EVAL_236, timm="hgnet_base.ssld_in1k",
        notes=f"SSLD distillation; the only published PPHGNet_base weights. Accuracy from {_DOC_V1}."),
    **{k: v for b, acc in enumerate(_V2_ACCURACY) for k, v in _v2_weights(b, *acc).items()},
})


# The builders: the variant's network (VARIANTS) with its weight tags (default_cfgs); the first tag is the default.

@register_model("PPHGNet_tiny", default_cfgs)
def pphgnet_tiny(num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 use_last_conv: bool = True, class_expand: int = 2048, act_layer: LayerType = nn.ReLU,
                 norm_layer: LayerType = nn.BatchNorm2d,
                 output_stride: int = 32) -> PPHGNet:
    """PP-HGNet tiny (stem 48-48-96, 5 layers per block, depths 1-1-2-1)."""
    return _create("pphgnet_tiny", **locals())


@register_model("PPHGNet_small", default_cfgs)
def pphgnet_small(num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                  use_last_conv: bool = True, class_expand: int = 2048, act_layer: LayerType = nn.ReLU,
                  norm_layer: LayerType = nn.BatchNorm2d,
                  output_stride: int = 32) -> PPHGNet:
    """PP-HGNet small (stem 64-64-128, 6 layers per block, depths 1-1-2-1)."""
    return _create("pphgnet_small", **locals())


@register_model("PPHGNet_base", default_cfgs)
def pphgnet_base(num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.2, drop_path_rate: float = 0.0,
                 use_last_conv: bool = True, class_expand: int = 2048, act_layer: LayerType = nn.ReLU,
                 norm_layer: LayerType = nn.BatchNorm2d,
                 output_stride: int = 32) -> PPHGNet:
    """PP-HGNet base (stem 96-96-160, 7 layers per block, depths 1-2-3-2, head dropout 0.2)."""
    return _create("pphgnet_base", **locals())


@register_model("PPHGNetV2_B0", default_cfgs)
def pphgnetv2_b0(num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 use_last_conv: bool = True, class_expand: int = 2048, stem_pool: str = "same",
                 act_layer: LayerType = nn.ReLU, norm_layer: LayerType = nn.BatchNorm2d,
                 output_stride: int = 32) -> PPHGNetV2:
    """PP-HGNetV2 B0 (stem 16-16, 3 layers per block, depths 1-1-2-1, learnable affine blocks)."""
    return _create("pphgnetv2_b0", **locals())


@register_model("PPHGNetV2_B1", default_cfgs)
def pphgnetv2_b1(num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 use_last_conv: bool = True, class_expand: int = 2048, stem_pool: str = "same",
                 act_layer: LayerType = nn.ReLU, norm_layer: LayerType = nn.BatchNorm2d,
                 output_stride: int = 32) -> PPHGNetV2:
    """PP-HGNetV2 B1 (stem 24-32, 3 layers per block, depths 1-1-2-1, learnable affine blocks)."""
    return _create("pphgnetv2_b1", **locals())


@register_model("PPHGNetV2_B2", default_cfgs)
def pphgnetv2_b2(num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 use_last_conv: bool = True, class_expand: int = 2048, stem_pool: str = "same",
                 act_layer: LayerType = nn.ReLU, norm_layer: LayerType = nn.BatchNorm2d,
                 output_stride: int = 32) -> PPHGNetV2:
    """PP-HGNetV2 B2 (stem 24-32, 4 layers per block, depths 1-1-3-1, learnable affine blocks)."""
    return _create("pphgnetv2_b2", **locals())


@register_model("PPHGNetV2_B3", default_cfgs)
def pphgnetv2_b3(num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 use_last_conv: bool = True, class_expand: int = 2048, stem_pool: str = "same",
                 act_layer: LayerType = nn.ReLU, norm_layer: LayerType = nn.BatchNorm2d,
                 output_stride: int = 32) -> PPHGNetV2:
    """PP-HGNetV2 B3 (stem 24-32, 5 layers per block, depths 1-1-3-1, learnable affine blocks)."""
    return _create("pphgnetv2_b3", **locals())


@register_model("PPHGNetV2_B4", default_cfgs)
def pphgnetv2_b4(num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 use_last_conv: bool = True, class_expand: int = 2048, stem_pool: str = "same",
                 act_layer: LayerType = nn.ReLU, norm_layer: LayerType = nn.BatchNorm2d,
                 output_stride: int = 32) -> PPHGNetV2:
    """PP-HGNetV2 B4 (stem 32-48, 6 layers per block, depths 1-1-3-1)."""
    return _create("pphgnetv2_b4", **locals())


@register_model("PPHGNetV2_B5", default_cfgs)
def pphgnetv2_b5(num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 use_last_conv: bool = True, class_expand: int = 2048, stem_pool: str = "same",
                 act_layer: LayerType = nn.ReLU, norm_layer: LayerType = nn.BatchNorm2d,
                 output_stride: int = 32) -> PPHGNetV2:
    """PP-HGNetV2 B5 (stem 32-64, 6 layers per block, depths 1-2-5-2)."""
    return _create("pphgnetv2_b5", **locals())


@register_model("PPHGNetV2_B6", default_cfgs)
def pphgnetv2_b6(num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 use_last_conv: bool = True, class_expand: int = 2048, stem_pool: str = "same",
                 act_layer: LayerType = nn.ReLU, norm_layer: LayerType = nn.BatchNorm2d,
                 output_stride: int = 32) -> PPHGNetV2:
    """PP-HGNetV2 B6 (stem 48-96, 6 layers per block, depths 2-3-6-3)."""
    return _create("pphgnetv2_b6", **locals())
