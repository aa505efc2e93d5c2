"""Classify image files, like ``paddleclas --model_name=... --infer_imgs=...``.

From Python::

    hgzoo.predict("pphgnet_small", ["cat.jpg", "photos/"], topk=5)
    # [{"file_name": "cat.jpg", "class_ids": [281, ...], "scores": [0.8123, ...], "label_names": [...]}, ...]

From the command line: ``python -m hgzoo predict --model pphgnet_small IMG [IMG|DIR ...] [--topk 5] [--json]``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch import nn

from .data import IMAGE_EXTENSIONS, create_transform, scan_images, imagenet_class_names, read_class_names, read_image
from .data.transforms import ImageDecodeError

__all__ = ["predict", "list_image_files"]

ImageInput = str | os.PathLike


def list_image_files(inputs: ImageInput | Iterable[ImageInput]) -> list[str]:
    """Expand files and folders (recursively, sorted, by image extension) into image paths, in order."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    files: list[str] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = scan_images(p)
            if not found:
                raise FileNotFoundError(f"no image file ({', '.join(IMAGE_EXTENSIONS)}) under {p}")
            files += found
        elif p.exists():
            files.append(str(p))
        else:
            raise FileNotFoundError(f"{p} does not exist")
    return files


def _class_names(model: nn.Module, class_names: Sequence[str] | str | os.PathLike | None) -> list[str] | None:
    if isinstance(class_names, (str, os.PathLike)):
        class_names = read_class_names(class_names)
    if class_names is None and model.num_classes == 1000:
        class_names = imagenet_class_names()
    if class_names is not None and len(class_names) != model.num_classes:
        raise ValueError(f"{len(class_names)} class names for a model with {model.num_classes} classes")
    return list(class_names) if class_names is not None else None


def predict(
    model: str | nn.Module,
    images: ImageInput | Iterable[ImageInput],
    *,
    topk: int = 5,
    pretrained_file: str | os.PathLike | None = None,
    class_names: Sequence[str] | str | os.PathLike | None = None,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    skip_bad_images: bool = False,
) -> list[dict]:
    """Top-``topk`` classes of each image.

    Args:
        model: a model name (``"pphgnet_small"``, ``"PPHGNet_small.ssld_in1k"``), built with its published
            weights or ``pretrained_file``; or a model, used as it is (in eval mode).
        images: image files and folders (searched recursively), one or a list.
        class_names: names in class order, or a PaddleClas ``id name`` file; default: ImageNet-1k's for
            1000-class models, none otherwise.
        skip_bad_images: report an image that cannot be decoded as ``{"file_name", "error"}`` instead of
            raising :class:`~hgzoo.data.ImageDecodeError`.

    Returns:
        One dict per image, in input order, with PaddleClas's keys: ``file_name``, ``class_ids``, ``scores``
        (softmax probabilities) and ``label_names`` (when names are known).
    """
    if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
        raise ValueError(f"topk must be a whole number >= 1, got {topk!r}")
    if isinstance(model, str):
        from ._builder import create_model

        model = create_model(model, pretrained=pretrained_file is None, pretrained_file=pretrained_file)
    elif pretrained_file is not None:
        raise TypeError("pretrained_file goes with a model name, not with a built model")
    model = model.eval().to(device)
    names = _class_names(model, class_names)
    transform = create_transform(getattr(model, "pretrained_cfg", None))
    k = min(topk, model.num_classes)
    files = list_image_files(images)
    results: list[dict] = [{} for _ in files]
    pending: list[tuple[int, torch.Tensor]] = []

    def flush() -> None:
        if not pending:
            return
        with torch.inference_mode():
            probs = model(torch.stack([x for _, x in pending]).to(device)).float().softmax(dim=1)
        scores, ids = probs.topk(k, dim=1)
        for (i, _), s, c in zip(pending, scores.tolist(), ids.tolist()):
            results[i] = {"file_name": files[i], "class_ids": c, "scores": [round(v, 5) for v in s]}
            if names is not None:
                results[i]["label_names"] = [names[j] for j in c]
        pending.clear()

    for i, path in enumerate(files):
        try:
            pending.append((i, transform(read_image(path))))
        except ImageDecodeError as e:
            if not skip_bad_images:
                raise
            results[i] = {"file_name": path, "error": str(e)}
        if len(pending) == batch_size:
            flush()
    flush()
    return results


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``predict`` subcommand of ``python -m hgzoo``."""
    from ._cli import positive_int

    p = sub.add_parser("predict", help="classify image files (like `paddleclas --infer_imgs`)",
                       description="Print the top classes of each image: class ids, scores and label names. Exit "
                                   "codes: 0 done, 1 some image could not be decoded (the others are printed), "
                                   "2 bad input.")
    p.add_argument("--model", required=True, help="name[.tag], e.g. pphgnet_small or PPHGNet_small.ssld_in1k")
    p.add_argument("images", nargs="+", metavar="IMG|DIR", help="image files, or folders searched recursively")
    p.add_argument("--topk", type=positive_int, default=5)
    p.add_argument("--json", action="store_true", help="print one JSON list instead of text")
    p.add_argument("--pretrained-file", metavar="FILE", help="weights to load instead of the published ones")
    p.add_argument("--class-names", metavar="FILE", help="a PaddleClas class-id map ('id name' lines)")
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-image-pixels", type=positive_int, metavar="N",
                   help="refuse (and report) images larger than N pixels before decoding them (default: "
                        "$HGZOO_MAX_IMAGE_PIXELS, else 89,478,485, PIL's limit)")
    p.set_defaults(fn=run)


def run(args: argparse.Namespace) -> int:
    from ._cli import set_max_image_pixels

    set_max_image_pixels(args.max_image_pixels)
    results = predict(args.model, args.images, topk=args.topk, pretrained_file=args.pretrained_file,
                      class_names=args.class_names, batch_size=args.batch_size, device=args.device,
                      skip_bad_images=True)
    bad = [r for r in results if "error" in r]
    for r in bad:
        print(f"error: {r['error']}", file=sys.stderr)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            if "error" in r:
                continue
            print(f"{r['file_name']}:")
            for j, (c, s) in enumerate(zip(r["class_ids"], r["scores"])):
                label = f"  {r['label_names'][j]}" if "label_names" in r else ""
                print(f"  {c:>5d}  {s:.5f}{label}")
    return 1 if bad else 0
