"""Evaluate hgzoo models on a labelled image set: top-1 / top-5, image count, end-to-end throughput; on torch eager,
torch.compile, TorchScript, or the deployed file itself (ONNX Runtime, OpenVINO) at fp32, bf16 or int8.

``python validate.py ...`` and ``python -m hgzoo validate ...`` (a wheel install) are this command line; the
evaluation pass itself is :func:`hgzoo.deploy.evaluate.run_pass`.

Examples::

    python validate.py --model pphgnet_small --pretrained --data-dir /data/imagenet/val
    python validate.py --model 'pphgnetv2_b*' --pretrained --label-list /data/ILSVRC2012/val_list.txt
    python validate.py --checkpoint runs/x/best.pt --data-dir val          # a train.py checkpoint describes itself
    python validate.py --checkpoint runs/x/best.pt --data-dir val --backend openvino --precision int8 \\
        --calibration train_subset/ --save-deployed model-int8.xml        # the accuracy of the file you ship
    python validate.py --checkpoint runs/x/best.pt --data-dir val --deployed model-int8.xml

``--data-dir`` is an ImageFolder tree (``DIR/<class>/<image>``, classes in sorted order, or labelled by
integer folder names); ``--label-list`` is a PaddleClas list (``relative/path.jpg label`` per line), its
paths relative to ``--data-dir`` if given, else to the list's folder. A wildcard ``--model`` validates
every matching weight tag (with ``--pretrained``) one after the other.

``--backend onnxruntime|openvino`` exports the model through ``hgzoo.deploy.export`` (verified against eager fp32
before it is used; ``--save-deployed FILE`` keeps it), or runs ``--deployed FILE``, checked against the model
first. For bf16 and int8 a second, untimed pass runs eager fp32 on the same images and reports the top-1 agreement
(``--agreement`` / ``--no-agreement`` force it on or off). The images/s figure is the deployed path alone, end to
end: decoding in worker processes overlapped with inference, from the first batch asked for to the last logits;
the share of that time the inference loop waited for data is reported beside it.

Preprocessing defaults to the checkpoint's own (train.py's) or the weight tag's PaddleClas evaluation pipeline;
``--img-size``, ``--resize-short``, ``--crop-pct``, ``--interpolation`` and ``--resize-backend`` override it, and
every override is printed and written to the results. Models with one input channel get grayscale images (as
PIL's ``convert("L")``). An image that cannot be decoded stops the run with its name, unless
``--skip-bad-images``: then it is left out of the accuracy, counted and listed.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from pathlib import Path
from typing import NamedTuple

import torch

import hgzoo
from hgzoo._files import atomic_write
from hgzoo.checkpoint import (
    CheckpointConflictError,
    data_config,
    input_channels,
    load_model,
)
from hgzoo.data import (
    ImageFolder,
    LabelListDataset,
    LabelListError,
    create_transform,
    split_cores,
)
from hgzoo.preprocessing import RESIZE_INTERPOLATIONS, resolve_preprocessing

from .base import (
    BadInput,
    RunFailed,
    add_runtime_arguments,
    add_weights_argument,
    fraction,
    guarded_main,
    non_negative_int,
    one_line,
    positive_float,
    positive_int,
    set_max_image_pixels,
    writable_file,
)

PREPROCESSING_KEYS = ("resize_short", "crop_size", "interpolation", "resize_backend")
CSV_FIELDS = (
    "model", "weights", "backend", "precision", "compute", "deployed_file", "top1", "top5", "top1_agreement",
    "agreement_images", "num_images", "num_bad_images", "img_per_sec", "seconds", "data_wait_share", "infer_seconds",
    "prepare_seconds", "workers", "threads", "param_count", "resize_short", "crop_size", "interpolation",
    "resize_backend", "in_chans", "overrides", "batch_size", "channels_last", "reparam", "published_top1",
    "published_top5", "bad_images",
)
LOW_PRECISIONS = ("bf16", "int8")


class BadImageError(BadInput):
    """An image failed to decode and ``--skip-bad-images`` was not given (exit 2, a bad input file)."""


def _add_runtime_group(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("the runtime (the deployed file)")
    add_runtime_arguments(g)
    g.add_argument("--calibration-size", type=positive_int, default=300, metavar="N")
    agree = g.add_mutually_exclusive_group()
    agree.add_argument("--agreement", dest="agreement", action="store_true", default=None,
                       help="also run eager fp32 on the same images (untimed) and report the top-1 agreement "
                            "(default: for bf16 and int8)")
    agree.add_argument("--no-agreement", dest="agreement", action="store_false")
    g.add_argument("--min-top1-agreement", type=fraction, metavar="F",
                   help="the export's verification bound for bf16/int8 (default: 0.95/0.90)")
    g.add_argument("--torchcompile", nargs="?", const="inductor", metavar="inductor",
                   help="timm's spelling of --backend compile (torch.compile's inductor; other torch.compile "
                        "backends are refused)")
    g.add_argument("--torchscript", action="store_true",
                   help="timm's flag: --backend torchscript, torch.jit.script of the model (after --reparam and "
                        "--channels-last, as timm scripts it after those)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="name[.tag], PaddleClas spelling, or a wildcard ('pphgnet*'); default: the "
                                    "checkpoint's or the deployed file's")
    weights = ap.add_mutually_exclusive_group()
    weights.add_argument("--pretrained", action="store_true", help="the weight tag's published weights")
    weights.add_argument("--checkpoint", metavar="FILE", help="a train.py .pt, or a .pdparams, .safetensors, .pth")
    add_weights_argument(ap)
    ap.add_argument("--data-dir", metavar="DIR", help="an ImageFolder tree, or the root of --label-list's paths")
    ap.add_argument("--label-list", metavar="FILE", help="a PaddleClas label list: 'relative/path.jpg label' lines")
    ap.add_argument("--allow-outside-root", action="store_true",
                    help="accept --label-list paths outside --data-dir (absolute, or reaching up with ..); refused by "
                         "default, naming the file and line")
    ap.add_argument("--batch-size", "-b", type=positive_int, default=64)
    ap.add_argument("--workers", "-j", type=non_negative_int, help="data loader processes (default: one per 4 cores)")
    ap.add_argument("--img-size", type=positive_int, help="center-crop size (default: the weights', e.g. 224)")
    ap.add_argument("--input-size", type=positive_int, nargs=3, metavar=("C", "H", "W"),
                    help="timm's spelling: --in-chans C --img-size H (H must equal W: the crop is square)")
    ap.add_argument("--resize-short", type=positive_int, help="short-side resize (default: the weights', e.g. 236)")
    ap.add_argument("--crop-pct", type=positive_float, help="set --resize-short to img-size / crop-pct")
    ap.add_argument("--interpolation", choices=sorted(set(RESIZE_INTERPOLATIONS["cv2"] + RESIZE_INTERPOLATIONS["pil"])),
                    help="nearest, bilinear, bicubic (cv2 and pil); box, hamming, lanczos (pil only: add "
                         "--resize-backend pil if the weights' own is cv2)")
    ap.add_argument("--resize-backend", choices=["cv2", "pil"], help="whose resize to reproduce (default: the tag's)")
    ap.add_argument("--num-classes", type=positive_int, help="classifier size (default: the checkpoint's)")
    ap.add_argument("--in-chans", type=positive_int, help="input channels (default: the checkpoint's, else 3)")
    ap.add_argument("--amp", action="store_true", help="torch autocast, bf16 (fp16 on CUDA): --precision bf16")
    ap.add_argument("--channels-last", action="store_true",
                    help="the torch backends run the model and its input in channels-last memory format (it does "
                         "not apply to onnxruntime, openvino or --deployed: refused)")
    ap.add_argument("--reparam", action="store_true", help="fuse conv+BN and merge re-parameterizable branches first")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    _add_runtime_group(ap)
    ap.add_argument("--skip-bad-images", action="store_true",
                    help="leave images that fail to decode out of the accuracy (they are counted and listed)")
    ap.add_argument("--results-file", metavar="FILE", help="write the results as .csv or .json")
    ap.add_argument("--results-format", choices=["csv", "json"],
                    help="timm's spelling: the --results-file format (default: its suffix, .csv or .json)")
    ap.add_argument("--max-image-pixels", type=positive_int, metavar="N",
                    help="refuse images larger than N pixels before decoding them (default: $HGZOO_MAX_IMAGE_PIXELS, "
                         "else 89,478,485, PIL's limit); with --skip-bad-images they are skipped")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    _check_usage(ap, args)
    set_max_image_pixels(args.max_image_pixels)
    return args


def _check_usage(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Flag combinations that cannot work, refused before any work (argparse's usage error, exit 2)."""
    if not args.data_dir and not args.label_list:
        ap.error("give --data-dir DIR (an ImageFolder tree) or --label-list FILE")
    if not (args.pretrained or args.checkpoint or args.deployed):
        ap.error("give --pretrained, --checkpoint FILE or --deployed FILE")
    if not args.model and not args.checkpoint and not args.deployed:
        ap.error("--model is required with --pretrained")
    _check_timm_spellings(ap, args)
    if args.amp:
        if args.backend not in (None, "eager", "compile", "torchscript") or args.precision not in (None, "bf16") or \
                args.deployed:
            ap.error("--amp is torch's bf16 autocast: it goes with --backend eager, compile or torchscript (or "
                     "give --precision)")
        args.precision = "bf16"
    if args.channels_last and (args.deployed or args.backend in ("onnxruntime", "openvino")):
        ap.error(f"--channels-last is torch's memory format; it does not apply to "
                 f"{'--deployed' if args.deployed else '--backend ' + args.backend} (a runtime takes an NCHW array "
                 "and picks its own layout)")
    if args.deployed and (args.save_deployed or args.calibration):
        ap.error("--deployed runs a file exported before: --save-deployed and --calibration do not apply")
    if args.save_deployed and args.backend not in ("onnxruntime", "openvino"):
        ap.error("--save-deployed keeps the file exported for --backend onnxruntime or openvino")
    if args.results_file:
        writable_file(args.results_file, "--results-file")  # checked now, not after the whole evaluation
    if args.save_deployed:
        writable_file(args.save_deployed, "--save-deployed")


def _check_timm_spellings(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """timm's validate.py flags, turned into hgzoo's, or refused in one line where hgzoo cannot do the same."""
    if args.input_size:
        c, h, w = args.input_size
        if h != w:
            ap.error(f"--input-size {c} {h} {w}: the center crop is square; give H = W")
        for flag, value, wanted in (("--img-size", args.img_size, h), ("--in-chans", args.in_chans, c)):
            if value is not None and value != wanted:
                ap.error(f"--input-size {c} {h} {w} contradicts {flag} {value}; give one of them")
        args.img_size, args.in_chans = h, c
    if args.torchscript:
        if args.backend not in (None, "eager", "torchscript") or args.deployed:
            ap.error(f"--torchscript scripts the torch model (--backend torchscript); it contradicts "
                     f"{'--deployed' if args.deployed else '--backend ' + args.backend}")
        args.backend = "torchscript"
    if args.torchcompile is not None:
        if args.torchcompile != "inductor":
            ap.error(f"--torchcompile {args.torchcompile}: hgzoo compiles with inductor only; give --torchcompile")
        if args.backend not in (None, "compile"):
            ap.error(f"--torchcompile is --backend compile; it contradicts --backend {args.backend}")
        args.backend = "compile"
    if args.resize_backend and args.interpolation not in (None, *RESIZE_INTERPOLATIONS[args.resize_backend]):
        ap.error(f"--interpolation {args.interpolation} is not --resize-backend {args.resize_backend}'s (it has "
                 f"{', '.join(RESIZE_INTERPOLATIONS[args.resize_backend])})")
    suffix = Path(args.results_file).suffix.lower().lstrip(".") if args.results_file else None
    if args.results_format and not args.results_file:
        ap.error("--results-format goes with --results-file FILE")
    if args.results_format and suffix in ("csv", "json") and suffix != args.results_format:
        ap.error(f"--results-format {args.results_format} contradicts --results-file {args.results_file}")
    if args.results_file and not args.results_format and suffix not in ("csv", "json"):
        ap.error("--results-file must end in .csv or .json (or give --results-format csv|json)")
    if args.results_file:
        args.results_format = args.results_format or suffix


def model_names(pattern: str | None, pretrained: bool) -> list[str | None]:
    if pattern is None or not any(c in pattern for c in "*?["):
        return [pattern]
    names = hgzoo.list_pretrained(pattern) if pretrained else hgzoo.list_models(pattern)
    if not names:
        raise BadInput(f"no {'weight tag' if pretrained else 'model'} matches {pattern!r}; see python -m hgzoo models")
    return names


def build_dataset(args: argparse.Namespace):
    if args.label_list:
        return LabelListDataset(args.label_list, root=args.data_dir, allow_outside_root=args.allow_outside_root)
    return ImageFolder(args.data_dir)


def overrides_of(args: argparse.Namespace) -> dict:
    return {k: v for k, v in (("crop_size", args.img_size), ("resize_short", args.resize_short),
                              ("crop_pct", args.crop_pct), ("interpolation", args.interpolation),
                              ("resize_backend", args.resize_backend)) if v is not None}


def preprocessing_text(dc: dict) -> str:
    return f"resize {dc['resize_short']} {dc['interpolation']} ({dc['resize_backend']}), crop {dc['crop_size']}"


class Target(NamedTuple):
    """What is validated: the model (None when only a deployed file is given), its name, weights and preprocessing."""

    name: str
    model: torch.nn.Module | None
    weights: str
    in_chans: int
    num_classes: int | None
    data_config: dict
    default_config: dict
    pretrained_cfg: object = None


def _build_model(name: str | None, args: argparse.Namespace):
    """(model, checkpoint info) for ``name`` and the weights asked for; published weights are validated as they are
    published (a new random classifier or stem would mean nothing)."""
    if not args.checkpoint:
        cfg = hgzoo.get_pretrained_cfg(name)
        for flag, value, own in (("--num-classes", args.num_classes, cfg.num_classes if cfg else None),
                                 ("--in-chans", args.in_chans, 3)):
            if value is not None and own is not None and value != own:
                raise BadInput(f"{flag} {value} contradicts the published weights of {name} ({own}); validating "
                               "them with a new random layer would mean nothing: give --checkpoint FILE for your own "
                               "weights")
    return load_model(name, checkpoint=args.checkpoint, num_classes=args.num_classes, in_chans=args.in_chans,
                      ema=args.weights == "ema")


def target_of(name: str | None, args: argparse.Namespace, deployed_meta: dict | None) -> Target:
    """Build the model (unless only a deployed file is validated) and resolve its preprocessing."""
    overrides = overrides_of(args)
    if args.pretrained or args.checkpoint:
        model, info = _build_model(name, args)
        cfg = getattr(model, "pretrained_cfg", None)
        label = name or (info.model_name if info else type(model).__name__)
        weights = args.checkpoint + (" (EMA)" if args.weights == "ema" else "") if args.checkpoint else \
            (cfg.name if cfg else "random")
        return Target(label, model, weights, input_channels(model), model.num_classes,
                       data_config(info, model, **overrides), data_config(info, model), cfg)
    meta = deployed_meta or {}
    label = name or meta.get("model") or Path(args.deployed).stem
    cfg = hgzoo.get_pretrained_cfg(label) if hgzoo.is_model(label.split(".")[0]) else None
    chans = int(meta.get("in_chans") or 3)
    stored = meta.get("data_config")
    return Target(label, None, f"{args.deployed} (deployed file only)", chans, meta.get("num_classes"),
                   resolve_preprocessing(cfg, stored, chans, **overrides), resolve_preprocessing(cfg, stored, chans),
                   cfg)


def run_pass(runner, dataset, s: Target, args: argparse.Namespace, workers: int, desc: str, timed: bool = True):
    """Every image through ``runner`` (see :func:`hgzoo.deploy.evaluate.run_pass`)."""
    from hgzoo.data import ImageDecodeError
    from hgzoo.deploy.evaluate import run_pass as one_pass

    device = args.device if _in_torch(runner) else "cpu"
    try:
        return one_pass(runner, dataset, data_config=s.data_config, in_chans=s.in_chans, batch_size=args.batch_size,
                        workers=workers, device=device, skip_bad_images=args.skip_bad_images,
                        progress=timed and not args.no_progress, desc=desc)
    except ImageDecodeError as e:
        raise BadImageError(f"{e}\n(pass --skip-bad-images to leave unreadable images out of the accuracy; they are "
                            "then counted and listed)") from None


def _in_torch(runner) -> bool:
    """True where torch runs the model (eager, reparam, compile, torchscript): not a runtime's file."""
    from hgzoo.deploy.runner import BACKENDS

    return BACKENDS[runner.backend].format is None


def _wants_agreement(s: Target, runner, args: argparse.Namespace) -> bool:
    if s.model is None or (runner.backend == "eager" and runner.precision == "fp32"):
        return False
    return runner.precision in LOW_PRECISIONS if args.agreement is None else args.agreement


def agreement_pass(s: Target, dataset, args: argparse.Namespace, workers: int, threads: int,
                   deployed) -> tuple[float, int]:
    """Top-1 agreement of the deployed path with eager fp32 on the same images (a second, untimed pass)."""
    from hgzoo.deploy.evaluate import top1_agreement
    from hgzoo.deploy.runner import prepare

    torch.set_num_threads(threads)
    reference = prepare(s.model, "eager", "fp32", data_config=s.data_config, device=args.device)
    return top1_agreement(deployed, run_pass(reference, dataset, s, args, workers, "eager fp32", timed=False))


def make_runner(s: Target, args: argparse.Namespace, threads: int):
    from hgzoo.deploy.runner import prepare

    return prepare(s.model, args.backend, args.precision, data_config=s.data_config, calibration=args.calibration,
                   calibration_size=args.calibration_size, deployed=args.deployed, save_to=args.save_deployed,
                   threads=threads, reparam=args.reparam, channels_last=args.channels_last, device=args.device,
                   min_top1_agreement=args.min_top1_agreement)


def validate_one(name: str | None, dataset, args: argparse.Namespace, deployed_meta: dict | None = None) -> dict:
    """Evaluate one model on the backend asked for; returns its results row."""
    s = target_of(name, args, deployed_meta)
    if s.num_classes is not None and len(dataset.targets) and max(dataset.targets) >= s.num_classes:
        raise BadInput(f"the data has label {max(dataset.targets)}, {s.name} has {s.num_classes} classes")
    workers, threads = split_cores(args.workers, args.threads)
    t0 = time.perf_counter()
    runner = make_runner(s, args, threads)
    prepare_s = time.perf_counter() - t0
    try:
        # torch's own threads: every core for eager/compile; one for normalizing when a runtime does the inference
        torch.set_num_threads(threads if _in_torch(runner) else 1)
        dataset.transform = create_transform(s.data_config, normalize=False, in_chans=s.in_chans)
        result = run_pass(runner, dataset, s, args, workers, s.name)
        agreement, n_agree = (agreement_pass(s, dataset, args, workers, threads, result)
                              if _wants_agreement(s, runner, args) else (None, 0))
    finally:
        runner.close()
    return row_of(s, runner, result, args, agreement, n_agree, prepare_s, workers, threads)


def row_of(s: Target, runner, r, args, agreement: float | None, n_agree: int, prepare_s: float,
           workers: int, threads: int) -> dict:
    dc, default_dc = s.data_config, s.default_config
    changed = {k: dc[k] for k in PREPROCESSING_KEYS if dc[k] != default_dc[k]}
    seconds, cfg = r.clock.total_s, s.pretrained_cfg
    return {
        "model": s.name, "weights": s.weights, **runner.describe(),
        "top1": round(100 * r.correct1 / r.seen, 3) if r.seen else float("nan"),
        "top5": round(100 * r.correct5 / r.seen, 3) if r.seen else float("nan"),
        "top1_agreement": None if agreement is None else round(100 * agreement, 3), "agreement_images": n_agree,
        "num_images": r.seen, "num_bad_images": len(r.bad),
        "img_per_sec": round((r.seen + len(r.bad)) / seconds, 1) if seconds else float("nan"),
        "seconds": round(seconds, 2), "data_wait_share": round(r.clock.wait_share, 4),
        "data_wait_seconds": round(r.clock.wait_s, 3), "infer_seconds": round(r.infer_s, 2),
        "prepare_seconds": round(prepare_s, 1), "workers": workers, "threads": threads,
        "param_count": sum(p.numel() for p in s.model.parameters()) if s.model is not None else None,
        **{key: dc[key] for key in PREPROCESSING_KEYS}, "in_chans": s.in_chans,
        "overrides": {key: {"value": v, "default": default_dc[key]} for key, v in changed.items()},
        "batch_size": args.batch_size, "channels_last": args.channels_last, "reparam": args.reparam,
        "published_top1": cfg.top1 if cfg and args.pretrained else None,
        "published_top5": cfg.top5 if cfg and args.pretrained else None,
        "bad_images": r.bad,
    }


def report(r: dict) -> str:
    dc = {k: r[k] for k in PREPROCESSING_KEYS}
    lines = [
        f"{r['model']}: top-1 {r['top1']:.3f}  top-5 {r['top5']:.3f}  ({r['num_images']} images, "
        f"{r['num_bad_images']} bad, {r['img_per_sec']:.1f} img/s, {r['seconds']:.1f} s)",
        f"  runtime: {r['backend']} {r['precision']}: {r['compute']}",
        f"  preprocessing: {preprocessing_text(dc)}" + (f", {r['in_chans']} channel(s)" if r["in_chans"] != 3 else ""),
        f"  pipeline: {r['threads']} inference thread(s), {r['workers']} loader worker(s); waited for data "
        f"{100 * r['data_wait_share']:.1f}% of the time ({r['infer_seconds']:.1f} s inference); "
        f"prepared in {r['prepare_seconds']:.1f} s (not counted)",
    ]
    if r["export_top1_agreement"] is not None:
        lines.append(f"  exported and verified: top-1 agreement {100 * r['export_top1_agreement']:.2f}% with eager "
                     f"fp32 on {r['export_verified_on']}" + (f"; kept as {r['deployed_file']}" if r["deployed_file"]
                                                            else "; a temporary file, removed"))
    elif r["deployed_file"]:
        lines.append(f"  deployed file: {r['deployed_file']}")
    if r["top1_agreement"] is not None:
        lines.append(f"  top-1 agreement with eager fp32: {r['top1_agreement']:.3f}% of {r['agreement_images']} "
                     "images (a second pass, not timed)")
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


def save_results(path: str, results: list[dict], fmt: str | None = None) -> None:
    """The results as JSON or CSV (``fmt``, default: the file's suffix), written atomically."""
    p = Path(path)
    if (fmt or p.suffix.lower().lstrip(".")) == "json":
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


def _deployed_meta(args: argparse.Namespace) -> dict | None:
    """Check a ``--deployed`` file's backend (and that it exists) before any work; its stored description."""
    if not args.deployed:
        if args.backend is not None or args.precision is not None:
            from hgzoo.deploy.runner import check_request

            check_request(args.backend or "eager", args.precision or "fp32", args.calibration)
        return None
    from hgzoo.deploy import runtimes
    from hgzoo.deploy.runner import resolve_deployed

    args.backend = resolve_deployed(args.deployed, args.backend)
    return runtimes.read_meta(args.deployed)


def _main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    deployed_meta = _deployed_meta(args)
    names = model_names(args.model, args.pretrained)
    if (args.checkpoint or args.deployed or args.save_deployed) and len(names) > 1:
        raise BadInput("--checkpoint, --deployed and --save-deployed take one model, not a wildcard")
    try:
        dataset = build_dataset(args)
    except LabelListError as e:
        raise BadInput(str(e)) from None
    print(f"{len(dataset)} images from {args.label_list or args.data_dir}", file=sys.stderr)
    results, failures = [], []
    for name in names:
        try:
            r = validate_one(name, dataset, args, deployed_meta)
        except (BadImageError, BadInput, CheckpointConflictError):
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
        save_results(args.results_file, results, args.results_format)
        print(f"results written to {args.results_file}", file=sys.stderr)
    if failures:
        raise RunFailed(f"{len(failures)} of {len(names)} models failed: {', '.join(failures)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done, 1 a model failed or an export failed its verification, 2 bad input (an image that did
    not decode without --skip-bad-images included)."""
    from hgzoo.deploy import ExportError, ExportVerificationError
    from hgzoo.hub import WeightsNotFoundError

    return guarded_main(_main, argv, bad_input=(LabelListError, WeightsNotFoundError, ExportError, TypeError,
                                                ValueError), failed=(ExportVerificationError,))
