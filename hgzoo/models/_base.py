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
    override :meth:`forward_stem` when more than ``self.stem`` precedes the stages (or :meth:`forward_stages`
    and :meth:`feature_levels` when the stages are not a chain); they set ``num_features`` (channels of the final feature map),
    ``feature_info`` (one dict per stage: ``num_chs``, ``reduction``, ``module``) and the class
    attributes ``paddle_key_map`` (an instance may carry its own, when the map depends on the variant) and
    ``first_conv`` (the state-dict prefix of the stem conv).
    """

    paddle_key_map: ClassVar[PaddleKeyMap]
    first_conv: ClassVar[str]
    head: ClassifierHead
    num_features: int
    feature_info: list[dict]

    def __init__(self) -> None:
        super().__init__()
        self.grad_checkpointing = False

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

    def _run(self, module: nn.Module, *args):
        """Run one stage, checkpointed when grad checkpointing is on and gradients are needed."""
        if self.grad_checkpointing and torch.is_grad_enabled() and not torch.jit.is_scripting():
            return checkpoint(module, *args, use_reentrant=False)
        return module(*args)
