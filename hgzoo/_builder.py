"""Build a model from its registered name, and load weights into it."""
from __future__ import annotations

import dataclasses
import inspect
import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ._files import CheckpointMismatchError, CorruptCheckpointError, safe_load
from ._registry import (
    TIMM_ALIASES,
    alias_defaults,
    get_pretrained_cfg,
    is_model,
    list_models,
    model_entrypoint,
    model_family,
    resolve_model_name,
)
from .convert.paddle import _mismatch_report, convert_paddle_state_dict
from .convert.timm import find_timm_arch, looks_like_timm, timm_to_hgzoo
from .layers import ConvBNAct, check_global_pool, is_foldable_norm
from .pretrained import PretrainedCfg, pretrained_cfg_from_dict, pretrained_cfg_from_timm

__all__ = ["create_model", "load_checkpoint", "load_pretrained", "read_checkpoint", "state_dict_of",
           "checkpoint_weights", "pretrained_cfg_argument", "hub_architecture", "EMA_KEYS"]


def _build(arch: str, global_pool: str | None = None, feature_indexing: str = "hgzoo", **kwargs) -> nn.Module:
    entry = model_entrypoint(arch)
    if kwargs.get("output_stride", 32) != 32 and "output_stride" not in inspect.signature(entry).parameters:
        dilated = sorted({model_family(n).name for n in list_models()
                          if "output_stride" in inspect.signature(model_entrypoint(n)).parameters})
        hint = ("; HRNet keeps every resolution in parallel branches already (use its stride-4 features, "
                "features_only=True)") if model_family(arch).name == "HRNet" else ""
        raise ValueError(f"{arch} has no output_stride={kwargs['output_stride']!r}: only {', '.join(dilated)} dilate "
                         f"their stages (8 or 16){hint}")
    kwargs = {k: v for k, v in kwargs.items() if k != "output_stride" or v != 32}
    try:
        model = entry(**kwargs)
    except TypeError as e:
        raise TypeError(f"create_model({arch!r}): {e}") from None
    if global_pool is not None:
        model.set_global_pool(global_pool)  # before any weights: a fc of another width is built fresh
    model.set_feature_indexing(feature_indexing)
    params = inspect.signature(entry).parameters
    # The builder arguments set away from their defaults: a Hub config.json records them as timm's ``model_args``,
    # so that the repo rebuilds this network (num_classes and in_chans have their own fields).
    model.model_args = {k: v for k, v in kwargs.items()
                        if k not in ("num_classes", "in_chans") and k in params and v is not params[k].default
                        and not (isinstance(v, (str, int, float, bool)) and v == params[k].default)}
    return model


_FEATURE_CLS = (None, "list", "getter", "hook")


def _feature_args(model_name: str, kwargs: dict) -> None:
    """timm's ``feature_cls`` (every value timm takes gives hgzoo's one features-only model, with the same outputs)
    and ``feature_indexing`` (default: ``"timm"`` under a timm name, see ``ClassifierModel.set_feature_indexing``)."""
    feature_cls = kwargs.pop("feature_cls", None)
    if feature_cls not in _FEATURE_CLS:
        raise ValueError(f"feature_cls={feature_cls!r} is not supported; use None, 'list', 'getter' or 'hook' (all "
                         "give hgzoo's features-only model)")
    if "feature_indexing" not in kwargs and model_name.partition(".")[0].lower() in TIMM_ALIASES:
        kwargs["feature_indexing"] = "timm"


def create_model(
    model_name: str,
    pretrained: bool = False,
    *,
    num_classes: int | None = None,
    in_chans: int = 3,
    pretrained_file: str | os.PathLike | None = None,
    progress: bool = True,
    features_only: bool = False,
    out_indices: int | tuple[int, ...] | None = None,
    feature_mode: str | None = None,
    freeze_at: int | None = None,
    norm_eval: bool = False,
    cache_dir: str | os.PathLike | None = None,
    **kwargs,
) -> nn.Module:
    """Build ``model_name``: ``"pphgnet_small"``, ``"PPHGNet_small"``, ``"pphgnet_small.ssld_in1k"`` or
    ``"hf-hub:org/repo"`` (a repo written by ``python -m hgzoo.convert``, or a timm repo of a network hgzoo has), or
    ``"local-dir:FOLDER"`` for such a repo on disk (timm's spelling).

    Args:
        pretrained: load the weights of the tag (the default tag for a bare name). They are found in
            this order: ``pretrained_file``; hgzoo's cache of converted weights (while the tag still lists the
            source they came from); the tag's own sources, in order: timm's Hub repo of the same weights where one
            exists (``HF_HUB_OFFLINE``, ``HF_HOME`` and ``HF_ENDPOINT`` are honoured), then the official Paddle URL
            (``HGZOO_PADDLE_MIRROR``), converted once and cached (see :func:`load_pretrained`).
        num_classes: classifier outputs (default: the weights' own, else 1000); 0 gives no fc. With weights
            for another class count the classifier is re-initialised, with a warning.
        in_chans: input channels; pretrained RGB stem weights are adapted.
        pretrained_file: a ``.pdparams``, ``.safetensors`` or ``.pth`` file to load (implies pretrained): hgzoo's
            layout, PaddleClas's, or timm's (recognised by its keys and converted, see :mod:`hgzoo.convert.timm`);
            a checkpoint's model weights, not its EMA weights (``checkpoint_path=`` loads those).
        cache_dir: where downloads and converted weights go (timm's ``cache_dir``): the Hugging Face cache folder
            for Hub files, and ``cache_dir/converted`` for hgzoo's converted files (default: the Hugging Face
            cache, and ``$HGZOO_CACHE`` or ``~/.cache/hgzoo``).
        features_only: return a backbone (:class:`~hgzoo.features.FeatureListNet`) whose forward gives the
            feature maps at ``out_indices`` (default: all stages; an int ``n``: the last ``n``; negative
            indices count from the end); ``model.feature_info.channels()`` / ``.reduction()`` describe them.
            The classifier head is dropped after the weights are loaded.
        feature_mode: which features, for families that offer several (HRNet: ``"incre"`` or ``"branches"``).
        freeze_at: freeze the stem and the first ``freeze_at`` stages, as mmdetection's ``frozen_stages``:
            ``None`` or -1 freeze nothing, 0 the stem, ``k`` the stem and stages 1..k (detectron2's
            ``FREEZE_AT = k + 1``). Frozen parameters stop requiring gradients and frozen modules stay in eval
            mode through ``train()``. HRNet's stages: 1 = the bottlenecks and the first transition, 2 and 3 =
            the modules and the next transition, 4 = the modules and the incre bottlenecks.
        norm_eval: keep every BatchNorm in eval mode, even after ``train()`` (running statistics used and never
            updated; weight and bias still train), as mmdetection's ``norm_eval``; for small detection batches.
        **kwargs: the model's own arguments (``drop_rate``, ``drop_path_rate``, ...), and timm's
            (:func:`timm_kwargs`): ``checkpoint_path`` (its EMA weights where it has them, as timm loads it),
            ``pretrained_cfg`` (a tag, a dict or a ``PretrainedCfg``, see :func:`pretrained_cfg_argument`),
            ``pretrained_cfg_overlay``, ``global_pool``, ``scriptable``, ``exportable``. Unknown ones raise
            ``TypeError`` naming them.
    """
    model_name, given_cfg, cfg_file = pretrained_cfg_argument(model_name, kwargs.pop("pretrained_cfg", None))
    if cfg_file is not None and pretrained_file is None and pretrained:
        pretrained_file = cfg_file
    timm = timm_kwargs(kwargs)
    _feature_args(model_name, kwargs)
    kwargs = {**alias_defaults(model_name), **kwargs}
    if timm.pretrained_file is not None:
        if pretrained_file is not None:
            raise TypeError("give pretrained_file= or pretrained_cfg_overlay=dict(file=...), not both")
        pretrained_file = timm.pretrained_file if pretrained else None  # timm: the file is read only if pretrained
    _check_model_args(num_classes, in_chans, out_indices)
    if freeze_at is not None and (isinstance(freeze_at, bool) or not isinstance(freeze_at, int)):
        raise TypeError(f"freeze_at must be None or an int (-1: nothing, 0: the stem, k: the stem and k stages), "
                        f"got {freeze_at!r}")
    if not isinstance(norm_eval, bool):
        raise TypeError(f"norm_eval must be True or False, got {norm_eval!r}")
    if model_name.startswith(("hf-hub:", "local-dir:")):
        model, cfg = _from_hub_repo(model_name, pretrained, pretrained_file, num_classes, in_chans, cache_dir, kwargs)
        return _as_backbone(model, cfg, features_only, out_indices, feature_mode, freeze_at, norm_eval, timm)

    arch, tag = resolve_model_name(model_name)
    cfg = given_cfg or get_pretrained_cfg(f"{arch}.{tag}" if tag else arch)
    if num_classes is None:
        num_classes = cfg.num_classes if cfg is not None else 1000
    if features_only and (pretrained or pretrained_file is not None) and cfg is not None:
        num_classes = cfg.num_classes  # load the head as published, then drop it: no re-init warning
    model = _build(arch, num_classes=num_classes, in_chans=in_chans, **kwargs)
    model.pretrained_cfg = cfg
    if pretrained_file is not None:
        load_checkpoint(model, pretrained_file, use_ema=False)
    elif pretrained:
        if cfg is None:
            raise ValueError(f"{arch} has no published weights; pass pretrained_file=PATH to load your own")
        load_pretrained(model, cfg, progress=progress, cache_dir=cache_dir)
    return _as_backbone(model, cfg, features_only, out_indices, feature_mode, freeze_at, norm_eval, timm)


@dataclasses.dataclass(frozen=True)
class TimmArgs:
    """timm's ``create_model`` arguments, taken out of the keyword arguments by :func:`timm_kwargs`."""

    checkpoint_path: str | None = None
    pretrained_file: str | None = None
    cfg_overlay: tuple[tuple[str, object], ...] = ()  # pretrained_cfg_overlay's preprocessing keys, checked

    def overlay(self, cfg: PretrainedCfg | None) -> PretrainedCfg | None:
        """``cfg`` with ``pretrained_cfg_overlay``'s preprocessing keys (timm's names) applied."""
        if cfg is None or not self.cfg_overlay:
            return cfg
        o = dict(self.cfg_overlay)
        changes = {k: o[k] for k in ("mean", "std", "interpolation") if k in o}
        crop = o["input_size"][1] if "input_size" in o else cfg.crop_size
        if crop != cfg.crop_size or "crop_pct" in o:
            changes["crop_size"] = crop
            changes["resize_short"] = math.floor(crop / o.get("crop_pct", cfg.crop_pct))
        return dataclasses.replace(cfg, **changes)


_OVERLAY_KEYS = ("file", "mean", "std", "interpolation", "input_size", "crop_pct")
def _check_overlay(overlay: dict) -> tuple[tuple[str, object], ...]:
    unknown = sorted(set(overlay) - set(_OVERLAY_KEYS))
    if unknown:
        raise TypeError(f"pretrained_cfg_overlay key(s) {', '.join(map(repr, unknown))} not supported; supported: "
                        f"{', '.join(_OVERLAY_KEYS)} (for a Hub repo use create_model('hf-hub:ORG/REPO', "
                        "pretrained=True); for a URL, download the file and pass pretrained_file=)")
    out: dict[str, object] = {k: tuple(float(v) for v in overlay[k]) for k in ("mean", "std") if k in overlay}
    if "interpolation" in overlay:
        out["interpolation"] = str(overlay["interpolation"])
    if "input_size" in overlay:
        size = tuple(int(v) for v in overlay["input_size"])
        if len(size) != 3 or size[1] != size[2] or size[1] < 1:
            raise ValueError(f"pretrained_cfg_overlay input_size must be (C, S, S), got {overlay['input_size']!r}")
        out["input_size"] = size
    if "crop_pct" in overlay:
        if not 0 < float(overlay["crop_pct"]) <= 1:
            raise ValueError(f"pretrained_cfg_overlay crop_pct must be in (0, 1], got {overlay['crop_pct']!r}")
        out["crop_pct"] = float(overlay["crop_pct"])
    return tuple(out.items())


def timm_kwargs(kwargs: dict) -> TimmArgs:
    """Take timm's ``create_model`` arguments out of ``kwargs``, with timm's meanings.

    ``checkpoint_path``: a checkpoint loaded after the model is built (hgzoo's loader: ``.pdparams``, safetensors,
    train.py's and timm's ``.pth``; empty means none, as in timm). ``pretrained_cfg_overlay``: ``file`` is the
    weights file when ``pretrained=True`` (as ``pretrained_file``); ``mean``, ``std``, ``interpolation``,
    ``input_size`` (square) and ``crop_pct`` replace the model's preprocessing; other keys (``hf_hub_id``,
    ``url``) are refused. ``global_pool``: timm's poolings (:data:`~hgzoo.layers.GLOBAL_POOLS`) or None.
    ``scriptable``, ``exportable``: accepted, and change nothing: every hgzoo model scripts and exports as built.
    """
    for flag in ("scriptable", "exportable"):
        value = kwargs.pop(flag, None)
        if value is not None and not isinstance(value, bool):
            raise TypeError(f"{flag} must be True, False or None, got {value!r}")
    check_global_pool(kwargs.get("global_pool"))  # applied by _build
    checkpoint_path = kwargs.pop("checkpoint_path", None) or None
    overlay = kwargs.pop("pretrained_cfg_overlay", None) or {}
    if not isinstance(overlay, dict):
        raise TypeError(f"pretrained_cfg_overlay must be a dict, got {type(overlay).__name__}")
    file = overlay.get("file")
    return TimmArgs(None if checkpoint_path is None else os.fspath(checkpoint_path),
                    None if file is None else os.fspath(file), _check_overlay(overlay))


def _from_hub_repo(source: str, pretrained: bool, pretrained_file, num_classes: int | None, in_chans: int,
                   cache_dir, kwargs: dict) -> tuple[nn.Module, PretrainedCfg]:
    """A model from a Hub repo's ``config.json`` (``hf-hub:org/repo``, or ``local-dir:FOLDER`` for such a folder on
    disk, as timm spells it): an hgzoo repo (``python -m hgzoo.convert``) or a timm repo of a network hgzoo has
    (its weights converted from timm's layout, its preprocessing timm's)."""
    from . import hub

    kind, _, repo_id = source.partition(":")
    config, weights = hub.read_local_dir(repo_id) if kind == "local-dir" else hub.read_hub_config(repo_id, cache_dir)
    _check_declared_classes(config.get("num_classes"), f"{source} config.json")
    declared_in_chans = _declared_in_chans(config, f"{source} config.json")
    if in_chans == 3:  # the default: the repo's own channel count (timm's model_args), as timm reads it
        in_chans = declared_in_chans
    arch, layout = hub_architecture(config["architecture"], source)
    if layout == "hgzoo":
        cfg = pretrained_cfg_from_dict(config.get("pretrained_cfg") or {"architecture": arch, "tag": "hub"})
    else:
        timm_cfg = config.get("pretrained_cfg") if isinstance(config.get("pretrained_cfg"), dict) else {}
        cfg = pretrained_cfg_from_timm(arch, Path(repo_id).name if kind == "local-dir" else repo_id.replace("/", "_"),
                                       timm_cfg, config["num_classes"])
    for k, v in _declared_model_args(config, arch, f"{source} config.json").items():
        kwargs.setdefault(k, v)  # the repo's own network (timm's model_args); an argument given here wins, as in timm
    model = _build(arch, num_classes=config["num_classes"] if num_classes is None else num_classes,
                   in_chans=in_chans, **kwargs)
    model.pretrained_cfg = cfg
    if pretrained_file is not None:
        load_checkpoint(model, pretrained_file, use_ema=False)
    elif pretrained:
        _apply_state_dict(model, read_checkpoint(weights, model, layout=layout), weights.name)
    return model, cfg


def hub_architecture(name: str, source: str) -> tuple[str, str]:
    """(hgzoo architecture, state-dict layout) of a Hub ``config.json``'s ``architecture``: ``"hgzoo"`` for hgzoo's
    own names (``python -m hgzoo.convert``, :func:`hgzoo.save_pretrained`), ``"timm"`` for timm's names of the same
    networks (``hgnet_small`` is ``pphgnet_small``, ``resnet50d`` ``resnet50_vd``...; timm's ``resnet200d`` and
    others built otherwise are refused, with the reason)."""
    if is_model(name) and name.partition(".")[0].lower() not in TIMM_ALIASES:
        return resolve_model_name(name)[0], "hgzoo"
    try:
        return find_timm_arch(name)[1].hgzoo, "timm"
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from None


def pretrained_cfg_argument(model_name: str, pretrained_cfg: object) -> tuple[str, PretrainedCfg | None, str | None]:
    """timm's ``pretrained_cfg`` argument, as (model name, weight configuration, weights file).

    A tag string selects that tag of ``model_name``'s architecture (it takes priority over a tag in the name, as in
    timm); an hgzoo :class:`PretrainedCfg` is used as it is; a dict or timm's ``PretrainedCfg`` names the weights
    by timm's keys: ``source`` ``hf-hub`` with ``hf_hub_id`` (the Hub repo), ``local-dir`` with ``file`` (the
    folder), ``file`` (a weights file, read if ``pretrained``), else ``tag``; a dict of hgzoo's own fields
    (:meth:`PretrainedCfg.to_dict`) is that configuration.
    """
    if pretrained_cfg is None or pretrained_cfg == "":
        return model_name, None, None
    if model_name.startswith(("hf-hub:", "local-dir:")):
        raise TypeError(f"pretrained_cfg= with {model_name!r}: the repo's config.json is its configuration; give one "
                        "or the other (as in timm)")
    arch = model_name.partition(".")[0]
    if isinstance(pretrained_cfg, str):
        return f"{arch}.{pretrained_cfg}", None, None
    if isinstance(pretrained_cfg, PretrainedCfg):
        if pretrained_cfg.architecture != resolve_model_name(arch)[0]:
            raise ValueError(f"pretrained_cfg is for {pretrained_cfg.architecture}, not {model_name}")
        return arch, pretrained_cfg, None
    if dataclasses.is_dataclass(pretrained_cfg) and not isinstance(pretrained_cfg, type):
        pretrained_cfg = dataclasses.asdict(pretrained_cfg)  # timm's PretrainedCfg
    if not isinstance(pretrained_cfg, dict):
        raise TypeError(f"pretrained_cfg must be a tag, a dict or a PretrainedCfg, got {type(pretrained_cfg).__name__}")
    d = pretrained_cfg
    if d.get("source") == "hf-hub" and d.get("hf_hub_id"):
        return f"hf-hub:{d['hf_hub_id']}", None, None
    if d.get("source") == "local-dir" and d.get("file"):
        return f"local-dir:{d['file']}", None, None
    if "sources" in d and d.get("architecture"):  # hgzoo's own fields
        return pretrained_cfg_argument(model_name, pretrained_cfg_from_dict(d))
    name = f"{arch}.{d['tag']}" if d.get("tag") else model_name
    return name, None, (os.fspath(d["file"]) if d.get("file") else None)


#: Where checkpoints keep EMA weights, in timm's order of preference (timm's ``load_state_dict``); ``ema`` is where
#: hgzoo's train.py kept them before it wrote timm's key.
EMA_KEYS = ("state_dict_ema", "model_ema", "ema")
_MODEL_KEYS = ("state_dict", "model", "model_state_dict")


def checkpoint_weights(obj: object, use_ema: bool = False) -> object:
    """The weights inside a checkpoint ``obj`` as timm's ``load_state_dict`` finds them: with ``use_ema``, the first
    of :data:`EMA_KEYS` it holds; then ``state_dict``, ``model``, ``model_state_dict``; a file holding only EMA
    weights gives those; anything else is taken to be the weights themselves."""
    if not isinstance(obj, dict):
        return obj
    for key in (*EMA_KEYS, *_MODEL_KEYS) if use_ema else (*_MODEL_KEYS, *EMA_KEYS):
        if isinstance(obj.get(key), dict):
            return obj[key]
    return obj


def _strip_wrappers(sd: dict) -> dict:
    """``sd`` without DDP's ``module.`` and ``torch.compile``'s ``_orig_mod.`` prefixes (in either order), as timm's
    ``clean_state_dict``."""
    out = {}
    for k, v in sd.items():
        for prefix in ("_orig_mod.", "module.", "_orig_mod."):
            k = k[len(prefix):] if k.startswith(prefix) else k
        out[k] = v
    return out


def load_pretrained(model: nn.Module, cfg: PretrainedCfg, *, progress: bool = True,
                    cache_dir: str | os.PathLike | None = None) -> Path:
    """Load the weights of ``cfg`` (a tag) into ``model``; returns the converted file they were loaded from.

    The converted file in the cache (``cache_dir/converted``, default ``$HGZOO_CACHE``) is used while its record
    says it came from one of ``cfg.sources`` and meets that source's pins; otherwise the file is fetched from the
    sources (:func:`hgzoo.hub.resolve_weights`), converted here with ``model`` (Paddle's or timm's layout), and
    cached with the downloaded file's sha256, source and Hub commit. All under a file lock: two processes loading
    the same tag download it once.
    """
    from filelock import FileLock

    from . import hub

    _refuse_statistics_free_norm(model, cfg.name)
    cached = hub.converted_path(cfg, cache_dir)
    cached.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cached) + ".lock"):
        if cached.is_file():
            problem = hub.cached_problem(cached, cfg)
            if problem is None:
                load_checkpoint(model, cached, evict_if_corrupt=True)
                return cached
            # Left in place until a conversion from a listed source replaces it (atomically).
            warnings.warn(f"{cached} is not used ({problem}); fetching {cfg.name} from its sources again",
                          stacklevel=3)
        resolved = hub.resolve_weights(cfg, progress=progress, cache=cache_dir)
        try:
            sd = read_checkpoint(resolved.path, model, layout=resolved.source.layout,
                                 dropout_convention=resolved.source.dropout_convention)
        except CorruptCheckpointError as e:
            _evict(resolved.path)
            raise CorruptCheckpointError(f"{e}\nThe corrupt download was removed from the cache; try again.") from e
        finally:
            if resolved.temporary:
                resolved.path.unlink(missing_ok=True)
        hub.write_converted(cached, sd, cfg, resolved)
    _apply_state_dict(model, sd, cached.name)
    return cached


def _refuse_statistics_free_norm(model: nn.Module, source: str) -> None:
    """Published weights are BatchNorm's (weight, bias and running statistics): a model built with a norm that has no
    running statistics (``norm_layer='groupnorm'``, ``'layernorm2d'``) cannot take them, and loading only the affine
    half would silently make another network. A BatchNorm-family norm (sync, frozen) takes them as they are."""
    norm = next((m.bn for m in model.modules() if isinstance(m, ConvBNAct) and not is_foldable_norm(m.bn)), None)
    if norm is not None:
        raise ValueError(f"{source}: these weights are BatchNorm's (running statistics), which the model's "
                         f"{type(norm).__name__} norm_layer has no place for; build with a BatchNorm-family norm_layer "
                         "('batchnorm2d', 'syncbatchnorm', 'frozenbatchnorm2d') to load them, or pretrained=False")


def _check_model_args(num_classes, in_chans, out_indices) -> None:
    """Refuse values that would silently build something else (a headless model for -1, a 224 default...)."""
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                    or num_classes < 0):
        raise ValueError(f"num_classes must be a whole number >= 0 (0: no classifier), got {num_classes!r}")
    if isinstance(in_chans, bool) or not isinstance(in_chans, int) or in_chans < 1:
        raise ValueError(f"in_chans must be a whole number >= 1, got {in_chans!r}")
    if out_indices is not None and not isinstance(out_indices, int) and len(tuple(out_indices)) == 0:
        raise ValueError("out_indices=() selects no feature level; give None (all levels), an int n (the last n) "
                         "or the indices")


def max_declared_classes() -> int:
    """The largest class count accepted from a file (a Hub config.json, a checkpoint's metadata):
    ``$HGZOO_MAX_NUM_CLASSES``, default 100,000 (PaddleClas's largest, ResNet50_vd_10w's pretraining)."""
    return int(os.environ.get("HGZOO_MAX_NUM_CLASSES") or 100_000)


def _check_declared_classes(value, source: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CorruptCheckpointError(f"{source}: num_classes must be a whole number >= 0, found {value!r}")
    if value > max_declared_classes():
        raise CorruptCheckpointError(f"{source} declares {value:,} classes, over the limit of "
                                     f"{max_declared_classes():,} (HGZOO_MAX_NUM_CLASSES raises it if you trust it)")


MAX_DECLARED_IN_CHANS = 4096


def _declared_in_chans(config: dict, source: str) -> int:
    """The input channels a Hub config.json declares (timm's ``model_args.in_chans``; 3 if absent), checked."""
    model_args = config.get("model_args") or {}
    if not isinstance(model_args, dict):
        raise CorruptCheckpointError(f"{source}: model_args must be a mapping, found {type(model_args).__name__}")
    value = model_args.get("in_chans", 3)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_DECLARED_IN_CHANS:
        raise CorruptCheckpointError(f"{source}: model_args.in_chans must be a whole number from 1 to "
                                     f"{MAX_DECLARED_IN_CHANS}, found {value!r}")
    return value


def _declared_model_args(config: dict, arch: str, source: str) -> dict:
    """The arguments a Hub config.json's ``model_args`` declares besides ``in_chans`` (read apart): the activation,
    norm, output stride... the network was built with, checked against ``arch``'s builder. timm (1.0.31 on) also
    records ``num_classes`` (it must agree with the file's ``num_classes``) and ``global_pool``."""
    model_args = {k: v for k, v in (config.get("model_args") or {}).items() if k != "in_chans"}
    if "num_classes" in model_args:
        if model_args["num_classes"] != config.get("num_classes"):
            raise CorruptCheckpointError(f"{source}: model_args.num_classes {model_args['num_classes']!r} contradicts "
                                         f"num_classes {config.get('num_classes')!r}")
        del model_args["num_classes"]
    params = inspect.signature(model_entrypoint(arch)).parameters
    for k, v in model_args.items():
        if k not in params and k != "global_pool":
            raise CorruptCheckpointError(f"{source}: model_args.{k} is not an argument of {arch} (it takes "
                                         f"{', '.join(p for p in params if p not in ('num_classes', 'in_chans'))})")
        if not isinstance(v, (str, int, float, bool)):
            raise CorruptCheckpointError(f"{source}: model_args.{k} must be a name or a number, found {v!r}")
    return model_args


def _as_backbone(model: nn.Module, cfg: PretrainedCfg | None, features_only: bool, out_indices, feature_mode,
                 freeze_at: int | None, norm_eval: bool, timm: TimmArgs | None = None) -> nn.Module:
    """Apply timm's arguments (the preprocessing overlay, ``checkpoint_path`` loaded into ``model``), wrap it as a
    features-only backbone if asked, then freeze and set norm_eval."""
    timm = timm or TimmArgs()
    cfg = model.pretrained_cfg = timm.overlay(cfg)
    if timm.checkpoint_path is not None:  # timm's create_model: its EMA weights where it has them
        load_checkpoint(model, timm.checkpoint_path, use_ema=True)
    if features_only:
        from .features import FeatureListNet

        model = FeatureListNet(model, out_indices, feature_mode)
        model.pretrained_cfg = cfg
    elif out_indices is not None or feature_mode is not None:
        raise TypeError("out_indices and feature_mode go with features_only=True")
    if freeze_at is not None:
        model.freeze_stages(freeze_at)
    if norm_eval:
        model.set_norm_eval(True)
    return model


def read_checkpoint(path: str | os.PathLike, model: nn.Module, *, layout: str | None = None,
                    dropout_convention: str = "timm", use_ema: bool = False) -> dict[str, torch.Tensor]:
    """Read ``path`` with the safe reader (:func:`hgzoo._files.safe_load`) into a state dict with ``model``'s keys.

    A ``.pdparams`` is converted with the family's Paddle key map, a timm state dict (recognised by its keys, or
    ``layout="timm"``) with its timm key map (``dropout_convention``: see :func:`hgzoo.convert.timm.timm_to_hgzoo`);
    a PyTorch checkpoint that wraps its weights (train.py's ``model``, timm's ``state_dict``) is unwrapped, and
    DDP's ``module.`` prefix removed; ``use_ema``: its EMA weights where it has them (:func:`checkpoint_weights`).
    """
    path = Path(path)
    return state_dict_of(safe_load(path), model, str(path), layout=layout, dropout_convention=dropout_convention,
                         use_ema=use_ema)


def state_dict_of(obj: object, model: nn.Module, name: str, *, layout: str | None = None,
                  dropout_convention: str = "timm", use_ema: bool = False) -> dict[str, torch.Tensor]:
    """The state dict inside what :func:`~hgzoo._files.safe_load` read from ``name``, with ``model``'s keys.

    ``layout`` (``"paddle"``, ``"timm"``, ``"hgzoo"``) says what the file is; by default it is recognised.
    ``use_ema``: a checkpoint's EMA weights where it has them (:func:`checkpoint_weights`)."""
    if layout not in (None, "paddle", "timm", "hgzoo"):
        raise ValueError(f"layout must be 'paddle', 'timm' or 'hgzoo', got {layout!r}")
    if isinstance(obj, dict) and obj and all(isinstance(v, np.ndarray) for v in obj.values()):
        if layout not in (None, "paddle"):
            raise CorruptCheckpointError(f"{name} is a Paddle .pdparams, not the {layout} file its source names")
        _refuse_statistics_free_norm(model, name)  # PaddleClas's weights are all BatchNorm's
        return convert_paddle_state_dict(obj, model)
    obj = checkpoint_weights(obj, use_ema)
    if not isinstance(obj, dict) or not obj:
        what = "an empty dict" if isinstance(obj, dict) else f"a {type(obj).__name__}"
        raise CorruptCheckpointError(f"{name} holds {what}, not a state dict (a mapping of parameter names to tensors)")
    bad = [k for k, v in obj.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if bad:
        raise CorruptCheckpointError(f"{name} is not a state dict: entry {bad[0]!r} is a "
                                     f"{type(obj[bad[0]]).__name__}, not a tensor")
    obj = _strip_wrappers(obj)
    if layout == "timm" or (layout is None and looks_like_timm(obj, model)):
        return timm_to_hgzoo(obj, model, dropout_convention=dropout_convention, name=name)
    return obj


def _adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """RGB stem weights for ``in_chans`` inputs: summed for 1 channel, tiled and rescaled otherwise."""
    if in_chans == 1:
        return weight.sum(1, keepdim=True)
    reps = -(-in_chans // weight.shape[1])
    return weight.repeat(1, reps, 1, 1)[:, :in_chans] * (weight.shape[1] / in_chans)


def _evict(path: Path) -> None:
    """Remove a cached file (for a Hugging Face snapshot, the link and the blob behind it)."""
    if path.is_symlink():
        path.resolve().unlink(missing_ok=True)
    path.unlink(missing_ok=True)


def load_checkpoint(model: nn.Module, path: str | os.PathLike, evict_if_corrupt: bool = False, *,
                    use_ema: bool = True) -> None:
    """Load a checkpoint into ``model``, adapting the classifier and the stem when they differ.

    ``use_ema`` (timm's ``load_checkpoint``, default True as there): a checkpoint's EMA weights where it has them
    (timm's ``state_dict_ema``, train.py's), else its model weights. With ``evict_if_corrupt`` (used for cached
    downloads), a corrupt file is removed before the error is raised.
    """
    path = Path(path)
    try:
        sd = read_checkpoint(path, model, use_ema=use_ema)
    except CorruptCheckpointError as e:
        if not evict_if_corrupt:
            raise
        _evict(path)
        raise CorruptCheckpointError(f"{e}\nIt was removed from the cache; loading again will download it "
                                     "again.") from e
    _apply_state_dict(model, sd, path.name)


def _apply_state_dict(model: nn.Module, sd: dict[str, torch.Tensor], name: str) -> None:
    """Load ``sd`` (``model``'s keys) into ``model``: an RGB stem is adapted to ``in_chans``; a classifier for another
    class count, or none at all (a backbone checkpoint), leaves ``model``'s freshly initialised one, with a warning."""
    own = model.state_dict()
    stem = f"{model.first_conv}.weight"
    if stem in sd and stem in own and sd[stem].shape[1] != own[stem].shape[1]:
        sd[stem] = _adapt_input_conv(sd[stem], own[stem].shape[1])
    fc_keys = [k for k in ("head.fc.weight", "head.fc.bias") if k in sd]
    if fc_keys and any(k not in own or own[k].shape != sd[k].shape for k in fc_keys):
        warnings.warn(
            f"{name}: the checkpoint's classifier has {sd[fc_keys[-1]].shape[0]} classes, the model "
            f"{model.num_classes}; the classifier is re-initialised and must be trained.",
            stacklevel=3,
        )
        for k in fc_keys:
            sd.pop(k)
    elif not fc_keys and "head.fc.weight" in own:
        warnings.warn(f"{name} has no classifier (a backbone checkpoint); the model's {model.num_classes}-class "
                      "classifier is freshly initialised and must be trained.", stacklevel=3)
        fc_keys = ["head.fc.weight", "head.fc.bias"]
    stats = next((k for k in sd if k.endswith(".running_var") and k not in own
                  and k.removesuffix("running_var") + "weight" in own), None)
    if stats is not None:
        _refuse_statistics_free_norm(model, name)  # BatchNorm statistics for a norm without any (norm_layer=)
    mismatched = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                  for k, v in sd.items() if k in own and own[k].shape != v.shape]
    if mismatched:
        raise CheckpointMismatchError(_mismatch_report(type(model).__name__, [], [], mismatched))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not (k.startswith("head.fc.") and k not in sd and fc_keys)]
    if missing or unexpected:
        raise CheckpointMismatchError(_mismatch_report(type(model).__name__, missing, unexpected, []))
