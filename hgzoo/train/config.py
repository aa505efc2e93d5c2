"""Training configuration: defaults ← recipe (``hgzoo/recipes/``, shipped with the package) ← command line, resolved
into one frozen, typed :class:`TrainConfig`.

The class body is the settings table: each field has its type, default, help, timm's spellings and the span its
numbers must lie in. Every field but ``recipe`` is a flag (``--key-with-dashes``, described by
``python train.py --help``); timm's common spellings are accepted as aliases (``-b``, ``-j``, ``--smoothing``,
``--drop-path``, ``--model-ema``, ``--aa``, ``--reprob``, ``--mixup``, ``--cutmix``, ``--grad-accum-steps``,
``--opt``, ...). A TrainConfig is checked when it is made, so every one in use is in range; checkpoints and
``config.yaml`` store its plain form (:meth:`TrainConfig.to_dict`), read back by :meth:`TrainConfig.from_dict`.
"""
from __future__ import annotations

import argparse
import math
import sys
import typing
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import yaml

__all__ = ["TrainConfig", "Setting", "SETTINGS", "DEFAULTS", "ConfigError", "as_config", "canonical_model_name",
           "CONFIG_DIR", "find_recipe", "recipe_path", "load_recipe", "build_parser", "resolve_config",
           "effective_lr"]

#: The recipes shipped inside the package (``hgzoo/recipes/<model or family>.yaml``): package data, so that a
#: wheel install trains with PaddleClas's recipe too.
CONFIG_DIR = Path(__file__).resolve().parents[1] / "recipes"


class ConfigError(ValueError):
    """A bad setting or input, reported before training starts."""


def _s(default: Any, help: str, *aliases: str, span: str | None = None) -> Any:
    """A field of :class:`TrainConfig`: its default, help and timm's spellings (``aliases``), and the span its
    number (each of its numbers, for a list) must lie in, written as an interval: ``"[1, inf)"``, ``"(0, 1]"``."""
    return field(default=default, metadata={"help": help, "aliases": aliases, "span": span})


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run, typed and in range (checked when made; bad values raise
    :class:`ConfigError` naming the flag). Made by :func:`resolve_config` (defaults ← recipe ← flags), by
    :meth:`from_dict` (a run's stored config), or directly; change one with ``dataclasses.replace``."""

    # model
    model: str | None = _s(None, "architecture (or arch.tag), hgzoo's or PaddleClas's spelling: pphgnet_small, "
                                 "PPLCNetV2_base")
    pretrained: bool = _s(False, "start from the tag's published weights")
    initial_checkpoint: str | None = _s(None, "start from these weights (any format hgzoo reads; a head of another "
                                              "size is re-initialised)")
    num_classes: int | None = _s(None, "classifier outputs (default: the number of classes in the data)",
                                 span="[1, 1000000]")
    reset_head: bool = _s(False, "a new classifier for new classes: re-initialise it after loading --pretrained or "
                                 "--initial-checkpoint weights, even when the class counts match")
    init: Literal["paddle", "timm"] = _s("paddle", "initialisation of the model as built: paddle (PaddleClas's) or "
                                                   "timm (timm's and torchvision's: Kaiming-normal fan_out convs, "
                                                   "torch's default Linear, zero biases); --pretrained and "
                                                   "--initial-checkpoint weights replace it")
    in_chans: int = _s(3, "input channels: 1 for grayscale images (they are converted), 3 for RGB", span="[1, 64]")
    drop_rate: float | None = _s(None, "dropout before the classifier (default: the model's)", "--drop",
                                 span="[0, 1)")
    drop_path_rate: float = _s(0.0, "stochastic depth rate", "--drop-path", span="[0, 1)")
    # data
    dataset: Literal["folder", "list", "fashion_mnist"] = _s(
        "folder", "folder: DATA_DIR/<split>/<class>/<image>; list: PaddleClas label lists; fashion_mnist: Debian's "
                  "dataset-fashion-mnist")
    data_dir: str | None = _s(None, "the data folder (root of the label lists' paths for --dataset list)")
    train_split: str = _s("train", "training sub-folder of --data-dir (train, else training, as timm finds it)")
    val_split: str = _s("val", "evaluation sub-folder of --data-dir (val, else validation, valid, eval or evaluation, "
                               "as timm finds it)")
    train_list: str | None = _s(None, "PaddleClas label list of the training images ('path label' lines)")
    val_list: str | None = _s(None, "PaddleClas label list of the evaluation images")
    allow_outside_root: bool = _s(False, "--dataset list: accept label-list paths outside --data-dir (absolute, or "
                                         "reaching up with ..); refused by default, naming the file and line")
    train_subset: int = _s(0, "train on a fixed random subset of this many images (0: all)", span="[0, inf)")
    workers: int = _s(2, "data-loading processes", "-j", span="[0, inf)")
    # training preprocessing
    img_size: int = _s(224, "training crop size (and evaluation crop size)", span="[8, 4096]")
    interpolation: str = _s("bilinear", "resize interpolation of the training crops")
    resize_backend: str = _s("cv2", "whose resize to reproduce: cv2 (no antialias) or pil")
    train_crop: Literal["paddle", "timm"] = _s(
        "paddle", "random-resized crop: paddle (PaddleClas's RandCropImage: crop size truncated, scale range "
                  "narrowed to fit the aspect, never the whole image) or timm (timm's and torchvision's "
                  "RandomResizedCrop: rounded, 10 draws, then the whole image)")
    crop_scale_min: float = _s(0.08, "smallest area fraction of the random-resized crop", span="(0, 1]")
    hflip: float = _s(0.5, "horizontal flip probability", span="[0, 1]")
    randaugment: str | None = _s(None, "RandAugment spec, e.g. rand-m7-mstd0.5-inc1 ('none': off)", "--aa")
    random_erasing: float = _s(0.0, "random erasing probability", "--reprob", span="[0, 1]")
    mean: tuple[float, ...] | None = _s(None, "normalisation mean per channel (default: the model's; 0.5 for "
                                              "non-RGB input)", span="[0, inf)")
    std: tuple[float, ...] | None = _s(None, "normalisation std per channel", span="(0, inf)")
    # evaluation preprocessing
    eval_resize_short: int | None = _s(None, "evaluation short-side resize (default: the model's, scaled to "
                                             "--img-size)", span="[8, 8192]")
    eval_interpolation: str | None = _s(None, "evaluation resize interpolation (default: the model's)")
    eval_resize_backend: str | None = _s(None, "evaluation resize backend, cv2 or pil (default: the model's)")
    # batch mixing and loss
    mixup_alpha: float = _s(0.0, "MixUp alpha (0: off)", "--mixup", span="[0, inf)")
    cutmix_alpha: float = _s(0.0, "CutMix alpha (0: off)", "--cutmix", span="[0, inf)")
    mixup_prob: float = _s(0.0, "probability of MixUp on a batch (PaddleClas's OpSampler)", span="[0, 1]")
    cutmix_prob: float = _s(0.0, "probability of CutMix on a batch", span="[0, 1]")
    label_smoothing: float = _s(0.0, "label smoothing", "--smoothing", span="[0, 1)")
    # optimisation
    epochs: int = _s(10, "training epochs", span="[1, inf)")
    batch_size: int = _s(128, "images per step per process", "-b", span="[1, inf)")
    lr: float | None = _s(None, "learning rate, absolute: used as given, never rescaled (default: from --lr-base)",
                          span="(0, inf)")
    lr_base: float = _s(0.1, "the recipe's learning rate at --lr-base-size images per step; scaled linearly to "
                             "your global batch when --lr is not given", span="(0, inf)")
    lr_base_size: int = _s(256, "the global batch --lr-base is for (0: no scaling)", span="[0, inf)")
    opt: Literal["momentum", "sgd", "adamw"] = _s(
        "momentum", "optimizer: momentum (PaddleClas's Momentum: SGD, no Nesterov), sgd (timm's: SGD with Nesterov "
                    "momentum) or adamw")
    momentum: float = _s(0.9, "momentum of momentum/sgd (beta1 of adamw)", span="[0, 1)")
    weight_decay: float = _s(1e-4, "weight decay (L2 for momentum/sgd, decoupled for adamw)", span="[0, inf)")
    no_weight_decay: Literal["none", "bn", "1d"] = _s(
        "none", "bn: no weight decay on BatchNorm parameters (as PaddleClas's PP-HGNet, PP-HGNetV2, PP-LCNetV2); "
                "1d: none on any 1-D parameter or bias (timm's train.py); none: decay everything")
    layer_decay: float | None = _s(None, "layer-wise LR decay per stage, timm's --layer-decay (e.g. 0.75)",
                                   span="(0, 1]")
    sched: Literal["cosine", "piecewise", "constant"] = _s(
        "cosine", "LR schedule, stepped per iteration: cosine, piecewise or constant")
    warmup_epochs: float = _s(0.0, "linear warmup epochs", span="[0, inf)")
    warmup_start_lr: float = _s(0.0, "LR at the start of the warmup", "--warmup-lr", span="[0, inf)")
    decay_epochs: tuple[float, ...] = _s((30, 60, 90), "piecewise: epochs at which the LR is multiplied by "
                                                       "--decay-gamma (counted from 0; timm's multistep "
                                                       "--decay-milestones M decays one epoch earlier: give M-1)",
                                         span="[0, inf)")
    decay_gamma: float = _s(0.1, "piecewise: LR factor at each decay epoch", "--decay-rate", span="(0, inf)")
    min_lr: float = _s(0.0, "cosine: the floor of the LR", span="[0, inf)")
    lr_mult_list: tuple[float, ...] | None = _s(None, "LR multipliers of the stem and the 4 stages (PaddleClas's "
                                                      "lr_mult_list), 5 values", span="[0, inf)")
    lab_lr: float = _s(1.0, "LR multiplier of PP-HGNetV2's learnable affine blocks (PaddleClas: 0.01)",
                       span="[0, inf)")
    freeze: int = _s(0, "freeze the first N of [stem, stage 1..4] (0: nothing)", span="[0, 5]")
    accum_steps: int = _s(1, "micro-batches accumulated per optimizer step", "--grad-accum-steps", span="[1, inf)")
    clip_grad: float | None = _s(None, "clip the gradient norm to this value", span="(0, inf)")
    # speed and precision
    amp: bool = _s(False, "automatic mixed precision: float16 on CUDA, bfloat16 on CPU")
    channels_last: bool = _s(False, "channels-last memory format")
    torchcompile: bool = _s(False, "torch.compile the model (timm's '--torchcompile inductor' too; inductor only)")
    grad_checkpointing: bool = _s(False, "recompute each stage's activations in the backward pass (less memory, "
                                         "more time): model.set_grad_checkpointing(), as timm's flag")
    sync_bn: bool = _s(False, "SyncBatchNorm across processes (CUDA)")
    device: str = _s("auto", "auto, cpu or cuda")
    threads: int = _s(0, "torch threads per process (0: torch's default)", span="[0, inf)")
    ema: bool = _s(False, "keep an exponential moving average of the weights (evaluated and saved too)",
                   "--model-ema")
    ema_decay: float = _s(0.9999, "EMA decay per step", "--model-ema-decay", span="(0, 1)")
    # distillation
    teacher: str | None = _s(None, "distil from this model (SSLD quick start)")
    teacher_checkpoint: str | None = _s(None, "the teacher's weights")
    extra_data: str | None = _s(None, "unlabeled images for distillation: a folder, a list file, or train-rest")
    distill_loss: Literal["dml", "kl", "js"] = _s("dml", "dml (PaddleClas's DistillationDMLLoss), kl or js")
    distill_temperature: float = _s(1.0, "distillation temperature", span="(0, inf)")
    distill_alpha: float = _s(0.0, "add alpha x cross-entropy on the labelled images", span="[0, inf)")
    # output
    output: str | None = _s(None, "run folder for checkpoints, config.yaml, summary.csv (default: output/<model>)")
    experiment: str | None = _s(None, "timm's run name: the run folder is --output (default: output/train)/NAME")
    resume: str | None = _s(None, "continue a run from its last.pt (its own settings; flags given change them)")
    overwrite: bool = _s(False, "replace the run files of a non-empty --output folder")
    checkpoint_hist: int = _s(1, "keep the N best evaluated epochs, as timm's --checkpoint-hist: the best as "
                                 "best.pt, the others as checkpoint-<epoch>.pt (default 1: best.pt only)",
                              span="[1, inf)")
    checkpoint_every: int = _s(0, "also save last.pt every N optimizer steps (0: at epoch ends only)",
                               span="[0, inf)")
    eval_every: int = _s(1, "evaluate every N epochs (and at the last)", span="[1, inf)")
    seed: int = _s(0, "random seed")
    log_interval: int = _s(20, "progress-bar update interval in steps", span="[1, inf)")
    tensorboard: bool = _s(False, "TensorBoard logs in OUTPUT/tb (needs: pip install 'hgzoo[tensorboard]')")
    max_steps_per_epoch: int = _s(0, "cap the steps of each epoch (0: the whole data)", span="[0, inf)")
    progress: bool = _s(True, "progress bars")
    plot: bool = _s(True, "write curves.png at the end")
    #: Not a flag: the recipe file (or the run's saved config.yaml) the settings started from.
    recipe: str | None = None

    def __post_init__(self) -> None:
        for s in SETTINGS:  # each value as its setting holds it: a list as a tuple, a whole float as an int
            object.__setattr__(self, s.key, _checked_value(s, getattr(self, s.key)))
        _check_relations(self)

    def to_dict(self) -> dict[str, Any]:
        """The plain form (lists, numbers, text, ``None``) that checkpoints and ``config.yaml`` store."""
        return {f.name: (list(v) if isinstance(v, tuple) else v) for f in fields(self)
                for v in (getattr(self, f.name),)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """A config from its plain form (:meth:`to_dict`, a checkpoint's ``config``, a run's ``config.yaml``):
        keys of older versions read as today's, missing settings at their defaults; unknown keys are errors."""
        data = _upgrade(dict(data))
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"unknown settings {unknown}")
        return cls(**data)


@dataclass(frozen=True)
class Setting:
    """One flag-bearing field of :class:`TrainConfig`, as the parser and the checks read it: its key (the flag is
    ``--key-with-dashes``), default, help, timm's spellings, value type (``kind``: bool, int, float or str; of each
    item for a list), the choices of a text, whether it is a list (``many``) or may be ``None`` (``optional``), and
    the span its numbers must lie in."""

    key: str
    default: Any
    help: str
    aliases: tuple[str, ...] = ()
    kind: type = str
    choices: tuple[str, ...] = ()
    many: bool = False
    optional: bool = False
    span: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")


def _bounds(span: str) -> tuple[float, float]:
    """The ends of an interval written ``"[lo, hi)"`` (``inf`` for none); ValueError for another text."""
    if span[:1] not in ("[", "(") or span[-1:] not in ("]", ")"):
        raise ValueError(f"span {span!r} is not an interval such as '[0, 1)'")
    lo, hi = (float(end) for end in span[1:-1].split(","))
    return lo, hi


def _within(value: float, span: str) -> bool:
    lo, hi = _bounds(span)
    return (value >= lo if span[0] == "[" else value > lo) and (value <= hi if span[-1] == "]" else value < hi)


def _setting(f: Field, hint: Any) -> Setting:
    """The :class:`Setting` of field ``f`` annotated ``hint``: ``X | None`` is optional, ``tuple[X, ...]`` a list,
    ``Literal[...]`` a choice of texts."""
    optional = type(None) in typing.get_args(hint)
    if optional:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    many = typing.get_origin(hint) is tuple
    if many:
        hint = typing.get_args(hint)[0]
    choices = typing.get_args(hint) if typing.get_origin(hint) is Literal else ()
    span = f.metadata["span"]
    if span is not None:
        _bounds(span)  # a malformed span fails at import, not at the first bad value
    return Setting(f.name, f.default, f.metadata["help"], f.metadata["aliases"], str if choices else hint, choices,
                   many, optional, span)


_HINTS = typing.get_type_hints(TrainConfig)
#: Every flag-bearing setting, in the order of :class:`TrainConfig` (grouped as in a recipe file).
SETTINGS: tuple[Setting, ...] = tuple(_setting(f, _HINTS[f.name]) for f in fields(TrainConfig) if f.metadata)
#: Every setting with its default, in plain form (lists, not tuples).
DEFAULTS: dict[str, Any] = {s.key: (list(s.default) if isinstance(s.default, tuple) else s.default)
                            for s in SETTINGS}


def _scalar(s: Setting, value: Any) -> Any:
    """One value (one item of a list) of setting ``s``, of its kind; ConfigError naming the flag."""
    if s.kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{s.flag} must be true or false, got {value!r}")
        return value
    if s.kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{s.flag} must be text, got {value!r}")
        if s.choices and value not in s.choices:
            raise ConfigError(f"{s.flag} must be one of {', '.join(s.choices)}, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{s.flag} must be a finite number, got {value!r}")
    if s.kind is int:
        if not float(value).is_integer():
            raise ConfigError(f"{s.flag} must be a whole number, got {value!r}")
        return int(value)
    return value


def _checked_value(s: Setting, value: Any) -> Any:
    """``value`` as setting ``s`` holds it (a list as a tuple), of its type and in its span."""
    if value is None:
        if not s.optional:
            raise ConfigError(f"{s.flag} cannot be none (default: {DEFAULTS[s.key]!r})")
        return None
    if s.many:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{s.flag} takes a list of numbers, got {value!r}")
        items = tuple(_scalar(s, v) for v in value)
        if s.span is not None and not all(_within(v, s.span) for v in items):
            raise ConfigError(f"{s.flag} values must be in {s.span}, got {list(items)}")
        return items
    value = _scalar(s, value)
    if s.span is not None and not _within(value, s.span):
        raise ConfigError(f"{s.flag} must be in {s.span}, got {value}")
    return value


def _check_relations(cfg: TrainConfig) -> None:
    """The rules that tie settings together."""
    if cfg.lr_mult_list is not None and len(cfg.lr_mult_list) != 5:
        raise ConfigError(f"--lr-mult-list needs 5 values (stem + 4 stages), got {list(cfg.lr_mult_list)}")
    if bool(cfg.teacher) != bool(cfg.teacher_checkpoint):
        raise ConfigError("distillation needs both --teacher MODEL and --teacher-checkpoint FILE")
    if cfg.extra_data and not cfg.teacher:
        raise ConfigError("--extra-data (unlabeled images) only makes sense with --teacher")
    for flag, values in (("--mean", cfg.mean), ("--std", cfg.std)):
        if values is not None and len(values) not in (1, cfg.in_chans):
            raise ConfigError(f"{flag} has {len(values)} values for --in-chans {cfg.in_chans}")


#: Keys of older saved configs, read as today's.
_RENAMED = {"recipe_batch_size": "lr_base_size"}


def _upgrade(data: dict) -> dict:
    """``data`` (a recipe's or a saved config's settings) with the keys of older versions renamed, in place."""
    for old_key, new_key in _RENAMED.items():
        if old_key in data:  # an older run: its lr was the base of the scaling, unless it asked for none
            data[new_key] = data.pop(old_key)
            if data[new_key] and data.get("lr") is not None:
                data["lr_base"] = data.pop("lr")
    return data


def as_config(cfg: TrainConfig | Mapping[str, Any]) -> TrainConfig:
    """``cfg`` itself, or the config of a plain dict (a checkpoint's stored ``config``; see
    :meth:`TrainConfig.from_dict`)."""
    return cfg if isinstance(cfg, TrainConfig) else TrainConfig.from_dict(cfg)


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


def effective_lr(cfg: TrainConfig | Mapping[str, Any], global_batch: int) -> tuple[float, str]:
    """The LR a run uses and how it was found: ``--lr`` as given, else ``--lr-base`` scaled linearly from
    ``--lr-base-size`` to the global batch (timm's split). ``cfg`` may be a plain dict of settings."""
    cfg = as_config(cfg)
    if cfg.lr is not None:
        return cfg.lr, f"lr {cfg.lr:g} (--lr, absolute)"
    base, size = cfg.lr_base, cfg.lr_base_size
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
    _upgrade(data)
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


def _help(s: Setting) -> str:
    default = DEFAULTS[s.key]
    notes = ([f"default: {default!r}"] if default not in (None, False) else []) + ([f"in {s.span}"] if s.span else [])
    return s.help + (f" ({'; '.join(notes)})" if notes else "")


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
        kw: dict[str, Any] = dict(default=None, dest=s.key, help=_help(s))
        if s.kind is bool:
            kw.update(nargs="?", const=True, type=_bool_or_inductor if s.key == "torchcompile" else _bool,
                      metavar="BOOL")
        elif s.many:
            kw.update(nargs="+", type=s.kind)
        elif s.choices:
            kw.update(choices=s.choices)
        else:
            kw.update(type=_optional(s.kind) if s.optional else s.kind)
        p.add_argument(s.flag, *s.aliases, **kw)
    p.add_argument("--no-progress", dest="progress", action="store_const", const=False, help="no progress bars")
    return p


def _saved_config(resume: str) -> Path | None:
    saved = Path(resume).parent / "config.yaml"
    return saved if saved.is_file() else None


def _print_changes(saved: dict, cfg: dict, given: dict) -> None:
    changed = {k: (saved.get(k), cfg[k]) for k in given if k not in ("resume",) and saved.get(k) != cfg[k]}
    if changed:
        print("resuming with changed settings: " + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items()),
              file=sys.stderr)


def _starting_settings(config: str | None, given: dict) -> tuple[dict, Path, bool]:
    """(settings, their file, whether they are a resumed run's own): the ``--resume`` run's saved config.yaml,
    else the recipe of ``--config`` or of ``--model``."""
    resume = given.get("resume") if given.get("resume") != _UNSET else None
    saved = _saved_config(resume) if resume else None
    if saved is not None:
        if config:
            raise ConfigError(f"--resume continues with the run's own {saved}; change settings with flags, "
                              "not --config")
        base = load_recipe(saved)
        base["output"] = str(Path(resume).parent)  # the run continues where its checkpoint is
        return base, saved, True
    if resume and not given.get("model") and not config:
        raise ConfigError(f"--resume {resume}: no config.yaml beside it to take the run's settings from; "
                          "give the run's --model/--config and flags again")
    if not given.get("model") and not config:
        raise ConfigError("--model is required (e.g. --model pphgnet_small)")
    recipe = recipe_path(config) if config else find_recipe(given["model"].split(".")[0])
    if recipe is None:
        raise ConfigError(f"no recipe for {given['model']} in {CONFIG_DIR}: give --config FILE (a recipe YAML)")
    return load_recipe(recipe), recipe, False


def resolve_config(argv: list[str] | None = None) -> TrainConfig:
    """Defaults, then the recipe for ``--model`` (or ``--config``), then the flags given on the command line.

    With ``--resume``, the run's own ``config.yaml`` (saved beside its checkpoints) takes the recipe's place:
    the flags given change it, and the changes are printed. ``--print-config`` prints the result and exits.
    """
    args = build_parser().parse_args(argv)
    given = {k: v for k, v in vars(args).items() if v is not None and k not in ("config", "print_config")}
    for key in ("model", "teacher"):
        if given.get(key) not in (None, _UNSET):
            given[key] = canonical_model_name(given[key], f"--{key}")
    base, recipe, resumed = _starting_settings(args.config, given)
    if given.get("experiment") not in (None, _UNSET):  # timm's layout: OUTPUT/NAME, OUTPUT by default output/train
        out = given.get("output") if given.get("output") not in (None, _UNSET) else "output/train"
        given["output"] = str(Path(out) / given["experiment"])
    settings = {**DEFAULTS, **base}
    if "lr_base" in given and "lr" not in given:
        settings["lr"] = None  # --lr-base asks for scaling, whatever the recipe's absolute lr
    settings.update(given)
    settings = {k: None if v == _UNSET else v for k, v in settings.items()}
    if resumed:
        _print_changes(base, settings, given)
    if not settings["model"]:
        raise ConfigError("no model: give --model")
    cfg = TrainConfig.from_dict({**settings, "model": canonical_model_name(settings["model"]), "recipe": str(recipe)})
    if cfg.randaugment:
        from ..data.randaugment import parse_randaugment
        try:
            parse_randaugment(cfg.randaugment)
        except (ValueError, ImportError) as e:  # a bad spec, or no timm
            raise ConfigError(f"--randaugment: {e} (or 'none' to turn it off)") from None
    if args.print_config:
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        raise SystemExit(0)
    return cfg
