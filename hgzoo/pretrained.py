"""Pretrained configurations: where a weight tag comes from, how its images are preprocessed, what it scores."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["PretrainedCfg", "paddle_cfg", "IMAGENET_MEAN", "IMAGENET_STD", "PADDLE_URL_ROOT"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PADDLE_URL_ROOT = "https://paddle-imagenet-models-name.bj.bcebos.com/dygraph/legendary_models/"


@dataclass(frozen=True)
class PretrainedCfg:
    """Everything needed to get and use one set of weights (one ``arch.tag``).

    Preprocessing is PaddleClas's evaluation pipeline: decode to RGB, resize the short side to
    ``resize_short`` with ``interpolation`` (as ``resize_backend`` does it), center-crop ``crop_size``,
    scale by 1/255, normalize with ``mean``/``std``.
    """

    architecture: str
    tag: str
    paddle_url: str | None = None
    hf_hub_id: str | None = None
    num_classes: int = 1000
    resize_short: int = 256
    crop_size: int = 224
    interpolation: str = "bilinear"
    resize_backend: str = "cv2"
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
        return (3, self.crop_size, self.crop_size)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["name"] = self.name
        return d


def paddle_cfg(arch: str, tag: str, file: str, *, top1: float | None = None, top5: float | None = None,
               notes: str = "", resize_short: int = 256, interpolation: str = "bilinear",
               resize_backend: str = "cv2") -> PretrainedCfg:
    """The configuration of weights PaddleClas publishes as ``{PADDLE_URL_ROOT}{file}.pdparams``, mirrored on the
    Hub as ``hgzoo/{arch}.{tag}``: 1000 ImageNet classes, a 224 crop after resizing the short side to
    ``resize_short`` (PaddleClas's evaluation configs; the defaults are those of every family but PP-HGNet)."""
    return PretrainedCfg(
        architecture=arch, tag=tag, paddle_url=f"{PADDLE_URL_ROOT}{file}.pdparams", hf_hub_id=f"hgzoo/{arch}.{tag}",
        resize_short=resize_short, crop_size=224, interpolation=interpolation, resize_backend=resize_backend,
        top1=top1, top5=top5, notes=notes,
    )
