"""Backbone latency inside the real-time detectors: D-FINE's own ``HGNetv2`` / ``PResNet`` (the PyPI package
d-fine-project 1.0.0, as tests/reference/detectors_setup.sh extracts it) against hgzoo's drop-ins
(:mod:`hgzoo.integrations.rtdetr`) with the same weights, before and after ``convert_to_deploy()``.

Batch 1, fp32, eager, eval mode, CPU, the classes built as their shipped configs build them (``freeze_norm=True``
where the config sets it: FrozenBatchNorm2d). Their ``model.deploy()`` leaves their backbone as it is (it has no
``convert_to_deploy``), so "theirs" is also their deployed backbone. The three are timed in alternating rounds and
the fastest round is reported (as ``timeit`` advises: on a shared machine the other processes only ever add time),
with the median beside it, and the ratios theirs / hgzoo of the fastest rounds (above 1: hgzoo faster).

  taskset -c 0 python benchmarks/detector_backbones.py --threads 1 [--json docs/results/FILE.json]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from hgzoo.integrations.rtdetr import HGNetv2, PResNet

ROOT = Path(__file__).resolve().parent.parent
# (label, their class, args as D-FINE's configs give them)
CASES = {
    "HGNetv2 B0 (D-FINE N/S)": ("HGNetv2", dict(name="B0", use_lab=True, freeze_at=-1, freeze_norm=False)),
    "HGNetv2 B2 (D-FINE M)": ("HGNetv2", dict(name="B2", use_lab=True, freeze_at=-1, freeze_norm=False)),
    "HGNetv2 B4 (D-FINE L)": ("HGNetv2", dict(name="B4", freeze_at=0, freeze_norm=True)),
    "HGNetv2 B5 (D-FINE X)": ("HGNetv2", dict(name="B5", freeze_at=0, freeze_norm=True)),
    "PResNet 50 (RT-DETR R50)": ("PResNet", dict(depth=50, return_idx=[1, 2, 3], freeze_at=0, freeze_norm=True)),
}


def _reference():
    spec = importlib.util.spec_from_file_location("hgzoo_bench_detector_ref", ROOT / "tests" / "detector_ref.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    folder = module.ensure_reference()
    if folder is None:
        raise SystemExit("D-FINE's reference code is missing: run tests/reference/detectors_setup.sh")
    return module.load(folder)


def _pair(ref, kind: str, kwargs: dict) -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module]:
    """Theirs, hgzoo's with their weights, and hgzoo's deployed copy."""
    extra = {"pretrained": False} if kind == "HGNetv2" else {}
    theirs = getattr(ref, kind)(**kwargs, **extra).eval()
    with torch.no_grad():
        for name, t in theirs.state_dict().items():  # weights that are not all ones: BN/FrozenBN stats included
            if t.dtype.is_floating_point:
                t.copy_(t + 0.01 * torch.rand_like(t) if "running_var" in name else t + 0.01 * torch.randn_like(t))
    ours_cls = HGNetv2 if kind == "HGNetv2" else PResNet
    ours, deployed = ours_cls(**kwargs, **extra).eval(), ours_cls(**kwargs, **extra).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    deployed.load_state_dict(theirs.state_dict(), strict=True)
    deployed.convert_to_deploy()
    return theirs, ours, deployed


def _once(model: torch.nn.Module, x: torch.Tensor, n: int, clock) -> float:
    start = clock()
    for _ in range(n):
        model(x)
    return (clock() - start) / n * 1000


@torch.inference_mode()
def bench(models: dict[str, torch.nn.Module], x: torch.Tensor, rounds: int, per_round: int, warmup: int,
          clock=time.perf_counter) -> dict:
    """(fastest, median) ms per forward of each model, over ``rounds`` alternating rounds of ``per_round`` forwards."""
    for model in models.values():
        for _ in range(warmup):
            model(x)
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(rounds):
        for k, model in models.items():
            times[k].append(_once(model, x, per_round, clock))
    return {k: (min(v), statistics.median(v)) for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=640)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--per-round", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES), metavar="CASE")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall: elapsed time; cpu: this thread's CPU time (time.thread_time), which other processes on "
                         "a shared machine do not inflate (with --threads 1, every op runs on this thread)")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args(argv)
    if args.clock == "cpu" and args.threads != 1:
        ap.error("--clock cpu measures one thread: give --threads 1")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ref = _reference()
    x = torch.randn(1, 3, args.size, args.size)
    rows = []
    print(f"{'backbone':28s} {'theirs ms':>10s} {'hgzoo ms':>9s} {'deployed ms':>12s} {'ratio':>6s} {'deployed':>9s}")
    for label in args.cases:
        kind, kwargs = CASES[label]
        theirs, ours, deployed = _pair(ref, kind, kwargs)
        with torch.inference_mode():
            for a, b in zip(deployed(x), theirs(x)):
                assert float((a - b).abs().max() / b.abs().max()) < 1e-3, f"{label}: outputs differ"
        both = bench({"theirs": theirs, "hgzoo": ours, "deployed": deployed}, x, args.rounds, args.per_round,
                     args.warmup, time.thread_time if args.clock == "cpu" else time.perf_counter)
        ms = {k: v[0] for k, v in both.items()}
        row = {"backbone": label, **{f"{k}_ms": round(v, 2) for k, v in ms.items()},
               **{f"{k}_median_ms": round(v[1], 2) for k, v in both.items()},
               "ratio": round(ms["theirs"] / ms["hgzoo"], 3), "ratio_deployed": round(ms["theirs"] / ms["deployed"], 3)}
        rows.append(row)
        print(f"{label:28s} {ms['theirs']:10.1f} {ms['hgzoo']:9.1f} {ms['deployed']:12.1f} {row['ratio']:6.2f}x "
              f"{row['ratio_deployed']:8.2f}x")
    if args.json:
        meta = {"clock": args.clock, "size": args.size, "batch": 1, "dtype": "float32",
                "mode": "eager, eval, torch.inference_mode",
                "threads": args.threads, "rounds": args.rounds, "per_round": args.per_round, "torch": torch.__version__,
                "cpu": platform.processor() or platform.machine(), "reference": "d-fine-project 1.0.0 (PyPI)",
                "ratio": "theirs ms / hgzoo ms (above 1: hgzoo faster)"}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
