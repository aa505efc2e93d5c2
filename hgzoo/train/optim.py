"""PaddleClas's optimisation: Momentum + L2 decay (BN excluded where PaddleClas excludes it), per-stage LR
multipliers (``lr_mult_list``), and LR schedules stepped per iteration with linear warmup."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..layers import LearnableAffine

if TYPE_CHECKING:
    from .config import TrainConfig

__all__ = ["stage_units", "param_groups", "layer_decay_multipliers", "create_optimizer", "LRSchedule", "freeze_units"]


def stage_units(model: nn.Module) -> list[list[nn.Module]]:
    """The model's units in PaddleClas's ``lr_mult_list`` order: the stem, then each stage (the head is not a unit).

    They are the model's own :meth:`~hgzoo.models._base.ClassifierModel.stage_modules`, the one definition of a
    stage that ``freeze_at`` and ``group_matcher`` use too (for HRNet: stage k with the transition that follows it,
    stage 4 with the incre bottlenecks).
    """
    stage_modules = getattr(model, "stage_modules", None)
    if not callable(stage_modules):
        raise ValueError(f"{type(model).__name__} has no stage_modules(): cannot find the stem and stages for "
                         "lr_mult_list/freeze")
    return stage_modules()


def freeze_units(model: nn.Module, count: int) -> list[nn.Module]:
    """Freeze the first ``count`` units (stem, stage1, ...) with ``model.freeze_stages(count - 1)``: no gradients,
    and they stay in eval mode through ``train()``; returns their modules."""
    units = stage_units(model)
    if not 0 <= count <= len(units):
        raise ValueError(f"cannot freeze {count} units: {type(model).__name__} has {len(units)} (stem + stages)")
    model.freeze_stages(count - 1)
    return [m for unit in units[:count] for m in unit]


def layer_decay_multipliers(model: nn.Module, decay: float) -> dict[int, float]:
    """timm's layer-wise LR decay over the model's own stages (``model.stage_modules()``: the stem, then each
    stage): group ``i`` of ``n`` gets ``decay ** (n - i)``, the head (everything else) 1."""
    groups = model.stage_modules()
    out: dict[int, float] = {}
    for i, group in enumerate(groups):
        for module in group:
            for p in module.parameters():
                out[id(p)] = decay ** (len(groups) - i)
    return out


def param_groups(model: nn.Module, weight_decay: float, no_weight_decay: str = "none",
                 lr_mult_list: list[float] | None = None, lab_lr: float = 1.0,
                 layer_decay: float | None = None) -> list[dict]:
    """Parameter groups keyed by (lr multiplier, weight decay).

    ``no_weight_decay="bn"``: BatchNorm weights and biases get no decay, as PaddleClas's PP-HGNet, PP-HGNetV2
    and PP-LCNetV2 do (``ParamAttr(regularizer=L2Decay(0.0))`` on every BN). HRNet and ResNet-vd decay
    everything. ``"1d"``: every parameter with at most one dimension and every bias gets no decay, as timm's
    ``param_groups_weight_decay`` (its train.py's default). ``lab_lr`` multiplies the LR of LearnableAffine
    (PP-HGNetV2's LAB: 0.01); ``layer_decay`` the LR of each stage (:func:`layer_decay_multipliers`). Frozen
    parameters are left out.
    """
    mult: dict[int, float] = {}
    if lr_mult_list is not None:
        for m_value, unit in zip(lr_mult_list, stage_units(model)):
            for module in unit:
                for p in module.parameters():
                    mult[id(p)] = float(m_value)
    layer = layer_decay_multipliers(model, layer_decay) if layer_decay is not None else {}
    no_decay: set[int] = set()
    lab: set[int] = set()
    if no_weight_decay == "1d":
        no_decay.update(id(p) for n, p in model.named_parameters() if p.ndim <= 1 or n.endswith(".bias"))
    for module in model.modules():
        if no_weight_decay == "bn" and isinstance(module, nn.modules.batchnorm._BatchNorm):
            no_decay.update(id(p) for p in module.parameters(recurse=False))
        if isinstance(module, LearnableAffine):
            lab.update(id(p) for p in module.parameters(recurse=False))
    groups: dict[tuple[float, float], list] = {}
    for p in model.parameters():
        if not p.requires_grad:
            continue
        lr_mult = mult.get(id(p), 1.0) * (lab_lr if id(p) in lab else 1.0) * layer.get(id(p), 1.0)
        wd = 0.0 if id(p) in no_decay else weight_decay
        groups.setdefault((lr_mult, wd), []).append(p)
    return [dict(params=ps, lr_mult=lm, weight_decay=wd) for (lm, wd), ps in sorted(groups.items())]


def create_optimizer(model: nn.Module, cfg: TrainConfig, lr: float) -> torch.optim.Optimizer:
    """``cfg.opt``: ``momentum``, Paddle's Momentum (``v = mu * v + g; p -= lr * v``) with L2 regularisation =
    torch SGD without dampening or Nesterov; ``sgd``, timm's meaning: the same with Nesterov momentum; ``adamw``:
    AdamW, decoupled weight decay, ``momentum`` as beta1. Weight decay is set per parameter group."""
    groups = param_groups(model, cfg.weight_decay, cfg.no_weight_decay, cfg.lr_mult_list, cfg.lab_lr,
                          cfg.layer_decay)
    for g in groups:
        g["lr"] = lr * g["lr_mult"]
    if cfg.opt == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(cfg.momentum, 0.999))
    return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, weight_decay=0.0, nesterov=cfg.opt == "sgd")


class LRSchedule:
    """Per-iteration LR: linear warmup from ``warmup_start_lr`` over ``warmup_epochs``, then PaddleClas's
    ``Cosine`` (``base * (1 + cos(pi * t / T)) / 2`` over the post-warmup iterations, floored at ``min_lr``),
    ``Piecewise`` (``base * gamma**k`` after each of ``decay_epochs``) or constant. ``step()`` after each
    optimizer step; the state is the step count."""

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, steps_per_epoch: int, epochs: int,
                 sched: str = "cosine", warmup_epochs: float = 0.0, warmup_start_lr: float = 0.0,
                 decay_epochs: list[float] = (), decay_gamma: float = 0.1, min_lr: float = 0.0) -> None:
        self.optimizer, self.base_lr, self.sched = optimizer, base_lr, sched
        self.steps_per_epoch = steps_per_epoch
        self.total = max(steps_per_epoch * epochs, 1)
        self.warmup = int(round(warmup_epochs * steps_per_epoch))
        self.warmup_start_lr, self.min_lr = warmup_start_lr, min_lr
        self.decay_steps = [int(round(e * steps_per_epoch)) for e in decay_epochs]
        self.decay_gamma = decay_gamma
        self.step_count = 0
        self._apply()

    def lr_at(self, step: int) -> float:
        if step < self.warmup:
            return self.warmup_start_lr + (self.base_lr - self.warmup_start_lr) * step / self.warmup
        if self.sched == "cosine":
            t, span = step - self.warmup, max(self.total - self.warmup, 1)
            return self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * min(t, span) / span))
        if self.sched == "piecewise":
            return self.base_lr * self.decay_gamma ** sum(step >= s for s in self.decay_steps)
        return self.base_lr

    def _apply(self) -> None:
        lr = self.lr_at(self.step_count)
        for g in self.optimizer.param_groups:
            g["lr"] = lr * g.get("lr_mult", 1.0)

    @property
    def lr(self) -> float:
        return self.lr_at(self.step_count)

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def state_dict(self) -> dict:
        return {"step_count": self.step_count}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step_count"])
        self._apply()
