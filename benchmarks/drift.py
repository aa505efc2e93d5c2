#!/usr/bin/env python
"""Accuracy drift of hgzoo's deployment paths: top-1 accuracy of eager fp32 and of every exported format ×
precision this machine runs (ONNX Runtime, OpenVINO, TorchScript; fp32, fp16, bf16, int8), with top-1 agreement
with fp32 and logit errors, on a held-out labelled set.

    # a model trained by train.py (its checkpoint carries the model, classes, channels and preprocessing);
    # Fashion-MNIST: held-out = the 10,000 test images, int8 calibration = 300 random training images
    python benchmarks/drift.py --checkpoint runs/fmnist/best.pt --results-file drift.md
    # published weights on an ImageFolder / PaddleClas label list, calibrated on training images
    python benchmarks/drift.py --model pphgnet_small --pretrained --data-dir val/ --calibration train_subset/

The logic is :func:`benchmarks.harness.drift.measure_drift`.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as `python benchmarks/drift.py`: the tools are importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness.drift import ALL_TARGETS, measure_drift  # noqa: E402
from hgzoo.checkpoint import load_model, run_data_config  # noqa: E402
from hgzoo.data import FASHION_MNIST_DIR, FashionMNIST, ImageFolder, LabelListDataset  # noqa: E402
from hgzoo.deploy import ExportError, eval_transform  # noqa: E402


def _targets(text: str) -> list[tuple[str, str]]:
    out = []
    for item in text.split(","):
        fmt, _, precision = item.strip().partition(":")
        if (fmt, precision) not in ALL_TARGETS:
            raise argparse.ArgumentTypeError(f"unknown target {item!r}: use FORMAT:PRECISION, e.g. onnx:int8, "
                                             "openvino:bf16, torchscript:fp32")
        out.append((fmt, precision))
    return out


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="benchmarks/drift.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", metavar="FILE", help="weights; a train.py checkpoint brings its configuration")
    ap.add_argument("--config", metavar="YAML",
                    help="train.py's config.yaml (default: in the checkpoint, or beside it)")
    ap.add_argument("--model", help="model name (default: the training configuration's)")
    ap.add_argument("--pretrained", action="store_true", help="the published weights instead of --checkpoint")
    ap.add_argument("--num-classes", type=int)
    ap.add_argument("--in-chans", type=int)
    ap.add_argument("--img-size", type=int, help="default: the training configuration's, else the weights' crop size")
    ap.add_argument("--data-dir", metavar="DIR", help="held-out ImageFolder (or the root of --label-list's paths)")
    ap.add_argument("--label-list", metavar="FILE", help="held-out PaddleClas label list")
    ap.add_argument("--calibration", metavar="DIR_OR_LIST", help="int8 calibration images (default for a Fashion-MNIST "
                    "model: its training split; for a folder/list training configuration: its training data)")
    ap.add_argument("--calibration-size", type=int, default=300)
    ap.add_argument("--targets", type=_targets, metavar="F:P,F:P", help="default: every format × precision")
    ap.add_argument("--limit", type=int, help="evaluate only the first N held-out images")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--threads", type=int, help="threads per runtime (default: all CPUs)")
    ap.add_argument("--workdir", metavar="DIR", help="keep the exported files here (default: a temporary folder)")
    ap.add_argument("--results-file", metavar="FILE", help="also write the report: .md, .json or .csv")
    return ap


def _datasets(args, cfg: dict | None, in_chans: int):
    """(held-out dataset, its name, calibration source or None, its name)."""
    kind = (cfg or {}).get("dataset")
    if args.data_dir or args.label_list:
        if args.label_list:
            held = LabelListDataset(args.label_list, args.data_dir)
            name = f"label list {args.label_list}"
        else:
            held, name = ImageFolder(args.data_dir), f"ImageFolder {args.data_dir}"
        cal = args.calibration
        return held, name, cal, str(cal) if cal else ""
    if kind == "fashion_mnist":
        root = cfg.get("data_dir") or FASHION_MNIST_DIR
        rgb = in_chans == 3
        held = FashionMNIST(root, train=False, rgb=rgb)
        if args.calibration:
            return held, "Fashion-MNIST test split", args.calibration, args.calibration
        train = FashionMNIST(root, train=True, rgb=rgb)
        return held, "Fashion-MNIST test split", train, "the Fashion-MNIST training split"
    if kind == "folder" and cfg.get("data_dir"):
        root = Path(cfg["data_dir"])
        cal = args.calibration or str(root / cfg.get("train_split", "train"))
        val = root / cfg.get("val_split", "val")
        return ImageFolder(val), f"ImageFolder {val}", cal, str(cal)
    if kind == "list" and cfg.get("val_list"):
        held = LabelListDataset(cfg["val_list"], cfg.get("data_dir"))
        cal = args.calibration or LabelListDataset(cfg["train_list"], cfg.get("data_dir"))
        return held, f"label list {cfg['val_list']}", cal, str(args.calibration or cfg["train_list"])
    raise ExportError("no held-out set: pass --data-dir (ImageFolder) or --label-list, or a train.py checkpoint "
                      "trained on Fashion-MNIST, a folder or a label list")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.checkpoint and not args.pretrained:
        print("error: give --checkpoint FILE (e.g. train.py's best.pt) or --model NAME --pretrained", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        model, info = load_model(args.model, pretrained=args.pretrained, checkpoint=args.checkpoint,
                                 num_classes=args.num_classes, in_chans=args.in_chans)
        cfg = info.train_config if info is not None else None
        if args.config:
            import yaml

            cfg = yaml.safe_load(Path(args.config).read_text())
        in_chans = args.in_chans or int((cfg or {}).get("in_chans") or 3)
        data_config = run_data_config(cfg, model) if cfg else None
        img_size = args.img_size or (data_config or {}).get("crop_size") or model.pretrained_cfg.crop_size
        if data_config and img_size != data_config["crop_size"]:
            data_config = {k: data_config[k] for k in ("mean", "std", "interpolation", "resize_backend")}
        transform = eval_transform(model.pretrained_cfg, img_size, in_chans, data_config)
        held, held_name, cal, cal_name = _datasets(args, cfg, in_chans)
    except (ExportError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    weights = args.checkpoint or f"{model.pretrained_cfg.name} (published)"
    if args.checkpoint and args.checkpoint.endswith((".pt", ".pth")):
        state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "epoch" in state and "top1" in state:
            weights += f" (train.py, epoch {state['epoch']}, its eval top-1 {state['top1']:.2f}%)"
    with tempfile.TemporaryDirectory(prefix="hgzoo-drift-") as tmp:
        report = measure_drift(
            model, held, transform, calibration=cal, calibration_size=args.calibration_size, targets=args.targets,
            workdir=args.workdir or tmp, img_size=img_size, data_config=data_config, batch_size=args.batch_size,
            workers=args.workers, limit=args.limit, threads=args.threads, heldout_name=held_name,
            calibration_name=cal_name, weights=weights, log=lambda m: print(m, file=sys.stderr, flush=True))
    print(report.to_markdown())
    if args.results_file:
        print(f"written to {report.write(args.results_file)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
