"""``python benchmark.py``: the command line over :func:`benchmarks.harness.run_benchmark`."""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import traceback

from hgzoo.cli.base import BadInput, positive_float, writable_file
from hgzoo.deploy import BACKENDS, PRECISIONS
from hgzoo.deploy.backends import cpu_precision_skip, with_channels_last

from .core import BenchmarkConfig, run_benchmark
from .report import TABLES, plot_latency_vs_top1, to_markdown, write_results
from .subjects import BenchmarkInputError
from .timing import TimingConfig

DEFAULT_MODELS = ["pplcnetv2_base", "pphgnet_small"]
CPU_BACKENDS = ["eager", "reparam", "onnxruntime", "openvino"]
GPU_BACKENDS = ["cuda", "cuda-compile", "tensorrt"]

EPILOG = f"""
backends: {', '.join(BACKENDS)} (also: all, cpu, gpu)
precisions: {', '.join(PRECISIONS)}

examples:
  python benchmark.py                                   # the default set, about 2 minutes on 2 cores
  python benchmark.py --model pphgnet_small --batch-sizes 1,8 --compare timm
  python benchmark.py --model 'pphgnetv2*' --backend eager,compile,openvino --precision fp32,bf16 \\
      --results-file out.csv --plot out.png
  python benchmark.py --model pphgnet_small --precision fp32,bf16,int8 --compare timm --compare-backends same
      # hgzoo's best path against timm's best path through the same backends (int8: onnxruntime, openvino)
  python benchmark.py --model pphgnet_tiny,resnet50_vd --backend cuda,cuda-compile,tensorrt --precision fp32,fp16 \\
      --batch-sizes 1,8,64 --compare timm --compare-backends cuda --table paddleclas --time-budget 300 \\
      --prepare-budget cuda-compile=60,tensorrt=60 --results-file gpu.md --results-file gpu.json
      # GPU tables in PaddleClas's layout, within a time budget (benchmarks/gpu_check.sh runs this)
"""


def _csv(kind):
    def parse(text: str) -> list:
        try:
            return [kind(t.strip()) for t in text.split(",") if t.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of {kind.__name__}s, got {text!r}") from None
    return parse


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _prepare_budget(text: str) -> dict[str, float]:
    """'tensorrt=60,cuda-compile=90' → {backend: seconds}."""
    out = {}
    for item in (t.strip() for t in text.split(",") if t.strip()):
        name, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            out[name.strip()] = positive_float(value)
        except (ValueError, argparse.ArgumentTypeError):
            raise argparse.ArgumentTypeError(
                f"expected BACKEND=SECONDS[,BACKEND=SECONDS] with positive seconds, got {item!r}") from None
    return out


def _batch_sizes(text: str) -> list[int]:
    return [_positive_int(t.strip()) for t in text.split(",") if t.strip()]


def _default_backends() -> list[str]:
    gpu = [b for b in GPU_BACKENDS if BACKENDS[b].unavailable() is None]
    return CPU_BACKENDS + gpu


def _default_precisions() -> list[str]:
    return ["fp32"] + (["bf16"] if cpu_precision_skip("bf16") is None else [])


def expand_backends(names: list[str]) -> list[str]:
    out: list[str] = []
    for n in names:
        if n == "all":
            out += list(BACKENDS)
        elif n == "cpu":
            out += [b for b, v in BACKENDS.items() if v.device == "cpu"]
        elif n == "gpu":
            out += [b for b, v in BACKENDS.items() if v.device != "cpu"]
        else:
            out.append(n)
    return list(dict.fromkeys(out))


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="benchmark.py", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Latency of hgzoo models per backend, precision and batch size, checked against eager fp32, "
                    "optionally side by side with timm's equivalent models.")
    ap.add_argument("--model", "-m", action="append", type=_csv(str), metavar="NAME",
                    help="model name or wildcard ('pphgnet*'); repeat or comma-separate "
                         f"(default: {','.join(DEFAULT_MODELS)})")
    ap.add_argument("--batch-sizes", "-b", type=_batch_sizes, default=[1], metavar="N,N", help="default: 1")
    ap.add_argument("--img-size", type=_positive_int, default=224, help="default: 224")
    ap.add_argument("--precision", "-p", type=_csv(str), default=None, metavar="P,P",
                    help=f"{','.join(PRECISIONS)} (default: fp32, and bf16 where the CPU has it natively; int8: "
                         "post-training quantized on onnxruntime/openvino)")
    ap.add_argument("--backend", type=_csv(str), default=None, metavar="B,B",
                    help=f"default: {','.join(CPU_BACKENDS)} (+ {','.join(GPU_BACKENDS)} where a GPU is present)")
    ap.add_argument("--compare", type=_csv(str), default=None, metavar="timm[,timm-plain]",
                    help="also time the equivalent timm model: 'timm' deploys it after timm's reparameterize_model, "
                         "'timm-plain' exports it as timm.create_model returns it ('none' to skip; default: timm if "
                         "installed)")
    ap.add_argument("--compare-backends", type=_csv(str), default=None, metavar="B,B",
                    help="backends for the compared models: a list, or 'same' (as --backend); default: eager")
    ap.add_argument("--threads", type=_positive_int, default=None, help=f"default: all CPUs ({os.cpu_count()})")
    ap.add_argument("--pretrained", action="store_true",
                    help="load the default weights (latency does not depend on them)")
    ap.add_argument("--results-file", metavar="FILE", action="append",
                    help="write the results: .csv, .json or .md (repeat for several); rewritten after each group of "
                         "measurements, so a run stopped midway leaves what it measured (marked partial)")
    ap.add_argument("--table", choices=TABLES, default="wide",
                    help="the main table's layout: 'wide' (backends side by side, ratios against the peer) or "
                         "'paddleclas' (PaddleClas's model-zoo columns, one table per backend and precision)")
    ap.add_argument("--time-budget", type=positive_float, default=None, metavar="S",
                    help="stop starting measurements after S seconds: each model gets an equal share of the time "
                         "left when it starts (cells not started are reported as not run)")
    ap.add_argument("--prepare-budget", type=_prepare_budget, default={}, metavar="B=S,B=S",
                    help="per model, the seconds a backend may spend preparing (compiling, building engines) before "
                         "its remaining cells of that model are skipped, e.g. tensorrt=60,cuda-compile=60")
    ap.add_argument("--plot", metavar="PNG", help="latency against published top-1 (needs matplotlib)")
    ap.add_argument("--warmup", type=_positive_int, default=3, help="warm-up calls per backend (default: 3)")
    ap.add_argument("--min-iters", type=_positive_int, default=10, help="timed calls before a median may be stable")
    ap.add_argument("--max-time", type=positive_float, default=2.0, metavar="S",
                    help="time budget per backend and measurement, in seconds (default: 2)")
    ap.add_argument("--no-roofline", action="store_true", help="skip measuring the 3x3-conv roofline")
    ap.add_argument("--no-details", action="store_true", help="print only the main table")
    ap.add_argument("--quiet", "-q", action="store_true", help="no progress messages")
    ap.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    _add_timm_flags(ap.add_argument_group("timm's benchmark.py spellings"))
    return ap


def _add_timm_flags(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--device", choices=["cpu", "cuda"], help="cpu: the CPU backends; cuda: the GPU backends "
                                                             "(when --backend is not given)")
    g.add_argument("--amp", action="store_true", help="mixed precision: --precision fp16 with --device cuda, else bf16")
    g.add_argument("--torchcompile", nargs="?", const="inductor", metavar="inductor",
                   help="the torch.compile backend: compile on CPU, cuda-compile with --device cuda (inductor only)")
    g.add_argument("--torchscript", action="store_true",
                   help="the TorchScript backend (torch.jit.script of the model as built): torchscript on CPU, "
                        "cuda-torchscript with --device cuda")
    g.add_argument("--bench", choices=["inference", "train", "both", "profile"],
                   help="inference only: benchmark.py times inference (train, both and profile are refused)")
    g.add_argument("--channels-last", action="store_true",
                   help="the torch backends run the model and input in channels-last memory format (reparam and "
                        "cuda no longer probe both layouts); without --backend, the default ones minus the runtimes "
                        "(onnxruntime, openvino, tensorrt: the flag does not apply to them, and naming one is "
                        "refused)")


def _timm_flags(args: argparse.Namespace) -> None:
    """timm's benchmark.py flags turned into hgzoo's (--backend, --precision), or refused in one line."""
    if args.bench not in (None, "inference"):
        raise BenchmarkInputError(f"--bench {args.bench}: benchmark.py times inference only; give --bench inference")
    gpu = args.device == "cuda"
    if args.torchcompile is not None and args.torchcompile != "inductor":
        raise BenchmarkInputError(f"--torchcompile {args.torchcompile}: only inductor; give --torchcompile")
    named = [flag for flag, given in (("--torchcompile", args.torchcompile is not None),
                                      ("--torchscript", args.torchscript)) if given]
    if len(named) > 1:
        raise BenchmarkInputError("--torchcompile and --torchscript each name the backend: give one of them")
    if named and args.backend:
        alone = {"--torchcompile": "compile/cuda-compile", "--torchscript": "torchscript/cuda-torchscript"}[named[0]]
        raise BenchmarkInputError(f"{named[0]} names the backend: leave out --backend (or give --backend {alone})")
    if args.torchcompile is not None:
        args.backend = ["cuda-compile" if gpu else "compile"]
    if args.torchscript:
        args.backend = ["cuda-torchscript" if gpu else "torchscript"]
    if args.channels_last and not args.backend:  # the defaults that have a torch memory format
        defaults = (GPU_BACKENDS if gpu else CPU_BACKENDS) if args.device else _default_backends()
        args.backend = [b for b in defaults if with_channels_last(BACKENDS[b]) is not None]
    if args.device and not args.backend:
        args.backend = GPU_BACKENDS if gpu else CPU_BACKENDS
    elif args.device:
        wrong = [b for b in expand_backends(args.backend) if b in BACKENDS and (BACKENDS[b].device != "cpu") != gpu]
        if wrong:
            raise BenchmarkInputError(f"--device {args.device} contradicts --backend {','.join(wrong)}")
    if args.amp:
        if args.precision:
            raise BenchmarkInputError("--amp is --precision fp16 (bf16 on CPU): give one of them")
        args.precision = ["fp16" if gpu else "bf16"]


def config_from_args(args: argparse.Namespace) -> BenchmarkConfig:
    _timm_flags(args)
    models = [m for group in (args.model or [DEFAULT_MODELS]) for m in group]
    backends = expand_backends(args.backend) if args.backend else _default_backends()
    if args.compare is None:
        compare = ["timm"] if importlib.util.find_spec("timm") is not None else []
    else:
        compare = [c for c in args.compare if c != "none"]
    compare_backends = args.compare_backends
    if compare_backends == ["same"]:
        compare_backends = backends
    elif compare_backends:
        compare_backends = expand_backends(compare_backends)
    for path in args.results_file or []:
        if not path.lower().endswith((".csv", ".json", ".md", ".markdown")):
            raise BenchmarkInputError(f"--results-file must end in .csv, .json or .md, not {path!r}")
    for flag, path in [*(("--results-file", p) for p in args.results_file or []), ("--plot", args.plot)]:
        if path:
            try:
                writable_file(path, flag)  # now, not after the measurements
            except BadInput as e:
                raise BenchmarkInputError(str(e)) from None
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise BenchmarkInputError("--plot needs matplotlib (pip install matplotlib, or hgzoo[bench])") from None
    return BenchmarkConfig(
        models=models, batch_sizes=args.batch_sizes, img_size=args.img_size,
        precisions=list(dict.fromkeys(args.precision or _default_precisions())), backends=backends, compare=compare,
        compare_backends=compare_backends, threads=args.threads, pretrained=args.pretrained,
        timing=TimingConfig(warmup=args.warmup, min_iters=args.min_iters, budget_s=args.max_time),
        roofline=not args.no_roofline, channels_last=args.channels_last, time_budget_s=args.time_budget,
        prepare_budget_s=args.prepare_budget,
        log=(lambda msg: None) if args.quiet else None,
        on_progress=(lambda report: _write_all(report, args)) if args.results_file else None,
    )


def _write_all(report, args: argparse.Namespace) -> list[str]:
    return [write_results(report, path, table=args.table) for path in args.results_file or []]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
        report = run_benchmark(cfg)
    except BenchmarkInputError as e:
        print(f"benchmark.py: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("benchmark.py: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - an unexpected failure: a message, the traceback on request
        if args.debug:
            traceback.print_exc()
        print(f"benchmark.py: unexpected error: {type(e).__name__}: {e} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1
    print(to_markdown(report, details=not args.no_details, table=args.table))
    for path in _write_all(report, args):
        print(f"results written to {path}", file=sys.stderr)
    if args.plot:
        path, left_out = plot_latency_vs_top1(report, args.plot)
        print(f"plot written to {path}" + (f" (left out, no published top-1 or no result: {', '.join(left_out)})"
                                           if left_out else ""), file=sys.stderr)
    print(f"finished in {report.seconds:.0f} s", file=sys.stderr)
    return 0
