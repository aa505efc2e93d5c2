"""PaddleClas checkpoints as Hub folders: an official ``.pdparams`` keeps its tag's published configuration and
accuracy; any other is a user's own PaddleClas training, whose class count is read from the checkpoint and whose card
claims no published accuracy. The conversion itself is :func:`hgzoo.convert.convert_paddle_state_dict`."""
from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np

from .._builder import create_model
from .._files import safe_load
from .._registry import get_pretrained_cfg, list_pretrained, resolve_model_name
from ..convert.paddle import convert_paddle_state_dict
from ..hub import download_url
from ..pretrained import PretrainedCfg
from .hub_folder import write_hub_folder

__all__ = ["convert_file", "official_cfg_for_file", "checkpoint_num_classes"]


def official_cfg_for_file(filename: str) -> PretrainedCfg | None:
    """The weight tag whose official Paddle URL ends in ``filename``, if any."""
    for name in list_pretrained():
        cfg = get_pretrained_cfg(name)
        if cfg.paddle_url and Path(cfg.paddle_url).name == filename:
            return cfg
    return None


def checkpoint_num_classes(paddle_sd: dict[str, np.ndarray], arch: str) -> int | None:
    """The class count of a Paddle checkpoint, read off the classifier bias that maps to ``head.fc.bias``."""
    key_map = create_model(arch, num_classes=1).paddle_key_map
    for k, v in paddle_sd.items():
        if not key_map.is_dropped(k) and key_map.rename(k) == "head.fc.bias":
            return int(v.shape[0])
    return None


def convert_file(model_name: str, source: str, output: Path, num_classes: int | None = None,
                 progress: bool = True) -> Path:
    """Convert one ``.pdparams`` (path or URL) for ``model_name`` into a Hub folder at ``output``."""
    arch, tag = resolve_model_name(model_name)
    with tempfile.TemporaryDirectory() as tmp:
        if source.startswith(("http://", "https://")):
            path = download_url(source, Path(tmp) / Path(source).name, progress=progress)
        else:
            path = Path(source)
            if not path.is_file():
                raise FileNotFoundError(f"--input {source}: no such file")
        paddle_sd = safe_load(path)
    if not (isinstance(paddle_sd, dict) and all(isinstance(v, np.ndarray) for v in paddle_sd.values())):
        raise ValueError(f"--input {source} is not a Paddle .pdparams checkpoint (it is a PyTorch or safetensors "
                         "file); give the .pdparams that PaddleClas saved")
    official = official_cfg_for_file(path.name)
    if official is not None and official.architecture != arch:
        raise ValueError(f"{path.name} is the official checkpoint of {official.name}, not of {arch}")
    found = checkpoint_num_classes(paddle_sd, arch)
    if num_classes is not None and found is not None and num_classes != found:
        raise ValueError(f"--num-classes {num_classes}, but {path.name}'s classifier has {found} classes")
    num_classes = num_classes or found or 1000
    if official is not None and (tag is None or tag == official.tag):
        cfg = official
    else:
        base = get_pretrained_cfg(f"{arch}.{tag}" if tag else arch) or PretrainedCfg(arch, "custom")
        cfg = dataclasses.replace(
            base, tag="custom", sources=(), top1=None, top5=None, num_classes=num_classes,
            source=f"PaddleClas training: {path.name}",
            notes="Converted from a user's own PaddleClas checkpoint; the preprocessing is the architecture's default.",
        )
    model = create_model(arch, num_classes=num_classes)
    state_dict = convert_paddle_state_dict(paddle_sd, model)
    model.load_state_dict(state_dict)  # strict: proves the converted dict fits exactly
    return write_hub_folder(model, state_dict, cfg, output, source=cfg.paddle_url or source)
