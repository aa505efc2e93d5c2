"""HRNet-C, the classification HRNet (HRNet_W18_C ... HRNet_W64_C, SE_HRNet_W64_C).

Reproduces ``ppcls/arch/backbone/legendary_models/hrnet.py`` (PaddleClas 2.6): with the same weights,
eval-mode logits match PaddleClas's. The network keeps 1, 2, 3, then 4 parallel branches of widths
C, 2C, 4C, 8C at strides 4, 8, 16, 32 and fuses them after every module; the classification head
widens each branch with one bottleneck ("incre" features of 128, 256, 512, 1024 channels), merges
them from fine to coarse with stride-2 convs, and projects to 2048 channels before pooling.

Two views of the features are first-class, for detection and segmentation:

* :meth:`HRNet.forward_branches`: the four branch outputs of the last stage (``branch_feature_info``);
* :meth:`HRNet.forward_incre`: the four incre features (``feature_info``, modules ``incre_modules.N``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .._registry import PADDLECLAS_CITATION, ModelFamily, register_model
from ..convert.keymap import PaddleKeyMap, TimmArch, TimmKeyMap
from ..layers import (
    ClassifierHead,
    ConvBNAct,
    DropPath,
    LayerType,
    PaddleInit,
    SqueezeExcite,
    create_act,
    drop_path_schedule,
    kaiming_normal_fan_in_,
    resolve_act_norm,
    uniform_fan_in_,
)
from ..pretrained import generate_default_cfgs, paddle_cfg, timm_cfg
from ._base import ClassifierModel

__all__ = ["HRNet", "BasicBlock", "Bottleneck", "HighResolutionModule", "ListSequential", "fuse_conv_order", "HRNET",
           "VARIANTS", "default_cfgs"]

HRNET = ModelFamily("HRNet", (PADDLECLAS_CITATION, """@article{wang2020hrnet,
  title = {Deep High-Resolution Representation Learning for Visual Recognition},
  author = {Wang, Jingdong and Sun, Ke and Cheng, Tianheng and Jiang, Borui and Deng, Chaorui and Zhao, Yang and
            Liu, Dong and Mu, Yadong and Tan, Mingkui and Wang, Xinggang and Liu, Wenyu and Xiao, Bin},
  journal = {IEEE Transactions on Pattern Analysis and Machine Intelligence},
  year = {2020}
}"""))

SE_REDUCTION = 16
STEM_CHS = 64
LAYER1_PLANES = 64
STAGE_MODULES = (1, 4, 3)  # high-resolution modules in stages 2, 3, 4
BLOCKS_PER_BRANCH = 4
INCRE_PLANES = (32, 64, 128, 256)  # bottleneck planes of the incre modules (x4 = 128 ... 1024 channels)
NUM_FEATURES = 2048


def _se(channels: int, has_se: bool, act_layer: LayerType = nn.ReLU) -> nn.Module:
    # PaddleClas: int(channels / 16) hidden units; at least one, so that widths below 16 still build.
    return SqueezeExcite(channels, max(channels // SE_REDUCTION, 1), act_layer) if has_se else nn.Identity()


def _upsample_to(x: torch.Tensor, scale: int, size: list[int]) -> torch.Tensor:
    """Nearest-neighbour upsampling by an integer ``scale``, cropped to ``size``.

    Every stride-2 conv rounds up, so a coarser branch has ``ceil(side / scale)`` pixels and its
    upsampled map is never smaller than the finer one. PaddleClas upsamples by the scale factor alone,
    which lines up only when each side of the stride-4 map is a multiple of 8 (inputs of 221-224 or
    253-256 pixels, not 193 or 257), and raises otherwise. Cropping keeps pixel ``i`` of the finer map on
    pixel ``i // scale`` of the coarser one: PaddleClas's result wherever it runs, and defined at every input size.
    """
    x = F.interpolate(x, scale_factor=float(scale), mode="nearest")
    return x[..., : size[0], : size[1]]


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN (ReLU between), optional SE, identity shortcut, ReLU after the sum."""

    def __init__(self, channels: int, has_se: bool = False, drop_path_rate: float = 0.0,
                 act_layer: LayerType = nn.ReLU, norm_layer: LayerType = nn.BatchNorm2d) -> None:
        super().__init__()
        act_layer, norm_layer = resolve_act_norm(act_layer, norm_layer)
        self.conv1 = ConvBNAct(channels, channels, 3, act_layer=act_layer, norm_layer=norm_layer)
        self.conv2 = ConvBNAct(channels, channels, 3, act_layer=None, norm_layer=norm_layer)
        self.se = _se(channels, has_se, act_layer)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()
        self.act = create_act(act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.drop_path(self.se(self.conv2(self.conv1(x))))
        out += x  # in place on our own fresh tensor
        return self.act(out)


class Bottleneck(nn.Module):
    """1x1 → 3x3 → 1x1 (x4 expansion) conv-BN, optional SE, ReLU after the sum with the shortcut.

    With ``downsample`` the shortcut is a 1x1 conv-BN to ``4 * planes`` channels (PaddleClas's ``conv_down``).
    """

    expansion = 4

    def __init__(
        self, in_chs: int, planes: int, has_se: bool = False, downsample: bool = False, drop_path_rate: float = 0.0,
        act_layer: LayerType = nn.ReLU, norm_layer: LayerType = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        act_layer, norm_layer = resolve_act_norm(act_layer, norm_layer)
        out_chs = planes * self.expansion
        self.conv1 = ConvBNAct(in_chs, planes, 1, act_layer=act_layer, norm_layer=norm_layer)
        self.conv2 = ConvBNAct(planes, planes, 3, act_layer=act_layer, norm_layer=norm_layer)
        self.conv3 = ConvBNAct(planes, out_chs, 1, act_layer=None, norm_layer=norm_layer)
        self.downsample = (ConvBNAct(in_chs, out_chs, 1, act_layer=None, norm_layer=norm_layer) if downsample
                           else nn.Identity())
        self.se = _se(out_chs, has_se, act_layer)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()
        self.act = create_act(act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.drop_path(self.se(self.conv3(self.conv2(self.conv1(x)))))
        out += self.downsample(x)
        return self.act(out)


def fuse_conv_order(num_branches: int) -> list[tuple[int, int, int]]:
    """``(i, j, k)`` of every conv of a fuse block, in PaddleClas's flat order: for output branch
    ``i``, input branch ``j``, the ``k``-th conv of the path from ``j`` to ``i``."""
    order = []
    for i in range(num_branches):
        for j in range(num_branches):
            if j > i:
                order.append((i, j, 0))
            elif j < i:
                order.extend((i, j, k) for k in range(i - j))
    return order


class HighResolutionModule(nn.Module):
    """Basic blocks on every branch, then the fuse: each output branch ``i`` is
    ``relu(sum_j path_ij(x_j))`` where the path is the identity for ``j == i``, a 1x1 conv-BN and
    nearest upsampling for a coarser ``j``, and a chain of ``i - j`` stride-2 3x3 conv-BN (ReLU on all
    but the last) for a finer ``j``. Takes and returns a list of tensors, finest first.
    """

    def __init__(
        self, channels: tuple[int, ...], has_se: bool = False, drop_path_rates: tuple[float, ...] = (0.0,) * 4,
        act_layer: LayerType = nn.ReLU, norm_layer: LayerType = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        act_layer, norm_layer = resolve_act_norm(act_layer, norm_layer)
        self.branches = nn.ModuleList(
            nn.Sequential(*(BasicBlock(c, has_se, dpr, act_layer, norm_layer) for dpr in drop_path_rates))
            for c in channels
        )
        self.fuse_layers = nn.ModuleList(
            nn.ModuleList(self._fuse_path(channels, i, j, act_layer, norm_layer) for j in range(len(channels)))
            for i in range(len(channels))
        )
        self.act = create_act(act_layer)

    @staticmethod
    def _fuse_path(channels: tuple[int, ...], i: int, j: int, act_layer: LayerType = nn.ReLU,
                   norm_layer: LayerType = nn.BatchNorm2d) -> nn.Module:
        if j == i:
            return nn.Identity()
        if j > i:  # coarser input: 1x1 conv to this width; upsampled in forward
            return nn.Sequential(ConvBNAct(channels[j], channels[i], 1, act_layer=None, norm_layer=norm_layer))
        convs = [ConvBNAct(channels[j], channels[j], 3, stride=2, act_layer=act_layer, norm_layer=norm_layer)
                 for _ in range(i - j - 1)]
        convs.append(ConvBNAct(channels[j], channels[i], 3, stride=2, act_layer=None, norm_layer=norm_layer))
        return nn.Sequential(*convs)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        ys: list[torch.Tensor] = []
        for k, branch in enumerate(self.branches):
            ys.append(branch(xs[k]))
        out: list[torch.Tensor] = []
        for i, paths in enumerate(self.fuse_layers):
            # The first sum makes a new tensor (ys[i] is read again by later outputs); the rest add in place.
            size = ys[i].shape[-2:]
            y = ys[i]
            first = True
            for j, path in enumerate(paths):
                if j != i:
                    t = _upsample_to(path(ys[j]), 1 << (j - i), size) if j > i else path(ys[j])
                    if first:
                        y = ys[i] + t
                        first = False
                    else:
                        y += t
            out.append(self.act(y.clone()) if first else self.act(y))  # y is ys[i] itself if first
        return out


class ListSequential(nn.Sequential):
    """``nn.Sequential`` over modules that take and return a list of tensors (TorchScript needs the types)."""

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        for module in self:
            xs = module(xs)
        return xs


def _paddle_renames() -> tuple[tuple[str, str], ...]:
    # PaddleClas numbers each fuse block's convs in one flat list; ours are fuse_layers[i][j][k].
    fuse = tuple(
        (rf"^st{s}\.stage_func_list\.(\d+)\.fuse_func\.residual_func_list\.{n}\.",
         rf"stage{s}.\1.fuse_layers.{i}.{j}.{k}.")
        for s in (2, 3, 4)
        for n, (i, j, k) in enumerate(fuse_conv_order(s))
    )
    return (
        (r"^conv_layer1_1\.", "stem.0."),
        (r"^conv_layer1_2\.", "stem.1."),
        (r"^conv_tr1_1\.", "transition1.0."),
        (r"^conv_tr1_2\.", "transition1.1."),
        (r"^conv_tr(\d)\.", r"transition\1."),
        *fuse,
        (r"^st(\d)\.stage_func_list\.", r"stage\1."),
        (r"\.basic_block_list\.", ".branches."),
        (r"^last_cls\.func_list\.", "incre_modules."),
        (r"^cls_head_conv_list\.", "downsamples."),
        (r"\.conv_down\.", ".downsample."),
        (r"\.se\.fc_squeeze\.", ".se.conv1."),
        (r"\.se\.fc_excitation\.", ".se.conv2."),
        (r"^fc\.", "head.fc."),
    )


PADDLE_KEY_MAP = PaddleKeyMap(renames=_paddle_renames())


def _timm_renames() -> tuple[tuple[str, str], ...]:
    # timm's fuse paths are Sequentials of bare conv, BN (and ReLU): for a coarser input j > i one (conv, BN); for a
    # finer one, i - j Sequentials of (conv, BN[, ReLU]). Ours are conv-BN modules throughout.
    fuse = []
    for i in range(4):
        for j in range(i + 1, 4):
            fuse += [(f".fuse_layers.{i}.{j}.0.", f".fuse_layers.{i}.{j}.0.conv."),
                     (f".fuse_layers.{i}.{j}.1.", f".fuse_layers.{i}.{j}.0.bn.")]
        for j in range(i):
            for k in range(i - j):
                fuse += [(f".fuse_layers.{i}.{j}.{k}.0.", f".fuse_layers.{i}.{j}.{k}.conv."),
                         (f".fuse_layers.{i}.{j}.{k}.1.", f".fuse_layers.{i}.{j}.{k}.bn.")]
    return (
        ("^conv1.", "^stem.0.conv."),
        ("^bn1.", "^stem.0.bn."),
        ("^conv2.", "^stem.1.conv."),
        ("^bn2.", "^stem.1.bn."),
        ("^transition1.0.0.", "^transition1.0.conv."),
        ("^transition1.0.1.", "^transition1.0.bn."),
        ("^transition1.1.0.0.", "^transition1.1.conv."),
        ("^transition1.1.0.1.", "^transition1.1.bn."),
        ("^transition2.2.0.0.", "^transition2.conv."),
        ("^transition2.2.0.1.", "^transition2.bn."),
        ("^transition3.3.0.0.", "^transition3.conv."),
        ("^transition3.3.0.1.", "^transition3.bn."),
        *fuse,
        ("^incre_modules.{i}.0.", "^incre_modules.{i}."),
        ("^downsamp_modules.{i}.0.", "^downsamples.{i}.conv."),
        ("^downsamp_modules.{i}.1.", "^downsamples.{i}.bn."),
        ("^final_layer.0.", "^conv_last.conv."),
        ("^final_layer.1.", "^conv_last.bn."),
        (".downsample.0.", ".downsample.conv."),
        (".downsample.1.", ".downsample.bn."),
        (".conv{k}.weight$", ".conv{k}.conv.weight$"),
        (".bn{k}.", ".conv{k}.bn."),
        ("^classifier.", "^head.fc."),
    )


# timm's HRNet is this network. Its ``hrnet_w*`` (HRNet's original Microsoft weights) give the head's four convs a
# bias, which folds exactly into the BN after each; ``hrnet_w18_ssld`` / ``hrnet_w48_ssld`` (Paddle's) have none.
TIMM_KEY_MAP = TimmKeyMap(
    renames=_timm_renames(),
    bias_folds=(("^downsamples.{i}.conv.bias$", "downsamples.{i}.bn."), ("^conv_last.conv.bias$", "conv_last.bn.")),
    archs=(
        *(TimmArch(f"hrnet_w{w}", f"hrnet_w{w}_c", head_conv_bias=True) for w in (18, 30, 32, 40, 44, 48, 64)),
        TimmArch("hrnet_w18_ssld", "hrnet_w18_c"),
        TimmArch("hrnet_w48_ssld", "hrnet_w48_c"),
    ),
)


class HRNet(ClassifierModel):
    """HRNet-C: stem (two stride-2 3x3 conv-BN-ReLU) → 4 bottlenecks → stages 2-4 of 1, 4 and 3
    high-resolution modules on 2, 3 and 4 branches (widths ``width * (1, 2, 4, 8)``) → per-branch incre
    bottlenecks → fine-to-coarse merge by stride-2 3x3 conv-BN-ReLU → 1x1 conv-BN-ReLU to 2048 → head.

    Features: ``forward_branches`` gives the last stage's four branches (``branch_feature_info``:
    ``width * (1, 2, 4, 8)`` channels at strides 4-32); ``forward_incre`` gives the incre features
    (``feature_info``: 128, 256, 512, 1024 channels at strides 4-32); ``forward_features`` gives the
    2048-channel stride-32 map the head pools. Any input size works (see :func:`_upsample_to`).

    Args:
        width: width ``C`` of the highest-resolution branch.
        has_se: add squeeze-excitation (reduction 16) to every basic block and bottleneck.
        num_classes: classifier outputs; 0 for no fc.
        in_chans: input channels.
        drop_rate: dropout before the fc (PaddleClas has none). PyTorch's convention (scaled in
            training, identity at eval), so converted weights give Paddle's logits at any rate.
        drop_path_rate: stochastic depth of the residual blocks, rising linearly with depth (parallel
            branches share their depth's rate) to this value at the incre modules.
        act_layer: the activation, a name or class (:func:`~hgzoo.layers.get_act_layer`): every ReLU (stem, blocks,
            fuse sums and paths, transitions, head convs; the SE's inner one too; its sigmoid gate stays).
            Default ReLU (PaddleClas's).
        norm_layer: the norm, a name or class (:func:`~hgzoo.layers.get_norm_layer`): every BatchNorm, under the same
            state-dict keys. Default BatchNorm2d (PaddleClas's).
    """

    family = HRNET
    first_conv = "stem.0.conv"
    paddle_key_map = PADDLE_KEY_MAP
    timm_key_map = TIMM_KEY_MAP
    # PaddleClas builds its conv-BN layers with Kaiming-normal convs and its SE and fc Linear layers (our SE's 1x1
    # convs) with weights uniform in +-1/sqrt(fan_in) and zero biases; BN 1/0.
    paddle_init = PaddleInit(build=((ConvBNAct, kaiming_normal_fan_in_), (SqueezeExcite, uniform_fan_in_),
                                    (nn.Linear, uniform_fan_in_)))
    # timm's HRNet exposes the first stem conv's output as level 0 of forward_intermediates.
    stem_info = {"num_chs": STEM_CHS, "reduction": 2, "module": "stem.0"}

    def __init__(
        self,
        width: int,
        has_se: bool = False,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        act_layer: LayerType = nn.ReLU,
        norm_layer: LayerType = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.width, self.has_se = width, has_se
        self.act_layer, self.norm_layer = resolve_act_norm(act_layer, norm_layer)
        layers = dict(act_layer=self.act_layer, norm_layer=self.norm_layer)
        chs = tuple(width * 2**i for i in range(4))
        expansion = Bottleneck.expansion

        # Stochastic depth over the depth of the network: layer1's 4 blocks, each module's blocks (parallel branches
        # share their depth's rate), the incre blocks.
        rates = drop_path_schedule(drop_path_rate, (4, *(BLOCKS_PER_BRANCH,) * sum(STAGE_MODULES), 1))
        layer1_rates, module_rates, incre_rate = rates[0], rates[1:-1], rates[-1][0]
        ends = [sum(STAGE_MODULES[:s + 1]) for s in range(3)]

        self.stem = nn.Sequential(
            ConvBNAct(in_chans, STEM_CHS, 3, stride=2, **layers),
            ConvBNAct(STEM_CHS, STEM_CHS, 3, stride=2, **layers),
        )
        layer1_chs = LAYER1_PLANES * expansion
        self.layer1 = nn.Sequential(*(
            Bottleneck(STEM_CHS if d == 0 else layer1_chs, LAYER1_PLANES, has_se, downsample=d == 0,
                       drop_path_rate=rate, **layers)
            for d, rate in enumerate(layer1_rates)
        ))
        self.transition1 = nn.ModuleList([
            ConvBNAct(layer1_chs, chs[0], 3, **layers),
            ConvBNAct(layer1_chs, chs[1], 3, stride=2, **layers),
        ])
        self.stage2 = self._make_stage(chs[:2], has_se, module_rates[:ends[0]])
        self.transition2 = ConvBNAct(chs[1], chs[2], 3, stride=2, **layers)
        self.stage3 = self._make_stage(chs[:3], has_se, module_rates[ends[0]:ends[1]])
        self.transition3 = ConvBNAct(chs[2], chs[3], 3, stride=2, **layers)
        self.stage4 = self._make_stage(chs, has_se, module_rates[ends[1]:ends[2]])

        # Classification head: incre bottlenecks, the fine-to-coarse merge, the projection to 2048.
        incre_chs = [p * expansion for p in INCRE_PLANES]
        self.incre_modules = nn.ModuleList(
            Bottleneck(c, p, has_se, downsample=True, drop_path_rate=incre_rate, **layers)
            for c, p in zip(chs, INCRE_PLANES)
        )
        self.downsamples = nn.ModuleList(
            ConvBNAct(incre_chs[i], incre_chs[i + 1], 3, stride=2, **layers) for i in range(3)
        )
        self.conv_last = ConvBNAct(incre_chs[-1], NUM_FEATURES, 1, **layers)
        self.num_features = NUM_FEATURES
        self.head = ClassifierHead(NUM_FEATURES, num_classes, drop_rate=drop_rate, dropout_mode="upscale_in_train")

        self.feature_info = [
            {"num_chs": c, "reduction": 4 * 2**i, "module": f"incre_modules.{i}"} for i, c in enumerate(incre_chs)
        ]
        # The raw branches are one module's list output: "index" picks the branch.
        self.branch_feature_info = [
            {"num_chs": c, "reduction": 4 * 2**i, "module": "stage4", "index": i} for i, c in enumerate(chs)
        ]
        self._init_weights()

    def _make_stage(self, channels: tuple[int, ...], has_se: bool, rates: list[list[float]]) -> ListSequential:
        """One high-resolution module per list of drop-path rates (one rate per block of each branch)."""
        return ListSequential(*(HighResolutionModule(channels, has_se, tuple(r), self.act_layer, self.norm_layer)
                                for r in rates))

    def forward_branches(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four branch outputs of stage 4: ``width * (1, 2, 4, 8)`` channels at strides 4, 8, 16, 32."""
        return self._trunk(self.stem(x))

    def _trunk(self, x: torch.Tensor) -> list[torch.Tensor]:
        """From the stem's output (stride 4) to the four branches of stage 4."""
        if self.grad_checkpointing and torch.is_grad_enabled() and not torch.jit.is_scripting():
            return self._trunk_checkpointed(x)
        x = self.layer1(x)
        xs: list[torch.Tensor] = []
        for t in self.transition1:
            xs.append(t(x))
        xs = self.stage2(xs)
        xs = self.stage3(xs + [self.transition2(xs[-1])])
        return self.stage4(xs + [self.transition3(xs[-1])])

    def _trunk_checkpointed(self, x: torch.Tensor) -> list[torch.Tensor]:
        """:meth:`_trunk` with each stage recomputed in the backward pass (eager only)."""
        x = self._run(self.layer1, x)
        xs = self._run(self.stage2, [t(x) for t in self.transition1])
        xs = self._run(self.stage3, xs + [self.transition2(xs[-1])])
        return self._run(self.stage4, xs + [self.transition3(xs[-1])])

    def forward_incre(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The incre features: 128, 256, 512, 1024 channels at strides 4, 8, 16, 32 (``feature_info``)."""
        branches = self.forward_branches(x)
        out: list[torch.Tensor] = []
        for i, m in enumerate(self.incre_modules):
            if self.grad_checkpointing and torch.is_grad_enabled() and not torch.jit.is_scripting():
                out.append(self._run(m, branches[i]))
            else:
                out.append(m(branches[i]))
        return out

    def feature_levels(self, mode: str | None = None) -> list[dict]:
        """``"incre"`` (the default, as timm): the incre features; ``"branches"``: the raw branch outputs."""
        if mode in (None, "incre"):
            return self.feature_info
        if mode == "branches":
            return self.branch_feature_info
        raise ValueError(f"HRNet feature_mode must be 'incre' or 'branches', got {mode!r}")

    def forward_stages(self, x: torch.Tensor, mode: str | None = None, stop: int | None = None) -> list[torch.Tensor]:
        self.feature_levels(mode)
        if mode == "branches":
            return self.forward_branches(x)
        if not self.level_offset:
            return self.forward_incre(x)
        stem = self.stem[0](x)  # timm's indexing: the stride-2 stem level first
        branches = self._trunk(self.stem[1](stem))
        return [stem] + [self._run(m, branches[i]) for i, m in enumerate(self.incre_modules)]

    def stage_modules(self) -> list[list[nn.Module]]:
        """What ``freeze_stages``, ``group_matcher`` and train.py's ``--lr-mult-list`` / ``--freeze`` count as
        HRNet's stem and stages (as mmdetection's HRNet): the stem; stage 1, the bottlenecks and the first
        transition; stages 2 and 3, their modules and the transition that follows; stage 4, its modules and the
        incre bottlenecks that make the default features. The merge and projection before the head are the head's."""
        return [[getattr(self, n) for n in group if hasattr(self, n)] for group in _STAGE_GROUPS]

    def prune_for_features(self, mode: str | None, out_indices: tuple[int, ...]) -> None:
        """Delete the classification head (merge, projection, fc) and what no returned level needs: the incre
        modules for ``"branches"``; for a level not in ``out_indices``, its incre module (an identity now) and
        the last module's fuse into its branch (the branch is passed on unfused, then discarded)."""
        self.feature_levels(mode)
        del self.downsamples, self.conv_last
        if mode == "branches":
            del self.incre_modules
        else:
            out_indices = tuple(i - self.level_offset for i in out_indices)  # the incre levels' own indices
        for i in sorted(set(range(len(self.branch_feature_info))) - set(out_indices)):
            self.stage4[-1].fuse_layers[i] = nn.ModuleList()
            if mode != "branches":
                self.incre_modules[i] = nn.Identity()
        self.head = nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.levels_kept >= 0 and not torch.jit.is_scripting():
            return self._pruned_features(x)
        feats = self.forward_incre(x)
        y = feats[0]
        for i, down in enumerate(self.downsamples):
            y = feats[i + 1] + down(y)
        return self.conv_last(y)

    # --- timm's feature API: under timm's indexing level 0 is the first stem conv (stride 2), 1-4 the incre features

    def forward_intermediates(self, x: torch.Tensor, indices: int | list[int] | tuple[int, ...] | None = None,
                              norm: bool = False, stop_early: bool = False, output_fmt: str = "NCHW",
                              intermediates_only: bool = False) -> list[torch.Tensor] | tuple[torch.Tensor, list]:
        """As :meth:`ClassifierModel.forward_intermediates`, on the levels of ``feature_info``: the incre features
        (0-3), after the output of the first stem conv (64 channels, stride 2) as level 0 under timm's indexing
        (1-4 then). The four branches come out of stage 4 together, so any incre level runs the whole trunk;
        ``stop_early`` skips the later incre modules."""
        take, last = self._take(indices, output_fmt)
        off = self.level_offset
        x = self.stem[0](x)
        out = [x] if off and 0 in take else []
        if last < off and (stop_early or self.levels_kept == 1):
            return out if intermediates_only else (x, out)
        branches = self._trunk(self.stem[1](x))
        feats = []
        for i, incre in enumerate(self.incre_modules):
            if i + off > last and (stop_early or self.levels_kept >= 0):
                break
            feats.append(self._run(incre, branches[i]))
            if i + off in take:
                out.append(feats[-1])
        if intermediates_only:
            return out
        if len(feats) < 4 or self.levels_kept >= 0:
            return feats[-1], out  # the merge needs all four levels and the head: the last level run stands for it
        y = feats[0]
        for i, down in enumerate(self.downsamples):
            y = feats[i + 1] + down(y)
        return self.conv_last(y), out

    def prune_intermediate_layers(self, indices: int | list[int] | tuple[int, ...] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Delete what the levels up to the last of ``indices`` never need: with the stem level alone, everything
        after the first stem conv; else the incre modules of later levels and the last module's fuse into their
        branches. The merge, projection and classifier go too (the head becomes a global average pool of the last kept
        level, which ``forward_features`` then returns). Returns the indices, as timm's."""
        take, last = self._take(indices)
        levels = self.intermediate_info()
        if last == len(levels) - 1 and not prune_head:
            return take  # every level and the head are needed
        off = self.level_offset
        if last < off:
            self.stem = nn.Sequential(self.stem[0])
            for name in ("layer1", "transition1", "stage2", "transition2", "stage3", "transition3", "stage4",
                         "incre_modules"):
                delattr(self, name)
        else:
            for i in range(last + 1 - off, len(self.incre_modules)):
                self.stage4[-1].fuse_layers[i] = nn.ModuleList()
            del self.incre_modules[last + 1 - off:]
        del self.downsamples, self.conv_last
        self.num_features = int(levels[last]["num_chs"])
        self.head = ClassifierHead(self.num_features, 0)
        self.levels_kept = last + 1
        return take

    def _pruned_features(self, x: torch.Tensor) -> torch.Tensor:
        """After :meth:`prune_intermediate_layers`: the last kept level."""
        return self.forward_intermediates(x, [self.levels_kept - 1], intermediates_only=True)[0]


# The module names of stage_modules(): the stem, then stages 1-4.
_STAGE_GROUPS = (("stem",), ("layer1", "transition1"), ("stage2", "transition2"), ("stage3", "transition3"),
                 ("stage4", "incre_modules"))


@dataclass(frozen=True)
class VariantCfg:
    """An HRNet-C variant: branch width and whether blocks carry SE."""

    width: int
    has_se: bool = False


VARIANTS = {
    "hrnet_w18_c": VariantCfg(18),
    "hrnet_w30_c": VariantCfg(30),
    "hrnet_w32_c": VariantCfg(32),
    "hrnet_w40_c": VariantCfg(40),
    "hrnet_w44_c": VariantCfg(44),
    "hrnet_w48_c": VariantCfg(48),
    "hrnet_w64_c": VariantCfg(64),
    "se_hrnet_w64_c": VariantCfg(64, has_se=True),
}


def _create(name: str, **kwargs) -> HRNet:
    v = VARIANTS[name]
    return HRNet(v.width, v.has_se, **kwargs)


# The weights table. Evaluation preprocessing of ppcls/configs/ImageNet/HRNet/*.yaml: resize short 256 (cv2,
# bilinear), crop 224: paddle_cfg's defaults.
_DOC = "PaddleClas docs/zh_CN/models/ImageNet1k/HRNet.md"
_ACCURACY = f"Accuracy from {_DOC}."
# PaddleClas's HRNet_W*_C weights: top-1, top-5 from HRNet.md.
_PADDLE_ACCURACY = {18: (76.9, 93.4), 30: (78.0, 94.0), 32: (78.3, 94.2), 40: (78.8, 94.5), 44: (79.0, 94.5),
                    48: (79.0, 94.4), 64: (79.3, 94.6)}

# HRNet's original ImageNet weights (HRNet/HRNet-Image-Classification, MIT license), on the Hub as timm's
# hrnet_w*.ms_in1k; timm's preprocessing for them (timm 1.0.31's default_cfgs): 224 px, crop_pct 0.875, bilinear.
# Accuracy: 100 - the top-1 / top-5 error in that repository's README table.
_MS_ACCURACY = {18: (76.8, 93.4), 30: (78.2, 94.2), 32: (78.5, 94.2), 40: (78.9, 94.5), 44: (78.9, 94.4),
                48: (79.3, 94.5), 64: (79.5, 94.6)}
# timm's own measurement of them (results/results-imagenet.csv, 224 px, crop_pct 0.875).
_MS_TIMM = {18: (76.752, 93.444), 30: (78.192, 94.222), 32: (78.444, 94.188), 40: (78.930, 94.464),
            44: (78.892, 94.364), 48: (79.302, 94.516), 64: (79.474, 94.646)}
_MS_SOURCE = "HRNet (Microsoft), via timm's Hub repo"


def _ms_weights(width: int) -> dict:
    """HRNet's original (Microsoft) ImageNet weights of ``hrnet_w{width}_c``, from timm's Hub repo; their four head
    conv biases are folded into the BNs that follow them (exact)."""
    top1, top5 = _MS_ACCURACY[width]
    timm_top1, timm_top5 = _MS_TIMM[width]
    return timm_cfg(
        f"hrnet_w{width}.ms_in1k", crop_pct=0.875, interpolation="bilinear", top1=top1, top5=top5, license="MIT",
        source=_MS_SOURCE,
        notes=f"HRNet's original ImageNet training (HRNet-W{width}-C). Accuracy from "
              f"HRNet/HRNet-Image-Classification's README (top-1/top-5 error {100 - top1:.1f}% / "
              f"{100 - top5:.1f}%); timm measures {timm_top1} / {timm_top5} with this preprocessing "
              "(results/results-imagenet.csv).")


default_cfgs = generate_default_cfgs({
    "hrnet_w18_c.ssld_in1k": paddle_cfg(
        "HRNet_W18_C_ssld_pretrained", top1=81.16, top5=95.80, timm="hrnet_w18_ssld.paddle_in1k",
        notes="SSLD distillation. Accuracy from the table that links this file, PaddleClas's model zoo "
              "(docs/zh_CN/models/ImageNet1k/README.md: 0.81162 / 0.95804), as its 2020-09-07 release "
              f"note (81.162); {_DOC} and the SSLD docs say 81.6 and 81.2."),
    "hrnet_w48_c.ssld_in1k": paddle_cfg(
        "HRNet_W48_C_ssld_pretrained", top1=83.6, top5=96.8, timm="hrnet_w48_ssld.paddle_in1k",
        notes=f"SSLD distillation. Accuracy from {_DOC}."),
    "se_hrnet_w64_c.ssld_in1k": paddle_cfg(
        "SE_HRNet_W64_C_ssld_pretrained", top1=84.7, top5=97.3,
        notes=f"SSLD distillation; the only published SE-HRNet checkpoint (not in ppcls MODEL_URLS; URL from "
              f"PaddleClas's SSLD docs). Accuracy from {_DOC}; the SSLD docs list top-1 84.8."),
    **{f"hrnet_w{w}_c.paddle_in1k": paddle_cfg(f"HRNet_W{w}_C_pretrained", top1=top1, top5=top5, notes=_ACCURACY)
       for w, (top1, top5) in _PADDLE_ACCURACY.items()},
    **{f"hrnet_w{w}_c.ms_in1k": _ms_weights(w) for w in _MS_ACCURACY},
    "hrnet_w18_c.ms_aug_in1k": timm_cfg(
        "hrnet_w18.ms_aug_in1k", crop_pct=0.95, interpolation="bilinear", top1=78.126, top5=94.052, license="MIT",
        source=_MS_SOURCE,
        notes="A later HRNet-W18-C training, on the Hub as timm's hrnet_w18.ms_aug_in1k. Accuracy as timm measures "
              "it (results/results-imagenet.csv, 224 px, crop_pct 0.95). timm does not say which HRNet release "
              "it is; HRNet's README lists a 'HRNet-W18-C (w/ CosineLR + CutMix + 300epochs)' at 22.1% top-1 "
              "error, which it may be."),
})


# The builders: the variant's network (VARIANTS) with its weight tags (default_cfgs); the first tag is the default.

@register_model("HRNet_W18_C", default_cfgs)
def hrnet_w18_c(num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0,
                drop_path_rate: float = 0.0, act_layer: LayerType = nn.ReLU,
                norm_layer: LayerType = nn.BatchNorm2d) -> HRNet:
    """HRNet-W18-C."""
    return _create("hrnet_w18_c", **locals())


@register_model("HRNet_W30_C", default_cfgs)
def hrnet_w30_c(num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0,
                drop_path_rate: float = 0.0, act_layer: LayerType = nn.ReLU,
                norm_layer: LayerType = nn.BatchNorm2d) -> HRNet:
    """HRNet-W30-C."""
    return _create("hrnet_w30_c", **locals())


@register_model("HRNet_W32_C", default_cfgs)
def hrnet_w32_c(num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0,
                drop_path_rate: float = 0.0, act_layer: LayerType = nn.ReLU,
                norm_layer: LayerType = nn.BatchNorm2d) -> HRNet:
    """HRNet-W32-C."""
    return _create("hrnet_w32_c", **locals())


@register_model("HRNet_W40_C", default_cfgs)
def hrnet_w40_c(num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0,
                drop_path_rate: float = 0.0, act_layer: LayerType = nn.ReLU,
                norm_layer: LayerType = nn.BatchNorm2d) -> HRNet:
    """HRNet-W40-C."""
    return _create("hrnet_w40_c", **locals())


@register_model("HRNet_W44_C", default_cfgs)
def hrnet_w44_c(num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0,
                drop_path_rate: float = 0.0, act_layer: LayerType = nn.ReLU,
                norm_layer: LayerType = nn.BatchNorm2d) -> HRNet:
    """HRNet-W44-C."""
    return _create("hrnet_w44_c", **locals())


@register_model("HRNet_W48_C", default_cfgs)
def hrnet_w48_c(num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0,
                drop_path_rate: float = 0.0, act_layer: LayerType = nn.ReLU,
                norm_layer: LayerType = nn.BatchNorm2d) -> HRNet:
    """HRNet-W48-C."""
    return _create("hrnet_w48_c", **locals())


@register_model("HRNet_W64_C", default_cfgs)
def hrnet_w64_c(num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0,
                drop_path_rate: float = 0.0, act_layer: LayerType = nn.ReLU,
                norm_layer: LayerType = nn.BatchNorm2d) -> HRNet:
    """HRNet-W64-C."""
    return _create("hrnet_w64_c", **locals())


@register_model("SE_HRNet_W64_C", default_cfgs)
def se_hrnet_w64_c(num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0,
                   drop_path_rate: float = 0.0, act_layer: LayerType = nn.ReLU,
                   norm_layer: LayerType = nn.BatchNorm2d) -> HRNet:
    """SE-HRNet-W64-C: HRNet-W64-C with squeeze-excitation in every block."""
    return _create("se_hrnet_w64_c", **locals())
