"""Checkpoints written atomically, RNG state capture, EMA of weights, distillation losses, DDP helpers."""
from __future__ import annotations

import copy
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

__all__ = ["atomic_save", "load_checkpoint", "rng_state", "set_rng_state", "ModelEMA", "DistillationLoss",
           "init_distributed", "is_main", "unwrap"]


def atomic_save(obj, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``.

    A crash (even SIGKILL) leaves either the old file or the new one, never a partial file.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    return torch.load(path, map_location="cpu", weights_only=False)


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, "_orig_mod", model)  # torch.compile
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


class ModelEMA:
    """Exponential moving average of the weights (``ema = d * ema + (1 - d) * w``); buffers are copied."""

    def __init__(self, model: nn.Module, decay: float = 0.9999) -> None:
        self.module = copy.deepcopy(unwrap(model)).eval()
        self.decay = decay
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        src = unwrap(model).state_dict()
        for k, v in self.module.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(self.decay).add_(src[k].detach(), alpha=1.0 - self.decay)
            else:
                v.copy_(src[k])


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
