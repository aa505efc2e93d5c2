"""The training run: checks, model/teacher set-up, the loop (AMP, accumulation, EMA, DDP), eval, checkpoints."""
from __future__ import annotations

import csv
import json
import math
import random
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.utils.data import DataLoader, Subset

import hgzoo

from .._builder import state_dict_of
from .._files import CheckpointMismatchError, CorruptCheckpointError, UnsafePickleError, safe_load

from ..data import Normalizer
from ..data.mixup import MixUpCutMix, soft_cross_entropy
from .config import ConfigError, canonical_model_name
from .data import ResumableSampler, build_datasets, eval_data_config, shard
from .optim import LRSchedule, create_optimizer, freeze_units
from .utils import DistillationLoss, ModelEMA, atomic_save, init_distributed, read_train_state, rng_state, set_rng_state, unwrap

__all__ = ["run"]

SUMMARY_FIELDS = ["epoch", "train_loss", "eval_top1", "eval_top5", "ema_top1", "lr", "epoch_time_s", "images_per_s"]


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


def _create_model(cfg: dict, num_classes: int) -> nn.Module:
    kw = dict(num_classes=num_classes, in_chans=cfg["in_chans"], drop_path_rate=cfg["drop_path_rate"])
    if cfg["drop_rate"] is not None:
        kw["drop_rate"] = cfg["drop_rate"]
    try:
        return hgzoo.create_model(cfg["model"], pretrained=cfg["pretrained"], **kw)
    except (KeyError, RuntimeError) as e:
        raise ConfigError(f"cannot create {cfg['model']}: {e}") from None


def _load_initial(model: nn.Module, path: str) -> None:
    """Fine-tuning start: every weight of the checkpoint (any format the safe reader reads, .pdparams converted);
    a classifier of another size is re-initialised (with a warning), a stem for other channels adapted."""
    if not Path(path).is_file():
        raise ConfigError(f"--initial-checkpoint {path} not found")
    try:
        hgzoo.load_checkpoint(model, path)
    except (UnsafePickleError, CorruptCheckpointError, CheckpointMismatchError, OSError, ValueError) as e:
        raise _checkpoint_error("--initial-checkpoint", path, e) from None


def _build_teacher(cfg: dict, num_classes: int, device) -> nn.Module:
    """The distillation teacher, from ``--teacher`` and ``--teacher-checkpoint``, frozen in eval mode."""
    if not hgzoo.is_model(cfg["teacher"]):
        raise ConfigError(f"unknown teacher model {cfg['teacher']!r}; see python -m hgzoo models")
    path = cfg["teacher_checkpoint"]
    obj = _read_file(path, "--teacher-checkpoint")
    meta = obj if isinstance(obj, dict) else {}
    teacher = hgzoo.create_model(cfg["teacher"], num_classes=num_classes,
                                 in_chans=int(meta.get("in_chans") or cfg["in_chans"]))
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


class _Logger:
    def __init__(self, out: Path, tensorboard: bool) -> None:
        self.out, self.writer = out, None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.writer = SummaryWriter(str(out / "tb"))
            except ImportError:
                print("warning: --tensorboard needs the tensorboard package; skipped", file=sys.stderr)

    def epoch(self, row: dict) -> None:
        path = self.out / "summary.csv"
        new = not path.exists()
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, SUMMARY_FIELDS)
            if new:
                w.writeheader()
            w.writerow({k: row.get(k, "") for k in SUMMARY_FIELDS})
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
    b.plot(ep, [float(r["eval_top1"]) for r in rows], marker="o", label="top-1")
    b.plot(ep, [float(r["eval_top5"]) for r in rows], marker=".", label="top-5")
    b.set(xlabel="epoch", ylabel="accuracy (%)", title="eval accuracy")
    b.legend()
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=100)
    plt.close(fig)
    return out / "curves.png"


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, normalizer: Normalizer, device, channels_last: bool,
             amp_ctx) -> tuple[float, float]:
    """Top-1/top-5 (%) over this rank's shard, summed across ranks."""
    model.eval()
    stats = torch.zeros(3, dtype=torch.float64)
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


def run(cfg: dict) -> dict:
    """Train as ``cfg`` says; returns the final metrics. Raises ConfigError on bad input before training."""
    device, rank, world, _ = init_distributed(cfg["device"])
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])  # on a busy CPU, 1 thread per process is often much faster
    main = rank == 0
    seed = cfg["seed"] + rank
    random.seed(seed), np.random.seed(seed), torch.manual_seed(seed)

    # ---- inputs, checked before anything trains ----
    cfg["model"] = canonical_model_name(cfg["model"])  # a saved config may hold any spelling
    pretrained_cfg = getattr(hgzoo.create_model(cfg["model"], num_classes=0), "pretrained_cfg", None)
    eval_cfg = eval_data_config(cfg, pretrained_cfg)
    train_ds, val_ds, n_data, extra = build_datasets(cfg, eval_cfg)
    num_classes = cfg["num_classes"] if cfg["num_classes"] is not None else n_data
    cfg["num_classes"] = num_classes
    model = _create_model(cfg, num_classes)
    if cfg["initial_checkpoint"]:
        _load_initial(model, cfg["initial_checkpoint"])
    teacher = _build_teacher(cfg, num_classes, device) if cfg["teacher"] else None
    resume = None
    if cfg["resume"]:
        if not Path(cfg["resume"]).is_file():
            raise ConfigError(f"--resume {cfg['resume']} not found")
        try:
            resume = read_train_state(cfg["resume"], cfg["model"])
        except (UnsafePickleError, CorruptCheckpointError, OSError, ValueError) as e:
            raise _checkpoint_error("--resume", cfg["resume"], e) from None
        _check_compatible(model, resume["model"], f"--resume {cfg['resume']}")

    out = Path(cfg["output"] or f"output/{cfg['model']}")
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump({k: v for k, v in cfg.items()}, sort_keys=False))

    # ---- model on the device ----
    frozen = freeze_units(model, cfg["freeze"]) if cfg["freeze"] else []
    if cfg["sync_bn"] and world > 1:
        if device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        elif main:
            print("warning: --sync-bn needs CUDA (torch's SyncBatchNorm has no CPU/gloo path); BN stays per process",
                  file=sys.stderr)
    model.to(device)
    if cfg["channels_last"]:
        model.to(memory_format=torch.channels_last)
    ema = ModelEMA(model, cfg["ema_decay"]) if cfg["ema"] else None
    ddp = nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None) \
        if world > 1 else model
    fwd = torch.compile(ddp) if cfg["torchcompile"] else ddp

    # ---- data ----
    sampler = ResumableSampler(train_ds, world, rank, shuffle=True, seed=cfg["seed"], drop_last=True)
    per_rank = len(train_ds) // world
    if per_rank < cfg["batch_size"]:
        raise ConfigError(f"{len(train_ds)} training images are fewer than one batch per process "
                          f"({cfg['batch_size']} x {world})")
    wk = cfg["workers"]
    train_loader_args = dict(batch_size=cfg["batch_size"], sampler=sampler, num_workers=wk, drop_last=True,
                             persistent_workers=False, pin_memory=device.type == "cuda")
    val_loader = DataLoader(Subset(val_ds, shard(len(val_ds), rank, world)), batch_size=cfg["batch_size"],
                            num_workers=wk, shuffle=False)
    micro_per_epoch = per_rank // cfg["batch_size"]
    if cfg["max_steps_per_epoch"]:
        micro_per_epoch = min(micro_per_epoch, cfg["max_steps_per_epoch"] * cfg["accum_steps"])
    steps_per_epoch = max(micro_per_epoch // cfg["accum_steps"], 1)
    micro_per_epoch = steps_per_epoch * cfg["accum_steps"]

    # ---- optimisation ----
    global_batch = cfg["batch_size"] * world * cfg["accum_steps"]
    lr = cfg["lr"] * (global_batch / cfg["recipe_batch_size"] if cfg["recipe_batch_size"] else 1.0)
    optimizer = create_optimizer(model, cfg, lr)
    sched = LRSchedule(optimizer, lr, steps_per_epoch, cfg["epochs"], cfg["sched"], cfg["warmup_epochs"],
                       cfg["warmup_start_lr"], cfg["decay_epochs"], cfg["decay_gamma"], cfg["min_lr"])
    use_cuda_amp = cfg["amp"] and device.type == "cuda"
    amp_dtype = torch.float16 if use_cuda_amp else torch.bfloat16
    scaler = torch.amp.GradScaler("cuda", enabled=use_cuda_amp)
    amp_ctx = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if cfg["amp"] else nullcontext
    mixer = MixUpCutMix(num_classes, cfg["mixup_alpha"], cfg["cutmix_alpha"], cfg["mixup_prob"], cfg["cutmix_prob"],
                        cfg["label_smoothing"])
    distill = DistillationLoss(cfg["distill_loss"], cfg["distill_temperature"]) if teacher is not None else None
    normalizer = Normalizer(eval_cfg["mean"], eval_cfg["std"]).to(device)
    erasing = None
    if cfg["random_erasing"] > 0:
        from torchvision.transforms import v2
        erasing = v2.RandomErasing(cfg["random_erasing"], scale=(0.02, 1 / 3), ratio=(0.3, 1 / 0.3), value="random")

    start_epoch, start_micro, best, global_step = 0, 0, -1.0, 0
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        scaler.load_state_dict(resume["scaler"])
        if ema is not None and resume.get("ema") is not None:
            ema.module.load_state_dict(resume["ema"])
        start_epoch, start_micro = resume["epoch"], resume["micro_in_epoch"]
        best, global_step = resume["best_top1"], resume["global_step"]
        rng = resume["rng"][rank] if rank < len(resume["rng"]) else resume["rng"][0]
        set_rng_state(rng)
        if main:
            print(f"resumed from {cfg['resume']}: epoch {start_epoch}, batch {start_micro}, step {global_step}")
            summary = out / "summary.csv"
            if summary.exists():  # drop rows of epochs the checkpoint does not contain
                rows = [r for r in csv.DictReader(open(summary)) if int(r["epoch"]) <= start_epoch]
                with open(summary, "w", newline="") as f:
                    w = csv.DictWriter(f, SUMMARY_FIELDS)
                    w.writeheader()
                    w.writerows(rows)

    def save(name: str, epoch: int, micro: int) -> None:
        rngs = [None] * world
        if world > 1:
            dist.all_gather_object(rngs, rng_state())
        else:
            rngs = [rng_state()]
        if not main:
            return
        atomic_save({
            "model_name": cfg["model"], "num_classes": num_classes, "in_chans": cfg["in_chans"],
            "model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": sched.state_dict(), "scaler": scaler.state_dict(),
            "ema": ema.module.state_dict() if ema else None, "epoch": epoch, "micro_in_epoch": micro,
            "global_step": global_step, "best_top1": best, "rng": rngs, "config": cfg,
        }, out / name)

    logger = _Logger(out, cfg["tensorboard"]) if main else None
    if main:
        n_params = sum(p.numel() for p in model.parameters())
        print(f"{cfg['model']}: {n_params / 1e6:.2f}M params, {num_classes} classes, {len(train_ds)} train images"
              f"{f' ({len(extra)} unlabeled)' if extra is not None else ''}, {len(val_ds)} eval; {world} process(es) "
              f"on {device}; global batch {global_batch}, lr {lr:g}; {steps_per_epoch} steps/epoch; output {out}")

    top1 = top5 = ema_top1 = float("nan")
    for epoch in range(start_epoch, cfg["epochs"]):
        t0 = time.time()
        sampler.set_epoch(epoch)
        sampler.start = start_micro * cfg["batch_size"]
        loader = DataLoader(train_ds, **train_loader_args)
        model.train()
        for m in frozen:
            m.eval()
        total_loss, seen, n_loss = 0.0, 0, 0
        bar = None
        if main and cfg["progress"]:
            from tqdm import tqdm
            bar = tqdm(total=micro_per_epoch, initial=start_micro, desc=f"epoch {epoch + 1}/{cfg['epochs']}",
                       dynamic_ncols=True, file=sys.stdout, mininterval=2.0)
        micro = start_micro
        for x, y in loader:
            if micro >= micro_per_epoch:
                break
            x, y = normalizer(x.to(device, non_blocking=True)), y.to(device)
            if erasing is not None:
                x = torch.stack([erasing(img) for img in x])
            labeled = y >= 0
            x, soft = mixer(x, y.clamp_min(0))
            if cfg["channels_last"]:
                x = x.contiguous(memory_format=torch.channels_last)
            sync = (micro + 1) % cfg["accum_steps"] == 0
            ctx = ddp.no_sync() if (world > 1 and not sync) else nullcontext()
            with ctx:
                with amp_ctx():
                    logits = fwd(x)
                if distill is not None:
                    with torch.no_grad(), amp_ctx():
                        t_logits = teacher(x)
                    loss = distill(logits, t_logits)
                    if cfg["distill_alpha"] > 0 and labeled.any():
                        loss = loss + cfg["distill_alpha"] * soft_cross_entropy(logits[labeled], soft[labeled])
                else:
                    loss = soft_cross_entropy(logits, soft)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss is {loss.item()} at epoch {epoch + 1}, batch {micro}")
                scaler.scale(loss / cfg["accum_steps"]).backward()
            micro += 1
            total_loss += loss.item() * len(x)
            seen += len(x)
            if sync:
                if cfg["clip_grad"]:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), cfg["clip_grad"])
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                sched.step()
                global_step += 1
                if ema is not None:
                    ema.update(model)
                if cfg["checkpoint_every"] and global_step % cfg["checkpoint_every"] == 0 and micro < micro_per_epoch:
                    save("last.pt", epoch, micro)
            if bar is not None:
                bar.update(1)
                if micro % max(cfg["log_interval"], 1) == 0 or micro == micro_per_epoch:
                    el = time.time() - t0
                    bar.set_postfix(loss=f"{total_loss / max(seen, 1):.4f}", lr=f"{sched.lr:.4g}",
                                    img_s=f"{seen * world / max(el, 1e-9):.0f}")
        if bar is not None:
            bar.close()
        stats = torch.tensor([total_loss, seen], dtype=torch.float64)
        if world > 1:
            dist.all_reduce(stats)
        train_loss = stats[0].item() / max(stats[1].item(), 1)
        train_time = time.time() - t0
        start_micro = 0
        if (epoch + 1) % cfg["eval_every"] == 0 or epoch + 1 == cfg["epochs"]:
            top1, top5 = evaluate(fwd if not cfg["torchcompile"] else ddp, val_loader, normalizer, device,
                                  cfg["channels_last"], amp_ctx)
            if ema is not None:
                ema_top1, _ = evaluate(ema.module, val_loader, normalizer, device, cfg["channels_last"], amp_ctx)
        is_best = top1 > best
        best = max(best, top1) if not math.isnan(top1) else best
        if main:
            if is_best:
                atomic_save({"model_name": cfg["model"], "num_classes": num_classes, "in_chans": cfg["in_chans"],
                             "model": unwrap(model).state_dict(), "ema": ema.module.state_dict() if ema else None,
                             "epoch": epoch + 1, "top1": top1, "top5": top5, "config": cfg}, out / "best.pt")
            row = dict(epoch=epoch + 1, train_loss=round(train_loss, 5), eval_top1=round(top1, 3),
                       eval_top5=round(top5, 3), ema_top1=round(ema_top1, 3) if ema else "", lr=sched.lr,
                       epoch_time_s=round(time.time() - t0, 1), images_per_s=round(stats[1].item() / train_time, 1))
            logger.epoch(row)
            print(json.dumps(row))
        save("last.pt", epoch + 1, 0)  # after the summary row: a crash in between redoes the epoch, rows deduped
    if main and cfg["plot"] and (out / "summary.csv").exists():
        plot_summary(out)
    if dist.is_initialized():
        dist.barrier()
    return {"top1": top1, "top5": top5, "best_top1": best, "ema_top1": ema_top1, "output": str(out)}
