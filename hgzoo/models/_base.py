"""The model contract every family implements, in one place."""

import dataclasses
import re
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .._registry import ModelFamily
from ..convert.keymap import PaddleKeyMap
from ..layers import ClassifierHead, PaddleInit, check_global_pool, paddle_init_, reparameterize
from ..pretrained import PretrainedCfg

__all__ = ["ClassifierModel", "take_indices"]


def take_indices(n: int, indices: int | list[int] | tuple[int, ...] | None) -> tuple[list[int], int]:
    """timm's ``feature_take_indices``: ``None`` → all ``n`` levels; an int ``k`` → the last ``k``; a sequence → those
    indices (negative ones count from the end). Returns the indices and the largest."""
    if indices is None:
        indices = n
    if isinstance(indices, int):
        if not 0 < indices <= n:
            raise ValueError(f"indices={indices} asks for the last {indices} of {n} levels (1..{n})")
        out = list(range(n - indices, n))
    else:
        out = []
        for i in indices:
            if not -n <= i < n:
                raise ValueError(f"index {i} is out of range: there are {n} levels (0..{n - 1}, or -{n}..-1)")
            out.append(i % n)
        if not out:
            raise ValueError("indices=() selects no level; give None (all), an int n (the last n) or the indices")
    return out, max(out)


class ClassifierModel(nn.Module):
    """Base of every hgzoo classifier.

    Subclasses build ``self.stem``, ``self.stages`` and ``self.head`` (a :class:`~hgzoo.layers.ClassifierHead`),
    override :meth:`forward_stem` when more than ``self.stem`` precedes the stages (``self.stem_pool``), or
    :meth:`forward_stages` and :meth:`feature_levels` when the stages are not a chain; they set ``num_features``
    (channels of the final feature map), ``feature_info`` (one dict per stage: ``num_chs``, ``reduction``,
    ``module``) and the class attributes ``paddle_key_map`` (the family's ``PADDLE_KEY_MAP``; an instance may
    carry its own, when the map depends on the variant), ``first_conv`` (the state-dict prefix of the stem conv)
    and ``bn_weight_decay`` (False where PaddleClas's architecture code exempts BatchNorm from L2 decay), and
    ``family`` (the family file's :class:`~hgzoo._registry.ModelFamily` record) and ``paddle_init`` (PaddleClas's
    initializers for the family, a :class:`~hgzoo.layers.PaddleInit`). They end ``__init__`` with
    ``self._init_weights()``, which applies ``paddle_init``.

    Backbone use: :meth:`stage_modules` lists the stem and the stages (override it when the stages are
    not ``self.stages``); it is the one definition of a stage, for :meth:`freeze_stages`, :meth:`group_matcher`
    and train.py's ``--lr-mult-list`` / ``--freeze``. :meth:`freeze_stages` and :meth:`set_norm_eval` keep parts
    in eval mode through :meth:`train`, and :meth:`prune_for_features` drops what a features-only model never runs.

    timm's model API: ``pretrained_cfg`` / ``default_cfg`` (a mapping with timm's keys too),
    :meth:`forward_intermediates`, :meth:`prune_intermediate_layers`, :meth:`group_matcher`,
    :meth:`no_weight_decay`, ``reset_classifier(num_classes, global_pool)``. ``stem_info`` describes the stride-2
    stem level that timm's ResNet-d and HRNet count as level 0 (None elsewhere); :meth:`set_feature_indexing`
    ``("timm")`` puts it first in ``feature_info``.
    """

    paddle_key_map: ClassVar[PaddleKeyMap]
    first_conv: ClassVar[str]
    bn_weight_decay: ClassVar[bool] = True
    stem_info: ClassVar[dict | None] = None
    family: ClassVar[ModelFamily]
    paddle_init: ClassVar[PaddleInit]
    # Python-side metadata TorchScript must neither compile nor convert.
    __jit_unused_properties__ = ["num_classes", "head_hidden_size", "pretrained_cfg", "default_cfg"]
    __jit_ignored_attributes__ = ["paddle_key_map", "first_conv", "stem_info", "feature_info", "branch_feature_info",
                                  "family", "paddle_init"]

    def __init__(self) -> None:
        super().__init__()
        self.grad_checkpointing = False
        self.frozen_stages = -1  # the stem (0) and stages 1..frozen_stages are frozen; -1: nothing
        self.norm_eval = False  # every BatchNorm stays in eval mode
        self.levels_kept = -1  # after prune_intermediate_layers: how many forward_intermediates levels remain
        self.level_offset = 0  # 1 under timm's indexing where timm's port has a stride-2 stem level (stem_info)

    @torch.no_grad()
    def _init_weights(self) -> None:
        """PaddleClas's initialization of the family (``paddle_init``), in place."""
        paddle_init_(self, self.paddle_init)

    @property
    def num_classes(self) -> int:
        fc = self.head.fc
        return fc.out_features if isinstance(fc, nn.Linear) else 0

    @property
    def head_hidden_size(self) -> int:
        """Width of the ``forward_head(..., pre_logits=True)`` output."""
        return self.head.num_features

    # --- the pretrained configuration (timm reads it as a mapping) -----------------------------------------------

    @property
    def pretrained_cfg(self) -> PretrainedCfg | None:
        """The weights' configuration (for a model built without weights: its architecture's default tag's), with
        the model's ``first_conv`` and ``in_chans`` filled in. It is a mapping with timm's keys as well
        (``cfg["crop_pct"]``, ``cfg["input_size"]``)."""
        return self.__dict__.get("_pretrained_cfg")

    @pretrained_cfg.setter
    def pretrained_cfg(self, cfg: PretrainedCfg | None) -> None:
        if isinstance(cfg, PretrainedCfg):
            own = {"first_conv": self.first_conv, "in_chans": self.get_submodule(self.first_conv).in_channels}
            if any(cfg.extra.get(k) != v for k, v in own.items()):
                cfg = dataclasses.replace(cfg, extra={**cfg.extra, **own})
        self.__dict__["_pretrained_cfg"] = cfg

    @property
    def default_cfg(self) -> PretrainedCfg | None:
        """timm's older name for :attr:`pretrained_cfg`."""
        return self.pretrained_cfg

    @default_cfg.setter
    def default_cfg(self, cfg: PretrainedCfg | None) -> None:
        self.pretrained_cfg = cfg

    # --- forward ---------------------------------------------------------------------------------------------------

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """Everything before the first stage."""
        return self.stem(x)

    def forward_stem_level(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(:meth:`forward_stem`'s output, the stride-2 stem level of ``stem_info`` or None)."""
        return self.forward_stem(x), None

    def set_feature_indexing(self, style: str) -> None:
        """Number the feature levels as ``style`` does: ``"hgzoo"`` (the stages, 0-3: strides 4-32) or ``"timm"``
        (timm's port of the family; for ResNet-vd and HRNet the stride-2 stem level of ``stem_info`` comes first, as
        level 0, and the stages are 1-4). ``feature_info``, :meth:`forward_intermediates` and ``features_only``'s
        ``out_indices`` all count the one list. ``create_model`` picks ``"timm"`` under timm's names and through
        timm's registry (:func:`hgzoo.timm_compat.register`), ``"hgzoo"`` otherwise."""
        if style not in ("hgzoo", "timm"):
            raise ValueError(f"feature indexing must be 'hgzoo' or 'timm', got {style!r}")
        offset = int(style == "timm" and self.stem_info is not None)
        if offset != self.level_offset:
            if self.levels_kept >= 0:
                raise ValueError("set the feature indexing before prune_intermediate_layers, not after")
            self.feature_info = [dict(self.stem_info)] + self.feature_info if offset else self.feature_info[1:]
            self.level_offset = offset

    def feature_levels(self, mode: str | None = None) -> list[dict]:
        """The feature levels :meth:`forward_stages` returns for ``mode`` (``None``: the stage outputs)."""
        if mode not in (None, "stages"):
            raise ValueError(f"{type(self).__name__} has one feature mode, 'stages'; got {mode!r}")
        return self.feature_info

    def forward_stages(self, x: torch.Tensor, mode: str | None = None, stop: int | None = None) -> list[torch.Tensor]:
        """The output of every stage (those of ``feature_levels(mode)``), up to index ``stop``."""
        self.feature_levels(mode)
        offset = self.level_offset
        x, stem = self.forward_stem_level(x)
        outs = [stem] if stem is not None and offset else []
        for i, stage in enumerate(self.stages):
            if stop is not None and i + offset > stop:
                break
            x = self._run(stage, x)
            outs.append(x)
        return outs

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The final feature map, which the head pools."""
        x = self.forward_stem(x)
        for stage in self.stages:
            if self.grad_checkpointing and torch.is_grad_enabled() and not torch.jit.is_scripting():
                x = self._run(stage, x)
            else:
                x = stage(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the final fc by a freshly initialised one with ``num_classes`` outputs (0: none), pooling with
        ``global_pool`` (timm's: ``''``, ``'avg'``, ``'max'``, ``'avgmax'``, ``'catavgmax'``; None keeps the current
        one). ``reset_classifier(0, '')`` makes ``forward`` return the unpooled map, as in timm."""
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be an int >= 0 (0: no classifier), got {num_classes!r}")
        check_global_pool(global_pool)
        self.head.reset(num_classes, global_pool)

    def set_global_pool(self, global_pool: str) -> None:
        """Pool with ``global_pool`` (see :meth:`reset_classifier`), keeping the fc unless its input width changes
        (``'catavgmax'`` doubles it): ``create_model(..., global_pool=...)``."""
        self.head.set_pool(global_pool)

    def fuse(self) -> "ClassifierModel":
        """For inference: :func:`hgzoo.reparameterize` in place (every conv+BN fused, every multi-branch conv merged,
        eval-time dropout folded into the fc; the model goes to eval mode). Returns the model, as detectors'
        ``fuse()`` and ``convert_to_deploy()`` do; a second call changes nothing."""
        return reparameterize(self)

    def convert_to_deploy(self) -> "ClassifierModel":
        """:meth:`fuse` under the name RT-DETR's and D-FINE's deploy scripts call on every module."""
        return self.fuse()

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each stage in the backward pass instead of storing its activations."""
        self.grad_checkpointing = enable

    # --- timm's feature API --------------------------------------------------------------------------------------

    def intermediate_info(self) -> list[dict]:
        """The levels :meth:`forward_intermediates` indexes: ``feature_info`` (the ``features_only`` levels too), in
        the numbering of :meth:`set_feature_indexing`."""
        return [dict(f) for f in self.feature_info]

    def _take(self, indices: int | list[int] | tuple[int, ...] | None,
              output_fmt: str = "NCHW") -> tuple[list[int], int]:
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt={output_fmt!r}: hgzoo's feature maps are 'NCHW' only")
        take, last = take_indices(len(self.intermediate_info()), indices)
        if 0 <= self.levels_kept <= last:
            raise ValueError(f"level {last} was removed by prune_intermediate_layers (levels 0..{self.levels_kept - 1} "
                             "remain); build the model again for deeper levels")
        return take, last

    def forward_intermediates(self, x: torch.Tensor, indices: int | list[int] | tuple[int, ...] | None = None,
                              norm: bool = False, stop_early: bool = False, output_fmt: str = "NCHW",
                              intermediates_only: bool = False) -> list[torch.Tensor] | tuple[torch.Tensor, list]:
        """timm's feature API: the feature maps at ``indices`` of :meth:`intermediate_info` (None: all; an int ``n``:
        the last ``n``; negative indices count from the end), and, unless ``intermediates_only``, the final map
        (``forward_features``'s, or the last level run when ``stop_early`` stops before the end).

        Index ``i`` is level ``i`` of ``feature_info`` (see :meth:`set_feature_indexing`); ``norm`` is accepted and
        does nothing (no family ends in a norm layer)."""
        take, last = self._take(indices, output_fmt)
        offset = self.level_offset
        x, stem = self.forward_stem_level(x)
        out = [stem] if offset and stem is not None and 0 in take else []
        for i, stage in enumerate(self.stages):
            if stop_early and i + offset > last:
                break
            x = self._run(stage, x)
            if i + offset in take:
                out.append(x)
        return out if intermediates_only else (x, out)

    def prune_intermediate_layers(self, indices: int | list[int] | tuple[int, ...] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Delete the stages after the last of ``indices`` (and the classifier, with ``prune_head`` or when stages
        go); the head becomes a global average pool. Returns the indices, as timm's. Asking
        :meth:`forward_intermediates` for a deleted level afterwards is an error."""
        take, last = self._take(indices)
        levels, offset = self.intermediate_info(), self.level_offset
        del self.stages[max(last + 1 - offset, 0):]
        if last < offset:
            self.stem_pool = nn.Identity()  # only the stem level is left: nothing follows it
        prune_end = last < len(levels) - 1
        if prune_end:
            self.num_features = int(levels[last]["num_chs"])
        if prune_head or prune_end:
            self.head = ClassifierHead(self.num_features, 0)
        self.levels_kept = last + 1
        return take

    def stage_modules(self) -> list[list[nn.Module]]:
        """The stem, then each stage, as groups of modules: :meth:`freeze_stages` ``(k)`` freezes groups ``0..k``;
        :meth:`group_matcher` and train.py's ``--lr-mult-list`` / ``--freeze`` count the same groups."""
        return [[self.stem], *([stage] for stage in self.stages)]

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """timm's parameter grouping (layer-wise LR decay): the stem, then one group per stage of
        :meth:`stage_modules` (``coarse`` or not: the stage is hgzoo's unit, as in PaddleClas's ``lr_mult_list``);
        what no stage holds (the head) comes last."""
        names = {id(m): n for n, m in self.named_modules()}
        groups = [sorted(names[id(m)] for m in group if m is not None and id(m) in names)
                  for group in self.stage_modules()]
        pattern = [r"^(?:" + "|".join(re.escape(n) for n in group) + r")\." for group in groups]
        return {"stem": pattern[0], "blocks": [(p, (i,)) for i, p in enumerate(pattern[1:], start=1)]}

    def no_weight_decay(self) -> set[str]:
        """The parameters PaddleClas trains without L2 decay: every BatchNorm weight and bias in PP-HGNet,
        PP-HGNetV2 and PP-LCNetV2 (``bn_weight_decay = False``), none in HRNet and ResNet-vd. train.py's
        ``--no-weight-decay`` recipe values agree (tested). A GroupNorm or LayerNorm put in their place
        (``norm_layer=``) is exempt as they are."""
        if self.bn_weight_decay:
            return set()
        norms = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)
        return {f"{n}.{p}" for n, m in self.named_modules() if isinstance(m, norms)
                for p, _ in m.named_parameters(recurse=False)}

    # --- backbone use ----------------------------------------------------------------------------------------------

    def freeze_stages(self, frozen_stages: int) -> None:
        """Freeze the stem and the first ``frozen_stages`` stages (mmdetection's ``frozen_stages``).

        ``-1``: nothing; ``0``: the stem; ``k``: the stem and stages ``1..k``. Their parameters stop requiring
        gradients and they stay in eval mode whatever :meth:`train` is given (BatchNorm uses and keeps its
        running statistics; dropout and drop path are off), so they are a fixed function. A later call with a
        smaller value unfreezes the difference (its parameters require gradients again).
        """
        groups = self.stage_modules()
        n = len(groups) - 1
        valid = f"-1 (nothing frozen), 0 (the stem), or 1..{n} (the stem and the first k stages)"
        if isinstance(frozen_stages, bool) or not isinstance(frozen_stages, int):
            raise TypeError(f"freeze_at (frozen stages) must be an int: {valid}; got {frozen_stages!r}")
        if not -1 <= frozen_stages <= n:
            raise ValueError(f"freeze_at={frozen_stages} is out of range: {type(self).__name__} has a stem and {n} "
                             f"stages; valid values are {valid}")
        for i, group in enumerate(groups):
            if i <= max(frozen_stages, self.frozen_stages):
                for module in group:
                    module.requires_grad_(i > frozen_stages)
        self.frozen_stages = frozen_stages
        self.train(self.training)

    def set_norm_eval(self, enable: bool = True) -> None:
        """Keep every BatchNorm in eval mode, even after :meth:`train` (mmdetection's ``norm_eval``): it
        normalizes with its running statistics and never updates them; its weight and bias still train."""
        if not isinstance(enable, bool):
            raise TypeError(f"norm_eval must be True or False, got {enable!r}")
        self.norm_eval = enable
        self.train(self.training)

    def train(self, mode: bool = True) -> "ClassifierModel":
        """As :meth:`nn.Module.train`, except that frozen stages, and every BatchNorm under ``norm_eval``, stay
        in eval mode."""
        super().train(mode)
        if mode:
            for group in self.stage_modules()[: self.frozen_stages + 1]:
                for module in group:
                    module.eval()
            if self.norm_eval:
                for module in self.modules():
                    if isinstance(module, nn.modules.batchnorm._BatchNorm):
                        module.eval()
        return self

    def prune_for_features(self, mode: str | None, out_indices: tuple[int, ...]) -> None:
        """Delete what the features ``out_indices`` of ``feature_levels(mode)`` never need: the head, later stages."""
        self.head = nn.Identity()
        del self.stages[max(max(out_indices) + 1 - self.level_offset, 0):]
        if max(out_indices) < self.level_offset:
            self.stem_pool = nn.Identity()  # only the stem level is returned: nothing follows it

    def _run(self, module: nn.Module, *args):
        """Run one stage, checkpointed when grad checkpointing is on and gradients are needed."""
        if self.grad_checkpointing and torch.is_grad_enabled() and not torch.jit.is_scripting():
            return checkpoint(module, *args, use_reentrant=False)
        return module(*args)
