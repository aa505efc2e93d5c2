"""Checkpoints written atomically, RNG state capture, EMA of weights, distillation losses, DDP helpers."""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from .._files import atomic_open, safe_load

__all__ = ["atomic_save", "read_train_state", "check_optimizer_state", "RESUME_KEYS", "rng_state", "set_rng_state",
           "ModelEMA",
           "DistillationLoss", "init_distributed", "is_main", "unwrap"]


def atomic_save(obj, path: str | Path) -> None:
    """``torch.save`` through the one atomic writer: a crash (even SIGKILL) leaves the old file or the new one.

    ``obj`` must hold only tensors and plain data, so that the safe reader (``weights_only=True``) reads it back.
    """
    with atomic_open(path) as f:
        torch.save(obj, f)


#: What a checkpoint needs for ``--resume``; best.pt has the weights but not the optimizer state.
RESUME_KEYS = ("model", "optimizer", "scheduler", "scaler", "epoch", "micro_in_epoch", "global_step", "best_top1",
               "rng")


def read_train_state(path: str | Path, model_name: str) -> dict:
    """A train.py checkpoint of ``model_name`` for ``--resume``, read by the safe reader; raises ValueError
    (one line) for a checkpoint of another model or one that cannot be resumed."""
    state = safe_load(path)
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a train.py checkpoint")
    if str(state.get("model_name")).split(".")[0] != model_name.split(".")[0]:
        raise ValueError(f"{path} is a checkpoint of {state.get('model_name')!r}, not of {model_name!r}")
    missing = [k for k in RESUME_KEYS if k not in state]
    if missing:
        hint = (" (best.pt keeps the weights only: resume from last.pt, or start a new run with "
                f"--initial-checkpoint {path})" if "optimizer" in missing and "model" in state else "")
        raise ValueError(f"{path} cannot be resumed: it lacks {', '.join(missing)}{hint}")
    _check_resume_fields(state, path)
    return state


def _bad(path: str | Path, field: str, expected: str, value: object) -> ValueError:
    shown = f"{value!r}"[:60] if isinstance(value, (int, float, str, type(None))) else f"a {type(value).__name__}"
    return ValueError(f"{path} cannot be resumed: its '{field}' must be {expected}, found {shown} (a damaged or "
                      "edited checkpoint; resume from another one, or start a new run)")


def _check_resume_fields(state: dict, path: str | Path) -> None:
    """The types and ranges of what ``--resume`` reads (before any of it is applied); names the bad field."""
    for key in ("epoch", "micro_in_epoch", "global_step"):
        value = state[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _bad(path, key, "a whole number >= 0", value)
    best = state["best_top1"]
    if isinstance(best, bool) or not isinstance(best, (int, float)) or not -1.0 <= best <= 100.0:
        raise _bad(path, "best_top1", "a number in [-1, 100]", best)
    for key in ("model", "optimizer", "scheduler", "scaler"):
        if not isinstance(state[key], dict):
            raise _bad(path, key, "a dict (a state dict)", state[key])
    for key in ("state_dict_ema", "ema"):  # timm's key since checkpoint version 3, hgzoo's own before
        if state.get(key) is not None and not isinstance(state[key], dict):
            raise _bad(path, key, "a state dict or None", state[key])
    bad_weights = [k for k, v in state["model"].items() if not isinstance(v, torch.Tensor)]
    if bad_weights:
        raise _bad(path, f"model.{bad_weights[0]}", "a tensor", state["model"][bad_weights[0]])
    opt = state["optimizer"]
    if not isinstance(opt.get("state"), dict) or not isinstance(opt.get("param_groups"), list):
        raise _bad(path, "optimizer", "an optimizer state dict (state and param_groups)", opt)
    rngs = state["rng"]
    if not isinstance(rngs, (list, tuple)) or not rngs:
        raise _bad(path, "rng", "a list of RNG states, one per process", rngs)
    for i, rng in enumerate(rngs):
        _check_rng(rng, f"rng[{i}]", path)


def _check_rng(state: object, field: str, path: str | Path) -> None:
    """Apply each RNG state to a scratch generator: one that any of them refuses is named, nothing is changed."""
    if not isinstance(state, dict) or not {"python", "numpy", "torch"} <= set(state):
        raise _bad(path, field, "a dict with python, numpy and torch states", state)
    try:
        version, mt, gauss = state["python"]
        random.Random().setstate((version, tuple(mt), gauss))
    except (TypeError, ValueError, OverflowError) as e:
        raise _bad(path, f"{field}.python", f"random.getstate()'s state ({e})", None) from None
    n = state["numpy"]
    try:
        np.random.RandomState().set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                                           n["cached_gaussian"]) if isinstance(n, dict) else n)
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as e:
        raise _bad(path, f"{field}.numpy", f"numpy's RandomState state ({e})", None) from None
    t = state["torch"]
    if not isinstance(t, torch.Tensor) or t.dtype != torch.uint8 or t.shape != torch.get_rng_state().shape:
        raise _bad(path, f"{field}.torch", f"a uint8 tensor of {tuple(torch.get_rng_state().shape)}", t)
    try:
        torch.Generator().set_state(t)
    except (RuntimeError, ValueError) as e:
        raise _bad(path, f"{field}.torch", f"torch's generator state ({e})", None) from None


def check_optimizer_state(saved: dict, optimizer: torch.optim.Optimizer, path: str | Path) -> None:
    """``saved`` (a checkpoint's optimizer state) fits ``optimizer``: its groups, and each state tensor's shape
    against its parameter's. Raises ValueError naming the first field that does not."""
    groups, own = saved["param_groups"], optimizer.param_groups
    if len(groups) != len(own):
        raise ValueError(f"{path} cannot be resumed: its 'optimizer' has {len(groups)} parameter groups, this run's "
                         f"optimizer {len(own)} (another --opt, --lr-mult-list or --freeze?)")
    ids: dict[object, torch.Tensor] = {}
    for g, (group, mine) in enumerate(zip(groups, own)):
        params = group.get("params") if isinstance(group, dict) else None
        if not isinstance(params, list) or len(params) != len(mine["params"]):
            raise _bad(path, f"optimizer.param_groups[{g}].params", f"a list of {len(mine['params'])} parameters",
                       params)
        ids.update(zip(params, mine["params"]))
    for pid, entry in saved["state"].items():
        if pid not in ids or not isinstance(entry, dict):
            raise _bad(path, f"optimizer.state[{pid!r}]", "the state of one of the optimizer's parameters", entry)
        for name, value in entry.items():
            if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape != ids[pid].shape:
                raise ValueError(f"{path} cannot be resumed: its 'optimizer.state[{pid}].{name}' has shape "
                                 f"{tuple(value.shape)}, its parameter {tuple(ids[pid].shape)}")


def rng_state() -> dict:
    """Every RNG's state as tensors and plain types, so that the safe reader can read it back."""
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(mt), gauss], "torch": torch.get_rng_state(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    n = state["numpy"]
    if isinstance(n, dict):
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                             n["cached_gaussian"]))
    else:  # an older checkpoint: numpy's own tuple
        np.random.set_state(n)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, "_orig_mod", model)  # torch.compile
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _ema_with_copied_ints(decay: float):
    """torch's EMA step for floating tensors; integer buffers (BatchNorm's ``num_batches_tracked``) are copied,
    as timm's ``ModelEmaV3`` does, where torch's own step would average them and truncate to 0."""
    ema_step = get_ema_multi_avg_fn(decay)

    def step(ema: list[torch.Tensor], current: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
        if ema[0].is_floating_point() or ema[0].is_complex():
            ema_step(ema, current, n_averaged)
        else:
            for e, c in zip(ema, current, strict=True):
                e.copy_(c)

    return step


class ModelEMA(AveragedModel):
    """Exponential moving average of the weights and floating buffers (``ema = d * ema + (1 - d) * w``):
    torch's ``AveragedModel`` with its EMA function. ``.module`` is the averaged model; call :meth:`update`
    after each optimizer step. Same values as timm's ``ModelEmaV3`` (no warmup) on the same updates."""

    def __init__(self, model: nn.Module, decay: float = 0.9999) -> None:
        super().__init__(unwrap(model), multi_avg_fn=_ema_with_copied_ints(decay), use_buffers=True)
        self.decay = decay
        self.module.eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        # The copy counts as the first average, so the first update is an EMA step (as timm's), not a copy.
        self.n_averaged.fill_(1)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.update_parameters(unwrap(model))


class DistillationLoss(nn.Module):
    """The student's loss against the teacher's soft targets (labels ignored), averaged over the batch.

    - ``dml`` (default, PaddleClas's ``DistillationDMLLoss`` used by the SSLD quick start): the symmetric KL
      ``(KL(p_t || p_s) + KL(p_s || p_t)) / 2`` between softmax outputs;
    - ``kl``: Hinton's ``T^2 * KL(softmax(t/T) || softmax(s/T))``;
    - ``js``: the Jensen-Shannon divergence ``(KL(p_t || m) + KL(p_s || m)) / 2``, ``m = (p_t + p_s) / 2``.
    """

    def __init__(self, kind: str = "dml", temperature: float = 1.0) -> None:
        super().__init__()
        if kind not in ("dml", "kl", "js"):
            raise ValueError(f"unknown distillation loss {kind!r}")
        self.kind, self.t = kind, temperature

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        t = self.t
        log_s = F.log_softmax(student.float() / t, dim=-1)
        log_t = F.log_softmax(teacher.float() / t, dim=-1)
        p_s, p_t = log_s.exp(), log_t.exp()
        if self.kind == "kl":
            return (p_t * (log_t - log_s)).sum(-1).mean() * t * t
        if self.kind == "dml":
            return 0.5 * ((p_t * (log_t - log_s)).sum(-1) + (p_s * (log_s - log_t)).sum(-1)).mean() * t * t
        log_m = (0.5 * (p_s + p_t)).clamp_min(1e-12).log()
        return 0.5 * ((p_t * (log_t - log_m)).sum(-1) + (p_s * (log_s - log_m)).sum(-1)).mean() * t * t


def init_distributed(device_pref: str = "auto") -> tuple[torch.device, int, int, int]:
    """(device, rank, world_size, local_rank). Under torchrun: NCCL on CUDA, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device_pref == "auto" else device_pref.startswith("cuda")
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return device, rank, world, local_rank


def is_main() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0
