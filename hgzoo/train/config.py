"""Training configuration: defaults ← recipe (``hgzoo/recipes/``, shipped with the package) ← command line.

Flat keys, one flag each, every flag described (``python train.py --help``); timm's common spellings are
accepted as aliases (``-b``, ``-j``, ``--smoothing``, ``--drop-path``, ``--model-ema``, ``--aa``, ``--reprob``,
``--mixup``, ``--cutmix``, ``--grad-accum-steps``, ``--opt``, ...).
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["DEFAULTS", "SETTINGS", "ConfigError", "canonical_model_name", "CONFIG_DIR", "find_recipe", "load_recipe",
           "build_parser", "resolve_config", "effective_lr"]

#: The recipes shipped inside the package (``hgzoo/recipes/<model or family>.yaml``): package data, so that a
#: wheel install trains with PaddleClas's recipe too.
CONFIG_DIR = Path(__file__).resolve().parents[1] / "recipes"


class ConfigError(ValueError):
    """A bad setting or input, reported before training starts."""


@dataclass(frozen=True)
class Setting:
    """One training setting: its key (the flag is ``--key-with-dashes``), default, help, and timm's spellings."""

    key: str
    default: Any
    help: str
    aliases: tuple[str, ...] = ()


_S = Setting
#: Every setting, grouped as in a recipe file. The recipes override the defaults; every key is also a flag.
SETTINGS: tuple[Setting, ...] = (
    # model
    _S("model", None, "architecture (or arch.tag), hgzoo's or PaddleClas's spelling: pphgnet_small, PPLCNetV2_base"),
    _S("pretrained", False, "start from the tag's published weights"),
    _S("initial_checkpoint", None, "start from these weights (any format hgzoo reads; a head of another size is "
                                   "re-initialised)"),
    _S("num_classes", None, "classifier outputs (default: the number of classes in the data)"),
    _S("reset_head", False, "a new classifier for new classes: re-initialise it after loading --pretrained or "
                            "--initial-checkpoint weights, even when the class counts match"),
    _S("init", "paddle", "initialisation of the model as built: paddle (PaddleClas's) or timm (timm's and "
                         "torchvision's: Kaiming-normal fan_out convs, torch's default Linear, zero biases); "
                         "--pretrained and --initial-checkpoint weights replace it"),
    _S("in_chans", 3, "input channels: 1 for grayscale images (they are converted), 3 for RGB"),
    _S("drop_rate", None, "dropout before the classifier (default: the model's)", ("--drop",)),
    _S("drop_path_rate", 0.0, "stochastic depth rate", ("--drop-path",)),
    # data
    _S("dataset", "folder", "folder: DATA_DIR/<split>/<class>/<image>; list: PaddleClas label lists; "
                            "fashion_mnist: Debian's dataset-fashion-mnist"),
    _S("data_dir", None, "the data folder (root of the label lists' paths for --dataset list)"),
    _S("train_split", "train", "training sub-folder of --data-dir (train, else training, as timm finds it)"),
    _S("val_split", "val", "evaluation sub-folder of --data-dir (val, else validation, valid, eval or evaluation, "
                           "as timm finds it)"),
    _S("train_list", None, "PaddleClas label list of the training images ('path label' lines)"),
    _S("val_list", None, "PaddleClas label list of the evaluation images"),
    _S("train_subset", 0, "train on a fixed random subset of this many images (0: all)"),
    _S("workers", 2, "data-loading processes", ("-j",)),
    # training preprocessing
    _S("img_size", 224, "training crop size (and evaluation crop size)"),
    _S("interpolation", "bilinear", "resize interpolation of the training crops"),
    _S("resize_backend", "cv2", "whose resize to reproduce: cv2 (no antialias) or pil"),
    _S("train_crop", "paddle", "random-resized crop: paddle (PaddleClas's RandCropImage: crop size truncated, "
                               "scale range narrowed to fit the aspect, never the whole image) or timm (timm's and "
                               "torchvision's RandomResizedCrop: rounded, 10 draws, then the whole image)"),
    _S("crop_scale_min", 0.08, "smallest area fraction of the random-resized crop"),
    _S("hflip", 0.5, "horizontal flip probability"),
    _S("randaugment", None, "RandAugment spec, e.g. rand-m7-mstd0.5-inc1 ('none': off)", ("--aa",)),
    _S("random_erasing", 0.0, "random erasing probability", ("--reprob",)),
    _S("mean", None, "normalisation mean per channel (default: the model's; 0.5 for non-RGB input)"),
    _S("std", None, "normalisation std per channel"),
    # evaluation preprocessing
    _S("eval_resize_short", None, "evaluation short-side resize (default: the model's, scaled to --img-size)"),
    _S("eval_interpolation", None, "evaluation resize interpolation (default: the model's)"),
    _S("eval_resize_backend", None, "evaluation resize backend, cv2 or pil (default: the model's)"),
    # batch mixing and loss
    _S("mixup_alpha", 0.0, "MixUp alpha (0: off)", ("--mixup",)),
    _S("cutmix_alpha", 0.0, "CutMix alpha (0: off)", ("--cutmix",)),
    _S("mixup_prob", 0.0, "probability of MixUp on a batch (PaddleClas's OpSampler)"),
    _S("cutmix_prob", 0.0, "probability of CutMix on a batch"),
    _S("label_smoothing", 0.0, "label smoothing", ("--smoothing",)),
    # optimisation
    _S("epochs", 10, "training epochs"),
    _S("batch_size", 128, "images per step per process", ("-b",)),
    _S("lr", None, "learning rate, absolute: used as given, never rescaled (default: from --lr-base)"),
    _S("lr_base", 0.1, "the recipe's learning rate at --lr-base-size images per step; scaled linearly to your "
                       "global batch when --lr is not given"),
    _S("lr_base_size", 256, "the global batch --lr-base is for (0: no scaling)"),
    _S("opt", "momentum", "optimizer: momentum (PaddleClas's Momentum: SGD, no Nesterov), sgd (timm's: SGD with "
                          "Nesterov momentum) or adamw"),
    _S("momentum", 0.9, "momentum of momentum/sgd (beta1 of adamw)"),
    _S("weight_decay", 1e-4, "weight decay (L2 for momentum/sgd, decoupled for adamw)"),
    _S("no_weight_decay", "none", "bn: no weight decay on BatchNorm parameters (as PaddleClas's PP-HGNet, "
                                  "PP-HGNetV2, PP-LCNetV2); 1d: none on any 1-D parameter or bias (timm's "
                                  "train.py); none: decay everything"),
    _S("layer_decay", None, "layer-wise LR decay per stage, timm's --layer-decay (e.g. 0.75)"),
    _S("sched", "cosine", "LR schedule, stepped per iteration: cosine, piecewise or constant"),
    _S("warmup_epochs", 0.0, "linear warmup epochs"),
    _S("warmup_start_lr", 0.0, "LR at the start of the warmup", ("--warmup-lr",)),
    _S("decay_epochs", [30, 60, 90], "piecewise: epochs at which the LR is multiplied by --decay-gamma (counted from "
                                     "0; timm's multistep --decay-milestones M decays one epoch earlier: give M-1)"),
    _S("decay_gamma", 0.1, "piecewise: LR factor at each decay epoch", ("--decay-rate",)),
    _S("min_lr", 0.0, "cosine: the floor of the LR"),
    _S("lr_mult_list", None, "LR multipliers of the stem and the 4 stages (PaddleClas's lr_mult_list), 5 values"),
    _S("lab_lr", 1.0, "LR multiplier of PP-HGNetV2's learnable affine blocks (PaddleClas: 0.01)"),
    _S("freeze", 0, "freeze the first N of [stem, stage 1..4] (0: nothing)"),
    _S("accum_steps", 1, "micro-batches accumulated per optimizer step", ("--grad-accum-steps",)),
    _S("clip_grad", None, "clip the gradient norm to this value"),
    # speed and precision
    _S("amp", False, "automatic mixed precision: float16 on CUDA, bfloat16 on CPU"),
    _S("channels_last", False, "channels-last memory format"),
    _S("torchcompile", False, "torch.compile the model (timm's '--torchcompile inductor' too; inductor only)"),
    _S("grad_checkpointing", False, "recompute each stage's activations in the backward pass (less memory, more "
                                    "time): model.set_grad_checkpointing(), as timm's flag"),
    _S("sync_bn", False, "SyncBatchNorm across processes (CUDA)"),
    _S("device", "auto", "auto, cpu or cuda"),
    _S("threads", 0, "torch threads per process (0: torch's default)"),
    _S("ema", False, "keep an exponential moving average of the weights (evaluated and saved too)", ("--model-ema",)),
    _S("ema_decay", 0.9999, "EMA decay per step", ("--model-ema-decay",)),
    # distillation
    _S("teacher", None, "distil from this model (SSLD quick start)"),
    _S("teacher_checkpoint", None, "the teacher's weights"),
    _S("extra_data", None, "unlabeled images for distillation: a folder, a list file, or train-rest"),
    _S("distill_loss", "dml", "dml (PaddleClas's DistillationDMLLoss), kl or js"),
    _S("distill_temperature", 1.0, "distillation temperature"),
    _S("distill_alpha", 0.0, "add alpha x cross-entropy on the labelled images"),
    # output
    _S("output", None, "run folder for checkpoints, config.yaml, summary.csv (default: output/<model>)"),
    _S("experiment", None, "timm's run name: the run folder is --output (default: output/train)/NAME"),
    _S("resume", None, "continue a run from its last.pt (its own settings; flags given change them)"),
    _S("overwrite", False, "replace the run files of a non-empty --output folder"),
    _S("checkpoint_hist", 1, "best checkpoints kept: 1 (best.pt, beside last.pt), as timm's --checkpoint-hist 1; "
                             "more is refused"),
    _S("checkpoint_every", 0, "also save last.pt every N optimizer steps (0: at epoch ends only)"),
    _S("eval_every", 1, "evaluate every N epochs (and at the last)"),
    _S("seed", 0, "random seed"),
    _S("log_interval", 20, "progress-bar update interval in steps"),
    _S("tensorboard", False, "TensorBoard logs in OUTPUT/tb (needs: pip install 'hgzoo[tensorboard]')"),
    _S("max_steps_per_epoch", 0, "cap the steps of each epoch (0: the whole data)"),
    _S("progress", True, "progress bars"),
    _S("plot", True, "write curves.png at the end"),
)
del _S
#: Every setting with its default.
DEFAULTS: dict[str, Any] = {s.key: s.default for s in SETTINGS}

_LIST_TYPES = {"decay_epochs": float, "lr_mult_list": float, "mean": float, "std": float}
_TYPES = {"num_classes": int, "drop_rate": float, "clip_grad": float, "lr": float, "layer_decay": float,
          "initial_checkpoint": str, "teacher": str, "teacher_checkpoint": str, "extra_data": str,
          "output": str, "resume": str, "data_dir": str, "train_list": str, "val_list": str, "model": str,
          "randaugment": str, "experiment": str, "eval_resize_short": int, "eval_interpolation": str,
          "eval_resize_backend": str}
_CHOICES = {"dataset": ("folder", "list", "fashion_mnist"), "sched": ("cosine", "piecewise", "constant"),
            "no_weight_decay": ("none", "bn", "1d"), "distill_loss": ("dml", "kl", "js"),
            "opt": ("momentum", "sgd", "adamw"), "init": ("paddle", "timm"),
            "train_crop": ("paddle", "timm")}
#: Keys of older saved configs, read as today's.
_RENAMED = {"recipe_batch_size": "lr_base_size"}


def find_recipe(model: str, config_dir: Path | None = None) -> Path | None:
    """``<model>.yaml``, else the longest family file whose name prefixes the model name (in ``config_dir``,
    default the shipped recipes)."""
    config_dir = CONFIG_DIR if config_dir is None else config_dir
    exact = config_dir / f"{model}.yaml"
    if exact.is_file():
        return exact
    family = [p for p in config_dir.glob("*.yaml") if model.startswith(p.stem)]
    return max(family, key=lambda p: len(p.stem)) if family else None


def recipe_path(name: str) -> Path:
    """``--config``: a file, or the name of a shipped recipe (``fashion_mnist``, ``pphgnet_small``)."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = CONFIG_DIR / f"{name.removesuffix('.yaml')}.yaml"
    if path.suffix in ("", ".yaml") and path.parent == Path(".") and shipped.is_file():
        return shipped
    names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    raise ConfigError(f"--config {name}: no such file, and not a shipped recipe ({', '.join(names)})")


def effective_lr(cfg: dict, global_batch: int) -> tuple[float, str]:
    """The LR a run uses and how it was found: ``--lr`` as given, else ``--lr-base`` scaled linearly from
    ``--lr-base-size`` to the global batch (timm's split)."""
    if cfg["lr"] is not None:
        return cfg["lr"], f"lr {cfg['lr']:g} (--lr, absolute)"
    base, size = cfg["lr_base"], cfg["lr_base_size"]
    if not size:
        return base, f"lr {base:g} (--lr-base, not scaled: --lr-base-size 0)"
    lr = base * global_batch / size
    return lr, f"lr {lr:g} = lr_base {base:g} x global batch {global_batch} / lr_base_size {size}"


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
    for old_key, new_key in _RENAMED.items():
        if old_key in data:  # an older run: its lr was the base of the scaling, unless it asked for none
            data[new_key] = data.pop(old_key)
            if data[new_key] and data.get("lr") is not None:
                data["lr_base"] = data.pop("lr")
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


def _bool_or_inductor(v: str) -> bool:
    """``--torchcompile [BOOL]``, or timm's ``--torchcompile inductor`` (torch.compile's default backend)."""
    if v.lower() == "inductor":
        return True
    try:
        return _bool(v)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a boolean or inductor (the only torch.compile backend train.py "
                                         f"uses), got {v!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train.py",
        description="Train an hgzoo model with its PaddleClas recipe (hgzoo/recipes/<model>.yaml, shipped with the "
                    "package); every setting of the recipe is a flag, and a flag given overrides the recipe. "
                    "'--flag none' turns off a setting the recipe sets. Exit codes: 0 done, 1 the run failed, "
                    "2 bad input (reported before training).")
    p.add_argument("--config", default=None, help="a recipe file, or a shipped recipe's name (fashion_mnist, "
                                                   "pphgnet_small, ...); default: the model's own recipe")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved settings as YAML (recipe, then flags) and exit without training")
    for s in SETTINGS:
        flags = ["--" + s.key.replace("_", "-"), *s.aliases]
        kw: dict = dict(default=None, dest=s.key, help=s.help + (f" (default: {s.default!r})" if s.default not in
                                                                   (None, False) else ""))
        if isinstance(s.default, bool):
            kw.update(nargs="?", const=True, type=_bool_or_inductor if s.key == "torchcompile" else _bool,
                      metavar="BOOL")
        elif s.key in _LIST_TYPES:
            kw.update(nargs="+", type=_LIST_TYPES[s.key])
        elif s.key in _CHOICES:
            kw.update(choices=_CHOICES[s.key])
        elif s.key in _TYPES or s.default is None:
            kw.update(type=_optional(_TYPES.get(s.key, str)))
        else:
            kw.update(type=type(s.default))
        p.add_argument(*flags, **kw)
    p.add_argument("--no-progress", dest="progress", action="store_const", const=False, help="no progress bars")
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
    "warmup_epochs": (0, True, None, False), "warmup_start_lr": (0, True, None, False),
    "min_lr": (0, True, None, False),
    "decay_gamma": (0, False, None, False), "lab_lr": (0, True, None, False), "clip_grad": (0, False, None, False),
    "ema_decay": (0, False, 1, False), "eval_every": (1, True, None, False), "log_interval": (1, True, None, False),
    "checkpoint_every": (0, True, None, False), "max_steps_per_epoch": (0, True, None, False),
    "train_subset": (0, True, None, False), "distill_temperature": (0, False, None, False),
    "distill_alpha": (0, True, None, False), "lr_base": (0, False, None, False), "lr_base_size": (0, True, None, False),
    "layer_decay": (0, False, 1, True),
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
    given = {k: v for k, v in vars(args).items() if v is not None and k not in ("config", "print_config")}
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
        recipe = saved
    elif resume and not given.get("model") and not args.config:
        raise ConfigError(f"--resume {given['resume']}: no config.yaml beside it to take the run's settings from; "
                          "give the run's --model/--config and flags again")
    else:
        if not given.get("model") and not args.config:
            raise ConfigError("--model is required (e.g. --model pphgnet_small)")
        recipe = recipe_path(args.config) if args.config else find_recipe(given["model"].split(".")[0])
        if recipe is None:
            raise ConfigError(f"no recipe for {given['model']} in {CONFIG_DIR}: give --config FILE (a recipe YAML)")
        cfg.update(load_recipe(recipe))
    if given.get("experiment") not in (None, _UNSET):  # timm's layout: OUTPUT/NAME, OUTPUT by default output/train
        base = given.get("output") if given.get("output") not in (None, _UNSET) else "output/train"
        given["output"] = str(Path(base) / given["experiment"])
    if "lr_base" in given and "lr" not in given:
        cfg["lr"] = None  # --lr-base asks for scaling, whatever the recipe's absolute lr
    cfg.update(given)
    cfg.update({k: None for k, v in cfg.items() if v == _UNSET})
    if saved is not None:
        _print_changes(base, cfg, given)
    cfg["recipe"] = str(recipe)
    _check(cfg)
    if args.print_config:
        print(yaml.safe_dump(dict(cfg), sort_keys=False), end="")
        raise SystemExit(0)
    return cfg


def _check(cfg: dict) -> None:
    if not cfg.get("model"):
        raise ConfigError("no model: give --model")
    cfg["model"] = canonical_model_name(cfg["model"])
    _check_ranges(cfg)
    if cfg["lr_mult_list"] is not None and len(cfg["lr_mult_list"]) != 5:
        raise ConfigError(f"--lr-mult-list needs 5 values (stem + 4 stages), got {cfg['lr_mult_list']}")
    if cfg["checkpoint_hist"] != 1:
        raise ConfigError(f"--checkpoint-hist {cfg['checkpoint_hist']}: train.py keeps one best checkpoint (best.pt) "
                          "beside last.pt, as timm's --checkpoint-hist 1; keeping more is not supported")
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
