"""The model contract every family implements, in one place."""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..convert.keymap import PaddleKeyMap
from ..layers import ClassifierHead

__all__ = ["ClassifierModel"]


class ClassifierModel(nn.Module):
    """Base of every hgzoo classifier.

    Subclasses build ``self.stem``, ``self.stages`` and ``self.head`` (a :class:`~hgzoo.layers.ClassifierHead`),
    override :meth:`forward_stem` when more than ``self.stem`` precedes the stages (``self.stem_pool``), or
    :meth:`forward_stages` and :meth:`feature_levels` when the stages are not a chain; they set ``num_features``
    (channels of the final feature map), ``feature_info`` (one dict per stage: ``num_chs``, ``reduction``,
    ``module``) and the class attributes ``paddle_key_map`` (the family's ``PADDLE_KEY_MAP``; an instance may
    carry its own, when the map depends on the variant) and ``first_conv`` (the state-dict prefix of the stem
    conv). They end ``__init__`` with ``self._init_weights()``, PaddleClas's initialization.

    Backbone use: :meth:`stage_modules` lists the stem and the stages (override it when the stages are
    not ``self.stages``), :meth:`freeze_stages` and :meth:`set_norm_eval` keep parts in eval mode through
    :meth:`train`, and :meth:`prune_for_features` drops what a features-only model never runs.
    """

    paddle_key_map: ClassVar[PaddleKeyMap]
    first_conv: ClassVar[str]
    head: ClassifierHead
    num_features: int
    feature_info: list[dict]

    def __init__(self) -> None:
        super().__init__()
        self.grad_checkpointing = False
        self.frozen_stages = -1  # the stem (0) and stages 1..frozen_stages are frozen; -1: nothing
        self.norm_eval = False  # every BatchNorm stays in eval mode

    @property
    def num_classes(self) -> int:
        fc = self.head.fc
        return fc.out_features if isinstance(fc, nn.Linear) else 0

    @property
    def head_hidden_size(self) -> int:
        """Width of the ``forward_head(..., pre_logits=True)`` output."""
        return self.head.num_features

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """Everything before the first stage."""
        return self.stem(x)

    def feature_levels(self, mode: str | None = None) -> list[dict]:
        """The feature levels :meth:`forward_stages` returns for ``mode`` (``None``: the stage outputs)."""
        if mode not in (None, "stages"):
            raise ValueError(f"{type(self).__name__} has one feature mode, 'stages'; got {mode!r}")
        return self.feature_info

    def forward_stages(self, x: torch.Tensor, mode: str | None = None, stop: int | None = None) -> list[torch.Tensor]:
        """The output of every stage (those of ``feature_levels(mode)``), up to index ``stop``."""
        self.feature_levels(mode)
        x = self.forward_stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = self._run(stage, x)
            outs.append(x)
            if stop is not None and i >= stop:
                break
        return outs

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The final feature map, which the head pools."""
        return self.forward_stages(x)[-1]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final fc by a freshly initialised one with ``num_classes`` outputs (0: none)."""
        self.head.reset(num_classes)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each stage in the backward pass instead of storing its activations."""
        self.grad_checkpointing = enable

    def stage_modules(self) -> list[list[nn.Module]]:
        """The stem, then each stage, as groups of modules: :meth:`freeze_stages` ``(k)`` freezes groups ``0..k``."""
        return [[self.stem], *([stage] for stage in self.stages)]

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

    def train(self, mode: bool = True) -> ClassifierModel:
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
        del self.stages[max(out_indices) + 1:]

    def _run(self, module: nn.Module, *args):
        """Run one stage, checkpointed when grad checkpointing is on and gradients are needed."""
        if self.grad_checkpointing and torch.is_grad_enabled() and not torch.jit.is_scripting():
            return checkpoint(module, *args, use_reentrant=False)
        return module(*args)
