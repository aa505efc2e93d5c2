"""Real images for calibration and verification: a folder, a label list, a Dataset, a tensor, or scikit-image's photos.

Every source becomes an :class:`ImageSet`: an indexable set of images, each preprocessed by the model's
evaluation transform into a float (C, H, W) tensor on request, so that a few hundred images are read
only when they are used.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, Union

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from ..data.datasets import IMAGE_EXTENSIONS
from ..data.transforms import ConvertChannels, create_transform, transform_file
from ..preprocessing import resolve_preprocessing

__all__ = [
    "ImageSet", "ImageSource", "SAMPLE_PHOTOS", "eval_transform", "image_set",
    "sample_photo_views", "split_indices",
]

#: What ``calibration=`` / ``verify=`` accept.
ImageSource = Union[str, os.PathLike, Dataset, torch.Tensor, Sequence]

#: scikit-image's photos that ship inside its wheel (no download).
SAMPLE_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "immunohistochemistry", "hubble_deep_field", "retina")

def eval_transform(pretrained_cfg: Any = None, img_size: int | None = None, in_chans: int = 3,
                   data_config: dict | None = None) -> v2.Compose:
    """The evaluation preprocessing for export: ``pretrained_cfg``'s at ``img_size``, with ``data_config``'s
    settings on top (:func:`hgzoo.preprocessing.resolve_preprocessing`); images are first given ``in_chans``
    channels (:class:`~hgzoo.data.ConvertChannels`)."""
    cfg = resolve_preprocessing(pretrained_cfg, None, in_chans, **{"crop_size": img_size, **(data_config or {})})
    return v2.Compose([v2.ToImage(), ConvertChannels(in_chans), create_transform(cfg)])


class ImageSet:
    """``len(s)`` images; ``s.load(indices)`` gives them preprocessed as one float (N, C, H, W) batch.

    ``items`` are image files, uint8 images (tensors, arrays, PIL) to preprocess, or float tensors taken
    as already preprocessed; ``fetch`` maps an item to one of those (a Dataset's ``__getitem__``).
    """

    def __init__(self, items: Sequence, transform: Callable, description: str,
                 fetch: Callable[[Any], Any] | None = None) -> None:
        self.items, self.transform, self.description, self.fetch = items, transform, description, fetch

    def __len__(self) -> int:
        return len(self.items)

    def _one(self, item: Any) -> torch.Tensor:
        if self.fetch is not None:
            item = self.fetch(item)
        if isinstance(item, (tuple, list)):  # (image, label) from a Dataset
            item = item[0]
        if isinstance(item, (str, os.PathLike)):  # an image a transform refuses is reported under its name
            return transform_file(item, self.transform)
        if isinstance(item, torch.Tensor) and item.is_floating_point():
            return item.float()
        return self.transform(item)

    def load(self, indices: Sequence[int]) -> torch.Tensor:
        if len(indices) == 0:
            raise ValueError(f"{self.description}: no images selected")
        batch = [self._one(self.items[i]) for i in indices]
        shapes = {tuple(t.shape) for t in batch}
        if len(shapes) != 1:
            raise ValueError(f"{self.description}: images of different shapes after preprocessing: {sorted(shapes)}")
        return torch.stack(batch)


def _files_in(folder: Path) -> list[str]:
    files = sorted(str(p) for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise ValueError(f"{folder}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)}, recursively)")
    return files


def _files_in_list(list_file: Path) -> list[str]:
    """A PaddleClas label list ('relative/path.jpg label') or one image path per line; relative paths are
    relative to the list's folder."""
    files = []
    for lineno, line in enumerate(list_file.read_text(encoding="utf-8").splitlines(), 1):
        text = line.strip()
        if not text:
            continue
        head, _, tail = text.rpartition(" ")
        path = head.strip() if head and tail.isdigit() else text
        full = Path(path) if Path(path).is_absolute() else list_file.parent / path
        if not full.is_file():
            raise FileNotFoundError(f"{list_file}:{lineno}: image {full} not found")
        files.append(str(full))
    if not files:
        raise ValueError(f"{list_file}: the image list is empty")
    return files


def sample_photo_views() -> list[torch.Tensor]:
    """42 real images: scikit-image's 7 bundled photos, each as 3 square crops (start, centre, end of the long
    side) × (as is, mirrored), uint8 (3, H, W). Needs scikit-image."""
    try:
        from skimage import data
    except ImportError:
        raise ImportError("the default calibration/verification images are scikit-image's photos: pip install "
                          "scikit-image, or pass real images (a folder, a label list or a Dataset)") from None
    views = []
    for name in SAMPLE_PHOTOS:
        img = torch.from_numpy(getattr(data, name)()[..., :3].copy()).permute(2, 0, 1)
        h, w = img.shape[1:]
        s = min(h, w)
        for flip in (False, True):
            src = img.flip(-1) if flip else img
            for top, left in ((0, 0), ((h - s) // 2, (w - s) // 2), (h - s, w - s)):
                views.append(src[:, top:top + s, left:left + s].contiguous())
    return views


def image_set(source: ImageSource | None, transform: Callable) -> ImageSet:
    """Any supported source as an :class:`ImageSet`; ``None``: :func:`sample_photo_views`.

    A folder: every image below it (ImageFolder trees included). A file: a label list or a list of image
    paths. A ``Dataset``: its items (``(image, label)`` or images). A tensor: (N, C, H, W), float (taken as
    preprocessed) or uint8. A sequence of image paths."""
    if source is None:
        return ImageSet(sample_photo_views(), transform, "scikit-image's 7 photos × 3 crops × 2 flips")
    if isinstance(source, torch.Tensor):
        if source.ndim != 4:
            raise ValueError(f"an image tensor must be (N, C, H, W), got shape {tuple(source.shape)}")
        kind = "preprocessed" if source.is_floating_point() else "uint8"
        return ImageSet(list(source), transform, f"a {kind} tensor of {len(source)} images")
    if isinstance(source, Dataset):
        try:
            n = len(source)  # type: ignore[arg-type]
        except TypeError:
            raise ValueError("the calibration/verification Dataset must have a length") from None
        return ImageSet(range(n), transform, f"{type(source).__name__} ({n} images)", fetch=source.__getitem__)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            files = _files_in(path)
            return ImageSet(files, transform, f"{len(files)} images in {path}")
        if path.is_file():
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                return ImageSet([str(path)], transform, str(path))
            files = _files_in_list(path)
            return ImageSet(files, transform, f"{len(files)} images listed in {path}")
        raise FileNotFoundError(f"image source {path} not found (expected a folder of images or an image list file)")
    if isinstance(source, Sequence) and source and all(isinstance(p, (str, os.PathLike)) for p in source):
        return ImageSet([str(p) for p in source], transform, f"{len(source)} image files")
    raise TypeError(f"unsupported image source {type(source).__name__}: pass a folder, an image list file, a "
                    "Dataset, an (N, C, H, W) tensor or a list of image paths")


def split_indices(n: int, n_first: int, n_second: int, seed: int = 0) -> tuple[list[int], list[int], bool]:
    """Two random (seeded) selections from ``range(n)``: disjoint when ``n >= n_first + n_second``, else
    the second is the last ``n_second`` of the shuffled order and overlaps the first. Returns both and
    whether they overlap."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    first = order[:min(n_first, n)]
    if n >= n_first + n_second:
        return first, order[n_first:n_first + n_second], False
    second = order[-min(n_second, n):]
    return first, second, bool(set(first) & set(second))
