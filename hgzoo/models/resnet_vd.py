"""ResNet-vd (ResNet-D, "Bag of Tricks", He et al. 2019) as PaddleClas builds it: ResNet18/34/50/101/152/200_vd.

Three changes from the original ResNet:

* the stem is three 3x3 convs (32, 32, 64 channels; the first with stride 2) instead of one 7x7 conv;
* in the bottleneck the stride sits on the 3x3 conv, not on the first 1x1;
* a downsampling shortcut is a 2x2 average pool with stride 2 followed by a 1x1 conv and BN, instead of a
  strided 1x1 conv. PaddleClas's pool uses "SAME" padding with ``ceil_mode`` and does not count the padding
  (``exclusive``). At an odd size that is exactly ``AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False)``:
  ``ceil(n / 2)`` outputs, the last of which averages the single remaining row or column, so the shortcut
  matches the main path (a 3x3 stride-2 conv with padding 1) at any input size.

As in PaddleClas, the first block of *every* stage has a projection shortcut, the first stage's included
(there: a plain 1x1 conv + BN at stride 1, even for ResNet18/34 where the widths already agree).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import ClassVar, Literal

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
    create_act,
    drop_path_schedule,
    get_act_layer,
    kaiming_normal_fan_in_,
    pad_same,
    resolve_act_norm,
    uniform_fan_in_,
)
from ..pretrained import PADDLE_BUCKET, generate_default_cfgs, paddle_cfg, timm_cfg
from ._base import ClassifierModel

__all__ = [
    "BasicBlock", "Bottleneck", "ResNetVd", "ResNetVdShortcut", "make_paddle_key_map", "RESNET_VD", "VARIANTS",
    "default_cfgs",
]

RESNET_VD = ModelFamily("ResNet-vd", (PADDLECLAS_CITATION, """@inproceedings{he2019bag,
  title = {Bag of Tricks for Image Classification with Convolutional Neural Networks},
  author = {He, Tong and Zhang, Zhi and Zhang, Hang and Zhang, Zhongyue and Xie, Junyuan and Li, Mu},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year = {2019}
}"""))

STAGE_WIDTHS = (64, 128, 256, 512)


class AvgPool2x2Same(nn.Module):
    """A 2x2 average pool at stride 1 with "SAME" zero padding (right/bottom), the zeros counted: the shortcut's pool
    of a dilated stage in timm's ResNet-d (``output_stride`` 8 or 16), where the stride became a dilation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.avg_pool2d(pad_same(x, 2, 1), 2, 1)


class ResNetVdShortcut(nn.Module):
    """The projection shortcut: [2x2 average pool, stride 2, ceil mode, padding not counted] → 1x1 conv → BN.

    The pool is there only when ``stride > 1``, or as :class:`AvgPool2x2Same` in a dilated stage (``dilation > 1``,
    stride 1, as timm's ResNet-d); the conv itself always has stride 1.
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, dilation: int = 1,
                 norm_layer: LayerType = nn.BatchNorm2d) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        if stride > 1:
            self.pool = nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False)
        else:
            self.pool = AvgPool2x2Same() if dilation > 1 else nn.Identity()
        self.conv = ConvBNAct(in_chs, out_chs, 1, act_layer=None, norm_layer=norm_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pool(x))


def _dilate(layer: ConvBNAct, dilation: int) -> ConvBNAct:
    """``layer``'s 3x3 conv with ``dilation`` (and the padding that keeps its size)."""
    if dilation > 1:
        layer.conv.dilation, layer.conv.padding = (dilation, dilation), (dilation, dilation)
    return layer


class BasicBlock(nn.Module):
    """Two 3x3 conv-BNs (the first strided) plus the shortcut, then ReLU (ResNet18/34). In a dilated stage the first
    conv has the previous stage's dilation (``first_dilation``), the second the stage's, as in timm."""

    expansion: ClassVar[int] = 1

    def __init__(self, in_chs: int, width: int, stride: int = 1, shortcut: nn.Module | None = None,
                 drop_path_rate: float = 0.0, dilation: int = 1, first_dilation: int = 1,
                 act_layer: LayerType = nn.ReLU, norm_layer: LayerType = nn.BatchNorm2d) -> None:
        super().__init__()
        conv = partial(ConvBNAct, norm_layer=norm_layer)
        self.conv1 = _dilate(conv(in_chs, width, 3, stride, act_layer=act_layer), first_dilation)
        self.conv2 = _dilate(conv(width, width, 3, act_layer=None), dilation)
        self.downsample = shortcut if shortcut is not None else nn.Identity()
        self.drop_path = DropPath(drop_path_rate)
        self.act = create_act(get_act_layer(act_layer))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.drop_path(self.conv2(self.conv1(x)))
        out += self.downsample(x)  # in place on our own fresh tensor
        return self.act(out)


class Bottleneck(nn.Module):
    """1x1 → 3x3 (strided) → 1x1 (4x wider) conv-BNs plus the shortcut, then ReLU (ResNet50 and deeper). In a
    dilated stage the 3x3 conv has ``first_dilation`` (the previous stage's in the first block), as in timm."""

    expansion: ClassVar[int] = 4

    def __init__(self, in_chs: int, width: int, stride: int = 1, shortcut: nn.Module | None = None,
                 drop_path_rate: float = 0.0, dilation: int = 1, first_dilation: int = 1,
                 act_layer: LayerType = nn.ReLU, norm_layer: LayerType = nn.BatchNorm2d) -> None:
        super().__init__()
        conv = partial(ConvBNAct, norm_layer=norm_layer)
        self.conv1 = conv(in_chs, width, 1, act_layer=act_layer)
        self.conv2 = _dilate(conv(width, width, 3, stride, act_layer=act_layer), first_dilation)
        self.conv3 = conv(width, width * self.expansion, 1, act_layer=None)
        self.downsample = shortcut if shortcut is not None else nn.Identity()
        self.drop_path = DropPath(drop_path_rate)
        self.act = create_act(get_act_layer(act_layer))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.drop_path(self.conv3(self.conv2(self.conv1(x))))
        out += self.downsample(x)  # in place on our own fresh tensor
        return self.act(out)


BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


def make_paddle_key_map(depths: tuple[int, ...]) -> PaddleKeyMap:
    """The Paddle → hgzoo key map of a ResNet-vd with ``depths`` blocks per stage.

    PaddleClas numbers the blocks through the whole network (``blocks.N``), we number them per stage
    (``stages.S.J``), so the map depends on the depths. Inside a block Paddle counts its convs from 0 and
    calls the shortcut ``short``; we count from 1 (as torchvision does) and call it ``downsample``.

    The map also reads PaddleClas 2.0's dygraph layout (``ppcls/modeling/architectures/resnet_vd.py``: ``conv1_1``..
    ``conv1_3``, blocks ``bb_S_J``, ``_conv`` / ``_batch_norm``, fc ``out``), that of the files published outside
    ``legendary_models/`` (``Fix_ResNet50_vd_ssld_v2``, ``ResNet50_vd_10w``).
    """
    renames: list[tuple[str, str]] = [
        (r"^conv1_1\.", "stem.0."), (r"^conv1_2\.", "stem.1."), (r"^conv1_3\.", "stem.2."),
        (r"^bb_(\d+)_(\d+)\.", r"stages.\1.\2."), (r"\._conv\.", ".conv."), (r"\._batch_norm\.", ".bn."),
        (r"^out\.", "head.fc."),
    ]
    n = 0
    for s, depth in enumerate(depths):
        for j in range(depth):
            renames.append((rf"^blocks\.{n}\.", f"stages.{s}.{j}."))
            n += 1
    renames += [
        (r"\.short\.", ".downsample.conv."),
        # Highest first, so that no conv is renamed twice.
        (r"\.conv2\.", ".conv3."), (r"\.conv1\.", ".conv2."), (r"\.conv0\.", ".conv1."),
        (r"^fc\.", "head.fc."),
    ]
    return PaddleKeyMap(renames=tuple(renames))

# timm's ResNet-d (``resnet*d``: deep stem, avg-pool shortcut) is this network: its stem is one Sequential with the
# last BN outside it, its blocks name BNs apart from their convs, its stages are layer1-4. ResNet18/34-d have no
# projection in the first block, where PaddleClas has a 1x1 conv + BN (filled in with an exact identity).
TIMM_KEY_MAP = TimmKeyMap(
    renames=(
        ("^conv1.0.", "^stem.0.conv."),
        ("^conv1.1.", "^stem.0.bn."),
        ("^conv1.3.", "^stem.1.conv."),
        ("^conv1.4.", "^stem.1.bn."),
        ("^conv1.6.", "^stem.2.conv."),
        ("^bn1.", "^stem.2.bn."),
        *((f"^layer{s + 1}.", f"^stages.{s}.") for s in range(4)),
        (".downsample.1.", ".downsample.conv.conv."),
        (".downsample.2.", ".downsample.conv.bn."),
        (".conv{k}.weight$", ".conv{k}.conv.weight$"),
        (".bn{k}.", ".conv{k}.bn."),
        ("^fc.", "^head.fc."),
    ),
    identity_shortcuts=("stages.0.0.downsample.conv.",),
    archs=(
        TimmArch("resnet18d", "resnet18_vd", identity_shortcut=True),
        TimmArch("resnet34d", "resnet34_vd", identity_shortcut=True),
        TimmArch("resnet50d", "resnet50_vd"),
        TimmArch("resnet101d", "resnet101_vd"),
        TimmArch("resnet152d", "resnet152_vd"),
    ),
    refused=(("resnet200d", "timm's resnet200d has depths 3-24-36-3 and PaddleClas's ResNet200_vd 3-12-48-3: "
                            "they are different networks, and no state dict converts between them"),),
)


class ResNetVd(ClassifierModel):
    """ResNet-vd: a 3-conv stem and max pool (``stem``, ``stem_pool``), four ``stages`` of residual blocks
    (strides 1, 2, 2, 2), and a head of global average pool → fc (PaddleClas has no dropout here).

    ``stem`` and each ``stages[i]`` are separate modules, so per-stage learning rates (PaddleClas's
    ``lr_mult_list``) and freezing are a matter of ``model.stem.parameters()`` / ``model.stages[i].parameters()``.

    The Paddle key map depends on the depths (Paddle numbers blocks across stages), so each instance
    carries its own ``paddle_key_map``.

    Args:
        block: ``"basic"`` (ResNet18/34) or ``"bottleneck"`` (ResNet50 and deeper).
        depths: blocks per stage.
        num_classes: classifier outputs; 0 for no fc.
        in_chans: input channels.
        drop_rate: dropout before the fc (PyTorch's convention: identity at eval). PaddleClas uses none.
        drop_path_rate: stochastic depth of the residual branches, rising linearly over all blocks to this value.
        output_stride: 32 (PaddleClas's classifier), or 16 / 8 for dense prediction (DeepLab-style): the stride of
            the last stage (16), or of the last two (8), becomes a dilation, as in timm's ResNet-d (``output_stride``)
            on the same weights; the shortcut of a dilated stage pools 2x2 at stride 1 as timm's does.
        act_layer: the activation, a name or class (:func:`~hgzoo.layers.get_act_layer`): every ReLU of the stem and
            the blocks (after each residual sum too), as timm's ResNet ``act_layer``. Default ReLU (PaddleClas's).
        norm_layer: the norm, a name or class (:func:`~hgzoo.layers.get_norm_layer`): every BatchNorm (stem, blocks,
            shortcuts), as timm's ``norm_layer``, under the same state-dict keys. Default BatchNorm2d (PaddleClas's).
    """

    family = RESNET_VD
    first_conv = "stem.0.conv"
    timm_key_map = TIMM_KEY_MAP
    # PaddleClas builds its convs with Paddle's default (normal, std sqrt(2 / fan_in): Kaiming's, as no conv is
    # grouped) and its fc with weights uniform in +-1/sqrt(fan_in) and a zero bias; BN 1/0.
    paddle_init = PaddleInit(build=((nn.Conv2d, kaiming_normal_fan_in_), (nn.Linear, uniform_fan_in_)))
    # timm's ResNet-d exposes the stem (before the max pool) as level 0 of forward_intermediates.
    stem_info = {"num_chs": 64, "reduction": 2, "module": "stem"}

    def __init__(
        self,
        block: Literal["basic", "bottleneck"],
        depths: tuple[int, int, int, int],
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        output_stride: int = 32,
        act_layer: LayerType = nn.ReLU,
        norm_layer: LayerType = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        act_layer, norm_layer = resolve_act_norm(act_layer, norm_layer)
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride!r}")
        if block not in BLOCKS:
            raise ValueError(f"block must be one of {sorted(BLOCKS)}, got {block!r}")
        if len(depths) != len(STAGE_WIDTHS):
            raise ValueError(f"depths must have {len(STAGE_WIDTHS)} entries, got {depths}")
        block_cls = BLOCKS[block]
        self.paddle_key_map = make_paddle_key_map(tuple(depths))
        conv = partial(ConvBNAct, act_layer=act_layer, norm_layer=norm_layer)
        self.stem = nn.Sequential(
            conv(in_chans, 32, 3, stride=2),
            conv(32, 32, 3),
            conv(32, 64, 3),
        )
        self.stem_pool = nn.MaxPool2d(3, stride=2, padding=1)

        in_chs, reduction, dilation = 64, 4, 1
        stages, self.feature_info = [], []
        for i, (width, rates) in enumerate(zip(STAGE_WIDTHS, drop_path_schedule(drop_path_rate, depths))):
            stride, first_dilation = 1 if i == 0 else 2, dilation
            if stride > 1 and reduction >= output_stride:
                stride, dilation = 1, dilation * 2
            out_chs = width * block_cls.expansion
            blocks = []
            for j, rate in enumerate(rates):
                shortcut = ResNetVdShortcut(in_chs, out_chs, stride, dilation, norm_layer) if j == 0 else None
                blocks.append(block_cls(in_chs, width, stride if j == 0 else 1, shortcut, rate, dilation,
                                        first_dilation if j == 0 else dilation, act_layer, norm_layer))
                in_chs = out_chs
            reduction *= stride
            stages.append(nn.Sequential(*blocks))
            self.feature_info.append({"num_chs": out_chs, "reduction": reduction, "module": f"stages.{i}"})
        self.stages = nn.ModuleList(stages)
        self.num_features = in_chs

        self.head = ClassifierHead(in_chs, num_classes, drop_rate=drop_rate, dropout_mode="upscale_in_train")
        self._init_weights()

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem_pool(self.stem(x))

    def forward_stem_level(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        stem = self.stem(x)
        return self.stem_pool(stem), stem


@dataclass(frozen=True)
class VariantCfg:
    """A ResNet-vd variant: its block type and blocks per stage."""

    block: Literal["basic", "bottleneck"]
    depths: tuple[int, int, int, int]


VARIANTS = {
    "resnet18_vd": VariantCfg(block="basic", depths=(2, 2, 2, 2)),
    "resnet34_vd": VariantCfg(block="basic", depths=(3, 4, 6, 3)),
    "resnet50_vd": VariantCfg(block="bottleneck", depths=(3, 4, 6, 3)),
    "resnet101_vd": VariantCfg(block="bottleneck", depths=(3, 4, 23, 3)),
    "resnet152_vd": VariantCfg(block="bottleneck", depths=(3, 8, 36, 3)),
    "resnet200_vd": VariantCfg(block="bottleneck", depths=(3, 12, 48, 3)),
}


def _create(name: str, **kwargs) -> ResNetVd:
    v = VARIANTS[name]
    return ResNetVd(v.block, v.depths, **kwargs)


# The weights table. Evaluation preprocessing of ppcls/configs/ImageNet/ResNet/*.yaml: resize short 256 (cv2,
# bilinear), crop 224: paddle_cfg's defaults.
_DOC = "PaddleClas docs/zh_CN/models/ImageNet1k/README.md (ResNet table)"
_SSLD_DOC = "PaddleClas docs/zh_CN/models/ImageNet1k/README.md (SSLD and ResNet tables)"
_ACCURACY = f"Accuracy from {_DOC}."


@dataclass(frozen=True)
class TimmTraining:
    """One of timm's own trainings of a ResNet-d (timm 1.0.31's ``default_cfgs``: the evaluation size and crop_pct),
    with the accuracy timm measured (results/results-imagenet.csv: at ``eval_size`` / ``eval_crop_pct``)."""

    timm_name: str
    crop_size: int
    crop_pct: float
    mean_std: float | None = None  # both 0.5 (the ra4 trainings), else ImageNet's
    top1: float | None = None
    top5: float | None = None
    eval_size: int | None = None
    eval_crop_pct: float | None = None


_TIMM_TRAININGS = {
    "resnet18_vd": (TimmTraining("resnet18d.ra2_in1k", 224, 0.875, None, 73.794, 91.838, 288, 0.95),
                    TimmTraining("resnet18d.ra4_e3600_r224_in1k", 224, 0.9, 0.5)),
    "resnet34_vd": (TimmTraining("resnet34d.ra2_in1k", 224, 0.875, None, 78.436, 94.344, 288, 0.95),),
    "resnet50_vd": (TimmTraining("resnet50d.ra2_in1k", 224, 0.875, None, 81.356, 95.738, 288, 0.95),
                    TimmTraining("resnet50d.a1_in1k", 224, 0.95, None, 81.450, 95.218, 288, 1.0),
                    TimmTraining("resnet50d.a2_in1k", 224, 0.95, None, 81.164, 95.084, 288, 1.0),
                    TimmTraining("resnet50d.a3_in1k", 160, 0.95, None, 78.722, 94.236, 224, 0.95),
                    TimmTraining("resnet50d.ra4_e3600_r224_in1k", 224, 0.95, 0.5),
                    TimmTraining("resnet50d.gluon_in1k", 224, 0.875, None, 79.078, 94.468, 224, 0.875)),
    "resnet101_vd": (TimmTraining("resnet101d.ra2_in1k", 256, 0.95, None, 83.016, 96.452, 320, 1.0),
                     TimmTraining("resnet101d.gluon_in1k", 224, 0.875, None, 80.426, 95.024, 224, 0.875)),
    "resnet152_vd": (TimmTraining("resnet152d.ra2_in1k", 256, 0.95, None, 83.684, 96.740, 320, 1.0),
                     TimmTraining("resnet152d.gluon_in1k", 224, 0.875, None, 80.476, 95.202, 224, 0.875)),
}



def _timm_weights(arch: str, t: TimmTraining) -> dict:
    """One of timm's own trainings of the same network (shortcut pool included; ResNet18/34-d's missing first
    projection is an exact identity), as an extra tag with timm's preprocessing."""
    gluon = t.timm_name.endswith("gluon_in1k")
    if t.top1 is None:
        measured = "timm publishes no accuracy for it in the results table available here (an older version)."
    else:
        measured = (f"Accuracy as timm measures it at {t.eval_size} px, crop_pct {t.eval_crop_pct} "
                    "(results/results-imagenet.csv)" + (", not this tag's default preprocessing." if
                                                        t.eval_size != t.crop_size else "."))
    norm = {} if t.mean_std is None else {"mean": (t.mean_std,) * 3, "std": (t.mean_std,) * 3}
    return timm_cfg(
        t.timm_name, crop_size=t.crop_size, crop_pct=t.crop_pct, interpolation="bicubic", top1=t.top1, top5=t.top5,
        source="GluonCV, via timm's Hub repo" if gluon else "timm (its own training)", **norm,
        notes=f"{'GluonCV' if gluon else 'timm'}'s training of ResNet-D ({t.timm_name}), the same network as "
              f"PaddleClas's {arch}. {measured}")


# Published checkpoints outside legendary_models/ (PaddleClas 2.0's dygraph files), listed in its model-zoo docs.
_DYGRAPH = f"{PADDLE_BUCKET}dygraph/"
_LEGACY_LAYOUT = ("The file is in PaddleClas 2.0's dygraph layout (conv1_1, bb_S_J, ..., out), which the key map "
                  "reads; that layout was read off PaddleClas 2.0's resnet_vd.py, as the file itself could not be "
                  "downloaded here.")

default_cfgs = generate_default_cfgs({
    "resnet18_vd.paddle_in1k": paddle_cfg("ResNet18_vd_pretrained", top1=72.26, top5=90.80, notes=_ACCURACY),
    "resnet34_vd.ssld_in1k": paddle_cfg(
        "ResNet34_vd_ssld_pretrained", top1=79.72, top5=94.90, notes=f"SSLD distillation. Accuracy from {_SSLD_DOC}."),
    "resnet34_vd.paddle_in1k": paddle_cfg("ResNet34_vd_pretrained", top1=75.98, top5=92.98, notes=_ACCURACY),
    "resnet50_vd.ssld_in1k": paddle_cfg(
        "ResNet50_vd_ssld_pretrained", top1=83.00, top5=96.40,
        notes="SSLD distillation. Accuracy from the tables that link this file "
              "(docs/zh_CN/models/ImageNet1k/README.md and ResNet.md, release 2.2 on: 0.8300 / 0.9640). "
              "The 82.39 of older docs (ResNet_and_vd.md: 0.824 / 0.961) is the earlier static SSLD "
              "model; 83.0 / 96.4 was listed there as ResNet50_vd_ssld_v2."),
    "resnet50_vd.paddle_in1k": paddle_cfg("ResNet50_vd_pretrained", top1=79.12, top5=94.44, notes=_ACCURACY),
    "resnet50_vd.fix_ssld_in1k": paddle_cfg(
        "Fix_ResNet50_vd_ssld_v2_pretrained", top1=84.0, top5=97.0, url_root=_DYGRAPH, resize_short=320, crop_size=320,
        notes="PaddleClas's Fix_ResNet50_vd_ssld (file Fix_ResNet50_vd_ssld_v2): ResNet50_vd_ssld_v2 with "
              "every layer but the fc frozen, fine-tuned at 320x320 (FixRes). Accuracy from "
              "docs/zh_CN/models/ImageNet1k/ResNet.md (0.840 / 0.970); URL from PaddleClas's model-zoo "
              "overview (its list of pretrained models and download links). Evaluation: crop 320 after "
              "resizing the short side to 320, as the T4 table of ResNet_and_vd.md lists it; no "
              "evaluation config is published for it, so the interpolation is ResizeImage's default (cv2 "
              "bilinear), not a documented fact. " + _LEGACY_LAYOUT),
    "resnet50_vd.paddle_10w": paddle_cfg(
        "ResNet50_vd_10w_pretrained", num_classes=0, url_root=_DYGRAPH,
        notes="Baidu's large-scale pretraining for fine-tuning: 100,000 classes, 43 million images "
              "(PaddleClas docs, transfer learning: 'ResNet50_vd_10w'). The file has no classifier (the "
              "FAQ: it 'does not provide the final FC layer parameters'), so this tag has none; pass "
              "num_classes to get a fresh one. No accuracy is published; the preprocessing is ResNet50_vd's "
              "ImageNet evaluation (PaddleClas publishes none for it). " + _LEGACY_LAYOUT),
    "resnet101_vd.ssld_in1k": paddle_cfg(
        "ResNet101_vd_ssld_pretrained", top1=83.73, top5=96.69, notes=f"SSLD distillation. Accuracy from {_SSLD_DOC}."),
    "resnet101_vd.paddle_in1k": paddle_cfg("ResNet101_vd_pretrained", top1=80.17, top5=94.97, notes=_ACCURACY),
    "resnet152_vd.paddle_in1k": paddle_cfg("ResNet152_vd_pretrained", top1=80.59, top5=95.30, notes=_ACCURACY),
    "resnet200_vd.paddle_in1k": paddle_cfg("ResNet200_vd_pretrained", top1=80.93, top5=95.33, notes=_ACCURACY),
    **{f"{arch}.{t.timm_name.partition('.')[2]}": _timm_weights(arch, t)
       for arch, trainings in _TIMM_TRAININGS.items() for t in trainings},
})


# The builders: the variant's network (VARIANTS) with its weight tags (default_cfgs); the first tag is the default.

@register_model("ResNet18_vd", default_cfgs)
def resnet18_vd(num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0,
                drop_path_rate: float = 0.0, output_stride: int = 32, act_layer: LayerType = nn.ReLU,
                norm_layer: LayerType = nn.BatchNorm2d) -> ResNetVd:
    """ResNet18_vd (basic blocks, depths 2-2-2-2)."""
    return _create("resnet18_vd", **locals())


@register_model("ResNet34_vd", default_cfgs)
def resnet34_vd(num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0,
                drop_path_rate: float = 0.0, output_stride: int = 32, act_layer: LayerType = nn.ReLU,
                norm_layer: LayerType = nn.BatchNorm2d) -> ResNetVd:
    """ResNet34_vd (basic blocks, depths 3-4-6-3)."""
    return _create("resnet34_vd", **locals())


@register_model("ResNet50_vd", default_cfgs)
def resnet50_vd(num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0,
                drop_path_rate: float = 0.0, output_stride: int = 32, act_layer: LayerType = nn.ReLU,
                norm_layer: LayerType = nn.BatchNorm2d) -> ResNetVd:
    """ResNet50_vd (bottlenecks, depths 3-4-6-3)."""
    return _create("resnet50_vd", **locals())


@register_model("ResNet101_vd", default_cfgs)
def resnet101_vd(num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, output_stride: int = 32, act_layer: LayerType = nn.ReLU,
                 norm_layer: LayerType = nn.BatchNorm2d) -> ResNetVd:
    """ResNet101_vd (bottlenecks, depths 3-4-23-3)."""
    return _create("resnet101_vd", **locals())


@register_model("ResNet152_vd", default_cfgs)
def resnet152_vd(num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, output_stride: int = 32, act_layer: LayerType = nn.ReLU,
                 norm_layer: LayerType = nn.BatchNorm2d) -> ResNetVd:
    """ResNet152_vd (bottlenecks, depths 3-8-36-3)."""
    return _create("resnet152_vd", **locals())


@register_model("ResNet200_vd", default_cfgs)
def resnet200_vd(num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, output_stride: int = 32, act_layer: LayerType = nn.ReLU,
                 norm_layer: LayerType = nn.BatchNorm2d) -> ResNetVd:
    """ResNet200_vd (bottlenecks, depths 3-12-48-3)."""
    return _create("resnet200_vd", **locals())
