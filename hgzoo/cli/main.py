"""``python -m hgzoo``: ``python -m hgzoo models [PATTERN] [--flops] [--tags] [--markdown]``,
``python -m hgzoo train ...``, ``python -m hgzoo validate ...``,
``python -m hgzoo predict --model NAME IMG [IMG|DIR ...] [--topk 5] [--json] [--pretrained-file FILE]``,
``python -m hgzoo export --model NAME --format onnx|openvino|torchscript --precision fp32|fp16|bf16|int8 ...``,
``python -m hgzoo convert ...``. A wheel install also has the command ``hgzoo``: ``hgzoo models``, ``hgzoo train``,
..., the same command line."""
from __future__ import annotations

import argparse
import os
import sys

import hgzoo

from .._flops import count_flops
from .._registry import paddle_name
from ..hub import WeightsNotFoundError
from ..pretrained import PretrainedCfg
from .base import BadInput, guarded_main
from .export import add_parser as add_export_parser
from .predict import add_parser as add_predict_parser


def weights_source(cfg: PretrainedCfg | None) -> str:
    """A tag's sources in the order they are tried: ``timm/<repo>`` (timm's Hub organisation), ``Paddle URL``."""
    if cfg is None:
        return "-"
    return ", then ".join("Paddle URL" if s.kind == "url" and s.layout == "paddle" else s.location
                          for s in cfg.sources) or "-"


def preprocessing(cfg: PretrainedCfg | None) -> str:
    if cfg is None:
        return "-"
    how = "cv2" if cfg.resize_backend == "cv2" else "pil" if cfg.size_rounding == "paddle" else "pil, torchvision"
    return f"resize {cfg.resize_short} {cfg.interpolation} ({how}), crop {cfg.crop_size}"


def _print_table(header: list[str], rows, markdown: bool) -> None:
    """Rows as they come (plain, flushed: building models takes a while), or one Markdown table at the end."""
    if not markdown:
        print("  ".join(header), flush=True)
    done = []
    for row in rows:
        done.append(row)
        if not markdown:
            print("  ".join(row), flush=True)
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in done:
            print("| " + " | ".join(row) + " |")


def _model_rows(names: list[str], flops: bool):
    for name in names:
        model = hgzoo.create_model(name).eval()
        cfg = hgzoo.get_pretrained_cfg(name)
        row = [name, paddle_name(name), f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}"]
        if flops:
            row.append(f"{count_flops(model) / 1e9:.2f}")
        yield row + [cfg.name if cfg else "-", weights_source(cfg),
                     f"{cfg.top1:.2f}" if cfg and cfg.top1 is not None else "-", preprocessing(cfg)]


def _tag_rows(tags: list[str]):
    for tag in tags:
        cfg = hgzoo.get_pretrained_cfg(tag)
        yield [tag, weights_source(cfg), cfg.license, f"{cfg.top1:.2f}" if cfg.top1 is not None else "-",
               f"{cfg.top5:.2f}" if cfg.top5 is not None else "-", preprocessing(cfg)]


def cmd_models(args: argparse.Namespace) -> int:
    if args.tags:
        tags = hgzoo.list_pretrained(args.pattern)
        if not tags:
            raise BadInput(f"no weight tag matches {args.pattern!r}; see `python -m hgzoo models --tags`")
        if args.flops:
            raise BadInput("--flops goes with the model table, not --tags")
        _print_table(["weights", "source (tried in order)", "license", "top-1", "top-5", "eval preprocessing"],
                     _tag_rows(tags), args.markdown)
        return 0
    names = hgzoo.list_models(args.pattern)
    if not names:
        raise BadInput(f"no model matches {args.pattern!r}; see `python -m hgzoo models`")
    header = ["model", "PaddleClas name", "params (M)"] + (["GFLOPs@224"] if args.flops else [])
    header += ["default weights", "weights source", "top-1", "eval preprocessing"]
    _print_table(header, _model_rows(names, args.flops), args.markdown)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"]:  # train.py's own command line, from a wheel install too
        from .train import main as train_main

        return train_main(argv[1:])
    if argv[:1] == ["validate"]:  # validate.py's own command line
        from .validate import main as validate_main

        return validate_main(argv[1:])
    if argv[:1] == ["convert"]:  # python -m hgzoo.convert's own command line
        from .convert import main as convert_main

        return convert_main(argv[1:])
    # the wheel's `hgzoo` command and `python -m hgzoo` are this one command line
    prog = "hgzoo" if os.path.basename(sys.argv[0]) == "hgzoo" else "python -m hgzoo"
    ap = argparse.ArgumentParser(prog=prog, description=hgzoo.__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("train", help="train with a PaddleClas recipe (the same as train.py; `train --help`)",
                   add_help=False)
    sub.add_parser("validate", help="top-1/top-5 and images/s on a labelled set (the same as validate.py; "
                   "`validate --help`)", add_help=False)
    sub.add_parser("convert", help="convert weights to hgzoo's, timm's or a Hub folder (the same as python -m "
                   "hgzoo.convert; `convert --help`)", add_help=False)
    p = sub.add_parser("models", help="list the models with their parameters, FLOPs and default weights")
    p.add_argument("pattern", nargs="?", default="*", help="wildcard, e.g. 'pphgnet*'")
    p.add_argument("--flops", action="store_true", help="also measure GFLOPs at 224x224 (torch.utils.flop_counter)")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.add_argument("--tags", action="store_true", help="one row per weight tag: its sources, license, accuracy")
    p.set_defaults(fn=cmd_models)
    add_predict_parser(sub)
    add_export_parser(sub)
    args = ap.parse_args(argv)
    return guarded_main(lambda _: args.fn(args), None, bad_input=(ValueError, TypeError, WeightsNotFoundError))
