#!/usr/bin/env python
"""Evaluate hgzoo models on a labelled image set: top-1 / top-5, image count, throughput.

Examples::

    python validate.py --model pphgnet_small --pretrained --data-dir /data/imagenet/val
    python validate.py --model 'pphgnetv2_b*' --pretrained --label-list /data/ILSVRC2012/val_list.txt
    python validate.py --model resnet50_vd --checkpoint mine.pdparams --data-dir val --results-file out.csv

``--data-dir`` is an ImageFolder tree (``DIR/<class>/<image>``, classes in sorted order, or labelled by
integer folder names); ``--label-list`` is a PaddleClas list (``relative/path.jpg label`` per line), its
paths relative to ``--data-dir`` if given, else to the list's folder. A wildcard ``--model`` validates
every matching weight tag (with ``--pretrained``) one after the other.

Preprocessing defaults to each weight tag's PaddleClas evaluation pipeline; ``--img-size``,
``--resize-short``, ``--crop-pct``, ``--interpolation`` and ``--resize-backend`` override it, and every
override is printed and written to the results. An image that cannot be decoded stops the run with its
name, unless ``--skip-bad-images``: then it is left out of the accuracy, counted and listed.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

import hgzoo
from hgzoo._cli import (
    BadInput, RunFailed, guarded_main, non_negative_int, one_line, positive_float, positive_int, set_max_image_pixels,
    writable_file,
)
from hgzoo._files import atomic_write
from hgzoo.data import (
    ImageFolder, LabelListDataset, LabelListError, Normalizer, create_eval_loader, create_transform, iterate_batches,
    resolve_data_config,
)

PREPROCESSING_KEYS = ("resize_short", "crop_size", "interpolation", "resize_backend")
CSV_FIELDS = (
    "model", "weights", "top1", "top5", "num_images", "num_bad_images", "img_per_sec", "seconds", "param_count",
    "resize_short", "crop_size", "interpolation", "resize_backend", "overrides", "batch_size", "amp",
    "channels_last", "reparam", "published_top1", "published_top5", "bad_images",
)


class BadImageError(RunFailed):
    """An image failed to decode and ``--skip-bad-images`` was not given (exit 1)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="name[.tag], PaddleClas spelling, or a wildcard ('pphgnet*')")
    weights = ap.add_mutually_exclusive_group(required=True)
    weights.add_argument("--pretrained", action="store_true", help="the weight tag's published weights")
    weights.add_argument("--checkpoint", metavar="FILE", help="a .pdparams, .safetensors or .pth file")
    ap.add_argument("--data-dir", metavar="DIR", help="an ImageFolder tree, or the root of --label-list's paths")
    ap.add_argument("--label-list", metavar="FILE", help="a PaddleClas label list: 'relative/path.jpg label' lines")
    ap.add_argument("--batch-size", type=positive_int, default=64)
    ap.add_argument("--workers", type=non_negative_int, default=min(4, os.cpu_count() or 1),
                    help="data loader processes")
    ap.add_argument("--img-size", type=positive_int, help="center-crop size (default: the tag's, 224)")
    ap.add_argument("--resize-short", type=positive_int, help="short-side resize (default: the tag's, e.g. 236 or 256)")
    ap.add_argument("--crop-pct", type=positive_float, help="set --resize-short to img-size / crop-pct")
    ap.add_argument("--interpolation", choices=["nearest", "bilinear", "bicubic", "area", "box", "hamming", "lanczos"])
    ap.add_argument("--resize-backend", choices=["cv2", "pil"], help="whose resize to reproduce (default: the tag's)")
    ap.add_argument("--num-classes", type=positive_int, help="classifier size of --checkpoint (default: the tag's)")
    ap.add_argument("--amp", action="store_true", help="autocast: float16 on CUDA, bfloat16 on CPU")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--reparam", action="store_true", help="fuse conv+BN and merge re-parameterizable branches first")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--skip-bad-images", action="store_true",
                    help="leave images that fail to decode out of the accuracy (they are counted and listed)")
    ap.add_argument("--results-file", metavar="FILE", help="write the results as .csv or .json")
    ap.add_argument("--max-image-pixels", type=positive_int, metavar="N",
                    help="refuse images larger than N pixels before decoding them (default: $HGZOO_MAX_IMAGE_PIXELS, "
                         "else 89,478,485, PIL's limit); with --skip-bad-images they are skipped")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    if not args.data_dir and not args.label_list:
        ap.error("give --data-dir DIR (an ImageFolder tree) or --label-list FILE")
    if args.results_file and Path(args.results_file).suffix.lower() not in (".csv", ".json"):
        ap.error("--results-file must end in .csv or .json")
    if args.results_file:
        writable_file(args.results_file, "--results-file")  # checked now, not after the whole evaluation
    set_max_image_pixels(args.max_image_pixels)
    return args


def model_names(pattern: str, pretrained: bool) -> list[str]:
    if not any(c in pattern for c in "*?["):
        return [pattern]
    names = hgzoo.list_pretrained(pattern) if pretrained else hgzoo.list_models(pattern)
    if not names:
        raise BadInput(f"no {'weight tag' if pretrained else 'model'} matches {pattern!r}; see python -m hgzoo models")
    return names


def build_dataset(args: argparse.Namespace):
    if args.label_list:
        return LabelListDataset(args.label_list, root=args.data_dir)
    return ImageFolder(args.data_dir)


def overrides_of(args: argparse.Namespace) -> dict:
    return {k: v for k, v in (("crop_size", args.img_size), ("resize_short", args.resize_short),
                              ("crop_pct", args.crop_pct), ("interpolation", args.interpolation),
                              ("resize_backend", args.resize_backend)) if v is not None}


def describe(dc: dict) -> str:
    return f"resize {dc['resize_short']} {dc['interpolation']} ({dc['resize_backend']}), crop {dc['crop_size']}"


def validate(name: str, dataset, args: argparse.Namespace) -> dict:
    """Evaluate one model; returns its results row."""
    device = torch.device(args.device)
    kwargs = {} if args.num_classes is None else {"num_classes": args.num_classes}
    model = hgzoo.create_model(name, pretrained=args.pretrained, pretrained_file=args.checkpoint, **kwargs)
    if args.reparam:
        hgzoo.reparameterize(model)
    model = model.eval().to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    cfg = getattr(model, "pretrained_cfg", None)
    default_dc = resolve_data_config(cfg)
    dc = resolve_data_config(cfg, **overrides_of(args))
    changed = {k: dc[k] for k in PREPROCESSING_KEYS if dc[k] != default_dc[k]}
    num_classes = model.num_classes
    if len(dataset.targets) and max(dataset.targets) >= num_classes:
        raise BadInput(f"the data has label {max(dataset.targets)}, {name} has {num_classes} classes")

    dataset.transform = create_transform(dc, normalize=False)
    loader = create_eval_loader(dataset, batch_size=args.batch_size, workers=args.workers,
                                pin_memory=device.type == "cuda")
    k = min(5, num_classes)
    correct1 = correct5 = seen = 0
    bad: list[str] = []
    autocast = (torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16)
                if args.amp else contextlib.nullcontext())
    bar = tqdm(total=len(dataset), desc=name, unit="img", file=sys.stderr, disable=args.no_progress,
               mininterval=0.5, dynamic_ncols=True)
    start = time.perf_counter()
    with torch.inference_mode(), autocast, bar:
        for batch in iterate_batches(loader, Normalizer(dc["mean"], dc["std"]), device, args.channels_last):
            if batch.errors:
                if not args.skip_bad_images:
                    raise BadImageError(f"{batch.errors[0]}\n(pass --skip-bad-images to leave unreadable images "
                                        "out of the accuracy; they are then counted and listed)")
                bad += batch.errors
            if batch.images is not None:
                topk = model(batch.images).float().topk(k, dim=1).indices
                hits = topk == batch.targets[:, None]
                correct1 += int(hits[:, 0].sum())
                correct5 += int(hits.any(dim=1).sum())
                seen += len(batch.targets)
            bar.update(len(batch.targets) + len(batch.errors))
            bar.set_postfix(top1=f"{100 * correct1 / max(seen, 1):.2f}", refresh=False)
    seconds = time.perf_counter() - start
    return {
        "model": name,
        "weights": args.checkpoint or (cfg.name if cfg else "random"),
        "top1": round(100 * correct1 / seen, 3) if seen else float("nan"),
        "top5": round(100 * correct5 / seen, 3) if seen else float("nan"),
        "num_images": seen,
        "num_bad_images": len(bad),
        "img_per_sec": round((seen + len(bad)) / seconds, 1),
        "seconds": round(seconds, 2),
        "param_count": sum(p.numel() for p in model.parameters()),
        **{key: dc[key] for key in PREPROCESSING_KEYS},
        "overrides": {key: {"value": v, "default": default_dc[key]} for key, v in changed.items()},
        "batch_size": args.batch_size,
        "amp": args.amp,
        "channels_last": args.channels_last,
        "reparam": args.reparam,
        "published_top1": cfg.top1 if cfg and args.pretrained else None,
        "published_top5": cfg.top5 if cfg and args.pretrained else None,
        "bad_images": bad,
    }


def report(r: dict) -> str:
    dc = {k: r[k] for k in PREPROCESSING_KEYS}
    lines = [
        f"{r['model']}: top-1 {r['top1']:.3f}  top-5 {r['top5']:.3f}  ({r['num_images']} images, "
        f"{r['num_bad_images']} bad, {r['img_per_sec']:.1f} img/s, {r['seconds']:.1f} s)",
        f"  preprocessing: {describe(dc)}",
    ]
    if r["overrides"]:
        lines.append("  overrides: " + ", ".join(f"{k}={o['value']} (the weights' own: {o['default']})"
                                                  for k, o in r["overrides"].items()))
    if r["published_top1"] is not None:
        lines.append(f"  published: top-1 {r['published_top1']}" +
                     (f"  top-5 {r['published_top5']}" if r["published_top5"] is not None else ""))
    if r["bad_images"]:
        lines.append(f"  skipped {len(r['bad_images'])} image(s) that failed to decode:")
        lines += [f"    {msg}" for msg in r["bad_images"]]
    return "\n".join(lines)


def write_results(path: str, results: list[dict]) -> None:
    """The results as JSON or CSV, written atomically."""
    p = Path(path)
    if p.suffix.lower() == ".json":
        atomic_write(p, json.dumps(results, indent=2) + "\n")
        return
    text = io.StringIO()
    w = csv.DictWriter(text, fieldnames=CSV_FIELDS)
    w.writeheader()
    for r in results:
        row = {k: r[k] for k in CSV_FIELDS}
        row["overrides"] = ";".join(f"{k}={o['value']}" for k, o in r["overrides"].items())
        row["bad_images"] = ";".join(r["bad_images"])
        w.writerow(row)
    atomic_write(p, text.getvalue())


def _main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = model_names(args.model, args.pretrained)
    if args.checkpoint and len(names) > 1:
        raise BadInput("--checkpoint takes one model, not a wildcard")
    try:
        dataset = build_dataset(args)
    except LabelListError as e:
        raise BadInput(str(e)) from None
    print(f"{len(dataset)} images from {args.label_list or args.data_dir}", file=sys.stderr)
    results, failures = [], []
    for name in names:
        try:
            r = validate(name, dataset, args)
        except BadImageError:
            raise
        except Exception as e:  # noqa: BLE001 - one model failing must not lose the others' results
            if len(names) == 1:
                raise
            print(f"error: {name}: {one_line(e)}", file=sys.stderr)
            failures.append(name)
            continue
        print(report(r), flush=True)
        results.append(r)
    if args.results_file and results:
        write_results(args.results_file, results)
        print(f"results written to {args.results_file}", file=sys.stderr)
    if failures:
        raise RunFailed(f"{len(failures)} of {len(names)} models failed: {', '.join(failures)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done, 1 a model failed or an image did not decode (without --skip-bad-images), 2 bad input."""
    from hgzoo.hub import WeightsNotFoundError

    return guarded_main(_main, argv, bad_input=(LabelListError, WeightsNotFoundError, TypeError, ValueError))


if __name__ == "__main__":
    sys.exit(main())
