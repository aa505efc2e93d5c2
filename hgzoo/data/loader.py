"""Evaluation loaders: uint8 batches from the workers, normalized where the model runs, bad images reported.

The pipeline overlaps decoding with inference: worker processes decode, resize and crop the next batches (into
shared memory, no copy on the way) while the main process runs the model; the main process normalizes each
batch into one preallocated float buffer. :class:`LoaderClock` measures how long the inference loop waited for
data, and :func:`split_cores` sizes the workers and the inference threads for the machine.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from .transforms import UNNAMED, ImageDecodeError, Normalizer

__all__ = ["GuardedDataset", "Batch", "LoaderClock", "create_eval_loader", "iterate_batches", "split_cores",
           "available_cores"]


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
            if isinstance(e, ImageDecodeError) and e.path == UNNAMED and samples is not None:
                e = ImageDecodeError(str(samples[index][0]), e.reason)  # refused by a transform: name the file
            return None, target, str(e)
        return img, target, None


@dataclass
class Batch:
    """The good images of one batch (uint8 or float, stacked), their targets, and the bad files' messages."""

    images: torch.Tensor | None
    targets: torch.Tensor
    errors: list[str] = field(default_factory=list)
    error_targets: list[int] = field(default_factory=list)  # the bad files' targets, in the order of ``errors``


def _collate(items: list) -> Batch:
    good = [(img, t) for img, t, err in items if err is None]
    errors = [err for _, _, err in items if err is not None]
    error_targets = [int(t) for _, t, err in items if err is not None]
    if not good:
        return Batch(None, torch.empty(0, dtype=torch.int64), errors, error_targets)
    first = torch.as_tensor(good[0][0])
    out = None
    if get_worker_info() is not None:  # stack straight into shared memory: the batch crosses to the main process
        numel = len(good) * first.numel()  # without another copy (what torch's default_collate does)
        out = first.new(first.untyped_storage()._new_shared(numel * first.element_size())).resize_(
            len(good), *first.shape)
    images = torch.stack([torch.as_tensor(img) for img, _ in good], out=out)
    return Batch(images, torch.tensor([t for _, t in good], dtype=torch.int64), errors, error_targets)


def available_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def split_cores(workers: int | None = None, threads: int | None = None, cores: int | None = None) -> tuple[int, int]:
    """(loader worker processes, inference threads) for this machine, where not given.

    Inference gets every core: it is the larger cost per image (e.g. ``pphgnet_small`` int8 on OpenVINO takes
    about 10 core-ms per 224-px image, decoding and resizing a 400-640 px JPEG about 1.3). The loader gets
    one worker per 4 cores, at least one: enough to keep a batch ready, few enough that its processes rarely
    take a core from the inference threads (they sleep once ``prefetch`` batches wait). See the README's
    "Validating the deployed file" for the measurements behind this split.
    """
    cores = cores or available_cores()
    return (max(1, cores // 4) if workers is None else workers), (cores if threads is None else threads)


def create_eval_loader(dataset: Dataset, batch_size: int = 64, workers: int = 4, pin_memory: bool = False,
                       prefetch: int = 4) -> DataLoader:
    """An in-order DataLoader over ``GuardedDataset(dataset)``, yielding :class:`Batch` objects.

    Give ``dataset`` a transform made with ``create_transform(..., normalize=False)``: the workers then
    send uint8 crops (a quarter of the bytes of float32), and :func:`iterate_batches` normalizes each
    batch where the model runs. ``prefetch`` batches per worker are prepared ahead of the model.
    """
    return DataLoader(
        GuardedDataset(dataset), batch_size=batch_size, shuffle=False, num_workers=workers,
        collate_fn=_collate, pin_memory=pin_memory, persistent_workers=False,
        prefetch_factor=prefetch if workers > 0 else None,
    )


@dataclass
class LoaderClock:
    """How long the consumer of :func:`iterate_batches` waited for data (the loader had no batch ready, or, with no
    workers, decoded it in the consumer's own time), out of the time since the first batch was asked for."""

    wait_s: float = 0.0
    start: float | None = None
    end: float | None = None
    batches: int = 0

    @property
    def total_s(self) -> float:
        return 0.0 if self.start is None or self.end is None else self.end - self.start

    @property
    def wait_share(self) -> float:
        return self.wait_s / self.total_s if self.total_s > 0 else 0.0


def iterate_batches(loader: DataLoader, normalizer: Normalizer, device: torch.device | str = "cpu",
                    channels_last: bool = False, clock: LoaderClock | None = None,
                    reuse_buffer: bool = False) -> Iterator[Batch]:
    """The loader's batches with the images moved to ``device`` and normalized (uint8 → float32).

    ``clock`` accumulates the time spent waiting for each batch (including the workers' start). With
    ``reuse_buffer`` every batch is normalized into the same preallocated float buffer: the consumer must be
    done with a batch's images before it asks for the next one.
    """
    normalizer = normalizer.to(device)
    buffer: torch.Tensor | None = None
    clock = clock if clock is not None else LoaderClock()
    clock.start = time.perf_counter()
    it = iter(loader)
    while True:
        t0 = time.perf_counter()
        batch = next(it, None)
        clock.wait_s += time.perf_counter() - t0
        if batch is None:
            break
        clock.batches += 1
        if batch.images is not None:
            x = batch.images.to(device, non_blocking=True)
            if x.dtype == torch.uint8:
                if reuse_buffer:
                    if buffer is None or buffer.shape[1:] != x.shape[1:] or len(buffer) < len(x):
                        buffer = torch.empty(x.shape, dtype=torch.float32, device=device)
                    x = normalizer(x, out=buffer[:len(x)])
                else:
                    x = normalizer(x)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            batch.images = x
        batch.targets = batch.targets.to(device)
        clock.end = time.perf_counter()
        yield batch
        clock.end = time.perf_counter()
