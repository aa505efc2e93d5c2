"""``python -m hgzoo export``: build a model, export it, verify it and print the report."""
from __future__ import annotations

import argparse
import sys

from ..checkpoint import CheckpointConflictError, data_config, load_model
from ..deploy.api import FORMATS, PRECISIONS, ExportError, ExportVerificationError, export
from .base import BadInput, RunFailed, add_weights_argument, fraction, positive_int, writable_file

__all__ = ["add_parser"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "export", help="export a model to ONNX / OpenVINO / TorchScript (fp32, fp16, bf16, int8), verified",
        description="Re-parameterize, export, and verify the file against the eager fp32 model on real images; the "
                    "file is written only if it agrees. A train.py checkpoint brings its model name, classes, "
                    "channels, image size and preprocessing.")
    p.add_argument("--model", help="model name (default: the train.py checkpoint's)")
    weights = p.add_mutually_exclusive_group()
    weights.add_argument("--pretrained", action="store_true", help="the published weights")
    weights.add_argument("--checkpoint", metavar="FILE", help=".pdparams, .safetensors, .pth or a train.py .pt")
    add_weights_argument(p)
    p.add_argument("--num-classes", type=positive_int, help="classifier size (default: the checkpoint's)")
    p.add_argument("--in-chans", type=positive_int, help="input channels (default: the checkpoint's, else 3)")
    p.add_argument("--img-size", type=positive_int,
                   help="input size (default: the checkpoint's evaluation crop, or the weights' crop size)")
    p.add_argument("--format", "-f", choices=FORMATS, default="onnx")
    p.add_argument("--precision", "-p", choices=PRECISIONS, default="fp32")
    p.add_argument("--calibration", metavar="DIR_OR_LIST",
                   help="real images for int8 (required): a folder, or a label list / list of image paths")
    p.add_argument("--calibration-size", type=positive_int, default=300, metavar="N", help="images used (default: 300)")
    check = p.add_mutually_exclusive_group()
    check.add_argument("--verify", metavar="DIR_OR_LIST",
                       help="verification images (default: the calibration source, else scikit-image's photos)")
    check.add_argument("--no-verify", action="store_true", help="skip the verification (not advised)")
    p.add_argument("--verify-size", type=positive_int, default=64, metavar="N", help="images verified on (default: 64)")
    p.add_argument("--min-top1-agreement", type=fraction, metavar="F",
                   help="the bound for fp16/bf16/int8 (default: 0.97/0.95/0.90)")
    p.add_argument("--static-batch", action="store_true", help="a fixed batch of 1 instead of a dynamic batch axis")
    p.add_argument("--output", "-o", metavar="FILE", help="default: <model>-<precision>.<onnx|xml|pt>")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(fn=cmd_export)
    return p


def cmd_export(args: argparse.Namespace) -> int:
    if args.output:
        writable_file(args.output, "--output")
    try:
        model, info = load_model(args.model, pretrained=args.pretrained, checkpoint=args.checkpoint,
                                 num_classes=args.num_classes, in_chans=args.in_chans, ema=args.weights == "ema")
        dc = data_config(info, model, crop_size=args.img_size) if info is not None else None
        report = export(
            model, args.format, args.precision, output=args.output, calibration=args.calibration,
            calibration_size=args.calibration_size, verify=False if args.no_verify else (args.verify or True),
            verify_size=args.verify_size, dynamic_batch=not args.static_batch,
            img_size=dc["crop_size"] if dc else args.img_size, data_config=dc,
            min_top1_agreement=args.min_top1_agreement)
    except ExportVerificationError as e:
        print(e.report.to_json() if args.json else str(e.report), file=sys.stdout)
        raise RunFailed(str(e)) from None
    except (ExportError, ImportError, CheckpointConflictError) as e:
        raise BadInput(str(e)) from None
    print(report.to_json() if args.json else str(report))
    return 0
