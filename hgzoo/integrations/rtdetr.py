"""hgzoo's backbones as D-FINE's, DEIM's and RT-DETR's: ``HGNetv2`` and ``PResNet`` under their class names,
constructor arguments and defaults, attributes and module names, so that their YAML configs, optimizer regexes over
``named_parameters()``, weight files and ``-t`` fine-tuning (copy what matches by name and shape) all work unchanged.

* :class:`HGNetv2` is D-FINE / DEIM's (``src/nn/backbone/hgnetv2.py``); RT-DETRv2's, which has other arguments,
  defaults and two other names, is :class:`hgzoo.integrations.rtdetrv2.HGNetv2`.
* :class:`PResNet` is RT-DETR v1's, RT-DETRv2's and D-FINE's (the same network, arguments and names in all three).
* :class:`HGZooBackbone` gives every other hgzoo backbone (PP-LCNetV2, HRNet, ResNet-vd 18-200, PP-HGNet) the same
  interface.

Their networks are hgzoo's, with one detail: they pad PP-HGNetV2's stem max-pool with zeros where PaddleClas pads
"SAME" (-inf); ``stem_pool`` chooses, and each class defaults to its origin's ("zero"). To use them, add one line at
the end of their ``src/nn/backbone/__init__.py``::

    from hgzoo.integrations.rtdetr import register_backbones; register_backbones(__name__)  # noqa: E702

(RT-DETRv2: the same line with :mod:`hgzoo.integrations.rtdetrv2`'s ``register_backbones``). See docs/detectors.md.
"""
from __future__ import annotations

import importlib
import os
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .._files import safe_load
from ..convert.detectors import backbone_part, from_hgzoo, hgzoo_arch
from ..layers import ConvBNAct, LearnableAffine, freeze_batch_norm, reparameterize
from ..models.pphgnet import VARIANTS as HG_VARIANTS
from ..models.pphgnet import HGBlockV2, HGStage, StageCfg, StemV2
from ..models.resnet_vd import STAGE_WIDTHS, ResNetVdShortcut

__all__ = ["THEIR_WEIGHTS", "HGNetv2", "HGZooBackbone", "PResNet", "TheirWeights", "register_backbones"]

OUT_STRIDES = (4, 8, 16, 32)


@dataclass(frozen=True)
class TheirWeights:
    """One of their weight files, and the hgzoo tag held to be the same weights. ``verified``: whether the two were
    compared; none could be here (their files are on GitHub, which the build machine cannot reach)."""

    file: str
    url: str
    tag: str
    verified: bool = False


_DFINE_URL = "https://github.com/Peterande/storage/releases/download/dfinev1.0/"
_RTDETR_URL = "https://github.com/lyuwenyu/storage/releases/download/v0.1/"
THEIR_WEIGHTS: dict[tuple[str, str], TheirWeights] = {
    **{("dfine", f"B{i}"): TheirWeights(f"PPHGNetV2_B{i}_stage1.pth", f"{_DFINE_URL}PPHGNetV2_B{i}_stage1.pth",
                                        f"pphgnetv2_b{i}.ssld_stage1_in22k_in1k") for i in range(7)},
    **{("rtdetrv2", n): TheirWeights(f"PPHGNetV2_{n}_ssld_pretrained_from_paddle.pth",
                                     f"{_RTDETR_URL}PPHGNetV2_{n}_ssld_pretrained_from_paddle.pth",
                                     f"pphgnetv2_b{b}.ssld_stage2_ft_in1k") for n, b in (("L", 4), ("X", 5), ("H", 6))},
    **{("presnet", str(d)): TheirWeights(f, _RTDETR_URL + f, t) for d, f, t in (
        (18, "ResNet18_vd_pretrained_from_paddle.pth", "resnet18_vd.paddle_in1k"),
        (34, "ResNet34_vd_pretrained_from_paddle.pth", "resnet34_vd.paddle_in1k"),
        (50, "ResNet50_vd_ssld_v2_pretrained_from_paddle.pth", "resnet50_vd.ssld_in1k"),
        (101, "ResNet101_vd_ssld_pretrained_from_paddle.pth", "resnet101_vd.ssld_in1k"))},
}


def _check_return_idx(return_idx: Sequence[int], n: int) -> list[int]:
    idx = list(return_idx)
    if not idx or any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n for i in idx):
        raise ValueError(f"return_idx must list stage indices in 0..{n - 1}, got {return_idx!r}")
    return idx


def _check_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int (-1: nothing frozen), got {value!r}")
    return value


class FusedAffine(LearnableAffine):
    """The learnable affine block for inference: one fused multiply-add (``torch.addcmul``), one pass over memory
    instead of two."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.bias, x, self.scale)


def _fuse_affines(model: nn.Module) -> None:
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is LearnableAffine:
                fused = FusedAffine()
                fused.scale, fused.bias = child.scale, child.bias
                setattr(parent, name, fused)


class DetectorBackbone(nn.Module):
    """What the classes here share: their attributes, freezing, weight loading, ``convert_to_deploy``.

    Subclasses build ``stem_modules()`` and ``stage_list()``, then call :meth:`_finish`.
    """

    origin = ""  # a key of hgzoo.convert.detectors.DETECTOR_KEY_MAPS

    def _set_outputs(self, channels: Sequence[int], strides: Sequence[int], return_idx: Sequence[int]) -> None:
        self.return_idx = _check_return_idx(return_idx, len(channels))
        self._out_channels, self._out_strides = list(channels), list(strides)
        self.out_channels = [self._out_channels[i] for i in self.return_idx]
        self.out_strides = [self._out_strides[i] for i in self.return_idx]

    def stem_modules(self) -> list[nn.Module]:
        raise NotImplementedError

    def stage_list(self) -> Sequence[nn.Module]:
        raise NotImplementedError

    def _finish(self, frozen_stages: int, freeze_stem: bool, freeze_norm: bool, freeze_eval: bool) -> None:
        """Freeze as they do: the stem's and the first ``frozen_stages`` stages' parameters stop requiring gradients
        (nothing else changes: their BatchNorm statistics still update); ``freeze_norm`` then swaps every BatchNorm
        for a FrozenBatchNorm2d (before any weights load, as theirs). ``freeze_eval`` (hgzoo's, opt-in): the frozen
        parts also stay in eval mode through ``train()``."""
        if not isinstance(freeze_eval, bool):
            raise TypeError(f"freeze_eval must be True or False, got {freeze_eval!r}")
        frozen = (self.stem_modules() if freeze_stem else []) + list(self.stage_list()[:max(frozen_stages, 0)])
        for module in frozen:
            module.requires_grad_(False)
        self._frozen = frozen
        self.freeze_eval = freeze_eval
        if freeze_norm:
            freeze_batch_norm(self)
        self.train(self.training)

    def train(self, mode: bool = True) -> DetectorBackbone:
        super().train(mode)
        if mode and getattr(self, "freeze_eval", False):
            for module in self._frozen:
                module.eval()
        return self

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        # Every stage runs, as in theirs, whatever return_idx (an unused stage would have no gradient under DDP).
        x = self.forward_stem(x)
        outs = []
        for i, stage in enumerate(self.stage_list()):
            x = stage(x)
            if i in self.return_idx:
                outs.append(x)
        return outs

    def _prepare_deploy(self) -> None:
        """Undo what only serves their names, before BatchNorm folding."""

    @torch.no_grad()
    def convert_to_deploy(self) -> DetectorBackbone:
        """Fold every BatchNorm (FrozenBatchNorm2d included) into its conv and make each learnable affine block one
        fused multiply-add, in place, for inference; the outputs stay the same. D-FINE's and RT-DETR's
        ``model.deploy()`` call it on every module that has it."""
        self._prepare_deploy()
        reparameterize(self)
        _fuse_affines(self)
        return self

    # --- weights ---------------------------------------------------------------------------------------------------

    def _their_key(self) -> tuple[str, str]:
        raise NotImplementedError

    def _local_files(self) -> list[Path]:
        """Where their own code leaves their weight file."""
        file = THEIR_WEIGHTS[self._their_key()].file
        return [Path(torch.hub.get_dir()) / "checkpoints" / file]

    def _load_pretrained(self, pretrained: bool | str) -> None:
        """``True``: their file where their code keeps it, else hgzoo's weights of the same tag (downloaded and
        converted by hgzoo's resolver); a string: a file or an http(s) URL, in their layout or hgzoo's."""
        if isinstance(pretrained, (str, os.PathLike)):
            source = str(pretrained)
            path = _download(source) if source.startswith(("http://", "https://")) else Path(source)
            self.load_their_state_dict(backbone_part(safe_load(path)), str(path))
        elif pretrained is True:
            local = next((p for p in self._local_files() if p.is_file()), None)
            if local is not None:
                self.load_their_state_dict(backbone_part(safe_load(local)), str(local))
            else:
                self._load_hgzoo_tag(THEIR_WEIGHTS[self._their_key()])
        elif pretrained is not False:
            raise TypeError(f"pretrained must be True, False, a path or a URL, got {pretrained!r}")

    def _load_hgzoo_tag(self, weights: TheirWeights) -> None:
        from .._builder import create_model

        self._check_tag(weights.tag)
        model = create_model(weights.tag, pretrained=True)
        self.load_their_state_dict(model.state_dict(), weights.tag)

    def _check_tag(self, tag: str) -> None:
        """Refuse, in one line, weights that cannot fit (HGNetv2's ``use_lab`` against the tag's network)."""

    def load_their_state_dict(self, sd: Mapping[str, torch.Tensor], source: str) -> None:
        """Load ``sd`` strictly: in their names (as their files are), or in hgzoo's native names (converted)."""
        own = {k for k in self.state_dict() if not k.endswith("num_batches_tracked")}
        given = {k for k in sd if not k.endswith("num_batches_tracked")}
        if given != own:
            name = self._their_key()[1]
            try:
                sd = from_hgzoo(sd, self.origin, name)
            except ValueError:
                missing, extra = sorted(own - given), sorted(given - own)
                raise ValueError(f"{source} does not fit {type(self).__name__}({name!r}): {len(missing)} missing "
                                 f"(e.g. {missing[:3]}), {len(extra)} unexpected (e.g. {extra[:3]})") from None
        self.load_state_dict(dict(sd), strict=True)


def _download(url: str) -> Path:
    """A URL's file, downloaded once (atomically) into torch's hub cache, where their code would put it."""
    from ..hub import download_url

    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(urllib.parse.urlsplit(url).path).name
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        download_url(url, path, progress=False)
    return path


# --- HGNetv2 -------------------------------------------------------------------------------------------------------

class SequentialAggregationBlock(HGBlockV2):
    """:class:`~hgzoo.models.pphgnet.HGBlockV2` with its two aggregation convs in one ``aggregation`` Sequential,
    as D-FINE (and timm) name them."""

    def __init__(self, in_chs: int, mid_chs: int, out_chs: int, layer_num: int, residual: bool,
                 kernel_size: int, light_block: bool, use_lab: bool) -> None:
        super().__init__(in_chs, mid_chs, out_chs, layer_num, residual=residual, kernel_size=kernel_size,
                         light_block=light_block, use_lab=use_lab)
        self.aggregation = nn.Sequential(self._modules.pop("aggregation_squeeze_conv"),
                                         self._modules.pop("aggregation_excitation_conv"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.aggregation(self._aggregate(x))
        return self.drop_path(out) + x if self.residual else out


BlockMaker = Callable[[StageCfg, int, bool, float], nn.Module]


class HGNetv2Base(DetectorBackbone):
    """PP-HGNetV2 from hgzoo's stem, stages and blocks; subclasses set the names and the freeze rule."""

    def _build(self, name: str, use_lab: bool, return_idx: Sequence[int], stem_pool: str) -> None:
        if not isinstance(use_lab, bool):
            raise TypeError(f"use_lab must be True or False, got {use_lab!r}")
        self.name, self.use_lab = str(name), use_lab
        variant = HG_VARIANTS[hgzoo_arch(self.origin, name)]
        self.stem = StemV2(3, variant.stem_chs[0], variant.stem_chs[1], use_lab=use_lab, stem_pool=stem_pool)
        self.stages = nn.ModuleList(HGStage(s, [0.0] * s.depth, self._block_maker()) for s in variant.stages)
        self._set_outputs([s.out_chs for s in variant.stages], OUT_STRIDES, return_idx)

    def _block_maker(self) -> BlockMaker:
        use_lab = self.use_lab

        def make(s: StageCfg, in_chs: int, residual: bool, rate: float) -> nn.Module:
            return HGBlockV2(in_chs, s.mid_chs, s.out_chs, s.layer_num, residual=residual, kernel_size=s.kernel_size,
                             light_block=s.light_block, use_lab=use_lab)
        return make

    def stem_modules(self) -> list[nn.Module]:
        return [self.stem]

    def stage_list(self) -> Sequence[nn.Module]:
        return self.stages

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(x)

    def _their_key(self) -> tuple[str, str]:
        return self.origin, self.name

    def _check_tag(self, tag: str) -> None:
        arch = tag.split(".")[0]
        if HG_VARIANTS[arch].use_lab != self.use_lab:
            raise ValueError(f"HGNetv2({self.name!r}, use_lab={self.use_lab}): hgzoo's weights {tag} are of a network "
                             f"{'with' if HG_VARIANTS[arch].use_lab else 'without'} LAB blocks; set use_lab="
                             f"{HG_VARIANTS[arch].use_lab} or pretrained=False")


class HGNetv2(HGNetv2Base):
    """D-FINE's and DEIM's ``HGNetv2``, built by hgzoo: the same arguments and defaults, attributes, module names
    and freeze rule.

    Args (theirs): ``name`` ``"B0"``..``"B6"`` (also ``"L"``, ``"X"``, ``"H"``: B4, B5, B6); ``use_lab``;
    ``return_idx``; ``freeze_at``/``freeze_stem_only``: with ``freeze_at >= 0`` the stem is frozen, plus the first
    ``freeze_at + 1`` stages unless ``freeze_stem_only``; ``freeze_norm``: FrozenBatchNorm2d everywhere;
    ``pretrained``: ``True`` loads ``local_model_dir/PPHGNetV2_{name}_stage1.pth`` if it is there, else hgzoo's
    weights held to be the same (:data:`THEIR_WEIGHTS`), or a path or URL.
    Args (hgzoo's): ``stem_pool`` ``"zero"`` (theirs) or ``"same"`` (PaddleClas); ``freeze_eval``: frozen parts stay in
    eval mode.
    """

    origin = "dfine"

    def __init__(self, name: str, use_lab: bool = False, return_idx: Sequence[int] = (1, 2, 3),
                 freeze_stem_only: bool = True, freeze_at: int = 0, freeze_norm: bool = True,
                 pretrained: bool | str = True, local_model_dir: str = "weight/hgnetv2/", stem_pool: str = "zero",
                 freeze_eval: bool = False) -> None:
        super().__init__()
        self._build(name, use_lab, return_idx, stem_pool)
        self.local_model_dir = local_model_dir
        freeze_at = _check_int("freeze_at", freeze_at)
        frozen = 0 if freeze_stem_only or freeze_at < 0 else min(freeze_at + 1, len(self.stages))
        self._finish(frozen, freeze_at >= 0, freeze_norm, freeze_eval)
        self._load_pretrained(pretrained)

    def _block_maker(self) -> BlockMaker:
        use_lab = self.use_lab

        def make(s: StageCfg, in_chs: int, residual: bool, rate: float) -> nn.Module:
            return SequentialAggregationBlock(in_chs, s.mid_chs, s.out_chs, s.layer_num, residual, s.kernel_size,
                                              s.light_block, use_lab)
        return make

    def _their_key(self) -> tuple[str, str]:
        # L/X/H are RT-DETRv2's names of B4/B5/B6; D-FINE's files are named by B.
        return self.origin, {"L": "B4", "X": "B5", "H": "B6"}.get(self.name, self.name)

    def _local_files(self) -> list[Path]:
        return [Path(self.local_model_dir) / THEIR_WEIGHTS[self._their_key()].file]


# --- PResNet -------------------------------------------------------------------------------------------------------

class ConvNormLayer(ConvBNAct):
    """hgzoo's conv-BN(-ReLU) under PResNet's names: the BatchNorm is ``norm``."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int = 1, act: bool = True) -> None:
        super().__init__(in_chs, out_chs, kernel_size, stride, act_layer=nn.ReLU if act else None)
        self.norm = self._modules.pop("bn")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))

    @torch.no_grad()
    def reparameterize(self) -> None:
        self.bn = self._modules.pop("norm")
        super().reparameterize()
        self.norm = self._modules.pop("bn")


class PResNetBlock(nn.Module):
    """ResNet-vd's basic block or bottleneck (stride on the 3x3), PResNet's names: ``branch2a/b(/c)`` and, in a
    stage's first block, the shortcut ``short``: a 1x1 conv-norm, after hgzoo's ResNet-vd 2x2 average pool when
    strided."""

    def __init__(self, in_chs: int, width: int, stride: int, bottleneck: bool, project: bool) -> None:
        super().__init__()
        out_chs = width * (4 if bottleneck else 1)
        if project and not bottleneck:  # their basic block defines its shortcut first
            self.short = self._shortcut(in_chs, out_chs, stride)
        if bottleneck:
            self.branch2a = ConvNormLayer(in_chs, width, 1)
            self.branch2b = ConvNormLayer(width, width, 3, stride)
            self.branch2c = ConvNormLayer(width, out_chs, 1, act=False)
        else:
            self.branch2a = ConvNormLayer(in_chs, width, 3, stride)
            self.branch2b = ConvNormLayer(width, width, 3, act=False)
        if project and bottleneck:
            self.short = self._shortcut(in_chs, out_chs, stride)
        self.act = nn.ReLU(inplace=True)

    @staticmethod
    def _shortcut(in_chs: int, out_chs: int, stride: int) -> nn.Module:
        if stride == 1:
            return ConvNormLayer(in_chs, out_chs, 1, act=False)
        short = ResNetVdShortcut(in_chs, out_chs, stride)
        short.conv = ConvNormLayer(in_chs, out_chs, 1, act=False)
        return short

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch2b(self.branch2a(x))
        if hasattr(self, "branch2c"):
            out = self.branch2c(out)
        out = out + (self.short(x) if hasattr(self, "short") else x)
        return self.act(out)


class PResNetStage(nn.Module):
    """One stage: ``blocks``, the first strided (but in stage 0) and with the shortcut."""

    def __init__(self, in_chs: int, width: int, depth: int, stride: int, bottleneck: bool) -> None:
        super().__init__()
        out_chs = width * (4 if bottleneck else 1)
        self.blocks = nn.ModuleList(
            PResNetBlock(in_chs if j == 0 else out_chs, width, stride if j == 0 else 1, bottleneck, project=j == 0)
            for j in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


_DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


class PResNet(DetectorBackbone):
    """RT-DETR's (v1 and v2) and D-FINE's ``PResNet`` (ResNet-vd), built by hgzoo: the same arguments and defaults,
    attributes, module names and freeze rule (with ``freeze_at >= 0``: the stem and the first ``min(freeze_at,
    num_stages)`` stages).

    ``variant`` must be ``"d"`` and ``act`` ``"relu"`` (the only ones their configs use and hgzoo builds).
    ``pretrained``: ``True`` loads their file if it is where their code downloads it (``weight/`` or torch's hub
    cache), else hgzoo's weights held to be the same (:data:`THEIR_WEIGHTS`); a string is a path or URL.
    """

    origin = "presnet"

    def __init__(self, depth: int, variant: str = "d", num_stages: int = 4, return_idx: Sequence[int] = (0, 1, 2, 3),
                 act: str = "relu", freeze_at: int = -1, freeze_norm: bool = True, pretrained: bool | str = False,
                 freeze_eval: bool = False) -> None:
        super().__init__()
        if depth not in _DEPTHS:
            raise ValueError(f"PResNet depth must be one of {sorted(_DEPTHS)}, got {depth!r} (deeper ResNet-vd: "
                             "HGZooBackbone('resnet152_vd'))")
        if variant != "d":
            raise ValueError(f"PResNet variant {variant!r} is not ResNet-vd; hgzoo builds variant='d' only")
        if act != "relu":
            raise ValueError(f"PResNet act {act!r}: hgzoo's ResNet-vd uses ReLU; use act='relu'")
        if isinstance(num_stages, bool) or num_stages not in (1, 2, 3, 4):
            raise ValueError(f"num_stages must be 1..4, got {num_stages!r}")
        self.depth, bottleneck = depth, depth >= 50
        self.conv1 = nn.Sequential(OrderedDict([
            ("conv1_1", ConvNormLayer(3, 32, 3, 2)), ("conv1_2", ConvNormLayer(32, 32, 3)),
            ("conv1_3", ConvNormLayer(32, 64, 3))]))
        channels, in_chs, layers = [w * (4 if bottleneck else 1) for w in STAGE_WIDTHS], 64, []
        for i in range(num_stages):
            layers.append(PResNetStage(in_chs, STAGE_WIDTHS[i], _DEPTHS[depth][i], 1 if i == 0 else 2, bottleneck))
            in_chs = channels[i]
        self.res_layers = nn.ModuleList(layers)
        self._set_outputs(channels, OUT_STRIDES, return_idx)
        freeze_at = _check_int("freeze_at", freeze_at)
        self._finish(min(freeze_at, num_stages), freeze_at >= 0, freeze_norm, freeze_eval)
        self._load_pretrained(pretrained)

    def stem_modules(self) -> list[nn.Module]:
        return [self.conv1]

    def stage_list(self) -> Sequence[nn.Module]:
        return self.res_layers

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(self.conv1(x), kernel_size=3, stride=2, padding=1)

    def _their_key(self) -> tuple[str, str]:
        return self.origin, str(self.depth)

    def _local_files(self) -> list[Path]:
        return [Path("weight") / THEIR_WEIGHTS[self._their_key()].file, *super()._local_files()]


# --- every other hgzoo backbone ------------------------------------------------------------------------------------

class HGZooBackbone(DetectorBackbone):
    """Any hgzoo backbone (``name``: ``"pplcnetv2_base"``, ``"hrnet_w18"``, ``"resnet200_vd"``, ``"pphgnet_small"``,
    with or without a tag) through their interface: ``return_idx`` over its four feature levels, ``out_channels``,
    ``out_strides``; RT-DETR's freeze rule (the stem and ``min(freeze_at, n)`` stages); ``freeze_norm``;
    ``pretrained``: ``True`` for the tag's PaddleClas ImageNet weights, or a file. Module names are hgzoo's
    (``model.*``)."""

    def __init__(self, name: str, return_idx: Sequence[int] = (1, 2, 3), freeze_at: int = -1,
                 freeze_norm: bool = False, pretrained: bool | str = False, freeze_eval: bool = False) -> None:
        super().__init__()
        from .._builder import create_model

        file = str(pretrained) if isinstance(pretrained, (str, os.PathLike)) else None
        net = create_model(name, pretrained=pretrained is True, pretrained_file=file, features_only=True)
        self.name = name
        self.body = net.model
        levels = net.feature_info
        self._set_outputs(levels.channels(), levels.reduction(), return_idx)
        freeze_at = _check_int("freeze_at", freeze_at)
        groups = self.body.stage_modules()
        self._groups = groups
        self._finish(min(freeze_at, len(groups) - 1), freeze_at >= 0, freeze_norm, freeze_eval)

    def stem_modules(self) -> list[nn.Module]:
        return list(self._groups[0])

    def stage_list(self) -> Sequence[nn.Module]:
        return [nn.ModuleList(g) for g in self._groups[1:]]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.body.forward_stages(x, None, len(self._out_channels) - 1)
        return [feats[i] for i in self.return_idx]


def register_backbones(package: str, hgnetv2: type[nn.Module] | None = None) -> None:
    """Register :class:`HGNetv2` (or ``hgnetv2``: RT-DETRv2's, through
    :func:`hgzoo.integrations.rtdetrv2.register_backbones`), :class:`PResNet` and :class:`HGZooBackbone` in their
    registry, in place of theirs. ``package``: their backbone package's ``__name__`` (``src.nn.backbone``), whose
    ``...core`` holds ``register``, as their own files import it."""
    register = importlib.import_module("...core", package).register
    for cls in (hgnetv2 or HGNetv2, PResNet, HGZooBackbone):
        register(force=True)(cls)
