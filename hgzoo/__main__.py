"""Command line: ``python -m hgzoo models [PATTERN] [--flops] [--markdown]``, ``python -m hgzoo train ...``,
``python -m hgzoo predict --model NAME IMG [IMG|DIR ...] [--topk 5] [--json] [--pretrained-file FILE]``,
``python -m hgzoo export --model NAME --format onnx|openvino|torchscript --precision fp32|fp16|bf16|int8 ...``."""
from __future__ import annotations

import argparse
import sys

import hgzoo
from hgzoo._cli import BadInput, guarded_main
from hgzoo._flops import count_flops
from hgzoo.hub import WeightsNotFoundError
from hgzoo._registry import paddle_name
from hgzoo.deploy.cli import add_parser as add_export_parser
from hgzoo.predict import add_parser as add_predict_parser


def cmd_models(args: argparse.Namespace) -> int:
    names = hgzoo.list_models(args.pattern)
    if not names:
        raise BadInput(f"no model matches {args.pattern!r}; see `python -m hgzoo models`")
    header = ["model", "PaddleClas name", "params (M)"]
    if args.flops:
        header.append("GFLOPs@224")
    header += ["default weights", "top-1", "eval preprocessing"]
    rows = []
    if not args.markdown:
        print("  ".join(header), flush=True)
    for name in names:
        model = hgzoo.create_model(name).eval()
        cfg = hgzoo.get_pretrained_cfg(name)
        row = [name, paddle_name(name), f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}"]
        if args.flops:
            row.append(f"{count_flops(model) / 1e9:.2f}")
        row += [
            cfg.name if cfg else "-",
            f"{cfg.top1:.2f}" if cfg and cfg.top1 is not None else "-",
            (f"resize {cfg.resize_short} {cfg.interpolation} ({cfg.resize_backend}), crop {cfg.crop_size}"
             if cfg else "-"),
        ]
        rows.append(row)
        if not args.markdown:
            print("  ".join(row), flush=True)
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"]:  # train.py's own command line, from a wheel install too
        from hgzoo.train.cli import main as train_main

        return train_main(argv[1:])
    ap = argparse.ArgumentParser(prog="python -m hgzoo", description=hgzoo.__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("train", help="train with a PaddleClas recipe (the same as train.py; `train --help`)",
                   add_help=False)
    p = sub.add_parser("models", help="list the models with their parameters, FLOPs and default weights")
    p.add_argument("pattern", nargs="?", default="*", help="wildcard, e.g. 'pphgnet*'")
    p.add_argument("--flops", action="store_true", help="also measure GFLOPs at 224x224 (torch.utils.flop_counter)")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.set_defaults(fn=cmd_models)
    add_predict_parser(sub)
    add_export_parser(sub)
    args = ap.parse_args(argv)
    return guarded_main(lambda _: args.fn(args), None, bad_input=(ValueError, TypeError, WeightsNotFoundError))


if __name__ == "__main__":
    sys.exit(main())
