"""The timing method, and the machine's roofline (a large 3x3 convolution's rate).

Runners that are compared are timed *interleaved*: round after round, each runs a short block, so a
slow spell of a noisy machine hits all of them alike. Within a block the first call is discarded: it
pays for the previous runner (its thread pool still spinning, its weights in the cache). Rounds go on
until every median is stable or the time budget is spent. Stable: at least ``min_iters`` samples and a
95% confidence interval of the median (distribution-free, from order statistics) within ±``rel_tol``.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Hashable

import numpy as np
import torch
import torch.nn.functional as F

from hgzoo.deploy import Runner
from hgzoo.deploy.backends import DTYPES

__all__ = ["Timing", "TimingConfig", "time_call", "time_interleaved", "conv_roofline", "paired_ratio", "Budget"]


@dataclass(frozen=True)
class TimingConfig:
    warmup: int = 3  # untimed calls per runner before the first round (after its preparation)
    min_iters: int = 10  # timed calls per runner before its median may be called stable
    max_iters: int = 300
    rel_tol: float = 0.01  # "stable": the median's 95% confidence interval is within ±rel_tol
    budget_s: float = 3.0  # per runner: a group of n runners stops after n * budget_s seconds
    block_s: float = 0.25  # each runner's share of one round
    gap_s: float = 0.03  # idle pause before each block, for the previous runtime's threads to go quiet

    def describe(self) -> str:
        return (f"{self.warmup} warm-up calls; then rounds in which each backend runs a ~{self.block_s:g} s block "
                f"(first call of each block discarded), interleaved, until every median's 95% confidence interval is "
                f"within ±{self.rel_tol:.0%} with >= {self.min_iters} samples, or {self.budget_s:g} s per backend is "
                "spent")


@dataclass
class Timing:
    samples_s: list[float] = field(default_factory=list)
    stable: bool = False
    round_medians_s: list[float | None] = field(default_factory=list)  # per round (None: sat out that round)

    @property
    def iters(self) -> int:
        return len(self.samples_s)

    @property
    def median_ms(self) -> float:
        return float(np.median(self.samples_s) * 1e3)

    @property
    def p90_ms(self) -> float:
        return float(np.percentile(self.samples_s, 90) * 1e3)

    @property
    def ci_rel(self) -> float:
        """Half-width of the median's 95% confidence interval, relative to the median (inf if too few samples)."""
        n = len(self.samples_s)
        if n < 6:
            return float("inf")
        xs = np.sort(self.samples_s)
        half = 1.96 * np.sqrt(n) / 2
        lo, hi = int(np.floor(n / 2 - half)), int(np.ceil(n / 2 + half))
        lo, hi = max(lo, 0), min(hi, n - 1)
        return float((xs[hi] - xs[lo]) / 2 / np.median(xs))


def time_call(runner: Runner) -> float:
    """Seconds of one call; on the GPU between CUDA events, synchronized."""
    if runner.sync == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        runner.run()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    t = time.perf_counter()
    runner.run()
    return time.perf_counter() - t


@contextlib.contextmanager
def _no_recompile():
    """A compiled runner that would recompile while being timed raises instead of timing the compiler."""
    try:
        import torch._dynamo

        ctx = torch._dynamo.config.patch(error_on_recompile=True)
    except (ImportError, AttributeError):
        ctx = contextlib.nullcontext()
    with ctx:
        yield


def time_interleaved(runners: dict[Hashable, Runner], cfg: TimingConfig = TimingConfig()) -> dict[Hashable, Timing]:
    """Time every runner by the method in this module's docstring; returns one :class:`Timing` each."""
    if not runners:
        return {}
    est: dict[Hashable, float] = {}
    with _no_recompile():
        for key, runner in runners.items():
            time.sleep(cfg.gap_s)
            est[key] = min(time_call(runner) for _ in range(max(cfg.warmup, 1)))
        out = {key: Timing() for key in runners}
        start, rounds = time.perf_counter(), 0
        budget = cfg.budget_s * len(runners)
        while True:
            rounds += 1
            for key, runner in runners.items():
                if out[key].iters >= cfg.max_iters:
                    out[key].round_medians_s.append(None)
                    continue
                n = int(np.clip(round(cfg.block_s / max(est[key], 1e-6)), 2, 50))
                time.sleep(cfg.gap_s)
                time_call(runner)  # discarded: pays for the previous runner
                block = [time_call(runner) for _ in range(n)]
                out[key].samples_s.extend(block)
                out[key].round_medians_s.append(float(np.median(block)))
            for timing in out.values():
                timing.stable = timing.iters >= cfg.min_iters and timing.ci_rel <= cfg.rel_tol
            if all(t.stable or t.iters >= cfg.max_iters for t in out.values()):
                break
            if time.perf_counter() - start > budget:
                break
    return out


def paired_ratio(a: list[float | None], b: list[float | None]) -> float | None:
    """The median over rounds of a's block median over b's, from runners timed in the same rounds: a slow
    spell of the machine slows both blocks of a round alike and cancels. None with fewer than 3 rounds."""
    ratios = [x / y for x, y in zip(a, b) if x is not None and y is not None and y > 0]
    return float(np.median(ratios)) if len(ratios) >= 3 else None


def conv_roofline(precision: str = "fp32", seconds: float = 1.0) -> dict:
    """The rate of a large 3x3 convolution (256→256 channels, 56x56, batch 4) in GFLOP/s: the best
    this machine's torch (oneDNN) does on the kind of work these models are made of. Both memory
    formats are tried and the faster counts."""
    dtype = DTYPES[precision]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 256, 56, 56, generator=gen).to(dtype)
    w = (torch.randn(256, 256, 3, 3, generator=gen) * 0.02).to(dtype)
    flops = 2 * 4 * 256 * 256 * 9 * 56 * 56
    best = 0.0
    with torch.inference_mode():
        for fmt in (torch.contiguous_format, torch.channels_last):
            xf, wf = x.contiguous(memory_format=fmt), w.contiguous(memory_format=fmt)
            F.conv2d(xf, wf, padding=1)
            ts, t_end = [], time.perf_counter() + seconds / 2
            while time.perf_counter() < t_end or len(ts) < 3:
                t = time.perf_counter()
                F.conv2d(xf, wf, padding=1)
                ts.append(time.perf_counter() - t)
            best = max(best, flops / float(np.median(ts)) / 1e9)
    return {"precision": precision, "gflops_per_s": best,
            "what": "3x3 conv 256->256, 4x256x56x56, torch eager, best memory format"}


class Budget:
    """When measurements stop being started.

    ``run_s``: the whole run's seconds. Each model, when it starts, gets an equal share of the time left among the
    models left: a fast model leaves more for the next, one that overruns takes from the later ones, and once the
    run's time is spent the remaining cells are reported as not measured. ``prepare_s``: per backend, the seconds
    it may spend preparing (exporting, compiling, building engines) for one model before its remaining cells of that
    model are skipped. Cells run in the order batch size, then precision: the first ones are measured first.
    """

    def __init__(self, run_s: float | None = None, prepare_s: dict[str, float] | None = None,
                 n_models: int = 1, clock=time.perf_counter) -> None:
        self.run_s, self.prepare_s, self.n_models, self.clock = run_s, dict(prepare_s or {}), max(n_models, 1), clock
        self.start = clock()
        self.deadline: float | None = None
        self.spent: dict[str, float] = {}

    def next_model(self, index: int) -> None:
        """Model ``index`` (0-based) starts: its deadline is now + its share of the time left."""
        self.spent = {}
        if self.run_s is not None:
            now = self.clock()
            left = self.start + self.run_s - now
            self.deadline = now + max(left, 0.0) / max(self.n_models - index, 1)

    def run_spent(self) -> str | None:
        """Why no new measurement of the current model may start (its share of the run's time is spent), or None."""
        if self.deadline is None or self.clock() < self.deadline:
            return None
        return (f"not measured: the run's time budget was spent (--time-budget {self.run_s:g} s, shared equally "
                "among the models)")

    def backend_spent(self, backend: str) -> str | None:
        """Why ``backend`` may not prepare another measurement of the current model, or None."""
        limit = self.prepare_s.get(backend)
        if limit is not None and self.spent.get(backend, 0.0) >= limit:
            return (f"not measured: {backend} had spent its preparation budget on this model "
                    f"(--prepare-budget {backend}={limit:g} s)")
        return self.run_spent()

    def charge(self, backend: str, seconds: float) -> None:
        self.spent[backend] = self.spent.get(backend, 0.0) + seconds
