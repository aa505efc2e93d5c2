"""Files in timm's layout: a timm checkpoint (``.safetensors``, ``.pth``, ``.pth.tar``, ``hf-hub:timm/...``) to an
hgzoo Hub folder, and hgzoo weights to a folder timm loads (``timm.create_model("local-dir:DIR", pretrained=True)``).
The conversions themselves are :mod:`hgzoo.convert.timm`'s; ``python -m hgzoo.convert --from timm / --to timm`` is
the command line."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
from safetensors.torch import save

from .._builder import create_model, load_checkpoint, read_checkpoint, state_dict_of
from .._files import atomic_write, safe_load
from .._registry import get_pretrained_cfg, is_model, resolve_model_name
from ..convert.timm import find_timm_arch, hgzoo_to_timm, timm_archs_of, timm_key_maps
from ..pretrained import PretrainedCfg, pretrained_cfg_from_timm
from .hub_folder import write_hub_folder

__all__ = ["convert_from_timm", "convert_to_timm", "hgzoo_arch_of"]


def hgzoo_arch_of(name: str) -> str:
    """The hgzoo architecture of ``name``: an hgzoo or PaddleClas name, or a timm one (``hgnet_small``)."""
    if is_model(name):
        return resolve_model_name(name)[0]
    return find_timm_arch(name)[1].hgzoo


def _read_source(source: str, model_name: str | None) -> tuple[dict, str, dict, str]:
    """(the checkpoint's state dict, the hgzoo arch, timm's pretrained_cfg if known, a name for messages)."""
    from .. import hub

    timm_cfg: dict = {}
    if source.startswith("hf-hub:"):
        config, path = hub.read_hub_config(source[len("hf-hub:"):])
        model_name = model_name or config["architecture"]
        timm_cfg = config.get("pretrained_cfg") if isinstance(config.get("pretrained_cfg"), dict) else {}
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"--input {source}: no such file")
        beside = path.parent / "config.json"  # timm's save_for_hf folders keep their config beside the weights
        if beside.is_file() and beside.stat().st_size < 1 << 20:
            config = json.loads(beside.read_text())
            model_name = model_name or config.get("architecture")
            timm_cfg = config.get("pretrained_cfg") if isinstance(config.get("pretrained_cfg"), dict) else {}
    if not model_name:
        raise ValueError(f"--input {source}: give --model (the timm or hgzoo architecture); no config.json names it")
    if not is_model(model_name):
        find_timm_arch(model_name)  # refuses a timm network that is not ours (resnet200d), by name
    obj = safe_load(path)
    if isinstance(obj, dict) and obj and all(isinstance(v, np.ndarray) for v in obj.values()):
        raise ValueError(f"--input {source} is a Paddle .pdparams, not a timm checkpoint; drop --from timm")
    return obj, hgzoo_arch_of(model_name), timm_cfg, str(path)


def _classes_of(sd: dict) -> int:
    w = sd.get("head.fc.weight")
    return int(w.shape[0]) if w is not None else 0


def convert_from_timm(source: str, output: Path, model_name: str | None = None) -> Path:
    """A timm checkpoint of a network hgzoo has, as an hgzoo Hub folder at ``output`` (weights, config, card)."""
    obj, arch, timm_cfg, name = _read_source(source, model_name)
    probe = create_model(arch, num_classes=1000)
    sd = state_dict_of(obj, probe, name, layout="timm", dropout_convention="timm")
    num_classes = _classes_of(sd)
    stem = sd.get(f"{probe.first_conv}.weight")  # a 1-channel (or other) training: the stem says how many
    model = create_model(arch, num_classes=num_classes, in_chans=int(stem.shape[1]) if stem is not None else 3)
    sd = state_dict_of(obj, model, name, layout="timm", dropout_convention="timm")
    model.load_state_dict(sd)  # strict: proves the converted dict fits exactly
    if timm_cfg:
        cfg = pretrained_cfg_from_timm(arch, "timm", timm_cfg, num_classes)
    else:
        base = get_pretrained_cfg(arch) or PretrainedCfg(arch, "timm")
        cfg = dataclasses.replace(base, tag="timm", sources=(), top1=None, top5=None, num_classes=num_classes,
                                  notes="Converted from a timm checkpoint; the preprocessing is the architecture's "
                                        "default.")
    cfg = dataclasses.replace(cfg, source=f"timm checkpoint: {source}")
    return write_hub_folder(model, sd, cfg, output, source=source)


def _timm_name_for(arch: str, tag: str | None, timm_model: str | None) -> str:
    if timm_model:
        return timm_model
    cfg = get_pretrained_cfg(f"{arch}.{tag}") if tag else None
    named = [s.timm_arch for s in (cfg.sources if cfg else ()) if s.layout == "timm"]
    if named:
        return named[0]
    archs = timm_archs_of(arch)
    if not archs:
        having = sorted({a.hgzoo for m in timm_key_maps() for a in m.archs})
        raise ValueError(f"{arch} has no timm counterpart; the hgzoo architectures that have one: {', '.join(having)}")
    return archs[0].timm


def _timm_config(timm_name: str, model, key_map, cfg: PretrainedCfg | None) -> dict:
    """timm's ``config.json`` for the folder: architecture, classes, and the nearest preprocessing timm expresses."""
    cfg = cfg or PretrainedCfg(find_timm_arch(timm_name)[1].hgzoo, "timm")
    size = cfg.crop_size
    pretrained_cfg = {
        "architecture": timm_name, "num_classes": model.num_classes,
        "input_size": [model.get_parameter(f"{model.first_conv}.weight").shape[1], size, size],
        "crop_pct": round(size / cfg.resize_short, 4), "crop_mode": "center", "interpolation": cfg.interpolation,
        "mean": list(cfg.mean), "std": list(cfg.std),
        "first_conv": key_map.to_timm(f"{model.first_conv}.weight")[: -len(".weight")],
        "classifier": key_map.to_timm("head.fc.weight")[: -len(".weight")],
    }
    return {"architecture": timm_name, "num_classes": model.num_classes, "num_features": model.num_features,
            "pretrained_cfg": pretrained_cfg}


def convert_to_timm(model_name: str, source: str, output: Path, timm_model: str | None = None) -> Path:
    """hgzoo weights (hgzoo's, PaddleClas's or timm's layout) of ``model_name`` as a folder timm loads:
    ``output/model.safetensors`` in timm's layout for timm's ``timm_model`` (default: the tag's timm repo, else the
    first timm architecture that is this network) and ``output/config.json``."""
    arch, tag = resolve_model_name(model_name)
    timm_name = _timm_name_for(arch, tag, timm_model)
    key_map, timm_arch = find_timm_arch(timm_name)
    if timm_arch.hgzoo != arch:
        raise ValueError(f"timm's {timm_arch.timm} is hgzoo's {timm_arch.hgzoo}, not {arch}; --timm-model one of: "
                         f"{', '.join(a.timm for a in timm_archs_of(arch)) or '(none)'}")
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"--input {source}: no such file")
    model = create_model(arch, num_classes=1000)
    classes = _classes_of(read_checkpoint(path, model))
    if classes != model.num_classes:
        model = create_model(arch, num_classes=classes)
    load_checkpoint(model, path)  # the loader's checks: every key, every shape
    cfg = get_pretrained_cfg(f"{arch}.{tag}" if tag else arch)
    timm_sd = hgzoo_to_timm(model.state_dict(), model, arch, timm_name, name=str(path))
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    atomic_write(output / "model.safetensors", save(timm_sd, metadata={"format": "pt"}))
    atomic_write(output / "config.json", json.dumps(_timm_config(timm_name, model, key_map, cfg), indent=2) + "\n")
    return output
