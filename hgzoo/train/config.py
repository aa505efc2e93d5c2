"""Training configuration: defaults ← recipe YAML (``configs/``) ← command line. Flat keys, one flag each."""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import yaml

__all__ = ["DEFAULTS", "ConfigError", "canonical_model_name", "CONFIG_DIR", "find_recipe", "load_recipe", "build_parser", "resolve_config"]

#: The recipes shipped with the repository (``configs/<model or family>.yaml``).
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


class ConfigError(ValueError):
    """A bad setting or input, reported before training starts."""


#: Every setting with its default (the recipe files override these; every key is also a ``--flag``).
DEFAULTS: dict[str, Any] = dict(
    # model
    model=None, pretrained=False, initial_checkpoint=None, num_classes=None, in_chans=3, drop_rate=None,
    drop_path_rate=0.0,
    # data: an ImageFolder tree (data_dir/train, data_dir/val), label lists, or "fashion_mnist"
    dataset="folder", data_dir=None, train_split="train", val_split="val", train_list=None, val_list=None,
    train_subset=0, workers=2,
    # preprocessing (train), PaddleClas's RandCropImage + RandFlipImage + TimmAutoAugment + RandomErasing
    img_size=224, interpolation="bilinear", resize_backend="cv2", crop_scale_min=0.08, hflip=0.5,
    randaugment=None, random_erasing=0.0, mean=None, std=None,
    # evaluation preprocessing (None: the model's pretrained cfg, scaled to img_size)
    eval_resize_short=None, eval_interpolation=None, eval_resize_backend=None,
    # batch mixing (PaddleClas OpSampler) and loss
    mixup_alpha=0.0, cutmix_alpha=0.0, mixup_prob=0.0, cutmix_prob=0.0, label_smoothing=0.0,
    # optimisation (Momentum, L2 weight decay, per-iteration schedule with linear warmup)
    epochs=10, batch_size=128, recipe_batch_size=None, lr=0.1, momentum=0.9, weight_decay=1e-4,
    no_weight_decay="none", sched="cosine", warmup_epochs=0.0, warmup_start_lr=0.0,
    decay_epochs=[30, 60, 90], decay_gamma=0.1, lr_mult_list=None, lab_lr=1.0, min_lr=0.0,
    freeze=0, accum_steps=1, clip_grad=None,
    # speed / precision
    amp=False, channels_last=False, torchcompile=False, sync_bn=False, device="auto", threads=0,
    ema=False, ema_decay=0.9999,
    # distillation (SSLD quick start): teacher soft targets, unlabeled extra images
    teacher=None, teacher_checkpoint=None, extra_data=None, distill_loss="dml", distill_temperature=1.0,
    distill_alpha=0.0,
    # output
    output=None, resume=None, overwrite=False, checkpoint_every=0, eval_every=1, seed=0, log_interval=20, tensorboard=False,
    max_steps_per_epoch=0, progress=True, plot=True,
)

_LIST_TYPES = {"decay_epochs": float, "lr_mult_list": float, "mean": float, "std": float}
_TYPES = {"num_classes": int, "drop_rate": float, "clip_grad": float, "recipe_batch_size": int,
          "initial_checkpoint": str, "teacher": str, "teacher_checkpoint": str, "extra_data": str,
          "output": str, "resume": str, "data_dir": str, "train_list": str, "val_list": str, "model": str,
          "randaugment": str, "eval_resize_short": int, "eval_interpolation": str, "eval_resize_backend": str}
_CHOICES = {"dataset": ("folder", "list", "fashion_mnist"), "sched": ("cosine", "piecewise", "constant"),
            "no_weight_decay": ("none", "bn"), "distill_loss": ("dml", "kl", "js")}


def find_recipe(model: str, config_dir: Path = CONFIG_DIR) -> Path | None:
    """``configs/<model>.yaml``, else the longest family file whose name prefixes the model name."""
    exact = config_dir / f"{model}.yaml"
    if exact.is_file():
        return exact
    family = [p for p in config_dir.glob("*.yaml") if model.startswith(p.stem)]
    return max(family, key=lambda p: len(p.stem)) if family else None


def canonical_model_name(name: str, flag: str = "--model") -> str:
    """hgzoo's own spelling of a model name (PaddleClas's ``PPLCNetV2_small`` is an alias), tag kept."""
    from .. import models  # noqa: F401  (importing the models fills the registry)
    from .._registry import UnknownModelError, resolve_model_name

    try:
        arch, tag = resolve_model_name(name)
    except UnknownModelError as e:
        raise ConfigError(f"{flag}: {e}") from None
    return f"{arch}.{tag}" if tag else arch


def load_recipe(path: str | Path) -> dict:
    """A recipe YAML (flat keys, ``_base_: other.yaml`` for inheritance); unknown keys are errors."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings")
    base = data.pop("_base_", None)
    out = load_recipe(path.parent / base) if base else {}
    data.pop("source", None)  # provenance notes
    data.pop("recipe", None)  # a run's saved config.yaml names the recipe it started from
    unknown = sorted(set(data) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"{path}: unknown settings {unknown}")
    out.update(data)
    return out


_UNSET = "__none__"  # what ``--flag none`` parses to for optional settings, so it can override a recipe's value


def _optional(kind: type):
    """Parse ``kind``, or ``none``/``null`` to turn off a setting that the recipe sets (``--randaugment none``)."""
    def parse(v: str):
        return _UNSET if v.lower() in ("none", "null") else kind(v)
    parse.__name__ = kind.__name__
    return parse


def _bool(v: str) -> bool:
    if v.lower() in ("1", "true", "yes", "on"):
        return True
    if v.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {v!r}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Train an hgzoo model with its PaddleClas recipe (configs/<model>.yaml); every setting is a flag.")
    p.add_argument("--config", default=None, help="recipe YAML (default: configs/<model>.yaml or its family's)")
    for key, default in DEFAULTS.items():
        flag = "--" + key.replace("_", "-")
        kw: dict = dict(default=None, dest=key, help=f"default {default!r}")
        if isinstance(default, bool):
            kw.update(nargs="?", const=True, type=_bool, metavar="BOOL")
        elif key in _LIST_TYPES:
            kw.update(nargs="+", type=_LIST_TYPES[key])
        elif key in _CHOICES:
            kw.update(choices=_CHOICES[key])
        elif key in _TYPES or default is None:
            kw.update(type=_optional(_TYPES.get(key, str)))
        else:
            kw.update(type=type(default))
        p.add_argument(flag, **kw)
    p.add_argument("--no-progress", dest="progress", action="store_const", const=False)
    return p


#: Allowed ranges of the numeric settings: (low, low included, high, high included); None means unbounded.
_RANGES: dict[str, tuple[float | None, bool, float | None, bool]] = {
    "lr": (0, False, None, False), "epochs": (1, True, None, False), "batch_size": (1, True, None, False),
    "accum_steps": (1, True, None, False), "img_size": (8, True, 4096, True), "in_chans": (1, True, 64, True),
    "num_classes": (1, True, 1_000_000, True), "workers": (0, True, None, False), "threads": (0, True, None, False),
    "momentum": (0, True, 1, False), "weight_decay": (0, True, None, False), "label_smoothing": (0, True, 1, False),
    "drop_rate": (0, True, 1, False), "drop_path_rate": (0, True, 1, False), "mixup_alpha": (0, True, None, False),
    "cutmix_alpha": (0, True, None, False), "mixup_prob": (0, True, 1, True), "cutmix_prob": (0, True, 1, True),
    "random_erasing": (0, True, 1, True), "hflip": (0, True, 1, True), "crop_scale_min": (0, False, 1, True),
    "warmup_epochs": (0, True, None, False), "warmup_start_lr": (0, True, None, False), "min_lr": (0, True, None, False),
    "decay_gamma": (0, False, None, False), "lab_lr": (0, True, None, False), "clip_grad": (0, False, None, False),
    "ema_decay": (0, False, 1, False), "eval_every": (1, True, None, False), "log_interval": (1, True, None, False),
    "checkpoint_every": (0, True, None, False), "max_steps_per_epoch": (0, True, None, False),
    "train_subset": (0, True, None, False), "distill_temperature": (0, False, None, False),
    "distill_alpha": (0, True, None, False), "recipe_batch_size": (0, True, None, False),
    "eval_resize_short": (8, True, 8192, True),
}


def _check_ranges(cfg: dict) -> None:
    """Every numeric setting finite and in range, named by its flag, before any work starts."""
    for key, (lo, lo_in, hi, hi_in) in _RANGES.items():
        value = cfg.get(key)
        if value is None or isinstance(value, bool):
            continue
        flag = "--" + key.replace("_", "-")
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{flag} must be a finite number, got {value!r}")
        low_ok = lo is None or (value >= lo if lo_in else value > lo)
        high_ok = hi is None or (value <= hi if hi_in else value < hi)
        if not (low_ok and high_ok):
            span = f"{'[' if lo_in else '('}{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}" \
                   f"{']' if hi_in else ')'}"
            raise ConfigError(f"{flag} must be in {span}, got {value}")
    for key in ("lr_mult_list", "decay_epochs", "mean", "std"):
        values = cfg.get(key) or []
        if any(not math.isfinite(v) or v < 0 for v in values):
            raise ConfigError(f"--{key.replace('_', '-')} values must be finite and >= 0, got {values}")
    if cfg.get("std") and any(v == 0 for v in cfg["std"]):
        raise ConfigError(f"--std values must be > 0, got {cfg['std']}")


def _saved_config(resume: str) -> Path | None:
    saved = Path(resume).parent / "config.yaml"
    return saved if saved.is_file() else None


def _print_changes(saved: dict, cfg: dict, given: dict) -> None:
    changed = {k: (saved.get(k), cfg[k]) for k in given if k not in ("resume",) and saved.get(k) != cfg[k]}
    if changed:
        print("resuming with changed settings: " + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items()),
              file=sys.stderr)


def resolve_config(argv: list[str] | None = None) -> dict:
    """Defaults, then the recipe for ``--model`` (or ``--config``), then the flags given on the command line.

    With ``--resume``, the run's own ``config.yaml`` (saved beside its checkpoints) takes the recipe's place:
    the flags given change it, and the changes are printed.
    """
    args = build_parser().parse_args(argv)
    given = {k: v for k, v in vars(args).items() if v is not None and k != "config"}
    for key in ("model", "teacher"):
        if given.get(key) not in (None, _UNSET):
            given[key] = canonical_model_name(given[key], f"--{key}")
    cfg = dict(DEFAULTS)
    resume = given.get("resume") if given.get("resume") != _UNSET else None
    saved = _saved_config(resume) if resume else None
    if saved is not None:
        if args.config:
            raise ConfigError(f"--resume continues with the run's own {saved}; change settings with flags, "
                              "not --config")
        base = load_recipe(saved)
        base["output"] = str(Path(resume).parent)  # the run continues where its checkpoint is
        cfg.update(base)
        recipe_path = saved
    elif resume and not given.get("model") and not args.config:
        raise ConfigError(f"--resume {given['resume']}: no config.yaml beside it to take the run's settings from; "
                          "give the run's --model/--config and flags again")
    else:
        if not given.get("model") and not args.config:
            raise ConfigError("--model is required (e.g. --model pphgnet_small)")
        recipe_path = Path(args.config) if args.config else find_recipe(given["model"].split(".")[0])
        if recipe_path is not None:
            cfg.update(load_recipe(recipe_path))
    cfg.update(given)
    cfg.update({k: None for k, v in cfg.items() if v == _UNSET})
    if saved is not None:
        _print_changes(base, cfg, given)
    cfg["recipe"] = str(recipe_path) if recipe_path else None
    _check(cfg)
    return cfg


def _check(cfg: dict) -> None:
    if not cfg.get("model"):
        raise ConfigError("no model: give --model")
    cfg["model"] = canonical_model_name(cfg["model"])
    _check_ranges(cfg)
    if cfg["lr_mult_list"] is not None and len(cfg["lr_mult_list"]) != 5:
        raise ConfigError(f"--lr-mult-list needs 5 values (stem + 4 stages), got {cfg['lr_mult_list']}")
    if not 0 <= cfg["freeze"] <= 5:
        raise ConfigError(f"--freeze counts leading units of [stem, stage1..4]: 0..5, got {cfg['freeze']}")
    if cfg["randaugment"]:
        from ..data.randaugment import parse_randaugment
        try:
            parse_randaugment(cfg["randaugment"])
        except ValueError as e:
            raise ConfigError(f"--randaugment: {e} (or 'none' to turn it off)") from None
    if bool(cfg["teacher"]) != bool(cfg["teacher_checkpoint"]):
        raise ConfigError("distillation needs both --teacher MODEL and --teacher-checkpoint FILE")
    if cfg["extra_data"] and not cfg["teacher"]:
        raise ConfigError("--extra-data (unlabeled images) only makes sense with --teacher")
    if cfg["mean"] is not None and len(cfg["mean"]) not in (1, cfg["in_chans"]):
        raise ConfigError(f"--mean has {len(cfg['mean'])} values for --in-chans {cfg['in_chans']}")
