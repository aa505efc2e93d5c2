"""Write converted weights: safetensors (atomically), and a Hub-ready folder with config and model card."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save

from .._files import atomic_write
from ..pretrained import PretrainedCfg

__all__ = ["write_safetensors", "write_hub_folder"]


def write_safetensors(state_dict: dict[str, torch.Tensor], path: Path, cfg: PretrainedCfg | None = None) -> Path:
    """Save ``state_dict`` to ``path`` through the atomic writer: never a half-written file."""
    meta = {"format": "pt"}
    if cfg is not None:
        meta["hgzoo_pretrained_cfg"] = json.dumps(cfg.to_dict())
    data = save({k: v.contiguous() for k, v in state_dict.items()}, metadata=meta)
    return atomic_write(path, data)


def _model_card(cfg: PretrainedCfg, num_classes: int, source: str) -> str:
    metrics = ""
    if cfg.top1 is not None and num_classes == cfg.num_classes:
        metrics = f"\n## Published accuracy (ImageNet-1k val, PaddleClas)\n\n| top-1 | top-5 |\n|---|---|\n| {cfg.top1} | {cfg.top5 if cfg.top5 is not None else '-'} |\n"
    return f"""---
license: {cfg.license.lower()}
library_name: hgzoo
tags:
- image-classification
- pytorch
- paddleclas
---

# {cfg.name}

{cfg.architecture} converted from PaddleClas to PyTorch by `hgzoo.convert`. With these weights the
hgzoo model gives PaddleClas's eval-mode logits to within 1e-4 relative error.

- Source checkpoint: {source}
- License: {cfg.license}
- Classes: {num_classes}
- Evaluation preprocessing: resize the short side to {cfg.resize_short} ({cfg.interpolation}, as {cfg.resize_backend} does),
  center-crop {cfg.crop_size}, scale by 1/255, normalize with mean {cfg.mean} and std {cfg.std}.
{metrics}
## Use

```python
import hgzoo
model = hgzoo.create_model("hf-hub:<this repo>", pretrained=True).eval()
```
{cfg.notes}
"""


def write_hub_folder(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], cfg: PretrainedCfg,
                     out_dir: Path, source: str) -> Path:
    """``out_dir/model.safetensors``, ``config.json`` (architecture, num_classes, pretrained cfg) and ``README.md``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    num_classes = model.num_classes
    write_safetensors(state_dict, out_dir / "model.safetensors", cfg)
    config = {
        "architecture": cfg.architecture,
        "num_classes": num_classes,
        "num_features": model.num_features,
        "pretrained_cfg": {**cfg.to_dict(), "num_classes": num_classes},
        "source": source,
    }
    atomic_write(out_dir / "config.json", json.dumps(config, indent=2) + "\n")
    atomic_write(out_dir / "README.md", _model_card(cfg, num_classes, source))
    return out_dir
