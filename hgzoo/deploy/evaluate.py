"""One pass of labelled images through a :class:`~hgzoo.deploy.runner.Runner`: top-1 / top-5 counts, each image's
top-1 class, and the time the inference loop spent waiting for data. ``validate.py`` is its command line.

Decoding, resizing and cropping run in loader worker processes while the runner infers on the previous batch;
the main process normalizes each batch into one preallocated buffer (:func:`hgzoo.data.iterate_batches`).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import torch
from torch.utils.data import Dataset

from ..data import LoaderClock, Normalizer, create_eval_loader, iterate_batches
from ..data.transforms import ImageDecodeError

__all__ = ["PassResult", "run_pass", "top1_agreement"]


@dataclass
class PassResult:
    """One pass over the images: accuracy counts, each good image's top-1 class (in order), the clock."""

    correct1: int = 0
    correct5: int = 0
    seen: int = 0
    bad: list[str] = field(default_factory=list)
    top1: list[torch.Tensor] = field(default_factory=list)
    infer_s: float = 0.0
    clock: LoaderClock = field(default_factory=LoaderClock)

    @property
    def predictions(self) -> torch.Tensor:
        return torch.cat(self.top1) if self.top1 else torch.empty(0, dtype=torch.int64)

    @property
    def images_per_second(self) -> float:
        total = self.clock.total_s
        return (self.seen + len(self.bad)) / total if total > 0 else float("nan")


def _count(out: PassResult, logits: torch.Tensor, targets: torch.Tensor) -> None:
    topk = logits.float().topk(min(5, logits.shape[1]), dim=1).indices.cpu()
    hits = topk == targets.cpu()[:, None]
    out.correct1 += int(hits[:, 0].sum())
    out.correct5 += int(hits.any(dim=1).sum())
    out.seen += len(targets)
    out.top1.append(topk[:, 0])


def run_pass(runner, dataset: Dataset, *, data_config: dict, in_chans: int, batch_size: int, workers: int,
             device: str | torch.device = "cpu", skip_bad_images: bool = False, progress: bool = True,
             desc: str = "") -> PassResult:
    """Every image of ``dataset`` (uint8 crops, see ``create_transform(normalize=False)``) through ``runner``.

    The runner is warmed up on one batch of zeros first (compilation, first-run allocations), outside the clock;
    the clock then runs from the first batch asked for (the workers' start included) to the last logits. An
    image that fails to decode raises :class:`~hgzoo.data.ImageDecodeError`, or with ``skip_bad_images`` is
    counted in ``bad`` and left out of the accuracy.
    """
    device = torch.device(device)
    loader = create_eval_loader(dataset, batch_size=batch_size, workers=workers, pin_memory=device.type == "cuda")
    size = data_config["crop_size"]
    runner(torch.zeros(min(batch_size, max(len(dataset), 1)), in_chans, size, size))  # warm-up, not timed
    out = PassResult()
    from tqdm import tqdm

    bar = tqdm(total=len(dataset), desc=desc, unit="img", file=sys.stderr, disable=not progress, mininterval=0.5,
               dynamic_ncols=True)
    with bar:
        for batch in iterate_batches(loader, Normalizer(data_config["mean"], data_config["std"]), device,
                                     clock=out.clock, reuse_buffer=True):
            if batch.errors:
                if not skip_bad_images:
                    raise ImageDecodeError(batch.errors[0])
                out.bad += batch.errors
            if batch.images is not None:
                t0 = time.perf_counter()
                logits = runner(batch.images)
                out.infer_s += time.perf_counter() - t0
                _count(out, logits, batch.targets)
            bar.update(len(batch.targets) + len(batch.errors))
            bar.set_postfix(top1=f"{100 * out.correct1 / max(out.seen, 1):.2f}", refresh=False)
    return out


def top1_agreement(a: PassResult, b: PassResult) -> tuple[float, int]:
    """The share of images whose top-1 class is the same in two passes over the same images, and their count."""
    x, y = a.predictions, b.predictions
    if len(x) != len(y):
        raise ValueError(f"the two passes saw {len(x)} and {len(y)} images: not the same images")
    return (float((x == y).float().mean()) if len(x) else float("nan")), len(x)
