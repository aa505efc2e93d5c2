"""Training/eval datasets and loaders, with the input checks that must fail before training starts."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import ConcatDataset, Dataset, DistributedSampler, Subset
from torchvision.transforms import v2

from ..data import (
    FASHION_MNIST_DIR,
    FashionMNIST,
    ImageFolder,
    LabelListDataset,
    LabelListError,
    PaddleRandCrop,
    TimmRandCrop,
    create_transform,
)
from ..data.datasets import scan_images
from ..data.randaugment import parse_randaugment
from ..data.transforms import ConvertChannels, read_image
from ..preprocessing import resolve_preprocessing
from .config import ConfigError, TrainConfig, as_config

__all__ = ["Datasets", "build_datasets", "ResumableSampler", "train_transform", "eval_data_config"]


def train_transform(cfg: TrainConfig) -> v2.Compose:
    """PaddleClas's RandCropImage (or timm's crop, ``train_crop: timm``) + RandFlipImage (+ TimmAutoAugment),
    ending at a uint8 crop."""
    crop = TimmRandCrop if cfg.train_crop == "timm" else PaddleRandCrop
    ops = [v2.ToImage(), crop(cfg.img_size, scale=(cfg.crop_scale_min, 1.0),
                              interpolation=cfg.interpolation, backend=cfg.resize_backend)]
    if cfg.hflip > 0:
        ops.append(v2.RandomHorizontalFlip(cfg.hflip))
    if cfg.randaugment:
        ops.append(parse_randaugment(cfg.randaugment, cfg.img_size))
    return v2.Compose(ops)


def eval_data_config(cfg: TrainConfig | Mapping[str, Any], pretrained_cfg) -> dict:
    """The evaluation preprocessing: the model's PaddleClas eval ops at ``img_size``, then the overrides.
    ``cfg`` may be a checkpoint's stored config (a plain dict)."""
    cfg = as_config(cfg)
    return resolve_preprocessing(pretrained_cfg, None, cfg.in_chans, crop_size=cfg.img_size,
                                 resize_short=cfg.eval_resize_short, interpolation=cfg.eval_interpolation,
                                 resize_backend=cfg.eval_resize_backend, mean=cfg.mean, std=cfg.std)


class _Unlabeled(Dataset):
    """Images whose labels are ignored: every target is -1."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        return self.dataset[i][0], -1


class _ImageFiles(Dataset):
    def __init__(self, paths: list[str], transform) -> None:
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return self.transform(read_image(self.paths[i])), -1


#: The folder names that stand for each other, in the order they are tried (as timm's create_dataset finds a split).
SPLIT_SYNONYMS = (("train", "training"), ("val", "valid", "validation", "eval", "evaluation"))


def find_split(data_dir: Path, split: str) -> Path:
    """``data_dir/split``, else the first of its synonyms that exists (``val`` finds ``validation``)."""
    names = next((group for group in SPLIT_SYNONYMS if split in group), ())
    found = [data_dir / name for name in (split, *names) if (data_dir / name).is_dir()]
    return found[0] if found else data_dir / split


def _folder(root: Path, transform) -> ImageFolder:
    if not root.is_dir():
        raise ConfigError(f"data folder {root} not found (expected <data-dir>/<split>/<class>/<image>)")
    try:
        return ImageFolder(root, transform=transform)
    except FileNotFoundError as e:
        raise ConfigError(str(e)) from None


def _extra(spec: str, transform, rest: Dataset | None) -> Dataset:
    if spec == "train-rest":
        if rest is None:
            raise ConfigError("--extra-data train-rest needs --train-subset N (the rest of the train set is used)")
        return _Unlabeled(rest)
    path = Path(spec)
    if path.is_dir():
        files = scan_images(path)
    elif path.is_file():
        files = []
        for line in path.read_text().splitlines():
            if line.strip():
                f = line.split()[0]
                files.append(f if Path(f).is_absolute() else str(path.parent / f))
    else:
        raise ConfigError(f"--extra-data {spec} not found (a folder of images, a list file or 'train-rest')")
    if not files:
        raise ConfigError(f"--extra-data {spec}: no images")
    return _ImageFiles(files, transform)


@dataclass
class Datasets:
    """What :func:`build_datasets` finds: the training and evaluation sets, the class count of the data, the
    class names where the data has them (folder names, Fashion-MNIST's), and the unlabeled extra images."""

    train: Dataset
    val: Dataset
    num_classes: int
    class_names: list[str] | None
    extra: Dataset | None


def build_datasets(cfg: TrainConfig, eval_cfg: dict) -> Datasets:
    """The datasets ``cfg`` names; ConfigError on bad input."""
    tt = train_transform(cfg)
    et = create_transform(eval_cfg, training=False, normalize=False)
    kind, data_dir = cfg.dataset, cfg.data_dir
    if kind == "fashion_mnist":
        root = data_dir or FASHION_MNIST_DIR
        if not Path(root).is_dir():
            raise ConfigError(f"data dir {root} not found")
        rgb = cfg.in_chans == 3
        if cfg.in_chans not in (1, 3):
            raise ConfigError("Fashion-MNIST is grayscale: use --in-chans 1 (or 3 to replicate)")
        try:
            train, val = FashionMNIST(root, True, tt, rgb=rgb), FashionMNIST(root, False, et, rgb=rgb)
        except FileNotFoundError as e:
            raise ConfigError(str(e)) from None
        n_data, names = len(FashionMNIST.classes), list(FashionMNIST.classes)
    else:
        if not data_dir or not Path(data_dir).is_dir():
            raise ConfigError(f"data dir {data_dir!r} not found")
        if cfg.in_chans not in (1, 3):
            raise ConfigError(f"--in-chans {cfg.in_chans}: image files are read as RGB (3) or converted to "
                              "grayscale (1); other channel counts need a dataset of your own")
        if cfg.in_chans == 1:  # PIL's convert("L") first, as validate.py, predict and export do
            tt, et = (v2.Compose([v2.ToImage(), ConvertChannels(1), t]) for t in (tt, et))
        if kind == "folder":
            train = _folder(find_split(Path(data_dir), cfg.train_split), tt)
            val = _folder(find_split(Path(data_dir), cfg.val_split), et)
            if train.classes != val.classes:
                raise ConfigError(f"{data_dir}: train and val have different class folders")
            n_data, names = len(train.classes), list(train.classes)
        else:
            if not cfg.train_list or not cfg.val_list:
                raise ConfigError("--dataset list needs --train-list and --val-list")
            for f in (cfg.train_list, cfg.val_list):
                if not Path(f).is_file():
                    raise ConfigError(f"label list {f} not found")
            try:
                train, val = (LabelListDataset(f, data_dir, transform=t, allow_outside_root=cfg.allow_outside_root)
                              for f, t in ((cfg.train_list, tt), (cfg.val_list, et)))
                if cfg.num_classes is not None:  # a label out of range names its file and line
                    train.check_num_classes(cfg.num_classes)
                    val.check_num_classes(cfg.num_classes)
            except LabelListError as e:
                raise ConfigError(str(e)) from None
            n_data, names = max(max(train.targets), max(val.targets)) + 1, None
    if cfg.num_classes is not None:
        mismatch = cfg.num_classes < n_data if kind == "list" else cfg.num_classes != n_data
        if mismatch:
            raise ConfigError(f"--num-classes {cfg.num_classes} disagrees with the data, which has {n_data} classes")
    rest = None
    if cfg.train_subset and cfg.train_subset < len(train):
        perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(1234)).tolist()
        rest = Subset(train, perm[cfg.train_subset:])
        train = Subset(train, perm[:cfg.train_subset])
    extra = _extra(cfg.extra_data, tt, rest) if cfg.extra_data else None
    if extra is not None:
        train = ConcatDataset([train, extra])
    return Datasets(train, val, n_data, names, extra)


class ResumableSampler(DistributedSampler):
    """A DistributedSampler (also for one process) that can skip the first ``start`` samples of an epoch,
    so that a run resumed mid-epoch continues with the same order from the next batch."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = True) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)
        self.start = 0

    def __iter__(self):
        indices = list(super().__iter__())
        return iter(indices[self.start:])

    def __len__(self) -> int:
        return self.num_samples - self.start


def shard(n: int, rank: int, world: int) -> list[int]:
    """Evaluation shard without padding (every sample counted once across ranks)."""
    return list(range(rank, n, world))
