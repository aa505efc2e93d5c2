"""Output: the environment block, the Markdown tables, CSV/JSON, and the latency-vs-accuracy plot."""
from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import asdict, fields
from pathlib import Path

from hgzoo.deploy import BACKENDS
from hgzoo.files import atomic_write

from .backends import INT8_CALIBRATION
from .core import INT8_MIN_TOP1, BenchmarkReport, Measurement
from .paddleclas import fmt_ms as _fmt_ms
from .paddleclas import paddleclas_markdown, paddleclas_tables
from .timing import paired_ratio

__all__ = ["to_markdown", "write_results", "plot_latency_vs_top1", "CSV_FIELDS", "TABLES"]

#: The main table's layouts: "wide" (backends × batch sizes side by side, ratios against the peer, roofline) or
#: "paddleclas" (PaddleClas's model-zoo columns, one table per backend and precision: benchmarks.harness.paddleclas).
TABLES = ("wide", "paddleclas")

CSV_FIELDS = [f.name for f in fields(Measurement)] + ["throughput_img_s"]
_BUSY = (". **Other processes were competing for the CPUs: absolute times are inflated and noisy. "
         "Ratios between two models on the same backend (timed interleaved, paired by round) stay fair; "
         "ratios across runtimes do not, since torch's OpenMP threads suffer most from contention. "
         "For a reference table run on an idle machine (or at a higher priority).**")


def _threads(n: int) -> str:
    return f"{n} thread" + ("" if n == 1 else "s")


def _ratio(a: Measurement | None, b: Measurement | None) -> float | None:
    """a's latency over b's: paired by round when both were timed in the same rounds (same model, batch and
    precision: the same group), else the ratio of the medians."""
    if a is None or b is None or not a.ok or not b.ok or a.status == "mismatch" or b.status == "mismatch":
        return None
    if (a.ran_batch_size or a.batch_size) != (b.ran_batch_size or b.batch_size):
        return None
    same_group = (a.model, a.precision, a.batch_size) == (b.model, b.precision, b.batch_size)
    if same_group and a.round_medians_ms and b.round_medians_ms:
        paired = paired_ratio(a.round_medians_ms, b.round_medians_ms)
        if paired is not None:
            return paired
    return a.median_ms / b.median_ms


def best_of(report: BenchmarkReport, model: str, impl: str, precision: str, batch: int,
            backends: list[str] | None = None) -> Measurement | None:
    """The fastest measurement whose output agrees with eager fp32 (on the CPU, or among ``backends``)."""
    cands = [m for m in report.measurements
             if (m.model, m.impl, m.precision, m.batch_size) == (model, impl, precision, batch)
             and m.status == "ok" and m.median_ms is not None
             and (backends is None or m.backend in backends)]
    return min(cands, key=lambda m: m.median_ms, default=None)


def _method(report: BenchmarkReport) -> list[str]:
    cfg, env = report.config, report.env
    v = env["versions"]
    libs = ", ".join(f"{k} {ver}" for k, ver in v.items())  # machine.environment's order
    lines = [
        f"- **Hardware:** {env['cpu']} ({env['cpu_count']} logical CPUs; {', '.join(env['cpu_isa']) or 'no AVX'}; "
        f"torch CPU capability {env['torch_cpu_capability']}); " + _gpu_words(env),
        f"- **Software:** Python {env['python']}, {libs}; {env['platform']}",
        f"- **Threads:** {env['threads']} (torch.set_num_threads; ONNX Runtime intra-op threads, inter-op 1; OpenVINO "
        "INFERENCE_NUM_THREADS, one stream); denormals flushed to zero (torch.set_flush_denormal)",
        f"- **Input:** a fixed random batch, {cfg.img_size}x{cfg.img_size}, float32 NCHW on the host; "
        + ("pretrained weights" if cfg.pretrained else
           "random weights, BatchNorm statistics calibrated on one random batch (latency does not depend on the "
           "weights)"),
        f"- **Timing:** {cfg.timing.describe()}. Wall clock (perf_counter) on the CPU; CUDA events with "
        "synchronization on the GPU (input already on the device). Reported: median and p90 in ms.",
        "- **Precision:** " + ", ".join(cfg.precisions) + ". fp32 is true fp32 (TF32 off on GPUs). "
        "eager bf16/fp16 = torch.autocast; the other backends cast the weights (OpenVINO: inference precision hint).",
        "- **Agreement:** every backend's logits vs. the same model's eager fp32 (torch on the CPU) on the same input; "
        "relative error = "
        "max|Δ| / max|reference|; flagged ✗ above " + ", ".join(f"{p} {t:.0e}" for p, t in cfg.tolerances.items()
                                                               if p in cfg.precisions)
        + (" unless, on the first image, the result is within twice eager fp32's own error of an exact fp64 run "
           "(eager fp32 rounds too: both errors are in the details)" if cfg.fp64_check else "") + ".",
        *([f"- **int8:** post-training static quantization, calibrated on {INT8_CALIBRATION}. Checked against eager "
           "fp32 on those same photos (not on the random timing batch): top-1 agreement and errors are reported; "
           + (f"flagged ✗ below {INT8_MIN_TOP1:.0%} top-1 agreement." if cfg.pretrained else
              "not judged, since with random weights the near-flat logits flip under any rounding: run with "
              "--pretrained to judge, and see benchmarks/drift.py for int8 accuracy with trained weights.")]
          if "int8" in cfg.precisions else []),
        "- **Backends:** " + "; ".join(f"`{b}`: {BACKENDS[b].description}" for b in dict.fromkeys(cfg.backends)
                                       if b in BACKENDS),
    ]
    start, end, share = env.get("load_avg_start"), env.get("load_avg_end"), env.get("cpu_other_share")
    if share is not None:
        # Measured over the run itself: CPU time used by processes other than this one and its workers.
        busy = share["others"] > 0.05 or share["steal"] > 0.05
        lines.append(f"- **Machine load:** other processes used {share['others']:.0%} of the {env['cpu_count']} "
                     f"CPUs' time during the run, the hypervisor's other guests {share['steal']:.0%} (steal)"
                     + (_BUSY if busy else "."))
    elif start is not None:
        busy = max(start, end or 0) > 0.5 * (env["cpu_count"] or 1)
        lines.append(f"- **Machine load:** 1-minute load average {start:.1f} before the run"
                     + (f", {end:.1f} after" if end is not None else "") + f", on {env['cpu_count']} CPUs"
                     + (_BUSY if busy else "."))
    if report.roofline:
        lines.append("- **Roofline:** " + "; ".join(
            f"{p}: {r['gflops_per_s']:.0f} GFLOP/s" for p, r in report.roofline.items())
            + f" ({next(iter(report.roofline.values()))['what']}, measured in this run)")
    lines.append("- **FLOPs:** torch.utils.flop_counter, one multiply-add = 2 FLOPs (PaddleClas's tables count "
                 "multiply-adds, i.e. half), per image.")
    return lines


def _gpu_words(env: dict) -> str:
    g = env.get("gpu_details")
    if not g:
        return f"GPU {env['gpu']}" if env.get("gpu") else "no GPU"
    return (f"GPU {g['name']} ({g['count']} visible; compute capability {g['compute_capability']}, "
            f"{g['memory_gib']} GiB; driver {g['driver'] or 'unknown'}; torch's CUDA {g['torch_cuda']}, "
            f"cuDNN {g['cudnn']})")


def _runs_on_gpu(report: BenchmarkReport) -> bool:
    return bool(report.env.get("gpu")) and any(BACKENDS[b].device != "cpu" for b in report.config.backends
                                               if b in BACKENDS)


def _title(report: BenchmarkReport) -> str:
    cfg, env = report.config, report.env
    where = (f"{env['gpu']} (host: {env['cpu']})" if _runs_on_gpu(report)
             else f"{env['cpu']} ({_threads(env['threads'])})")
    partial = "" if report.complete else " — PARTIAL: the run stopped before the end"
    return f"## hgzoo latency, {cfg.img_size}x{cfg.img_size}, measured {env['date'][:10]} on {where}{partial}"


def _base(cfg) -> str:
    """The peer's baseline backend: its first (eager on the CPU by default; e.g. cuda in a GPU run)."""
    return (cfg.compare_backends or ["eager"])[0]


def _label(backend: str, b: int, batches: list[int]) -> str:
    return f"{backend} bs{b}" if len(batches) > 1 else backend


def _suffix(b: int, batches: list[int]) -> str:
    return f" bs{b}" if len(batches) > 1 else ""


def _table_header(cfg, backends: list[str], peer_backends: list[str]) -> list[str]:
    batches = cfg.batch_sizes
    header = ["model", "params (M)", "GFLOPs", "top-1"] + [_label(bk, b, batches) for b in batches for bk in backends]
    header.append("max rel err")
    header += [f"best GFLOP/s (% roofline){_suffix(b, batches)}" for b in batches]
    for impl in cfg.compare:
        header.append(f"{impl} model")
        for b in batches:
            header += [f"{impl} {_label(bk, b, batches)}" for bk in peer_backends]
            header += [f"{_label(bk, b, batches)} ÷ {impl}" for bk in peer_backends if bk in backends]
            header.append(f"best vs {impl} {_base(cfg)}{_suffix(b, batches)}")
            if len(peer_backends) > 1:
                header.append(f"best vs best {impl}{_suffix(b, batches)}")
    return header


def _peer_cells(report: BenchmarkReport, name: str, impl: str, peer: dict, precision: str, backends: list[str],
                peer_backends: list[str]) -> list[str]:
    """One peer's cells in a model's row: its model, its latencies, and the ratios against hgzoo's."""
    cells = [f"– ({peer['reason']})" if "reason" in peer else f"{peer['model']} ({peer['params'] / 1e6:.2f} M)"]
    for b in report.config.batch_sizes:
        cells += [_fmt_ms(report.find(name, impl, bk, precision, b)) if "reason" not in peer else "–"
                  for bk in peer_backends]
        for bk in peer_backends:
            if bk in backends:
                r = _ratio(report.find(name, "hgzoo", bk, precision, b), report.find(name, impl, bk, precision, b))
                cells.append(f"{r:.2f}" if r else "–")
        best = best_of(report, name, "hgzoo", precision, b)
        r = _ratio(report.find(name, impl, _base(report.config), precision, b), best)
        cells.append(f"{r:.2f}× ({best.backend})" if r and best else "–")
        if len(peer_backends) > 1:
            peer_best = best_of(report, name, impl, precision, b)
            r = _ratio(peer_best, best)
            cells.append(f"{r:.2f}× ({best.backend} vs {peer_best.backend})" if r and best and peer_best else "–")
    return cells


def latency_table(report: BenchmarkReport, precision: str) -> list[str]:
    """PaddleClas-style table for one precision: a row per model; params, GFLOPs, published top-1, the
    median latency per backend × batch size, the worst relative error among them, then the peer's
    latency and the ratios."""
    cfg = report.config
    backends = list(dict.fromkeys(cfg.backends))
    peer_backends = list(dict.fromkeys(cfg.compare_backends or ["eager"]))
    batches = cfg.batch_sizes
    header = _table_header(cfg, backends, peer_backends)
    rows = []
    for info in report.models:
        row = [info.name, f"{info.params / 1e6:.2f}" if info.params else "–",
               f"{info.gflops:.2f}" if info.gflops else "–", f"{info.top1:.2f}" if info.top1 else "–"]
        if info.error:
            rows.append(row + [f"error: {info.error}"] + [""] * (len(header) - len(row) - 1))
            continue
        cells = [report.find(info.name, "hgzoo", bk, precision, b) for b in batches for bk in backends]
        row += [_fmt_ms(m) for m in cells]
        errs = [m.rel_err for m in cells if m is not None and m.rel_err is not None]
        row.append(f"{max(errs):.1e}" if errs else "–")
        for b in batches:
            best = best_of(report, info.name, "hgzoo", precision, b)
            if best is None or best.achieved_gflops_s is None:
                row.append("–")
            else:
                pct = f" ({best.roofline_pct:.0f}%)" if best.roofline_pct is not None else ""
                row.append(f"{best.achieved_gflops_s:.0f}{pct} {best.backend}")
        for impl in cfg.compare:
            row += _peer_cells(report, info.name, impl, info.peer.get(impl, {}), precision, backends, peer_backends)
        rows.append(row)
    title = f"### {precision}" + (f", batch {batches[0]}" if len(batches) == 1 else "") + " — median latency (ms)"
    return [title, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(r) + " |" for r in rows] + [""]


def to_markdown(report: BenchmarkReport, details: bool = True, table: str = "wide") -> str:
    """The report: method, the latency tables (``table``: "wide", one table per precision with the ratios against
    the peer; or "paddleclas", PaddleClas's layout), skipped backends with their reasons, errors, and the
    per-measurement details."""
    if table not in TABLES:
        raise ValueError(f"table must be one of {', '.join(TABLES)}, not {table!r}")
    cfg = report.config
    out = [_title(report), ""]
    out += _method(report)
    out.append("")
    if table == "paddleclas":
        return "\n".join(out + paddleclas_markdown(report) + _skipped_and_errors(report)
                         + (_details(report) if details else []))
    for precision in cfg.precisions:
        out += latency_table(report, precision)
    legend = ["top-1: the published ImageNet-1k top-1 of the model's default weights. Median latency in ms. ✗: output "
              "disagrees with eager fp32; ~: median not stable (its 95% confidence "
              "interval wider than the bar) when the time budget ran out; (bsN): ran a smaller batch after running "
              "out of memory. max rel err: the largest relative error against eager fp32 among the backends in the "
              "row. best GFLOP/s: the model's FLOPs per second on its fastest agreeing backend, and that as a share of "
              "the roofline (the rate of a large 3x3 convolution, measured in this run)."]
    if cfg.compare:
        legend.append(f"`X ÷ {cfg.compare[0]}`: hgzoo's median over the peer's on the same backend (< 1: hgzoo "
                      f"faster). `best vs {cfg.compare[0]} {_base(cfg)}`: the peer's {_base(cfg)} median over hgzoo's "
                      "fastest agreeing backend (> 1: hgzoo faster). Both from the same run, timed interleaved; a "
                      "ratio is the median over the rounds of the two block medians' ratio in that round, so a slow "
                      "spell of the machine cancels.")
    out += legend + [""]

    out += _summary(report) + _skipped_and_errors(report)
    if details and any(m.status != "skipped" for m in report.measurements):
        out += _details(report)
    return "\n".join(out)


def _skipped_and_errors(report: BenchmarkReport) -> list[str]:
    out = []
    skipped: dict[tuple[str, str], list[str]] = {}
    for m in report.measurements:
        if m.status == "skipped":
            skipped.setdefault((m.backend, m.reason), []).append(m.precision)
    if skipped:
        out.append("**Skipped:**")
        for (backend, reason), ps in skipped.items():
            out.append(f"- `{backend}` ({', '.join(dict.fromkeys(ps))}): {reason}")
        out.append("")
    errors = [m for m in report.measurements if m.status in ("error", "mismatch")]
    if errors:
        out.append("**Errors and mismatches:**")
        for m in errors:
            out.append(f"- {m.model} / {m.impl}:{m.backend} {m.precision} bs{m.batch_size}: {m.reason}")
        out.append("")
    return out


def _summary(report: BenchmarkReport) -> list[str]:
    """Per model and batch size: hgzoo eager over the peer's eager, and the fastest agreeing hgzoo path, in
    fp32 and at any precision, as a speed-up over the peer's eager fp32 and over the peer's own fastest
    agreeing path on the same backends (the figures the goals are about)."""
    cfg = report.config
    if not cfg.compare or "fp32" not in cfg.precisions:
        return []
    impl, base = cfg.compare[0], _base(cfg)
    header = ["model", "batch", f"{base} ÷ {impl} {base}", f"best fp32 path vs {impl} {base} fp32", "its rel err",
              f"best fp32 path vs best {impl} fp32 path", f"best path, any precision, vs {impl} {base} fp32",
              "its rel err", "its top-1 agree", f"best path vs best {impl} path, any precision"]
    out = [f"### Summary against {impl} {base} fp32 and {impl}'s best path", "", "| " + " | ".join(header) + " |",
           "|" + "---|" * len(header)]

    def per_image(m: Measurement) -> float:
        return m.median_ms / (m.ran_batch_size or m.batch_size)

    def fastest(model: str, impl_: str, b: int) -> Measurement | None:
        bests = [m for m in (best_of(report, model, impl_, p, b) for p in cfg.precisions) if m is not None]
        return min(bests, key=per_image, default=None)

    def label(m: Measurement) -> str:
        return m.backend + ("" if m.precision == "fp32" else f" {m.precision}")

    def vs(peer_m: Measurement | None, ours: Measurement | None) -> str:
        r = _ratio(peer_m, ours)
        return f"{r:.2f}× ({label(ours)} vs {label(peer_m)})" if r else "–"

    for info in report.models:
        if info.error or "reason" in info.peer.get(impl, {"reason": ""}):
            continue
        for b in cfg.batch_sizes:
            peer = report.find(info.name, impl, base, "fp32", b)
            eager = _ratio(report.find(info.name, "hgzoo", base, "fp32", b), peer)
            best32 = best_of(report, info.name, "hgzoo", "fp32", b)
            best_any = fastest(info.name, "hgzoo", b)
            peer32, peer_any = best_of(report, info.name, impl, "fp32", b), fastest(info.name, impl, b)
            r32, rany = _ratio(peer, best32), _ratio(peer, best_any)
            out.append("| " + " | ".join([
                info.name, str(b), f"{eager:.2f}" if eager else "–",
                f"{r32:.2f}× ({best32.backend})" if r32 else "–",
                f"{best32.rel_err:.1e}" if r32 and best32.rel_err is not None else "–",
                vs(peer32, best32),
                f"{rany:.2f}× ({best_any.backend} {best_any.precision})" if rany else "–",
                f"{best_any.rel_err:.1e}" if rany and best_any.rel_err is not None else "–",
                f"{best_any.top1_agreement:.0%}" if rany and best_any.top1_agreement is not None else "–",
                vs(peer_any, best_any),
            ]) + " |")
    return out + ["", f"`R× (ours vs theirs)`: {impl}'s median over hgzoo's (> 1: hgzoo faster); `best`: the fastest "
                  "path whose output agrees with eager fp32, among the backends run for each. Speed-ups across "
                  "precisions are ratios of medians from different rounds of the same run. top-1 agree: over the "
                  "timing batch, or for int8 over the real photos it is checked on.", ""]


def _details(report: BenchmarkReport) -> list[str]:
    if not any(m.status != "skipped" for m in report.measurements):
        return []
    header = ["model", "impl", "backend", "prec", "batch", "median ms", "±95% CI", "p90 ms", "iters", "img/s",
              "GFLOP/s", "% roofline", "max abs err", "rel err", "vs fp64 (eager)", "top-1 agree", "status", "note"]
    out = ["### Details", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m in report.measurements:
        if m.status == "skipped":
            continue
        f = lambda v, spec: "–" if v is None else format(v, spec)  # noqa: E731
        out.append("| " + " | ".join([
            m.model, m.impl if m.impl == "hgzoo" else f"{m.impl}:{m.impl_model}", m.backend, m.precision,
            str(m.ran_batch_size or m.batch_size), f(m.median_ms, ".2f"),
            "–" if m.ci_pct is None else f"{m.ci_pct:.1f}%", f(m.p90_ms, ".2f"), f(m.iters, "d"),
            f(m.throughput, ".1f"), f(m.achieved_gflops_s, ".0f"), f(m.roofline_pct, ".0f"), f(m.max_abs_err, ".1e"),
            f(m.rel_err, ".1e"),
            "–" if m.fp64_err is None else f"{m.fp64_err:.1e} ({m.eager_fp64_err:.1e})",
            f(m.top1_agreement, ".0%"),
            m.status + ("" if m.stable or m.status == "error" else " (unstable)"),
            (m.reason if m.status == "error" else m.note).replace("|", "/"),
        ]) + " |")
    out.append("")
    return out


def write_results(report: BenchmarkReport, path: str | os.PathLike, table: str = "wide") -> str:
    """Write the results as .csv (one row per measurement), .json (everything, with the measurements also in
    PaddleClas's table layout under ``paddleclas_tables``) or .md (the report, its main table in ``table``'s
    layout), atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        text = io.StringIO()
        w = csv.DictWriter(text, fieldnames=CSV_FIELDS)
        w.writeheader()
        for m in report.measurements:
            w.writerow({**asdict(m), "throughput_img_s": m.throughput})
        atomic_write(path, text.getvalue())
    elif suffix == ".json":
        data = {**report.to_dict(), "paddleclas_tables": paddleclas_tables(report)}
        atomic_write(path, json.dumps(data, indent=1, default=str))
    elif suffix in (".md", ".markdown"):
        atomic_write(path, to_markdown(report, table=table) + "\n")
    else:
        raise ValueError(f"--results-file must end in .csv, .json or .md, not {path.name!r}")
    return str(path)


def plot_latency_vs_top1(report: BenchmarkReport, path: str | os.PathLike, precision: str | None = None,
                         batch: int | None = None) -> tuple[str, list[str]]:
    """PaddleClas-style chart: published top-1 against latency, one line per family and backend.

    Returns the path and the models left out (no published top-1, or no measurement)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = report.config
    precision = precision or ("fp32" if "fp32" in cfg.precisions else cfg.precisions[0])
    batch = batch or (1 if 1 in cfg.batch_sizes else cfg.batch_sizes[0])
    left_out = [i.name for i in report.models if i.top1 is None]
    infos = [i for i in report.models if i.top1 is not None]
    fig, ax = plt.subplots(figsize=(9, 6))
    markers = "osD^v<>Pp*"
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    backends = list(dict.fromkeys(cfg.backends))
    plotted = set()
    for bi, backend in enumerate(backends):
        families: dict[str, list[tuple[float, float, str]]] = {}
        for info in infos:
            m = report.find(info.name, "hgzoo", backend, precision, batch)
            if m is None or m.status != "ok":
                continue
            families.setdefault(info.family, []).append((m.median_ms, info.top1, info.name))
            plotted.add(info.name)
        for fi, (family, pts) in enumerate(sorted(families.items())):
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=markers[fi % len(markers)],
                    color=colors[bi % len(colors)], label=f"{family} · {backend}")
    for impl in cfg.compare:
        pts = []
        for info in infos:
            m = report.find(info.name, impl, "eager", precision, batch)
            if m is not None and m.status == "ok":
                pts.append((m.median_ms, info.top1))
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], facecolors="none", edgecolors="k",
                       label=f"{impl} eager (same architecture)")
    for info in infos:
        best = best_of(report, info.name, "hgzoo", precision, batch)
        if best is not None:
            ax.annotate(info.name, (best.median_ms, info.top1), textcoords="offset points", xytext=(4, 4), fontsize=8)
    left_out += [i.name for i in infos if i.name not in plotted]
    ax.set_xscale("log")
    ax.set_xlabel(f"latency (ms, median), batch {batch}, {precision}, {cfg.img_size}px")
    ax.set_ylabel("published ImageNet-1k top-1 (%)")
    ax.set_title(f"hgzoo on {report.env['cpu']} ({_threads(report.env['threads'])})")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no model with a published top-1 was measured", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path), left_out
