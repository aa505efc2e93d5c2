"""Evaluation loaders: uint8 batches from the workers, normalized on the device, bad images reported."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from .transforms import ImageDecodeError, Normalizer

__all__ = ["GuardedDataset", "Batch", "create_eval_loader", "iterate_batches"]


class GuardedDataset(Dataset):
    """Wraps an image dataset so that a file that fails to decode becomes data, never a crash in a worker.

    Items are ``(image, target, error)``: ``error`` is None, or the message naming the file (then
    ``image`` is None). The loop that consumes the batches decides whether to stop or to skip.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        try:
            img, target = self.dataset[index]
        except (ImageDecodeError, OSError) as e:
            samples = getattr(self.dataset, "samples", None)
            target = samples[index][1] if samples is not None else -1
            return None, target, str(e)
        return img, target, None


@dataclass
class Batch:
    """The good images of one batch (uint8 or float, stacked), their targets, and the bad files' messages."""

    images: torch.Tensor | None
    targets: torch.Tensor
    errors: list[str] = field(default_factory=list)


def _collate(items: list) -> Batch:
    good = [(img, t) for img, t, err in items if err is None]
    errors = [err for _, _, err in items if err is not None]
    if not good:
        return Batch(None, torch.empty(0, dtype=torch.int64), errors)
    images = torch.stack([torch.as_tensor(img) for img, _ in good])
    return Batch(images, torch.tensor([t for _, t in good], dtype=torch.int64), errors)


def create_eval_loader(dataset: Dataset, batch_size: int = 64, workers: int = 4,
                       pin_memory: bool = False) -> DataLoader:
    """An in-order DataLoader over ``GuardedDataset(dataset)``, yielding :class:`Batch` objects.

    Give ``dataset`` a transform made with ``create_transform(..., normalize=False)``: the workers then
    send uint8 crops (a quarter of the bytes of float32), and :func:`iterate_batches` normalizes each
    batch where the model runs.
    """
    return DataLoader(
        GuardedDataset(dataset), batch_size=batch_size, shuffle=False, num_workers=workers,
        collate_fn=_collate, pin_memory=pin_memory, persistent_workers=False,
        prefetch_factor=4 if workers > 0 else None,
    )


def iterate_batches(loader: DataLoader, normalizer: Normalizer, device: torch.device | str = "cpu",
                    channels_last: bool = False) -> Iterator[Batch]:
    """The loader's batches with the images moved to ``device`` and normalized (uint8 → float32)."""
    normalizer = normalizer.to(device)
    for batch in loader:
        if batch.images is not None:
            x = batch.images.to(device, non_blocking=True)
            if x.dtype == torch.uint8:
                x = normalizer(x)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            batch.images = x
        batch.targets = batch.targets.to(device)
        yield batch
