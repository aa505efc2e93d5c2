"""Publishing: a Hub-ready folder from any hgzoo model, a train.py checkpoint or a converted Paddle checkpoint, and
its upload.

A folder holds ``model.safetensors``, a ``config.json`` that both ``hgzoo.create_model("hf-hub:ORG/REPO")`` and
``timm.create_model("hf-hub:ORG/REPO")`` (after :func:`hgzoo.timm_compat.register`) load (timm's Hub format:
``architecture``, ``num_classes``, ``num_features``, ``pretrained_cfg`` with timm's keys and hgzoo's fields,
``label_names``, ``model_args``), and a model card whose metadata the Hub reads (``pipeline_tag``, ``library_name``,
``tags``, ``datasets``, ``model-index``). Every file goes through the one atomic writer.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import save
from torch import nn

from .._files import atomic_write
from .._registry import SSLD_CITATION, model_family
from ..layers import layer_name
from ..pretrained import PADDLECLAS_URL, PretrainedCfg, WeightSource

__all__ = ["Metrics", "Provenance", "save_pretrained", "push_to_hub", "upload_folder", "write_hub_folder",
           "write_safetensors", "hub_config", "model_card"]


@dataclass(frozen=True)
class Metrics:
    """Accuracy for the card's ``model-index``: top-1 / top-5 in percent, on ``dataset`` (``dataset_id``: its Hub
    id, when it has one), measured or published as ``source`` says."""

    top1: float | None = None
    top5: float | None = None
    dataset: str = "ImageNet-1k"
    dataset_id: str | None = "imagenet-1k"
    split: str = "validation"
    source: str = "published by PaddleClas"


@dataclass(frozen=True)
class Provenance:
    """Where the weights come from: ``kind`` is ``"paddleclas"`` (converted from a PaddleClas ``.pdparams``), ``"timm"``
    (converted from a timm checkpoint),
    ``"train"`` (fine-tuned by hgzoo's train.py) or ``"model"`` (saved from a model in memory); ``source`` names the
    file or URL; for train.py, ``start`` is the weights training started from and ``settings`` the run's."""

    kind: str
    source: str
    start: str | None = None
    settings: tuple[tuple[str, Any], ...] = ()


def write_safetensors(state_dict: dict[str, torch.Tensor], path: Path, cfg: PretrainedCfg | None = None) -> Path:
    """Save ``state_dict`` to ``path`` through the atomic writer: never a half-written file."""
    meta = {"format": "pt"}
    if cfg is not None:
        meta["hgzoo_pretrained_cfg"] = json.dumps(cfg.to_dict())
    data = save({k: v.contiguous() for k, v in state_dict.items()}, metadata=meta)
    return atomic_write(path, data)


# --- config.json --------------------------------------------------------------------------------------------------

def _first_conv(model: nn.Module) -> str | None:
    return getattr(model, "first_conv", None)


def _model_args(model: nn.Module) -> dict[str, Any]:
    """The builder arguments ``model`` was made with away from their defaults (``create_model`` records them), as a
    config file can hold them: a layer by its name; a layer class no name gives is refused, not dropped."""
    out = {}
    for k, v in getattr(model, "model_args", {}).items():
        if k in ("act_layer", "norm_layer"):
            name = layer_name(k.partition("_")[0], v)
            if name is None:
                raise ValueError(f"{k}={v!r} has no name config.json can record, so the published repo would rebuild "
                                 f"another network: build the model with {k} given by name (hgzoo.layers."
                                 f"get_{k}'s names)")
            v = name
        elif not isinstance(v, (str, int, float, bool)):
            raise ValueError(f"{k}={v!r} cannot be recorded in config.json: build the model with a plain value")
        out[k] = v
    return out


def hub_config(model: nn.Module, cfg: PretrainedCfg, provenance: Provenance, label_names: list[str] | None = None,
               in_chans: int = 3) -> dict[str, Any]:
    """``config.json``: timm's Hub format, whose ``pretrained_cfg`` also carries every hgzoo field (hgzoo's value
    wins where the two share a key)."""
    num_classes = model.num_classes
    cfg = dataclasses.replace(cfg, num_classes=num_classes,
                              extra={**cfg.extra, "first_conv": _first_conv(model), "in_chans": in_chans})
    timm_cfg = {k: v for k, v in cfg.to_timm_dict().items() if v is not None}
    config: dict[str, Any] = {
        "architecture": cfg.architecture,
        "num_classes": num_classes,
        "num_features": model.num_features,
        "pretrained_cfg": {**timm_cfg, **cfg.to_dict()},
    }
    if label_names:
        config["label_names"] = list(label_names)
    model_args = {**({"in_chans": in_chans} if in_chans != 3 else {}), **_model_args(model)}
    if model_args:
        config["model_args"] = model_args
    config["source"] = provenance.source
    config["hgzoo"] = {"provenance": provenance.kind, "start": provenance.start}
    return config


# --- the model card -----------------------------------------------------------------------------------------------

def _family(arch: str) -> tuple[str, tuple[str, ...]]:
    """The family's name and the BibTeX entries to cite, from the family file's record."""
    family = model_family(arch)
    return family.name, family.citations


def _metadata(cfg: PretrainedCfg, provenance: Provenance, metrics: Metrics | None, repo_id: str | None,
              datasets: list[str]) -> dict[str, Any]:
    family, _ = _family(cfg.architecture)
    tags = ["image-classification", "timm", "hgzoo", "pytorch", family.lower()]
    if provenance.kind == "paddleclas":
        tags.append("paddleclas")
    meta: dict[str, Any] = {"license": cfg.license.lower(), "library_name": "hgzoo",
                            "pipeline_tag": "image-classification", "tags": tags}
    if datasets:
        meta["datasets"] = datasets
    values = [] if metrics is None else [(n, v) for n, v in (("Top-1 accuracy", metrics.top1),
                                                             ("Top-5 accuracy", metrics.top5)) if v is not None]
    if values:
        dataset = {"name": metrics.dataset, "type": metrics.dataset_id or metrics.dataset, "split": metrics.split}
        meta["model-index"] = [{
            "name": repo_id or cfg.architecture,
            "results": [{"task": {"type": "image-classification", "name": "Image Classification"},
                         "dataset": dataset,
                         "metrics": [{"type": "accuracy", "name": n, "value": round(float(v), 4)} for n, v in values]}],
        }]
    return meta


def _provenance_text(cfg: PretrainedCfg, provenance: Provenance) -> str:
    if provenance.kind == "paddleclas":
        return (f"Converted from PaddleClas ({PADDLECLAS_URL}) to PyTorch by `hgzoo.convert`: source checkpoint "
                f"{provenance.source}. With these weights hgzoo's model gives PaddleClas's eval-mode logits to within "
                "1e-4 relative error.")
    if provenance.kind == "timm":
        return (f"Converted from the timm checkpoint {provenance.source} to hgzoo's layout by `python -m hgzoo.convert "
                "--from timm`: a renaming of the tensors (with the exact folds hgzoo's README lists), so hgzoo's model "
                "gives the source model's logits.")
    if provenance.kind == "train":
        rows = "\n".join(f"| {k} | {v} |" for k, v in provenance.settings)
        return (f"Fine-tuned by hgzoo's `train.py` from {provenance.start}; checkpoint `{provenance.source}`. "
                f"The run's settings:\n\n| setting | value |\n|---|---|\n{rows}")
    return (f"Saved from an hgzoo model in memory with `hgzoo.save_pretrained`; its weights come from "
            f"{provenance.source}. Preprocessing from its `{cfg.name}` configuration.")


def _usage(repo: str, cfg: PretrainedCfg, in_chans: int) -> str:
    return f"""## Use

```python
import hgzoo, torch
from PIL import Image

model = hgzoo.create_model("hf-hub:{repo}", pretrained=True).eval()
transform = hgzoo.data.create_transform(model.pretrained_cfg)      # the preprocessing above, exactly
with torch.no_grad():
    probs = model(transform(Image.open("image.jpg").convert("RGB")).unsqueeze(0)).softmax(-1)

# timm's API, unchanged
import hgzoo.timm_compat, timm
hgzoo.timm_compat.register()
model = timm.create_model("hf-hub:{repo}", pretrained=True).eval()
config = timm.data.resolve_model_data_config(model)
transform = timm.data.create_transform(**config)                   # timm's PIL resize: see hgzoo's README

# features for detection / segmentation
backbone = hgzoo.create_model("hf-hub:{repo}", pretrained=True, features_only=True, out_indices=(1, 2, 3))
x = torch.randn(1, {in_chans}, {cfg.crop_size}, {cfg.crop_size})
feats = backbone(x)                                                # feature maps, backbone.feature_info describes them
final, intermediates = model.forward_intermediates(x)              # timm's feature API
```
"""


def model_card(model: nn.Module, cfg: PretrainedCfg, provenance: Provenance, metrics: Metrics | None = None,
               repo_id: str | None = None, datasets: list[str] | None = None, in_chans: int = 3) -> str:
    """The README.md of a Hub folder: metadata the Hub reads, provenance, preprocessing, accuracy, usage for
    classification and for features, license and citation."""
    family, cite = _family(cfg.architecture)
    if "ssld" in cfg.tag or "ssld" in (provenance.start or ""):
        cite = (*cite, SSLD_CITATION)
    meta = _metadata(cfg, provenance, metrics, repo_id, datasets if datasets is not None else [])
    params = sum(p.numel() for p in model.parameters())
    table = ""
    if metrics is not None and (metrics.top1 is not None or metrics.top5 is not None):
        fmt = "{:.2f}".format
        table = (f"\n## Accuracy\n\n{metrics.dataset} {metrics.split}, {metrics.source}:\n\n| top-1 | top-5 |\n"
                 f"|---|---|\n| {fmt(metrics.top1) if metrics.top1 is not None else '-'} | "
                 f"{fmt(metrics.top5) if metrics.top5 is not None else '-'} |\n")
    repo = repo_id or "ORG/REPO"
    citation = "\n\n".join(cite)
    return f"""---
{yaml.safe_dump(meta, sort_keys=False).strip()}
---

# {repo_id or cfg.architecture}

{family} (`{cfg.architecture}`, {params / 1e6:.2f} M parameters, {model.num_classes} classes, {in_chans} input
channel{'s' if in_chans != 1 else ''}) for hgzoo, PaddleClas's backbones in PyTorch at parity with PaddleClas.

## Provenance

{_provenance_text(cfg, provenance)}

## Preprocessing

Resize the short side to {cfg.resize_short} ({cfg.interpolation}, as {cfg.resize_backend} does it), center-crop
{cfg.crop_size}, scale by 1/255, normalize with mean {tuple(cfg.mean)} and std {tuple(cfg.std)}.
{table}
{_usage(repo, cfg, in_chans)}
## License

{cfg.license}{'' if provenance.kind != 'paddleclas' else ', as PaddleClas publishes these weights'}.
{('' if not cfg.notes else chr(10) + cfg.notes + chr(10))}
## Citation

```bibtex
{citation}
```
"""


# --- folders ------------------------------------------------------------------------------------------------------

def write_hub_folder(model: nn.Module, state_dict: dict[str, torch.Tensor], cfg: PretrainedCfg, out_dir: Path,
                     source: str | None = None, *, provenance: Provenance | None = None,
                     metrics: Metrics | None = None, label_names: list[str] | None = None,
                     repo_id: str | None = None, datasets: list[str] | None = None,
                     in_chans: int | None = None) -> Path:
    """``out_dir/model.safetensors``, ``config.json`` and ``README.md``, each written atomically. ``in_chans``
    defaults to the model's own (its stem's input channels).

    Without ``provenance`` the weights are a PaddleClas conversion of ``source`` (the convert CLI's case), and
    their published accuracy is carried when the class count is the tag's."""
    out_dir = Path(out_dir)
    in_chans = _in_chans(model) if in_chans is None else in_chans
    if provenance is None and cfg.source.lower().startswith("timm"):
        provenance = Provenance("timm", source or "a timm checkpoint")
    elif provenance is None:
        provenance = Provenance("paddleclas", source or cfg.paddle_url or "a PaddleClas checkpoint")
        if metrics is None and cfg.top1 is not None and model.num_classes == cfg.num_classes:
            metrics = Metrics(cfg.top1, cfg.top5)
        if datasets is None and model.num_classes == 1000:
            datasets = ["imagenet-1k"]
    config = hub_config(model, cfg, provenance, label_names, in_chans)  # refuses before anything is written
    out_dir.mkdir(parents=True, exist_ok=True)
    write_safetensors(state_dict, out_dir / "model.safetensors", cfg)
    atomic_write(out_dir / "config.json", json.dumps(config, indent=2) + "\n")
    atomic_write(out_dir / "README.md", model_card(model, cfg, provenance, metrics, repo_id, datasets, in_chans))
    return out_dir


def _metrics(value: Metrics | dict | None) -> Metrics | None:
    if value is None or isinstance(value, Metrics):
        return value
    if not isinstance(value, dict):
        raise TypeError(f"metrics must be a dict (top1, top5, dataset, dataset_id, split, source) or Metrics, "
                        f"got {type(value).__name__}")
    unknown = sorted(set(value) - {f.name for f in dataclasses.fields(Metrics)})
    if unknown:
        raise TypeError(f"unknown metrics key(s) {', '.join(unknown)}; use top1, top5, dataset, dataset_id, split, "
                        "source")
    return Metrics(**value)


#: The run settings a card lists: each one whose value is set and is not off at its default (a changed default,
#: such as ``hflip: 0``, is listed even when it reads as off).
_TRAIN_SETTINGS = ("model", "pretrained", "initial_checkpoint", "init", "dataset", "img_size", "train_crop",
                   "crop_scale_min", "hflip", "epochs", "batch_size", "lr", "opt", "sched", "warmup_epochs",
                   "momentum", "weight_decay", "no_weight_decay", "label_smoothing", "mixup_alpha", "cutmix_alpha",
                   "randaugment", "random_erasing", "lr_mult_list", "freeze", "ema", "teacher", "seed")


def _card_settings(config: dict) -> tuple[tuple[str, Any], ...]:
    from ..train.config import DEFAULTS

    def shown(key: str) -> bool:
        value = config.get(key)
        return value is not None and (value not in (False, 0, "") or value != DEFAULTS.get(key, value))
    return tuple((k, config[k]) for k in _TRAIN_SETTINGS if shown(k))


def _train_dataset(config: dict) -> tuple[str, str | None, str]:
    """(name, Hub dataset id, split) of a train.py run's validation data."""
    if config.get("dataset") == "fashion_mnist":
        return "Fashion-MNIST", "zalando-datasets/fashion_mnist", "test"
    where = config.get("val_list") or config.get("data_dir") or "the run's data"
    return Path(str(where)).name or str(where), None, str(config.get("val_split") or "validation")


def _start(config: dict, model_name: str) -> str:
    """The weights a train.py run started from, in words."""
    if config.get("initial_checkpoint"):
        return f"the checkpoint `{Path(str(config['initial_checkpoint'])).name}`"
    if config.get("pretrained"):
        return f"hgzoo's pretrained `{model_name}` weights (converted from PaddleClas)"
    if config.get("init") == "timm":
        return "timm's random initialization (no pretrained weights)"
    return "PaddleClas's random initialization (no pretrained weights)"


def from_train_checkpoint(path: str | os.PathLike) -> tuple[nn.Module, PretrainedCfg, Provenance, Metrics | None,
                                                           list[str] | None, int]:
    """(model with the checkpoint's weights, its pretrained cfg, provenance, metrics, class names, in_chans) of a
    self-describing train.py checkpoint (``best.pt`` / ``last.pt``), read by :mod:`hgzoo.checkpoint`."""
    from ..checkpoint import data_config, input_channels, train_checkpoint

    path = Path(path)
    model, info = train_checkpoint(path)
    config = info.train_config or {}
    name, dataset_id, split = _train_dataset(config)
    metrics = Metrics(info.top1, info.top5, name, dataset_id, split, f"measured by train.py at epoch {info.epoch}") \
        if info.top1 is not None else None
    cfg = dataclasses.replace(model.pretrained_cfg.with_data_config(data_config(info, model)), tag="custom",
                              sources=(), num_classes=model.num_classes, top1=info.top1, top5=info.top5,
                              source="hgzoo train.py", notes="")
    start = _start(config, f"{model.pretrained_cfg.architecture}.{model.pretrained_cfg.tag}")
    provenance = Provenance("train", path.name, start, (("best epoch", info.epoch), *_card_settings(config)))
    names = list(info.class_names) if info.class_names is not None else None
    return model, cfg, provenance, metrics, names, input_channels(model)


def _in_chans(model: nn.Module) -> int:
    conv = model.get_submodule(model.first_conv)
    return int(conv.in_channels)


def save_pretrained(model: nn.Module | str | os.PathLike, folder: str | os.PathLike, *,
                    metrics: Metrics | dict | None = None, source: str | None = None, repo_id: str | None = None,
                    datasets: list[str] | None = None, label_names: list[str] | None = None) -> Path:
    """Write a Hub-ready folder for ``model``: an hgzoo classifier, or the path of a train.py checkpoint (its model,
    classes, channels, preprocessing, accuracy and run settings come from the checkpoint).

    Args:
        metrics: accuracy for the card (``{"top1": ..., "top5": ..., "dataset": ..., "dataset_id": ..., "split":
            ...}``); a checkpoint's own best top-1/top-5 by default. An in-memory model claims none unless given.
        source: for a model in memory, where its weights come from (shown on the card).
        repo_id: the Hub repo the folder is for (its card and config name it).
        datasets: Hub dataset ids for the card's metadata.
        label_names: class names (a checkpoint's own by default).
    """
    if isinstance(model, (str, os.PathLike)):
        model, cfg, provenance, own_metrics, own_labels, in_chans = from_train_checkpoint(model)
        metrics = _metrics(metrics) or own_metrics
        label_names = label_names or own_labels
        if datasets is None and metrics is not None and metrics.dataset_id:
            datasets = [metrics.dataset_id]
    else:
        if not hasattr(model, "pretrained_cfg") or not hasattr(model, "head"):
            raise TypeError(f"save_pretrained takes an hgzoo classifier or a train.py checkpoint path, got "
                            f"{type(model).__name__} (a features_only model: publish its classifier instead)")
        metrics = _metrics(metrics)
        in_chans = _in_chans(model)
        base = model.pretrained_cfg
        cfg = dataclasses.replace(base, tag="custom", sources=(), num_classes=model.num_classes,
                                  top1=metrics.top1 if metrics else None, top5=metrics.top5 if metrics else None,
                                  source="hgzoo.save_pretrained", notes="")
        provenance = Provenance("model", source or "a model in memory (no source given)")
    if repo_id is not None:  # the published folder names its own repo as its source
        cfg = dataclasses.replace(cfg, sources=(WeightSource("hf-hub", repo_id, "hgzoo"),))
    return write_hub_folder(model, model.state_dict(), cfg, Path(folder), provenance=provenance, metrics=metrics,
                            label_names=label_names, repo_id=repo_id, datasets=datasets, in_chans=in_chans)


def upload_folder(folder: str | os.PathLike, repo_id: str, private: bool = False, token: str | None = None,
                  commit_message: str = "Upload hgzoo weights") -> str:
    """Create ``repo_id`` (if needed) and upload ``folder`` with ``huggingface_hub``; returns the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, exist_ok=True, private=private)
    return api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message=commit_message).commit_url


def push_to_hub(model: nn.Module | str | os.PathLike, repo_id: str, *, private: bool = False,
                token: str | None = None, commit_message: str = "Upload hgzoo weights", **save_args: Any) -> str:
    """:func:`save_pretrained` into a temporary folder, then :func:`upload_folder`; returns the commit URL.
    ``HF_ENDPOINT`` and ``HF_TOKEN`` are honoured (through huggingface_hub)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_pretrained(model, Path(tmp) / "repo", repo_id=repo_id, **save_args)
        return upload_folder(folder, repo_id, private, token, commit_message)
