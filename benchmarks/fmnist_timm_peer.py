"""The peer figure for the Fashion-MNIST from-scratch run: the same hgzoo recipe through timm's own ``train.py``.

hgzoo's run is ``python train.py --config fashion_mnist --output runs/fmnist``. This runs the recipe's values
through timm's ``train.py`` (not in timm's wheel: download it from timm's GitHub at tag v1.0.31) on timm's port of
the recipe's model (hgzoo's timm name table: ``pphgnetv2_b0`` → ``hgnetv2_b0``, ``resnet18_vd`` → ``resnet18d``,
``pplcnetv2_small`` → ``lcnetv2_small``), on the same Debian Fashion-MNIST files, and prints one table: final
top-1 (model and EMA), best top-1, training images/s and wall time, with hgzoo's run beside it
(``--hgzoo-summary runs/fmnist/summary.csv``) and the ratio of images/s.

    python benchmarks/fmnist_timm_peer.py --timm-train path/to/timm/train.py --output runs/fmnist_timm \\
        [--config fashion_mnist] [--seed 0] [--hgzoo-summary runs/fmnist/summary.csv] [--dry-run]

The data: torchvision's ``FashionMNIST`` (timm's ``--dataset torch/fashion_mnist``) reads unpacked IDX files from
``ROOT/FashionMNIST/raw/``; the Debian ``*-ubyte.gz`` files are unpacked into ``OUTPUT/data`` (no download).
Every recipe value timm cannot take exactly is printed as a note (and saved in ``OUTPUT/peer.json``).

Images/s is timm's own per-update timing (its log's running average of the update time, data wait included, eval
excluded: ``batch size / average update time``, the last log line of each epoch, averaged over the epochs), the
same span as hgzoo's ``images_per_s`` (trained images / training seconds of the epoch, averaged over the epochs).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hgzoo.cli.base import BadInput, RunFailed, guarded_main, non_negative_int  # noqa: E402
from hgzoo.files import atomic_write  # noqa: E402

__all__ = ["TimmRun", "map_recipe", "timm_model_name", "prepare_data", "parse_log", "main"]

_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
#: Recipe keys that have no timm counterpart when set to anything but these values (key → (default, why)).
_UNMAPPED = {
    "lr_mult_list": (None, "per-stage LR multipliers: timm's train.py has none"),
    "lab_lr": (1.0, "PP-HGNetV2's learnable-affine LR multiplier: timm's train.py has none"),
    "freeze": (0, "freezing stages: timm's train.py has none"),
    "teacher": (None, "distillation: timm's train.py has none"),
    "extra_data": (None, "distillation data: timm's train.py has none"),
    "pretrained": (False, "a from-scratch comparison: --pretrained is not passed"),
    "initial_checkpoint": (None, "hgzoo checkpoints are not timm's layout: not passed"),
    "eval_every": (1, "timm's train.py evaluates every epoch"),
    "max_steps_per_epoch": (0, "timm's train.py has no step cap"),
    "torchcompile": (False, "not passed (timm: --torchcompile)"),
}
# Shim for a train.py that predates timm's --device flag (the stored 2023 copy): its validate() defaults to
# device=cuda and calls torch.cuda.synchronize() unconditionally, which raises on a machine without CUDA. The shim
# makes that call a no-op there (there is nothing to synchronize), then runs the unmodified script as __main__.
_SHIM = ("import os, runpy, sys, torch\n"
         "if not torch.cuda.is_available():\n"
         "    torch.cuda.synchronize = lambda *a, **k: None\n"
         "sys.argv = sys.argv[1:]\n"
         "sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[0])))\n"
         "runpy.run_path(sys.argv[0], run_name='__main__')\n")


@dataclass(frozen=True)
class TimmRun:
    """timm's train.py invocation for a recipe: flags, ``--config`` YAML values, environment, and the notes."""

    flags: tuple[str, ...]
    config: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    expected: dict = field(default_factory=dict)  # args.yaml values timm must end up with
    shim: bool = False


def timm_model_name(model: str) -> str:
    """timm's port of an hgzoo model (``pphgnetv2_b0`` → ``hgnetv2_b0``); BadInput when timm has none."""
    from hgzoo.convert.timm import timm_archs_of
    from hgzoo.train.config import ConfigError, canonical_model_name

    try:
        arch = canonical_model_name(model, "model").partition(".")[0]
    except ConfigError as e:
        raise BadInput(str(e)) from None
    archs = timm_archs_of(arch)
    if not archs:
        raise BadInput(f"model {model}: timm has no port of {arch}; pick a recipe model timm also has "
                       f"(pphgnetv2_b*, pphgnet_*, pplcnetv2_*, resnet*_vd, hrnet_w*_c)")
    return archs[0].timm


def _default_drop_rate(model: str) -> float:
    """The hgzoo builder's default dropout (what hgzoo's train.py uses when the recipe leaves drop_rate unset)."""
    import inspect

    from hgzoo import models  # noqa: F401
    from hgzoo.registry import model_entrypoint, resolve_model_name

    param = inspect.signature(model_entrypoint(resolve_model_name(model)[0])).parameters.get("drop_rate")
    return float(param.default) if param is not None else 0.0


def _lr_flags(cfg: dict, add, config: dict, notes: list, expected: dict) -> None:
    """LR, schedule and warmup."""
    from hgzoo.train.config import effective_lr

    lr, how = effective_lr(cfg, cfg["batch_size"] * cfg["accum_steps"])
    add("--lr", repr(lr))
    expected["lr"] = lr
    if cfg["lr"] is None:
        notes.append(f"{how}: passed to timm as the absolute --lr")
    if cfg["sched"] == "cosine":
        add("--sched", "cosine", "--sched-on-updates", "--min-lr", repr(cfg["min_lr"]))
    elif cfg["sched"] == "constant":
        add("--sched", "constant", "--sched-on-updates")
    else:
        milestones = [int(e) for e in cfg["decay_epochs"]]
        add("--sched", "multistep", "--sched-on-updates", "--decay-milestones", *milestones,
            "--decay-rate", repr(cfg["decay_gamma"]))
        if milestones != list(cfg["decay_epochs"]):
            notes.append(f"decay_epochs {cfg['decay_epochs']}: timm's --decay-milestones are whole epochs")
    warmup = float(cfg["warmup_epochs"])
    add("--warmup-lr", repr(cfg["warmup_start_lr"]), "--cooldown-epochs", 0)
    if warmup.is_integer():
        add("--warmup-epochs", int(warmup))
    else:
        config["warmup_epochs"] = warmup
        notes.append(f"warmup_epochs {warmup:g}: timm's --warmup-epochs takes whole numbers, so it is given in "
                     f"the --config YAML (argparse keeps a config default as given) and, with --sched-on-updates, "
                     f"timm warms up for {warmup:g} x updates per epoch steps, as hgzoo does")
    expected["warmup_epochs"] = int(warmup) if warmup.is_integer() else warmup
    notes.append("cosine: timm's cosine runs over all steps with the warmup inside it (--warmup-prefix off)")


def _aug_flags(cfg: dict, add, notes: list) -> None:
    """Training and evaluation preprocessing."""
    size = cfg["img_size"]
    add("--input-size", 1, size, size, "--in-chans", 1)
    add("--scale", repr(float(cfg["crop_scale_min"])), "1.0", "--ratio", repr(3 / 4), repr(4 / 3))
    add("--hflip", repr(float(cfg["hflip"])), "--vflip", "0.0", "--color-jitter", "0.0")
    interp = cfg["interpolation"]
    add("--interpolation", cfg["eval_interpolation"] or interp, "--train-interpolation", interp)
    short = cfg["eval_resize_short"] or size
    add("--crop-pct", repr(size / short))
    mean = cfg["mean"] or [0.5]
    std = cfg["std"] or [0.5]
    add("--mean", *map(repr, map(float, mean)), "--std", *map(repr, map(float, std)))
    if cfg["train_crop"] == "timm":
        notes.append("random-resized crop: timm's RandomResizedCropAndInterpolation on both sides (hgzoo's "
                     "TimmRandCrop draws the same boxes); timm resizes the crop with PIL, hgzoo with "
                     f"{cfg['resize_backend']}")
    else:
        notes.append("random-resized crop: timm's RandomResizedCropAndInterpolation (log-uniform aspect, 10 tries, "
                     "then a centre crop), hgzoo's PaddleClas RandCropImage (aspect sqrt-uniform, scale range "
                     "narrowed to fit, no fallback): the same scale/ratio ranges, not the same distribution")
    notes.append(f"resize: timm's PIL {interp} (antialiased), hgzoo's {cfg['resize_backend']} {interp}; "
                 f"eval: the whole image resized to {size} (--crop-pct {size / short:g})")
    notes.append("--color-jitter 0.0: timm still adds a ColorJitter(0, 0, 0) transform, which changes nothing")
    if cfg["randaugment"]:
        add("--aa", cfg["randaugment"])
        notes.append(f"randaugment {cfg['randaugment']}: timm's on both sides (hgzoo's with PaddleClas's settings: "
                     "bicubic, ImageNet-mean fill)")
    if cfg["random_erasing"]:
        add("--reprob", repr(float(cfg["random_erasing"])))
        notes.append("random erasing: timm's (per-pixel noise), not PaddleClas's")
    if cfg["mixup_alpha"] or cfg["cutmix_alpha"]:
        add("--mixup", repr(float(cfg["mixup_alpha"])), "--cutmix", repr(float(cfg["cutmix_alpha"])))
        notes.append("mixup/cutmix: timm's Mixup (--mixup-prob 1, switch 0.5), not PaddleClas's OpSampler "
                     f"probabilities ({cfg['mixup_prob']}, {cfg['cutmix_prob']})")


def _opt_flags(cfg: dict, add, notes: list) -> None:
    """Optimizer, regularisation, EMA, precision and speed."""
    add("--opt", cfg["opt"], "--momentum", repr(float(cfg["momentum"])),
        "--weight-decay", repr(float(cfg["weight_decay"])), "--smoothing", repr(float(cfg["label_smoothing"])))
    if cfg["no_weight_decay"] == "1d":
        notes.append("no_weight_decay 1d: both exempt every 1-D parameter and every bias from weight decay")
    else:
        notes.append(f"no_weight_decay {cfg['no_weight_decay']}: timm's train.py exempts every 1-D parameter (all "
                     "norm weights/biases and every bias) from weight decay; hgzoo exempts "
                     + ("BatchNorm parameters only" if cfg["no_weight_decay"] == "bn" else "nothing"))
    drop = cfg["drop_rate"] if cfg["drop_rate"] is not None else _default_drop_rate(cfg["model"])
    add("--drop", repr(float(drop)))
    if cfg["drop_path_rate"]:  # 0: not passed (timm's lcnetv2 takes no drop_path_rate; None kwargs are dropped)
        add("--drop-path", repr(float(cfg["drop_path_rate"])))
    if drop:
        notes.append(f"dropout {drop:g}: timm's nn.Dropout (scaled in training), hgzoo's Paddle "
                     "downscale_in_infer (scaled at eval): the same regulariser, a different fc scale")
    if cfg["ema"]:
        add("--model-ema", "--model-ema-decay", repr(float(cfg["ema_decay"])))
        notes.append("EMA: timm's summary.csv eval_top1 is the EMA model's; the raw model's top-1 is read from "
                     "its log")
    if cfg["layer_decay"] is not None:
        add("--layer-decay", repr(float(cfg["layer_decay"])))
        notes.append("layer_decay: timm groups layers by its own model's structure, hgzoo by stem + 4 stages")
    if cfg["clip_grad"] is not None:
        add("--clip-grad", repr(float(cfg["clip_grad"])))
    if cfg["accum_steps"] > 1:
        add("--grad-accum-steps", cfg["accum_steps"])
    if cfg["amp"]:
        add("--amp", "--amp-dtype", "bfloat16" if cfg["device"] == "cpu" else "float16")
    if cfg["channels_last"]:
        add("--channels-last")
    add("-j", cfg["workers"])
    if cfg.get("init", "paddle") == "timm":
        notes.append("init timm: both start from timm's initialization convention (timm's own model code here)")
    else:
        notes.append("init paddle: hgzoo starts from PaddleClas's initialization, timm's train.py from timm's "
                     "(hgzoo's --init timm is timm's)")
    for key, (default, why) in _UNMAPPED.items():
        if cfg.get(key, default) != default:
            notes.append(f"{key} {cfg[key]!r}: {why}")


def map_recipe(cfg: dict, data_root: Path, output: Path, seed: int, help_text: str | None) -> TimmRun:
    """timm's train.py flags for an hgzoo recipe (``cfg``: every setting, recipe over defaults).

    ``help_text``: the train.py's ``--help`` output (None: not checked, timm v1.0.31's flags assumed)."""
    if cfg["dataset"] != "fashion_mnist" or int(cfg["in_chans"]) != 1:
        raise BadInput(f"the recipe has dataset {cfg['dataset']!r}, in_chans {cfg['in_chans']}: this peer run is "
                       f"for Fashion-MNIST in grayscale (dataset: fashion_mnist, in_chans: 1)")
    if cfg["epochs"] != int(cfg["epochs"]):
        raise BadInput(f"epochs {cfg['epochs']}: timm's --epochs takes whole epochs")
    flags: list[str] = []
    config: dict = {}
    notes: list[str] = []
    expected: dict = {}

    def add(*items) -> None:
        flags.extend(str(i) for i in items)

    model = timm_model_name(cfg["model"])
    add("--model", model, "--num-classes", int(cfg["num_classes"] or 10))
    add("--data-dir", data_root, "--dataset", "torch/fashion_mnist", "--train-split", "train", "--val-split", "test")
    add("--epochs", int(cfg["epochs"]), "-b", int(cfg["batch_size"]), "--seed", seed)
    add("--output", output, "--experiment", "timm", "--checkpoint-hist", 1)
    _lr_flags(cfg, add, config, notes, expected)
    _aug_flags(cfg, add, notes)
    _opt_flags(cfg, add, notes)
    expected.update(model=model, epochs=int(cfg["epochs"]), batch_size=int(cfg["batch_size"]), seed=seed,
                    smoothing=float(cfg["label_smoothing"]), weight_decay=float(cfg["weight_decay"]),
                    model_ema=bool(cfg["ema"]), hflip=float(cfg["hflip"]))
    if cfg["ema"]:
        expected["model_ema_decay"] = float(cfg["ema_decay"])
    env = {"OMP_NUM_THREADS": str(cfg["threads"]), "MKL_NUM_THREADS": str(cfg["threads"])} if cfg["threads"] else {}
    if cfg["threads"]:
        notes.append(f"threads {cfg['threads']}: timm's train.py has no flag; OMP_NUM_THREADS/MKL_NUM_THREADS set")
    import torch

    device = "cuda" if cfg["device"] == "cuda" or (cfg["device"] == "auto" and torch.cuda.is_available()) else "cpu"
    has_device = help_text is None or "--device" in help_text
    shim = False
    if has_device:
        add("--device", device)
    elif device == "cpu":
        config["device"] = "cpu"
        shim = not torch.cuda.is_available()
        notes.append("this train.py predates timm's --device: 'device: cpu' goes in its --config YAML"
                     + ("; its validate() calls torch.cuda.synchronize() unconditionally, made a no-op by a "
                        "launcher shim on this machine without CUDA (the script itself is run unmodified)"
                        if shim else ""))
    if help_text is not None and "--input-img-mode" in help_text:
        add("--input-img-mode", "L")
    return TimmRun(tuple(flags), config, env, tuple(notes), expected, shim)


def check_flags(flags: tuple[str, ...], help_text: str) -> None:
    """Every ``--flag`` used must be one the train.py accepts."""
    known = set(re.findall(r"(?<![\w-])(-{1,2}[a-zA-Z][\w-]*)", help_text))
    unknown = sorted({f for f in flags if re.fullmatch(r"-{1,2}[a-zA-Z][\w-]*", f)} - known)
    if unknown:
        raise BadInput(f"--timm-train: this train.py does not accept {', '.join(unknown)}; use timm's train.py "
                       f"from tag v1.0.31")


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    atomic_write(path, header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def prepare_data(root: Path, source: Path, train_subset: int, val_subset: int, seed: int) -> Path:
    """Unpack Debian's Fashion-MNIST into torchvision's layout (``root/FashionMNIST/raw/<name>``, unzipped);
    ``train_subset``/``val_subset`` > 0: a fixed random subset (smoke tests only)."""
    from hgzoo.data import FashionMNIST

    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, subset in (("train", train_subset), ("t10k", val_subset)):
        for kind in ("images-idx3", "labels-idx1"):
            _find(source, f"{prefix}-{kind}-ubyte")  # a missing file is a message, not a traceback
        split = FashionMNIST(source, train=prefix == "train")
        images, labels = split.data.numpy(), split.targets.numpy().astype(np.uint8)
        if subset:
            keep = np.sort(np.random.default_rng(seed).permutation(len(labels))[:subset])
            images, labels = images[keep], labels[keep]
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root


def _find(source: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (source / name).is_file():
            return source / name
    raise BadInput(f"Fashion-MNIST file {stem}(.gz) not found in {source}; install Debian's package with "
                   f"`apt-get install dataset-fashion-mnist`")


_TRAIN = re.compile(r"Train: (\d+) \[\s*(\d+)/(\d+) .*?\(([\d.]+)s,\s*([\d.]+)/s\)")
_TEST = re.compile(r"Test( \(EMA\))?: \[\s*(\d+)/(\d+)\].*?Acc@1:\s*[\d.]+ \(\s*([\d.]+)\)")


def parse_log(text: str, batch_size: int) -> list[dict]:
    """Per epoch from timm's log: images/s (batch / the epoch's average update time, last train line), the
    estimated training seconds, and the final model and EMA top-1."""
    epochs: dict[int, dict] = {}
    current = None
    for line in text.splitlines():
        m = _TRAIN.search(line)
        if m:
            current = int(m.group(1))
            avg = float(m.group(4))
            epochs[current] = {"epoch": current + 1, "images_per_s": batch_size / avg if avg else math.nan,
                               "train_s": avg * int(m.group(3)), "top1": math.nan, "ema_top1": math.nan}
            continue
        m = _TEST.search(line)
        if m and current is not None and m.group(2) == m.group(3):
            epochs[current]["ema_top1" if m.group(1) else "top1"] = float(m.group(4))
    return [epochs[k] for k in sorted(epochs)]


def _row(framework: str, model: str, epochs: list[dict], wall_s: float | None) -> dict:
    ips = [e["images_per_s"] for e in epochs if not math.isnan(e["images_per_s"])]
    tops = [v for e in epochs for v in (e["top1"], e["ema_top1"]) if not math.isnan(v)]
    last = epochs[-1] if epochs else {}
    return {"framework": framework, "model": model, "epochs": len(epochs),
            "top1": last.get("top1", math.nan), "ema_top1": last.get("ema_top1", math.nan),
            "best_top1": max(tops) if tops else math.nan,
            "images_per_s": sum(ips) / len(ips) if ips else math.nan,
            "train_s": sum(e["train_s"] for e in epochs), "wall_s": wall_s}


def hgzoo_row(path: Path, model: str) -> dict:
    """hgzoo's summary.csv (the last row of each epoch)."""
    by_epoch: dict[int, dict] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                by_epoch[int(row["epoch"])] = {
                    "epoch": int(row["epoch"]), "top1": float(row["eval_top1"] or "nan"),
                    "ema_top1": float(row.get("ema_top1") or "nan"), "images_per_s": float(row["images_per_s"]),
                    "train_s": float(row["epoch_time_s"])}
            except (KeyError, ValueError) as e:
                raise BadInput(f"--hgzoo-summary {path}: not an hgzoo summary.csv ({e})") from None
    if not by_epoch:
        raise BadInput(f"--hgzoo-summary {path}: no rows")
    return _row("hgzoo", model, [by_epoch[k] for k in sorted(by_epoch)], None)


def format_table(rows: list[dict]) -> str:
    def fmt(v, spec: str) -> str:
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)

    head = f"{'framework':<9} {'model':<16} {'epochs':>6} {'top-1':>7} {'EMA':>7} {'best':>7} " \
           f"{'img/s':>8} {'train s':>8} {'wall s':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['framework']:<9} {r['model']:<16} {r['epochs']:>6} {fmt(r['top1'], '.2f'):>7} "
                     f"{fmt(r['ema_top1'], '.2f'):>7} {fmt(r['best_top1'], '.2f'):>7} "
                     f"{fmt(r['images_per_s'], '.1f'):>8} {fmt(r['train_s'], '.0f'):>8} {fmt(r['wall_s'], '.0f'):>8}")
    if len(rows) == 2 and rows[0]["images_per_s"] and rows[1]["images_per_s"]:
        lines.append(f"images/s, hgzoo / timm: {rows[1]['images_per_s'] / rows[0]['images_per_s']:.2f}x")
    return "\n".join(lines)


def _strict(obj):
    """``obj`` with every NaN as None: peer.json is strict JSON (a figure not measured is null)."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    return obj


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="Exit codes: 0 done, 1 timm's run failed, 2 bad input.")
    p.add_argument("--timm-train", help="timm's train.py (from timm's GitHub, tag v1.0.31; not in the wheel)")
    p.add_argument("--config", default="fashion_mnist", help="an hgzoo recipe: a shipped name or a YAML file")
    p.add_argument("--output", default="runs/fmnist_timm", help="folder for the data, timm's run and peer.json")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the recipe's)")
    p.add_argument("--dry-run", action="store_true", help="print the command and the notes, run nothing")
    p.add_argument("--hgzoo-summary", help="an hgzoo run's summary.csv, printed beside timm's row")
    p.add_argument("--data-dir", default=None, help="the Fashion-MNIST IDX files (default: Debian's)")
    p.add_argument("--epochs", type=non_negative_int, default=0, help="override the recipe's epochs (0: keep)")
    p.add_argument("--train-subset", type=non_negative_int, default=0,
                   help="smoke tests only: train on a fixed random subset of N images (0: all 60,000)")
    p.add_argument("--val-subset", type=non_negative_int, default=0,
                   help="smoke tests only: evaluate on a fixed random subset of N test images (0: all 10,000)")
    return p


def _load_cfg(args: argparse.Namespace) -> tuple[dict, Path]:
    from hgzoo.train.config import DEFAULTS, ConfigError, load_recipe, recipe_path

    try:
        path = recipe_path(args.config)
        cfg = {**DEFAULTS, **load_recipe(path)}
    except ConfigError as e:
        raise BadInput(str(e)) from None
    if args.epochs:
        cfg["epochs"] = args.epochs
    return cfg, path


def _help_text(train_py: str) -> str:
    out = subprocess.run([sys.executable, train_py, "--help"], capture_output=True, text=True, timeout=300)
    if out.returncode != 0 or "--model" not in out.stdout:
        raise BadInput(f"--timm-train {train_py}: `python {train_py} --help` failed: "
                       f"{(out.stderr.strip().splitlines() or ['no output'])[-1]}")
    return out.stdout


def _command(train_py: str, run: TimmRun, config_file: Path) -> list[str]:
    head = [sys.executable, "-c", _SHIM, train_py] if run.shim else [sys.executable, train_py]
    return head + (["--config", str(config_file)] if run.config else []) + list(run.flags)


def _run(cmd: list[str], env: dict, log_path: Path) -> tuple[str, float]:
    """Run timm's train.py, echoing its output; returns the log text and the wall time."""
    start = time.perf_counter()
    lines: list[str] = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env={**os.environ, **env}) as proc:
        for line in proc.stdout:
            lines.append(line)
            print(line, end="", flush=True)
    wall = time.perf_counter() - start
    atomic_write(log_path, "".join(lines))
    if proc.returncode != 0:
        raise RunFailed(f"timm's train.py exited with {proc.returncode}; its log: {log_path}")
    return "".join(lines), wall


def _check_args_yaml(path: Path, expected: dict) -> list[str]:
    """What timm's train.py recorded (its args.yaml) against what was asked: one line per difference."""
    import yaml

    got = yaml.safe_load(path.read_text()) if path.is_file() else {}
    return [f"timm's args.yaml has {k}={got.get(k)!r}, expected {v!r}" for k, v in expected.items()
            if not (got.get(k) == v or (isinstance(v, float) and isinstance(got.get(k), (int, float))
                                        and math.isclose(got[k], v, rel_tol=1e-9)))]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from hgzoo.data.datasets import FASHION_MNIST_DIR

    cfg, recipe = _load_cfg(args)
    seed = cfg["seed"] if args.seed is None else args.seed
    out = Path(args.output).resolve()
    source = Path(args.data_dir or FASHION_MNIST_DIR)
    if args.timm_train is not None and not Path(args.timm_train).is_file():
        raise BadInput(f"--timm-train {args.timm_train}: no such file (download train.py from timm's GitHub at "
                       f"tag v1.0.31)")
    if args.timm_train is None and not args.dry_run:
        raise BadInput("--timm-train is required (timm's train.py from its GitHub at tag v1.0.31)")
    help_text = _help_text(args.timm_train) if args.timm_train else None
    run = map_recipe(cfg, out / "data", out, seed, help_text)
    if help_text is not None:
        check_flags(run.flags, help_text)
    if args.hgzoo_summary and not Path(args.hgzoo_summary).is_file():
        raise BadInput(f"--hgzoo-summary {args.hgzoo_summary}: no such file")
    cmd = _command(args.timm_train or "train.py", run, out / "timm_args.yaml")
    env_text = " ".join(f"{k}={v}" for k, v in run.env.items())
    print(f"recipe: {recipe}")
    print("command:", env_text, shlex.join(cmd if not run.shim else cmd[:2] + ["<shim>"] + cmd[3:]))
    if run.config:
        print(f"timm --config YAML ({out / 'timm_args.yaml'}): {json.dumps(run.config)}")
    for note in run.notes:
        print(f"note: {note}")
    if args.dry_run:
        return 0
    for name in _FILES:
        _find(source, name)
    if (out / "timm").exists():
        raise BadInput(f"--output {out}: {out / 'timm'} exists (a previous run); give a new --output")
    return _measure(args, cfg, run, cmd, out, source, seed)


def _measure(args: argparse.Namespace, cfg: dict, run: TimmRun, cmd: list[str], out: Path, source: Path,
             seed: int) -> int:
    """Prepare the data, run timm, read its results, print and save the table."""
    out.mkdir(parents=True, exist_ok=True)
    prepare_data(out / "data", source, args.train_subset, args.val_subset, seed)
    if run.config:
        import yaml

        atomic_write(out / "timm_args.yaml", yaml.safe_dump(run.config))
    log, wall = _run(cmd, run.env, out / "timm_train.log")
    epochs = parse_log(log, int(cfg["batch_size"]))
    if not epochs:
        raise RunFailed(f"no training lines in timm's log {out / 'timm_train.log'}")
    with open(out / "timm" / "summary.csv", newline="") as f:
        summary = list(csv.DictReader(f))
    for e, row in zip(epochs, summary):  # summary.csv's eval_top1: the EMA model's when EMA is on
        e["ema_top1" if cfg["ema"] else "top1"] = float(row["eval_top1"])
    rows = [_row("timm", run.expected["model"], epochs, wall)]
    if args.hgzoo_summary:
        rows.append(hgzoo_row(Path(args.hgzoo_summary), cfg["model"]))
    mismatches = _check_args_yaml(out / "timm" / "args.yaml", run.expected)
    for line in mismatches:
        print(f"warning: {line}", file=sys.stderr)
    print(format_table(rows))
    subset = {"train_subset": args.train_subset, "val_subset": args.val_subset}
    record = {"rows": rows, "command": cmd, "env": run.env, "timm_config": run.config, "notes": list(run.notes),
              "args_mismatches": mismatches, "recipe": cfg, "subset": subset, "per_epoch": epochs}
    atomic_write(out / "peer.json", json.dumps(_strict(record), indent=2, default=str, allow_nan=False))
    print(f"wrote {out / 'peer.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(guarded_main(main, bad_input=(BadInput,), failed=(RunFailed,)))
