"""``python -m hgzoo predict [--model NAME | --checkpoint FILE] IMG [IMG|DIR ...] [--topk 5] [--json]
[--backend openvino --precision int8 --calibration DIR | --deployed FILE]``: :func:`hgzoo.predict` on the command
line, its predictions printed (or one JSON object)."""
from __future__ import annotations

import argparse
import json
import sys

from .base import (
    BadInput,
    RunFailed,
    add_runtime_arguments,
    add_weights_argument,
    positive_int,
    set_max_image_pixels,
)

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``predict`` subcommand of ``python -m hgzoo``."""
    p = sub.add_parser("predict", help="classify image files (like `paddleclas --infer_imgs`)",
                       description="Print the top classes of each image: class ids, scores and label names. A "
                                   "train.py checkpoint brings its model, classes, channels, preprocessing and class "
                                   "names. Exit codes: 0 done, 1 an export failed its verification, 2 bad input (a "
                                   "flag, a file, or an image that could not be decoded: the others are printed).")
    p.add_argument("--model", help="name[.tag], e.g. pphgnet_small or PPHGNet_small.ssld_in1k (default: the "
                                   "checkpoint's)")
    p.add_argument("images", nargs="+", metavar="IMG|DIR", help="image files, or folders searched recursively")
    p.add_argument("--topk", type=positive_int, default=5)
    p.add_argument("--json", action="store_true", help="print one JSON object (what ran, and the predictions)")
    weights = p.add_mutually_exclusive_group()
    weights.add_argument("--checkpoint", metavar="FILE", help="a train.py .pt, or a .pdparams, .safetensors, .pth")
    weights.add_argument("--pretrained-file", dest="checkpoint", metavar="FILE", help="the same as --checkpoint")
    add_weights_argument(p)
    p.add_argument("--num-classes", type=positive_int, help="classifier size (default: the checkpoint's)")
    p.add_argument("--in-chans", type=positive_int, help="input channels (default: the checkpoint's, else 3)")
    p.add_argument("--img-size", type=positive_int, help="center-crop size (default: the checkpoint's or weights')")
    p.add_argument("--class-names", metavar="FILE", help="a PaddleClas class-id map ('id name' lines)")
    add_runtime_arguments(p)
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-image-pixels", type=positive_int, metavar="N",
                   help="refuse (and report) images larger than N pixels before decoding them (default: "
                        "$HGZOO_MAX_IMAGE_PIXELS, else 89,478,485, PIL's limit)")
    p.set_defaults(fn=run)


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import CheckpointConflictError
    from ..deploy import ExportError, ExportVerificationError
    from ..inference import predictions_and_runtime

    set_max_image_pixels(args.max_image_pixels)
    if args.model is None and args.checkpoint is None and args.deployed is None:
        raise BadInput("give --model NAME, --checkpoint FILE or --deployed FILE")
    try:
        results, ran = predictions_and_runtime(
            args.model, args.images, topk=args.topk, checkpoint=args.checkpoint, pretrained_file=None,
            ema=args.weights == "ema", num_classes=args.num_classes, in_chans=args.in_chans, img_size=args.img_size,
            class_names=args.class_names, backend=args.backend, precision=args.precision,
            calibration=args.calibration, deployed=args.deployed, save_deployed=args.save_deployed,
            batch_size=args.batch_size, workers=None, threads=args.threads, device=args.device, skip_bad_images=True)
    except (CheckpointConflictError, ExportError) as e:
        raise BadInput(str(e)) from None
    except ExportVerificationError as e:
        raise RunFailed(str(e)) from None
    _print(results, ran, args)
    return 2 if any("error" in r for r in results) else 0  # a file that would not decode is bad input


def _print(results: list[dict], ran: dict, args: argparse.Namespace) -> None:
    for r in results:
        if "error" in r:
            print(f"error: {r['error']}", file=sys.stderr)
    if args.json:
        print(json.dumps({"model": args.model, "checkpoint": args.checkpoint, "weights": args.weights, **ran,
                          "predictions": results}, indent=2))
        return
    for r in results:
        if "error" in r:
            continue
        print(f"{r['file_name']}:")
        for j, (c, s) in enumerate(zip(r["class_ids"], r["scores"])):
            label = f"  {r['label_names'][j]}" if "label_names" in r else ""
            print(f"  {c:>5d}  {s:.5f}{label}")
