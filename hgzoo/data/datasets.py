"""Datasets: an ImageFolder tree, a PaddleClas label list, Fashion-MNIST from Debian's package, ImageNet's names."""
from __future__ import annotations

import gzip
import os
import warnings
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torchvision
from torchvision import tv_tensors
from torchvision.datasets import VisionDataset

from .._files import FileRefusedError, env_limit, read_regular_file
from .transforms import read_image, transform_file

__all__ = [
    "ImageFolder", "LabelListDataset", "LabelListError", "FashionMNIST", "FASHION_MNIST_DIR",
    "imagenet_class_names", "read_class_names", "IMAGE_EXTENSIONS", "scan_images", "max_list_bytes",
]

#: File endings read as images (compared case-insensitively).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm", ".pgm")


def scan_images(root: str | os.PathLike, seen: set | None = None, within: str | os.PathLike | None = None) -> list[str]:
    """Every image file under ``root`` (symbolic links followed), sorted, each file counted once.

    A link that leads back into a folder already being walked (a loop) is skipped with a warning that names
    it, and so is a second path to a file already listed (``seen``, a set of file identities, can be shared
    across calls so that a file is counted once in a whole dataset). A link back to ``within`` (a dataset's
    root, when ``root`` is one of its class folders) is a loop too.
    """
    seen = set() if seen is None else seen
    found: list[str] = []

    def walk(folder: Path, ancestors: frozenset) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            warnings.warn(f"{folder}: skipped, it cannot be listed ({e.strerror})", stacklevel=3)
            return
        for entry in entries:
            path = Path(entry.path)
            try:
                st = path.stat()  # follows links
            except OSError:
                warnings.warn(f"{path}: skipped, a broken link or unreadable entry", stacklevel=3)
                continue
            ident = (st.st_dev, st.st_ino)
            if entry.is_dir():
                if ident in ancestors:
                    warnings.warn(f"{path}: skipped a symbolic-link loop (it leads back to {path.resolve()}); "
                                  "each image is counted once", stacklevel=3)
                    continue
                walk(path, ancestors | {ident})
            elif entry.name.lower().endswith(IMAGE_EXTENSIONS):
                if ident in seen:
                    warnings.warn(f"{path}: skipped, the same file as an image already listed", stacklevel=3)
                    continue
                seen.add(ident)
                found.append(str(path))

    idents = {(st.st_dev, st.st_ino) for st in (Path(p).stat() for p in (root, within) if p is not None)}
    walk(Path(root), frozenset(idents))
    return found


class ImageFolder(torchvision.datasets.ImageFolder):
    """``root/<class>/<image>``: torchvision's ImageFolder, decoding as PaddleClas does (:func:`read_image`).

    Classes are the sorted folder names, indexed from 0, except that when every folder name is an
    integer (``0/ 1/ ... 999/``) that integer is the label (plain sorting would put ``10`` before ``2``).
    Items are ``(transform(image), label)``; an image without ``transform`` is a (3, H, W) uint8 tensor.
    """

    def __init__(self, root: str | os.PathLike, transform: Callable | None = None,
                 target_transform: Callable | None = None) -> None:
        super().__init__(str(root), transform=transform, target_transform=target_transform, loader=read_image,
                         is_valid_file=lambda p: p.lower().endswith(IMAGE_EXTENSIONS))

    @staticmethod
    def make_dataset(directory, class_to_idx, extensions=None, is_valid_file=None,
                     allow_empty: bool = False) -> list[tuple[str, int]]:
        """The (path, label) pairs, found by :func:`scan_images`: links followed, loops reported and skipped,
        each file counted once."""
        seen: set = set()
        samples, empty = [], []
        for name, idx in sorted(class_to_idx.items(), key=lambda kv: kv[0]):
            files = scan_images(Path(directory) / name, seen, within=directory)
            empty += [] if files else [name]
            samples += [(f, idx) for f in files]
        if empty and not allow_empty:
            raise FileNotFoundError(f"{directory}: class folder(s) with no images: {empty} (image files end in "
                                    f"{', '.join(IMAGE_EXTENSIONS)})")
        return samples

    def __getitem__(self, index: int):
        path, target = self.samples[index]
        img = transform_file(path, self.transform)  # an image a transform refuses is reported under its name
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        classes, class_to_idx = super().find_classes(directory)
        if classes and all(c.isdigit() for c in classes):
            classes = sorted(classes, key=int)
            class_to_idx = {c: int(c) for c in classes}
        return classes, class_to_idx


class LabelListError(ValueError):
    """A malformed line in a label-list file (the message names the file and the line number)."""


#: The largest label list or class-name map read (ImageNet's train list is about 40 MB).
DEFAULT_MAX_LIST_BYTES = 256 << 20


def max_list_bytes() -> int:
    """The largest label list or class-id map read: ``$HGZOO_MAX_LIST_BYTES``, default 256 MiB."""
    return env_limit("HGZOO_MAX_LIST_BYTES", DEFAULT_MAX_LIST_BYTES, "bytes")


def _read_text(path: Path, error: type[ValueError]) -> str:
    """A text file's content, read as :func:`~hgzoo._files.read_regular_file` reads (regular files only, at
    most :func:`max_list_bytes`); ``error`` names the file."""
    try:
        data = read_regular_file(path, max_list_bytes(), "HGZOO_MAX_LIST_BYTES")
    except FileRefusedError as e:
        raise error(f"{path}: {e.reason}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise error(f"{path}:{line}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _outside(rel: str) -> bool:
    """Whether a list's path leaves its root: absolute, or climbing out with '..' (judged on the text, so a
    symbolic link inside the root, which its owner put there, is followed)."""
    norm = os.path.normpath(rel)
    return os.path.isabs(rel) or norm == ".." or norm.startswith(".." + os.sep)


class LabelListDataset(VisionDataset):
    """A PaddleClas label list: one ``relative/path.jpg label`` per line, paths relative to ``root``.

    This is the format of ImageNet's ``train_list.txt`` / ``val_list.txt`` in PaddleClas's configs.
    ``root`` defaults to the list's own folder. The label is the last field and the path everything
    before it, so paths may contain spaces. Blank lines are ignored; anything else that is not
    ``path integer`` raises :class:`LabelListError` with the file and line number, and so do a label
    ``>= num_classes`` (when given) and a path outside ``root`` (absolute, or with ``..`` climbing out),
    unless ``allow_outside_root``. The list itself must be a regular file under :func:`max_list_bytes`.
    """

    def __init__(self, list_file: str | os.PathLike, root: str | os.PathLike | None = None,
                 transform: Callable | None = None, target_transform: Callable | None = None,
                 delimiter: str | None = None, *, num_classes: int | None = None,
                 allow_outside_root: bool = False) -> None:
        list_file = Path(list_file)
        root = Path(root) if root is not None else list_file.parent
        super().__init__(str(root), transform=transform, target_transform=target_transform)
        self.list_file = list_file
        self.samples = self.parse(list_file, root, delimiter, allow_outside_root=allow_outside_root)
        self.targets = [t for _, t in self.samples]
        self.classes = None  # a label list carries no names
        if num_classes is not None:
            self.check_num_classes(num_classes)

    @staticmethod
    def parse(list_file: Path, root: Path, delimiter: str | None = None, *,
              allow_outside_root: bool = False) -> list[tuple[str, int]]:
        samples = []
        for lineno, line in enumerate(_read_text(list_file, LabelListError).splitlines(), 1):
            text = line.strip()
            if not text:
                continue
            fields = text.rsplit(delimiter, 1)
            try:
                if len(fields) != 2 or not fields[0].strip():
                    raise ValueError
                label = int(fields[1])
                if label < 0:
                    raise ValueError
            except ValueError:
                raise LabelListError(
                    f"{list_file}:{lineno}: expected 'relative/path.jpg label' (a path, then a label >= 0), "
                    f"got {text!r}"
                ) from None
            rel = fields[0].strip()
            if not allow_outside_root and _outside(rel):
                raise LabelListError(f"{list_file}:{lineno}: the path {rel!r} is outside the data root {root}; "
                                     "paths must be relative to it (allow_outside_root=True if the list is trusted)")
            samples.append((str(root / rel), label))
        if not samples:
            raise LabelListError(f"{list_file}: the label list is empty")
        return samples

    def check_num_classes(self, num_classes: int) -> None:
        """Raise :class:`LabelListError` naming the file and line of the first label ``>= num_classes``."""
        bad = next((i for i, t in enumerate(self.targets) if t >= num_classes), None)
        if bad is None:
            return
        lines = _read_text(self.list_file, LabelListError).splitlines()
        lineno = [n for n, line in enumerate(lines, 1) if line.strip()][bad]
        raise LabelListError(f"{self.list_file}:{lineno}: label {self.targets[bad]} is out of range for a model "
                             f"with {num_classes} classes (0..{num_classes - 1})")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, target = self.samples[index]
        img = transform_file(path, self.transform)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target


#: Where Debian's ``dataset-fashion-mnist`` package puts the files (``apt-get install dataset-fashion-mnist``).
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST's format, optionally gzipped): big-endian uint8 arrays with a dims header."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    ndim = data[3]
    dims = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims}, the file holds {body.size} values")
    return body.reshape(dims)


class FashionMNIST(VisionDataset):
    """Fashion-MNIST from local IDX files: by default Debian's ``dataset-fashion-mnist`` package.

    ``train=True`` gives the 60,000 training images, ``False`` the 10,000 test images. The files may be
    gzipped (as the Debian package ships them) or not. Items are ``(transform(image), label)`` where the
    image is a (1, 28, 28) uint8 ``tv_tensors.Image`` (``rgb=True``: replicated to 3 channels). The class
    names are torchvision's ``FashionMNIST.classes``.
    """

    classes = torchvision.datasets.FashionMNIST.classes

    def __init__(self, root: str | os.PathLike = FASHION_MNIST_DIR, train: bool = True,
                 transform: Callable | None = None, target_transform: Callable | None = None,
                 rgb: bool = False) -> None:
        super().__init__(str(root), transform=transform, target_transform=target_transform)
        self.train, self.rgb = train, rgb
        prefix = "train" if train else "t10k"
        images = self._find(Path(root), f"{prefix}-images-idx3-ubyte")
        labels = self._find(Path(root), f"{prefix}-labels-idx1-ubyte")
        self.data = torch.from_numpy(_read_idx(images).copy())
        self.targets = torch.from_numpy(_read_idx(labels).astype(np.int64))
        if self.data.shape[0] != self.targets.shape[0] or self.data.shape[1:] != (28, 28):
            raise ValueError(f"{images} and {labels} do not hold matching 28x28 images and labels")

    @staticmethod
    def _find(root: Path, stem: str) -> Path:
        for name in (stem + ".gz", stem):
            if (root / name).is_file():
                return root / name
        raise FileNotFoundError(
            f"Fashion-MNIST file {stem}(.gz) not found in {root}; install Debian's package with "
            f"`apt-get install dataset-fashion-mnist` (it puts the files in {FASHION_MNIST_DIR})"
        )

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        img = tv_tensors.Image(self.data[index].unsqueeze(0))
        if self.rgb:
            img = tv_tensors.Image(img.expand(3, -1, -1))
        target = int(self.targets[index])
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target


def read_class_names(path: str | os.PathLike) -> list[str]:
    """A PaddleClas class-id map (``class_id_map_file``): ``id name`` per line, ids 0..N-1."""
    names: dict[int, str] = {}
    for lineno, line in enumerate(_read_text(Path(path), ValueError).splitlines(), 1):
        text = line.strip()
        if not text:
            continue
        idx, _, name = text.partition(" ")
        if not idx.isdigit():
            raise ValueError(f"{path}:{lineno}: expected 'class_id name', got {text!r}")
        names[int(idx)] = name.strip()
    if sorted(names) != list(range(len(names))):
        raise ValueError(f"{path}: class ids must be 0..{len(names) - 1}, each once")
    return [names[i] for i in range(len(names))]


def imagenet_class_names(short: bool = False) -> list[str]:
    """The 1000 ImageNet-1k class names in label order, as PaddleClas prints them ("tench, Tinca tinca").

    ``short=True`` gives the first synonym only ("tench"). Shipped with the package (PaddleClas's
    ``imagenet1k_label_list.txt``, Apache-2.0).
    """
    with resources.as_file(resources.files(__package__) / "imagenet1k_label_list.txt") as path:
        names = read_class_names(path)
    return [n.split(",")[0].strip() for n in names] if short else names
