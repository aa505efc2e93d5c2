"""The training run, in named steps: check the output, build the inputs (data, model, teacher, resume state),
place the model (device, EMA, DDP), set up the optimisation, then per epoch ``train_one_epoch``, ``evaluate``
and the checkpoints."""
from __future__ import annotations

import csv
import io
import json
import math
import random
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
import yaml
from torch import nn
from torch.utils.data import DataLoader, Subset

import hgzoo

from .._builder import EMA_KEYS, state_dict_of
from .._files import (
    LOCK_NAME,
    CheckpointMismatchError,
    CorruptCheckpointError,
    UnsafePickleError,
    atomic_write,
    safe_load,
    unlock_folder,
)
from ..data import Normalizer
from ..data.mixup import MixUpCutMix
from ..layers import timm_init_
from .config import ConfigError, TrainConfig, canonical_model_name, effective_lr
from .data import Datasets, ResumableSampler, build_datasets, eval_data_config, shard
from .history import CheckpointHistory
from .optim import LRSchedule, create_optimizer, freeze_units
from .output import RUN_FILES, prepare_output
from .utils import (
    DistillationLoss,
    ModelEMA,
    atomic_save,
    check_optimizer_state,
    init_distributed,
    read_train_state,
    rng_state,
    set_rng_state,
    unwrap,
)

__all__ = ["run", "evaluate", "train_one_epoch", "prepare_output", "plot_summary", "RUN_FILES"]

SUMMARY_FIELDS = ["epoch", "train_loss", "eval_top1", "eval_top5", "ema_top1", "lr", "epoch_time_s", "images_per_s"]
#: The layout version of train.py's checkpoints (readable with ``weights_only=True`` since version 2; EMA weights
#: under timm's ``state_dict_ema`` since version 3, under ``ema`` before).
CHECKPOINT_VERSION = 3


def _checkpoint_error(what: str, path: str, e: Exception) -> ConfigError:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return ConfigError(f"{what} {path}: {first}" if path not in first else f"{what}: {first}")


def _read_file(path: str, what: str):
    """What the safe reader finds in ``path`` (one of ours, timm's, a state dict, safetensors or .pdparams)."""
    if not Path(path).is_file():
        raise ConfigError(f"{what} {path} not found")
    try:
        return safe_load(path)
    except (UnsafePickleError, CorruptCheckpointError, OSError, ValueError) as e:
        raise _checkpoint_error(what, path, e) from None


def _check_compatible(model: nn.Module, state: dict, what: str) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or shapes:
        raise ConfigError(f"{what} does not fit the model: {len(missing)} missing keys {missing[:3]}, "
                          f"{len(unexpected)} unexpected {unexpected[:3]}, shape mismatches {shapes[:3]}")


# ---------------------------------------------------------------------------------------------- inputs

def _create_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    kw = dict(num_classes=num_classes, in_chans=cfg.in_chans, drop_path_rate=cfg.drop_path_rate)
    if cfg.drop_rate is not None:
        kw["drop_rate"] = cfg.drop_rate
    try:
        model = hgzoo.create_model(cfg.model, pretrained=cfg.pretrained, **kw)
    except (KeyError, RuntimeError) as e:
        raise ConfigError(f"cannot create {cfg.model}: {e}") from None
    if cfg.grad_checkpointing:
        model.set_grad_checkpointing(True)
    return model


def _load_initial(model: nn.Module, path: str) -> None:
    """Fine-tuning start: every weight of the checkpoint (any format the safe reader reads, .pdparams converted);
    a classifier of another size is re-initialised (with a warning), a stem for other channels adapted."""
    if not Path(path).is_file():
        raise ConfigError(f"--initial-checkpoint {path} not found")
    try:
        hgzoo.load_checkpoint(model, path)
    except (UnsafePickleError, CorruptCheckpointError, CheckpointMismatchError, OSError, ValueError) as e:
        raise _checkpoint_error("--initial-checkpoint", path, e) from None


def _build_teacher(cfg: TrainConfig, num_classes: int, device) -> nn.Module:
    """The distillation teacher, from ``--teacher`` and ``--teacher-checkpoint``, frozen in eval mode."""
    if not hgzoo.is_model(cfg.teacher):
        raise ConfigError(f"unknown teacher model {cfg.teacher!r}; see python -m hgzoo models")
    path = cfg.teacher_checkpoint
    obj = _read_file(path, "--teacher-checkpoint")
    meta = obj if isinstance(obj, dict) else {}
    teacher = hgzoo.create_model(cfg.teacher, num_classes=num_classes,
                                 in_chans=int(meta.get("in_chans") or cfg.in_chans))
    try:
        state = state_dict_of(obj, teacher, path)
    except (CorruptCheckpointError, CheckpointMismatchError) as e:
        raise _checkpoint_error("--teacher-checkpoint", path, e) from None
    fc = state.get("head.fc.weight")
    t_classes = meta.get("num_classes") or (fc.shape[0] if fc is not None else None)
    if t_classes != num_classes:
        raise ConfigError(f"the teacher has {t_classes} classes, the student {num_classes}")
    _check_compatible(teacher, state, f"--teacher-checkpoint {path}")
    teacher.load_state_dict(state)
    return teacher.eval().requires_grad_(False).to(device)



@dataclass
class _Inputs:
    """What the run is made of, all checked before anything trains; ``cfg`` is the run's config as its data and
    model settle it (the model's canonical name, the class count of the data)."""

    cfg: TrainConfig
    data: Datasets
    eval_cfg: dict
    num_classes: int
    model: nn.Module
    teacher: nn.Module | None
    resume: dict | None


def build_inputs(cfg: TrainConfig, device) -> _Inputs:
    """Data, model (initial checkpoint loaded), teacher and resume state; ConfigError for bad input."""
    cfg = replace(cfg, model=canonical_model_name(cfg.model))  # a saved config may hold any spelling
    pretrained_cfg = getattr(hgzoo.create_model(cfg.model, num_classes=0), "pretrained_cfg", None)
    eval_cfg = eval_data_config(cfg, pretrained_cfg)
    data = build_datasets(cfg, eval_cfg)
    num_classes = cfg.num_classes if cfg.num_classes is not None else data.num_classes
    cfg = replace(cfg, num_classes=num_classes)
    model = _create_model(cfg, num_classes)
    if cfg.init == "timm" and not cfg.pretrained:
        timm_init_(model)  # before any --initial-checkpoint: its weights replace it, as in timm
    if cfg.initial_checkpoint:
        _load_initial(model, cfg.initial_checkpoint)
    if cfg.reset_head:
        model.reset_classifier(num_classes)
    teacher = _build_teacher(cfg, num_classes, device) if cfg.teacher else None
    resume = None
    if cfg.resume:
        if not Path(cfg.resume).is_file():
            raise ConfigError(f"--resume {cfg.resume} not found")
        try:
            resume = read_train_state(cfg.resume, cfg.model)
        except (UnsafePickleError, CorruptCheckpointError, OSError, ValueError) as e:
            raise _checkpoint_error("--resume", cfg.resume, e) from None
        _check_compatible(model, resume["model"], f"--resume {cfg.resume}")
        if resume["epoch"] >= cfg.epochs and resume["micro_in_epoch"] == 0:
            raise ConfigError(f"--resume {cfg.resume}: the run already finished its {resume['epoch']} epochs; "
                              f"give --epochs N with N > {resume['epoch']} to train it further")
    return _Inputs(cfg, data, eval_cfg, num_classes, model, teacher, resume)


# ---------------------------------------------------------------------------------------------- the run's state

@dataclass
class _Run:
    """Everything the epochs share: the model and its wrappers, data, optimisation, and the counters."""

    cfg: TrainConfig
    out: Path
    device: torch.device
    rank: int
    world: int
    inputs: _Inputs
    model: nn.Module
    ddp: nn.Module
    fwd: nn.Module
    ema: ModelEMA | None
    frozen: list
    sampler: ResumableSampler
    loader_args: dict
    val_loader: DataLoader
    micro_per_epoch: int
    steps_per_epoch: int
    global_batch: int
    lr: float
    lr_source: str
    optimizer: torch.optim.Optimizer
    sched: LRSchedule
    scaler: torch.amp.GradScaler
    amp_ctx: object
    mixer: MixUpCutMix
    distill: DistillationLoss | None
    normalizer: Normalizer
    erasing: nn.Module | None
    start_epoch: int = 0
    start_micro: int = 0
    best: float = -1.0
    global_step: int = 0
    history: CheckpointHistory | None = None  # rank 0: the kept best checkpoints (--checkpoint-hist)
    metrics: dict = field(default_factory=lambda: {"top1": math.nan, "top5": math.nan, "ema_top1": math.nan})

    @property
    def main(self) -> bool:
        return self.rank == 0


def _place_model(model: nn.Module, cfg: TrainConfig, device, world: int, main: bool):
    """(model, ddp-wrapped, what runs forward, EMA, frozen modules) on ``device``."""
    frozen = freeze_units(model, cfg.freeze) if cfg.freeze else []
    if cfg.sync_bn and world > 1:
        if device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        elif main:
            print("warning: --sync-bn needs CUDA (torch's SyncBatchNorm has no CPU/gloo path); BN stays per process",
                  file=sys.stderr)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    ema = ModelEMA(model, cfg.ema_decay) if cfg.ema else None
    ddp = nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None) \
        if world > 1 else model
    fwd = torch.compile(ddp) if cfg.torchcompile else ddp
    return model, ddp, fwd, ema, frozen


def _loaders(cfg: TrainConfig, data: Datasets, device, rank: int, world: int):
    """(sampler, train loader arguments, val loader, micro-batches and optimizer steps per epoch)."""
    sampler = ResumableSampler(data.train, world, rank, shuffle=True, seed=cfg.seed, drop_last=True)
    per_rank = len(data.train) // world
    if per_rank < cfg.batch_size:
        raise ConfigError(f"{len(data.train)} training images are fewer than one batch per process "
                          f"({cfg.batch_size} x {world})")
    wk = cfg.workers
    loader_args = dict(batch_size=cfg.batch_size, sampler=sampler, num_workers=wk, drop_last=True,
                       persistent_workers=False, pin_memory=device.type == "cuda")
    val_loader = DataLoader(Subset(data.val, shard(len(data.val), rank, world)), batch_size=cfg.batch_size,
                            num_workers=wk, shuffle=False)
    micro = per_rank // cfg.batch_size
    if cfg.max_steps_per_epoch:
        micro = min(micro, cfg.max_steps_per_epoch * cfg.accum_steps)
    steps = max(micro // cfg.accum_steps, 1)
    return sampler, loader_args, val_loader, steps * cfg.accum_steps, steps


def build_run(inputs: _Inputs, out: Path, device, rank: int, world: int) -> _Run:
    """Place the model, make the loaders and the optimisation (optimizer, schedule, AMP, mixing, losses)."""
    cfg = inputs.cfg
    model, ddp, fwd, ema, frozen = _place_model(inputs.model, cfg, device, world, rank == 0)
    sampler, loader_args, val_loader, micro_per_epoch, steps_per_epoch = _loaders(cfg, inputs.data, device, rank,
                                                                                  world)
    global_batch = cfg.batch_size * world * cfg.accum_steps
    lr, lr_source = effective_lr(cfg, global_batch)
    optimizer = create_optimizer(model, cfg, lr)
    sched = LRSchedule(optimizer, lr, steps_per_epoch, cfg.epochs, cfg.sched, cfg.warmup_epochs,
                       cfg.warmup_start_lr, cfg.decay_epochs, cfg.decay_gamma, cfg.min_lr)
    use_cuda_amp = cfg.amp and device.type == "cuda"
    amp_dtype = torch.float16 if use_cuda_amp else torch.bfloat16
    erasing = None
    if cfg.random_erasing > 0:
        from torchvision.transforms import v2
        erasing = v2.RandomErasing(cfg.random_erasing, scale=(0.02, 1 / 3), ratio=(0.3, 1 / 0.3), value="random")
    return _Run(
        cfg=cfg, out=out, device=device, rank=rank, world=world, inputs=inputs, model=model, ddp=ddp, fwd=fwd,
        ema=ema, frozen=frozen, sampler=sampler, loader_args=loader_args, val_loader=val_loader,
        micro_per_epoch=micro_per_epoch, steps_per_epoch=steps_per_epoch, global_batch=global_batch, lr=lr,
        lr_source=lr_source,
        optimizer=optimizer, sched=sched, scaler=torch.amp.GradScaler("cuda", enabled=use_cuda_amp),
        amp_ctx=(lambda: torch.autocast(device.type, dtype=amp_dtype)) if cfg.amp else nullcontext,
        mixer=MixUpCutMix(inputs.num_classes, cfg.mixup_alpha, cfg.cutmix_alpha, cfg.mixup_prob,
                          cfg.cutmix_prob, cfg.label_smoothing),
        distill=DistillationLoss(cfg.distill_loss, cfg.distill_temperature) if inputs.teacher else None,
        normalizer=Normalizer(inputs.eval_cfg["mean"], inputs.eval_cfg["std"]).to(device), erasing=erasing)


def restore(r: _Run, resume: dict) -> None:
    """Continue where ``resume`` (a last.pt) stopped: weights, optimizer, schedule, scaler, EMA, counters, RNGs."""
    path = r.cfg.resume
    try:
        check_optimizer_state(resume["optimizer"], r.optimizer, path)
    except ValueError as e:
        raise ConfigError(f"--resume {e}") from None
    parts = [(r.model, "model"), (r.optimizer, "optimizer"), (r.sched, "scheduler"), (r.scaler, "scaler")]
    ema_key = next((k for k in EMA_KEYS if resume.get(k) is not None), None)  # "ema": an older train.py's
    if r.ema is not None and ema_key is not None:
        parts.append((r.ema.module, ema_key))
    for target, key in parts:
        try:
            target.load_state_dict(resume[key])
        except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as e:
            raise ConfigError(f"--resume {path} cannot be resumed: its '{key}' does not load "
                              f"({type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''})"
                              ) from None
    r.start_epoch, r.start_micro = resume["epoch"], resume["micro_in_epoch"]
    r.best, r.global_step = resume["best_top1"], resume["global_step"]
    set_rng_state(resume["rng"][r.rank] if r.rank < len(resume["rng"]) else resume["rng"][0])
    if r.main:
        print(f"resumed from {r.cfg.resume}: epoch {r.start_epoch}, batch {r.start_micro}, step {r.global_step}")
        summary = r.out / "summary.csv"
        if summary.exists():  # drop rows of epochs the checkpoint does not contain
            rows = [row for row in csv.DictReader(open(summary)) if int(row["epoch"]) <= r.start_epoch]
            text = io.StringIO()
            w = csv.DictWriter(text, SUMMARY_FIELDS)
            w.writeheader()
            w.writerows(rows)
            atomic_write(summary, text.getvalue())


# ---------------------------------------------------------------------------------------------- checkpoints

def _describe(r: _Run) -> dict:
    """What makes a checkpoint self-describing: the model, its classes and input, and its preprocessing."""
    cfg = r.cfg
    return {"hgzoo_checkpoint": CHECKPOINT_VERSION, "model_name": cfg.model, "num_classes": r.inputs.num_classes,
            "in_chans": cfg.in_chans, "img_size": cfg.img_size, "class_names": r.inputs.data.class_names,
            "data_config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in r.inputs.eval_cfg.items()},
            "config": cfg.to_dict()}


def save_last(r: _Run, epoch: int, micro: int) -> None:
    """``last.pt``: everything ``--resume`` needs (every rank's RNG states gathered on rank 0)."""
    rngs = [None] * r.world
    if r.world > 1:
        dist.all_gather_object(rngs, rng_state())
    else:
        rngs = [rng_state()]
    if not r.main:
        return
    atomic_save({
        **_describe(r), "model": unwrap(r.model).state_dict(), "optimizer": r.optimizer.state_dict(),
        "scheduler": r.sched.state_dict(), "scaler": r.scaler.state_dict(),
        "state_dict_ema": r.ema.module.state_dict() if r.ema else None, "epoch": epoch, "micro_in_epoch": micro,
        "global_step": r.global_step, "best_top1": r.best, "rng": rngs,
    }, r.out / "last.pt")


def best_state(r: _Run, epoch: int, top1: float, top5: float) -> dict:
    """What ``best.pt`` (and each ``checkpoint-<epoch>.pt`` of ``--checkpoint-hist``) holds: the weights (and EMA
    weights) of an evaluated epoch, with their accuracy."""
    return {**_describe(r), "model": unwrap(r.model).state_dict(),
            "state_dict_ema": r.ema.module.state_dict() if r.ema else None, "epoch": epoch, "top1": top1, "top5": top5}


def recover_history(r: _Run) -> CheckpointHistory:
    """The kept checkpoints as the run folder's files record them, for a run that continues after its start epoch."""
    try:
        history, removed = CheckpointHistory.recover(r.out, r.cfg.checkpoint_hist, r.start_epoch)
    except (UnsafePickleError, CorruptCheckpointError, ValueError) as e:
        raise _checkpoint_error("--resume" if r.cfg.resume else "--output", str(r.out), e) from None
    if removed:  # of epochs after last.pt's (a run killed between the two), copies, or beyond --checkpoint-hist
        print(f"{r.out}: removed {', '.join(removed)}, not among the kept epochs up to {r.start_epoch}")
    return history


# ---------------------------------------------------------------------------------------------- the loop

def _loss(r: _Run, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The batch's loss: soft cross-entropy on mixed targets, or the distillation loss against the teacher."""
    labeled = y >= 0
    x, soft = r.mixer(x, y.clamp_min(0))
    if r.cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with r.amp_ctx():
        logits = r.fwd(x)
    if r.distill is None:
        return F.cross_entropy(logits.float(), soft)  # soft targets: torch's cross-entropy takes them
    with torch.no_grad(), r.amp_ctx():
        t_logits = r.inputs.teacher(x)
    loss = r.distill(logits, t_logits)
    if r.cfg.distill_alpha > 0 and labeled.any():
        loss = loss + r.cfg.distill_alpha * F.cross_entropy(logits[labeled].float(), soft[labeled])
    return loss


def _optimizer_step(r: _Run) -> None:
    if r.cfg.clip_grad:
        r.scaler.unscale_(r.optimizer)
        nn.utils.clip_grad_norm_(r.model.parameters(), r.cfg.clip_grad)
    r.scaler.step(r.optimizer)
    r.scaler.update()
    r.optimizer.zero_grad(set_to_none=True)
    r.sched.step()
    r.global_step += 1
    if r.ema is not None:
        r.ema.update(r.model)


def train_one_epoch(r: _Run, epoch: int) -> dict:
    """One epoch (from ``r.start_micro`` when resumed mid-epoch); returns its mean loss, images and seconds."""
    cfg, t0 = r.cfg, time.time()
    r.sampler.set_epoch(epoch)
    r.sampler.start = r.start_micro * cfg.batch_size
    r.model.train()
    for m in r.frozen:
        m.eval()
    total_loss, seen, micro = 0.0, 0, r.start_micro
    bar = _progress(r, epoch) if r.main and cfg.progress else None
    for x, y in DataLoader(r.inputs.data.train, **r.loader_args):
        if micro >= r.micro_per_epoch:
            break
        x, y = r.normalizer(x.to(r.device, non_blocking=True)), y.to(r.device)
        if r.erasing is not None:
            x = torch.stack([r.erasing(img) for img in x])
        sync = (micro + 1) % cfg.accum_steps == 0
        with r.ddp.no_sync() if (r.world > 1 and not sync) else nullcontext():
            loss = _loss(r, x, y)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {loss.item()} at epoch {epoch + 1}, batch {micro}")
            r.scaler.scale(loss / cfg.accum_steps).backward()
        micro += 1
        total_loss += loss.item() * len(x)
        seen += len(x)
        if sync:
            _optimizer_step(r)
            if cfg.checkpoint_every and r.global_step % cfg.checkpoint_every == 0 and micro < r.micro_per_epoch:
                save_last(r, epoch, micro)
        if bar is not None:
            bar.update(1)
            if micro % max(cfg.log_interval, 1) == 0 or micro == r.micro_per_epoch:
                bar.set_postfix(loss=f"{total_loss / max(seen, 1):.4f}", lr=f"{r.sched.lr:.4g}",
                                img_s=f"{seen * r.world / max(time.time() - t0, 1e-9):.0f}")
    if bar is not None:
        bar.close()
    r.start_micro = 0
    stats = torch.tensor([total_loss, seen], dtype=torch.float64)
    if r.world > 1:
        dist.all_reduce(stats)
    return {"loss": stats[0].item() / max(stats[1].item(), 1), "images": stats[1].item(), "seconds": time.time() - t0}


def _progress(r: _Run, epoch: int):
    from tqdm import tqdm

    return tqdm(total=r.micro_per_epoch, initial=r.start_micro, desc=f"epoch {epoch + 1}/{r.cfg.epochs}",
                dynamic_ncols=True, file=sys.stdout, mininterval=2.0)


class _Logger:
    def __init__(self, out: Path, tensorboard: bool) -> None:
        self.out, self.writer = out, None
        if tensorboard:  # checked before training by prepare_output
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out / "tb"))

    def epoch(self, row: dict) -> None:
        path = self.out / "summary.csv"
        new = not path.exists()
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, SUMMARY_FIELDS)
            if new:
                w.writeheader()
            w.writerow({k: "" if row.get(k) is None else row[k] for k in SUMMARY_FIELDS})
        if self.writer:
            for k, v in row.items():
                if k != "epoch" and isinstance(v, (int, float)):
                    self.writer.add_scalar(k, v, row["epoch"])


def plot_summary(out: Path) -> Path | None:
    """``curves.png``: train loss and eval top-1 per epoch, from summary.csv."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = list(csv.DictReader(open(out / "summary.csv")))
    if not rows:
        return None
    ep = [int(r["epoch"]) for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(ep, [float(r["train_loss"]) for r in rows], marker="o")
    a.set(xlabel="epoch", ylabel="train loss", title="loss")
    ev = [r for r in rows if r["eval_top1"] not in ("", "nan")]  # --eval-every N: the evaluated epochs
    b.plot([int(r["epoch"]) for r in ev], [float(r["eval_top1"]) for r in ev], marker="o", label="top-1")
    b.plot([int(r["epoch"]) for r in ev], [float(r["eval_top5"]) for r in ev], marker=".", label="top-5")
    b.set(xlabel="epoch", ylabel="accuracy (%)", title="eval accuracy")
    b.legend()
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=100)
    plt.close(fig)
    return out / "curves.png"


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, normalizer: Normalizer, device, channels_last: bool,
             amp_ctx, desc: str | None = None) -> tuple[float, float]:
    """Top-1/top-5 (%) over this rank's shard, summed across ranks; a progress bar named ``desc`` if given."""
    model.eval()
    stats = torch.zeros(3, dtype=torch.float64)
    if desc is not None:
        from tqdm import tqdm

        loader = tqdm(loader, desc=desc, dynamic_ncols=True, file=sys.stdout, mininterval=2.0, leave=False)
    for x, y in loader:
        x = normalizer(x.to(device))
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with amp_ctx():
            logits = model(x).float().cpu()
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        hit = top == y.view(-1, 1)
        stats += torch.tensor([hit[:, 0].sum().item(), hit.any(1).sum().item(), len(y)], dtype=torch.float64)
    if dist.is_initialized():
        dist.all_reduce(stats)
    n = max(stats[2].item(), 1)
    return 100 * stats[0].item() / n, 100 * stats[1].item() / n


def _end_of_epoch(r: _Run, epoch: int, trained: dict, logger) -> None:
    """Evaluate (on eval epochs), keep the best weights, log the row, save last.pt."""
    cfg = r.cfg
    evaluated = (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs
    if evaluated:
        args = (r.val_loader, r.normalizer, r.device, cfg.channels_last, r.amp_ctx)
        bar = r.main and cfg.progress
        r.metrics["top1"], r.metrics["top5"] = evaluate(r.fwd if not cfg.torchcompile else r.ddp, *args,
                                                        desc=f"eval {epoch + 1}" if bar else None)
        if r.ema is not None:
            r.metrics["ema_top1"], _ = evaluate(r.ema.module, *args, desc=f"eval EMA {epoch + 1}" if bar else None)
    top1, top5 = (r.metrics["top1"], r.metrics["top5"]) if evaluated else (math.nan, math.nan)
    r.best = max(r.best, top1) if not math.isnan(top1) else r.best
    if r.main:
        if evaluated:  # best.pt and, with --checkpoint-hist N, the next best epochs
            r.history.add(epoch + 1, top1, lambda: best_state(r, epoch + 1, top1, top5))
        # an epoch without evaluation has no eval figures (blank in summary.csv, not the last epoch's again)
        row = dict(epoch=epoch + 1, train_loss=round(trained["loss"], 5),
                   eval_top1=round(top1, 3) if evaluated else None, eval_top5=round(top5, 3) if evaluated else None,
                   ema_top1=round(r.metrics["ema_top1"], 3) if r.ema and evaluated else None,
                   lr=r.sched.lr, epoch_time_s=round(trained["seconds"], 1),
                   images_per_s=round(trained["images"] / max(trained["seconds"], 1e-9), 1))
        logger.epoch(row)
        print(json.dumps(row))
    save_last(r, epoch + 1, 0)  # after the summary row: a crash in between redoes the epoch, rows deduped


def run(cfg: TrainConfig) -> dict:
    """Train as ``cfg`` says; returns the final metrics. Raises ConfigError on bad input before training."""
    device, rank, world, _ = init_distributed(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)  # on a busy CPU, 1 thread per process is often much faster
    seed = cfg.seed + rank
    random.seed(seed), np.random.seed(seed), torch.manual_seed(seed)
    out = prepare_output(cfg, main=rank == 0)
    try:
        return _run_in(cfg, out, device, rank, world)
    finally:
        if rank == 0:
            unlock_folder(out / LOCK_NAME)


def _run_in(cfg: dict, out: Path, device, rank: int, world: int) -> dict:
    inputs = build_inputs(cfg, device)
    cfg = inputs.cfg
    r = build_run(inputs, out, device, rank, world)
    if inputs.resume is not None:
        restore(r, inputs.resume)
    logger = None
    if r.main:
        r.history = recover_history(r)
        atomic_write(out / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        logger = _Logger(out, cfg.tensorboard)
        n_params = sum(p.numel() for p in r.model.parameters())
        extra = inputs.data.extra
        print(f"{cfg.model}: {n_params / 1e6:.2f}M params, {inputs.num_classes} classes, "
              f"{len(inputs.data.train)} train images{f' ({len(extra)} unlabeled)' if extra is not None else ''}, "
              f"{len(inputs.data.val)} eval; {'timm init; ' if cfg.init == 'timm' else ''}"
              f"{world} process(es) on {device}; global batch {r.global_batch}; "
              f"{r.lr_source}; {r.steps_per_epoch} steps/epoch; output {out}")
    for epoch in range(r.start_epoch, cfg.epochs):
        _end_of_epoch(r, epoch, train_one_epoch(r, epoch), logger)
    if r.main and cfg.plot and (out / "summary.csv").exists():
        plot_summary(out)
    if dist.is_initialized():
        dist.barrier()
    return {**r.metrics, "best_top1": r.best, "output": str(out)}
