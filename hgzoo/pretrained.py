"""Pretrained configurations: where a weight tag comes from, how its images are preprocessed, what it scores."""
from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from .preprocessing import DATA_KEYS, IMAGENET_MEAN, IMAGENET_STD, resolve_preprocessing

__all__ = [
    "PretrainedCfg", "WeightSource", "paddle_cfg", "timm_cfg", "pretrained_cfg_from_dict", "pretrained_cfg_from_timm",
    "timm_crop_pct", "IMAGENET_MEAN", "IMAGENET_STD", "PADDLE_URL_ROOT", "PADDLE_BUCKET", "generate_default_cfgs",
]

PADDLE_BUCKET = "https://paddle-imagenet-models-name.bj.bcebos.com/"
PADDLE_URL_ROOT = f"{PADDLE_BUCKET}dygraph/legendary_models/"
TIMM_HUB_ORG = "timm"
PADDLECLAS_URL = "https://github.com/PaddlePaddle/PaddleClas"
TIMM_URL = "https://github.com/huggingface/pytorch-image-models"

#: The keys of timm's ``PretrainedCfg`` that :meth:`PretrainedCfg.to_timm_dict` fills in.
TIMM_KEYS = ("architecture", "tag", "hf_hub_id", "input_size", "interpolation", "crop_pct", "crop_mode", "mean", "std",
             "num_classes", "pool_size", "first_conv", "classifier", "license", "origin_url", "notes")


def timm_crop_pct(crop_size: int, resize_short: int) -> float:
    """The ``crop_pct`` for which timm's ``math.floor(crop_size / crop_pct)`` is exactly ``resize_short``."""
    pct = crop_size / resize_short
    while math.floor(crop_size / pct) < resize_short:  # float rounding put the quotient just below: nudge down
        pct = math.nextafter(pct, 0.0)
    while math.floor(crop_size / pct) > resize_short:
        pct = math.nextafter(pct, 1.0)
    return pct


@dataclass(frozen=True)
class WeightSource:
    """One exact place a tag's weights can be fetched from: a file in a Hugging Face Hub repo, or a URL.

    Args:
        kind: ``"hf-hub"`` (``location`` is a repo id, ``filename`` the file in it) or ``"url"``.
        location: the repo id (``"timm/hgnet_small.ssld_in1k"``) or the URL.
        layout: how the file names its tensors: ``"timm"``, ``"paddle"`` (a ``.pdparams``) or ``"hgzoo"``.
        filename: the file in the repo (``hf-hub`` only).
        timm_arch: timm's architecture name for a ``"timm"`` layout (``"hgnet_small"``).
        revision: a Hub commit to pin: another commit is refused.
        sha256: the file's digest to pin: another file is refused, naming both digests.
        dropout_convention: for a ``"timm"`` file of a family whose head multiplies by ``1 - p`` at eval (PP-LCNetV2,
            PPHGNet_base): ``"paddle"`` if the file holds PaddleClas's own tensors (timm's mirrors of Paddle's
            weights: loaded as they are, they give PaddleClas's logits), ``"timm"`` if it was trained with timm's
            convention (its fc is divided by ``1 - p`` so that hgzoo gives timm's logits).
    """

    kind: Literal["hf-hub", "url"]
    location: str
    layout: Literal["timm", "paddle", "hgzoo"]
    filename: str = "model.safetensors"
    timm_arch: str | None = None
    revision: str | None = None
    sha256: str | None = None
    dropout_convention: Literal["paddle", "timm"] = "paddle"

    def __post_init__(self) -> None:
        if self.kind not in ("hf-hub", "url"):
            raise ValueError(f"WeightSource kind must be 'hf-hub' or 'url', got {self.kind!r}")
        if self.layout not in ("timm", "paddle", "hgzoo"):
            raise ValueError(f"WeightSource layout must be 'timm', 'paddle' or 'hgzoo', got {self.layout!r}")
        if self.layout == "timm" and not self.timm_arch:
            raise ValueError(f"{self.location}: a timm-layout source names timm's architecture (timm_arch)")
        if self.sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise ValueError(f"{self.location}: sha256 must be 64 lowercase hex digits, got {self.sha256!r}")

    @property
    def organisation(self) -> str:
        """Who publishes the file: the Hub organisation, or the URL's host."""
        if self.kind == "hf-hub":
            return self.location.split("/")[0]
        return self.location.split("/")[2]

    def describe(self) -> str:
        if self.kind == "hf-hub":
            pins = "".join(f", {k} {v}" for k, v in (("revision", self.revision), ("sha256", self.sha256)) if v)
            return f"hf-hub:{self.location}/{self.filename}{pins}"
        return self.location + (f" (sha256 {self.sha256})" if self.sha256 else "")


@dataclass(frozen=True)
class PretrainedCfg(Mapping):
    """Everything needed to get and use one set of weights (one ``arch.tag``).

    ``sources`` are tried in order (see :func:`hgzoo.hub.resolve_weights`); nothing else is ever asked for.

    Preprocessing: decode to RGB, resize the short side to ``resize_short`` with ``interpolation`` (as
    ``resize_backend`` does it), center-crop ``crop_size``, scale by 1/255, normalize with ``mean``/``std``.
    ``size_rounding`` is how the long side and the crop offset are rounded: ``"paddle"`` (PaddleClas's
    ``ResizeImage``/``CropImage``: ``round(long * short / min)``, offset ``(dim - crop) // 2``) or
    ``"torchvision"`` (``Resize(int)``/``CenterCrop``, which timm uses: ``int(short * long / min)``, offset
    ``round((dim - crop) / 2)``).

    It is also a read-only mapping, as timm reads its ``pretrained_cfg`` (``cfg["input_size"]``,
    ``cfg.get("crop_pct")``): every field under its own name, and timm's keys that are not fields, derived from
    the fields (:meth:`to_timm_dict`). ``extra`` may hold the model's ``first_conv`` and ``in_chans`` (a model's
    ``pretrained_cfg`` does).
    """

    architecture: str
    tag: str
    sources: tuple[WeightSource, ...] = ()
    num_classes: int = 1000
    resize_short: int = 256
    crop_size: int = 224
    interpolation: str = "bilinear"
    resize_backend: str = "cv2"
    size_rounding: str = "paddle"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    top1: float | None = None
    top5: float | None = None
    license: str = "Apache-2.0"
    source: str = "PaddleClas"
    notes: str = ""
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def name(self) -> str:
        return f"{self.architecture}.{self.tag}"

    @property
    def input_size(self) -> tuple[int, int, int]:
        """(channels, crop, crop): 3 channels unless the model's configuration says otherwise (``extra``)."""
        return (int(self.extra.get("in_chans", 3)), self.crop_size, self.crop_size)

    @property
    def paddle_url(self) -> str | None:
        """The official Paddle URL among the sources, if any."""
        return next((s.location for s in self.sources if s.layout == "paddle" and s.kind == "url"), None)

    @property
    def hf_hub_id(self) -> str | None:
        """The first Hub repo among the sources, if any."""
        return next((s.location for s in self.sources if s.kind == "hf-hub"), None)

    def data_config(self, stored: Mapping[str, Any] | None = None, in_chans: int | None = None,
                    **overrides: Any) -> dict[str, Any]:
        """This tag's evaluation preprocessing settings, with a ``stored`` configuration and ``overrides`` on top,
        for ``in_chans`` input channels (default: :attr:`input_size`'s): see
        :func:`hgzoo.preprocessing.resolve_preprocessing`."""
        return resolve_preprocessing(self, stored, in_chans, **overrides)

    def with_data_config(self, data_config: Mapping[str, Any]) -> PretrainedCfg:
        """This configuration with the preprocessing settings of a resolved ``data_config`` (:meth:`data_config`)."""
        return replace(self, **{k: tuple(v) if k in ("mean", "std") else v for k, v in data_config.items()
                                if k in DATA_KEYS})

    def transforms(self, training: bool = False, *, stored: Mapping[str, Any] | None = None,
                   in_chans: int | None = None, normalize: bool = True, **overrides: Any):
        """This tag's preprocessing as a torchvision ``v2.Compose`` (as torchvision's ``Weights.transforms()``):
        :meth:`data_config` carried out by :func:`hgzoo.data.create_transform`."""
        from .data.transforms import create_transform

        chans = self.input_size[0] if in_chans is None else in_chans
        return create_transform(self.data_config(stored, chans, **overrides), training, normalize=normalize,
                                in_chans=chans)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["name"] = self.name
        return d

    @property
    def crop_pct(self) -> float:
        """timm's ``crop_pct``: ``math.floor(crop_size / crop_pct)`` is exactly ``resize_short``."""
        return timm_crop_pct(self.crop_size, self.resize_short)

    def to_timm_dict(self) -> dict[str, Any]:
        """This configuration in the keys of timm's ``PretrainedCfg`` (``timm.models.PretrainedCfg(**d)`` takes it).

        timm resizes with PIL whatever ``resize_backend`` says (antialiased, where PaddleClas's cv2 resize is not);
        the README gives the difference this makes.
        """
        return {
            "architecture": self.architecture, "tag": self.tag, "hf_hub_id": self.hf_hub_id,
            "input_size": self.input_size, "interpolation": self.interpolation, "crop_pct": self.crop_pct,
            "crop_mode": "center", "mean": tuple(self.mean), "std": tuple(self.std), "num_classes": self.num_classes,
            "pool_size": (math.ceil(self.crop_size / 32),) * 2, "first_conv": self.extra.get("first_conv"),
            "classifier": "head.fc", "license": self.license.lower(),
            "origin_url": TIMM_URL if "timm" in self.source.lower() else PADDLECLAS_URL,
            "notes": (self.notes,) if self.notes else None,
        }

    # --- read-only mapping: fields by their own names, then timm's keys ---------------------------------------------

    def __getitem__(self, key: str) -> Any:
        if key in _FIELD_NAMES:
            return getattr(self, key)
        if key in TIMM_KEYS:
            return self.to_timm_dict()[key]
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        yield from _FIELD_NAMES
        yield from (k for k in TIMM_KEYS if k not in _FIELD_NAMES)

    def __len__(self) -> int:
        return len(_FIELD_NAMES) + sum(k not in _FIELD_NAMES for k in TIMM_KEYS)


_FIELD_NAMES = tuple(f.name for f in fields(PretrainedCfg))


def pretrained_cfg_from_dict(d: dict) -> PretrainedCfg:
    """A :class:`PretrainedCfg` from :meth:`PretrainedCfg.to_dict`'s output (a Hub folder's ``config.json``);
    unknown keys are ignored, lists become tuples and sources :class:`WeightSource` s again."""
    known = {f.name for f in fields(PretrainedCfg)}
    kw = {k: (tuple(v) if isinstance(v, list) and k != "sources" else v) for k, v in d.items() if k in known}
    kw["sources"] = tuple(WeightSource(**s) for s in d.get("sources") or () if isinstance(s, dict))
    return PretrainedCfg(**kw)


def _timm_source(timm_name: str, dropout_convention: str) -> WeightSource:
    arch = timm_name.partition(".")[0]
    return WeightSource("hf-hub", f"{TIMM_HUB_ORG}/{timm_name}", "timm", timm_arch=arch,
                        dropout_convention=dropout_convention)


def paddle_cfg(file: str, *, top1: float | None = None, top5: float | None = None, notes: str = "",
               resize_short: int = 256, crop_size: int = 224, interpolation: str = "bilinear",
               resize_backend: str = "cv2", timm: str | None = None, url_root: str = PADDLE_URL_ROOT,
               num_classes: int = 1000) -> dict[str, Any]:
    """A weights-table entry (:func:`generate_default_cfgs`) for weights PaddleClas publishes as
    ``{url_root}{file}.pdparams``: 1000 ImageNet classes, a ``crop_size`` crop after resizing the short side to
    ``resize_short`` (PaddleClas's evaluation configs; the defaults are those of every family but PP-HGNet).

    ``timm``: the timm tag (``"hgnet_small.ssld_in1k"``) whose Hub repo ``timm/<tag>`` holds the same tensors as
    safetensors; it is tried first, and the Paddle URL after it.
    """
    sources = (_timm_source(timm, "paddle"),) if timm else ()
    sources += (WeightSource("url", f"{url_root}{file}.pdparams", "paddle"),)
    return dict(sources=sources, num_classes=num_classes, resize_short=resize_short, crop_size=crop_size,
                interpolation=interpolation, resize_backend=resize_backend, top1=top1, top5=top5, notes=notes)


def timm_cfg(timm_name: str, *, crop_size: int = 224, crop_pct: float, interpolation: str,
             mean: tuple[float, float, float] = IMAGENET_MEAN, std: tuple[float, float, float] = IMAGENET_STD,
             top1: float | None = None, top5: float | None = None, license: str = "Apache-2.0",
             source: str = "timm", notes: str = "") -> dict[str, Any]:
    """A weights-table entry (:func:`generate_default_cfgs`) for weights that exist only in timm's Hub repo
    ``timm/<timm_name>`` (timm's own trainings, HRNet's original weights), with timm's evaluation preprocessing:
    resize the short side to ``floor(crop_size / crop_pct)`` with PIL, center-crop ``crop_size`` as torchvision
    does. Its tag in the table must be timm's."""
    return dict(
        sources=(_timm_source(timm_name, "timm"),), resize_short=math.floor(crop_size / crop_pct),
        crop_size=crop_size, interpolation=interpolation, resize_backend="pil", size_rounding="torchvision",
        mean=mean, std=std, top1=top1, top5=top5, license=license, source=source, notes=notes,
    )


def generate_default_cfgs(table: Mapping[str, Mapping[str, Any]]) -> dict[str, tuple[PretrainedCfg, ...]]:
    """A family file's weights table, ``{"arch.tag": fields}`` (:func:`paddle_cfg`, :func:`timm_cfg`), as
    ``{arch: (PretrainedCfg, ...)}`` in table order: an architecture's first tag is its default. A timm-only tag
    must be timm's own tag."""
    out: dict[str, list[PretrainedCfg]] = {}
    for key, entry in table.items():
        arch, _, tag = key.partition(".")
        if not arch or not tag or "." in tag:
            raise ValueError(f"weights table key {key!r} must be 'arch.tag'")
        timm_only = [s.location for s in entry.get("sources", ()) if s.dropout_convention == "timm"]
        if any(not loc.endswith(f".{tag}") for loc in timm_only):
            raise ValueError(f"weights table key {key!r}: timm's weights {timm_only[0]} keep timm's tag")
        out.setdefault(arch, []).append(PretrainedCfg(architecture=arch, tag=tag, **entry))
    return {arch: tuple(cfgs) for arch, cfgs in out.items()}


def pretrained_cfg_from_timm(arch: str, tag: str, timm_pretrained_cfg: dict, num_classes: int) -> PretrainedCfg:
    """hgzoo's preprocessing for a timm checkpoint, from timm's own ``pretrained_cfg`` (a Hub ``config.json``)."""
    c = timm_pretrained_cfg
    size = int((c.get("input_size") or (3, 224, 224))[-1])
    return PretrainedCfg(
        architecture=arch, tag=tag, num_classes=num_classes,
        resize_short=math.floor(size / float(c.get("crop_pct") or 0.875)), crop_size=size,
        interpolation=str(c.get("interpolation") or "bilinear"), resize_backend="pil", size_rounding="torchvision",
        mean=tuple(c.get("mean") or IMAGENET_MEAN), std=tuple(c.get("std") or IMAGENET_STD),
        license=str(c.get("license") or "unknown"), source="timm checkpoint",
    )
