"""The measurements in PaddleClas's model-zoo layout (``docs/zh_CN/models/ImageNet1k/model_list.md``): one table
per backend and precision, a row per model, and the columns PaddleClas uses:

    | Model | Top-1 Acc | Top-5 Acc | time(ms) bs=1 | time(ms) bs=4 | time(ms) bs=8 | FLOPs(G) | Params(M) |

with the batch sizes of the run. PaddleClas's FLOPs are multiply-adds (``paddle.flops``), half of what
``torch.utils.flop_counter`` counts, so FLOPs(G) here is the harness's count ÷ 2; time(ms) is the median latency of
one batch. A peer model (``--compare timm``) measured on the same backend gets its own row under the model's.
"""
from __future__ import annotations

from hgzoo.registry import paddle_name

from .core import BenchmarkReport, Measurement

__all__ = ["fmt_ms", "paddleclas_tables", "paddleclas_markdown"]


def fmt_ms(m: Measurement | None) -> str:
    """A latency cell: the median (ms), ✗ if the output disagreed, ~ if not stable, (bsN) if the batch shrank;
    or what happened instead (skipped, not run for lack of time, error)."""
    if m is None:
        return "–"
    if m.status == "skipped":
        return "not run" if m.reason.startswith("not measured") else "skipped"
    if m.status == "error" or m.median_ms is None:
        return "error"
    text = f"{m.median_ms:.2f}" if m.median_ms < 100 else f"{m.median_ms:.1f}"
    if m.status == "mismatch":
        text += " ✗"
    if not m.stable:
        text += "~"
    if m.ran_batch_size and m.ran_batch_size != m.batch_size:
        text += f" (bs{m.ran_batch_size})"
    return text


def _row(report: BenchmarkReport, info, impl: str, backend: str, precision: str) -> dict | None:
    """One model's (or its peer's) row of a table, None if that model was not run on ``backend``."""
    cfg = report.config
    if impl == "hgzoo":
        if backend not in cfg.backends:
            return None
        label, params, gflops = f"{info.name} ({paddle_name(info.name)})", info.params, info.gflops
        top1, top5 = info.top1, info.top5
    else:
        peer = info.peer.get(impl, {})
        if backend not in (cfg.compare_backends or ["eager"]) or "reason" in peer:
            return None
        label, params, gflops, top1, top5 = f"{impl}: {peer['model']}", peer["params"], peer["gflops"], None, None
    cells = {b: report.find(info.name, impl, backend, precision, b) for b in cfg.batch_sizes}
    return {
        "model": info.name, "impl": impl, "label": label, "top1": top1, "top5": top5,
        "flops_g": None if gflops is None else round(gflops / 2, 3),  # multiply-adds, as PaddleClas counts
        "params_m": None if params is None else round(params / 1e6, 3),
        "time_ms": {str(b): (m.median_ms if m is not None and m.ok else None) for b, m in cells.items()},
        "status": {str(b): (m.status if m is not None else "absent") for b, m in cells.items()},
        "cell": {str(b): fmt_ms(m) for b, m in cells.items()},
        "error": info.error or None,
    }


def paddleclas_tables(report: BenchmarkReport) -> list[dict]:
    """One dict per (backend, precision): ``backend``, ``precision``, ``batch_sizes``, ``rows`` (see :func:`_row`:
    top1/top5 in %, flops_g as multiply-adds, params_m, time_ms and the formatted cell per batch size), and
    ``skipped``: the one reason every cell of the table shares, when nothing in it ran."""
    cfg = report.config
    peer_backends = list(cfg.compare_backends or ["eager"]) if cfg.compare else []
    backends = list(dict.fromkeys(list(cfg.backends) + peer_backends))
    tables = []
    for backend in backends:
        for precision in cfg.precisions:
            rows = [r for info in report.models for impl in ["hgzoo", *cfg.compare]
                    if (r := _row(report, info, impl, backend, precision)) is not None]
            cells = [m for m in report.measurements if (m.backend, m.precision) == (backend, precision)]
            reasons = {m.reason for m in cells if m.status == "skipped"}
            skipped = next(iter(reasons)) if cells and len(reasons) == 1 and all(
                m.status == "skipped" for m in cells) else None
            tables.append({"backend": backend, "precision": precision, "batch_sizes": list(cfg.batch_sizes),
                           "img_size": cfg.img_size, "rows": rows, "skipped": skipped})
    return tables


def _num(v: float | None, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def paddleclas_markdown(report: BenchmarkReport) -> list[str]:
    """:func:`paddleclas_tables` as Markdown, with the legend."""
    out = []
    for t in paddleclas_tables(report):
        title = f"### {t['backend']}, {t['precision']} — time (ms) per batch, PaddleClas's layout"
        if t["skipped"]:
            out += [title, "", f"skipped: {t['skipped']}", ""]
            continue
        header = (["Model", "Top-1 Acc (%)", "Top-5 Acc (%)"] + [f"time(ms) bs={b}" for b in t["batch_sizes"]]
                  + ["FLOPs(G)", "Params(M)"])
        lines = [title, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for r in t["rows"]:
            times = ([f"error: {r['error']}"] + [""] * (len(t["batch_sizes"]) - 1) if r["error"]
                     else [r["cell"][str(b)] for b in t["batch_sizes"]])
            lines.append("| " + " | ".join([r["label"], _num(r["top1"], ".2f"), _num(r["top5"], ".2f"), *times,
                                            _num(r["flops_g"], ".2f"), _num(r["params_m"], ".2f")]) + " |")
        out += lines + [""]
    gpu = " (on the GPU: input already on the device, CUDA events, synchronized)" if report.env.get("gpu") else ""
    out += [f"time(ms): median latency of one batch at {report.config.img_size}x{report.config.img_size}{gpu}. ✗: "
            "output disagrees with eager fp32 (see the errors); ~: median not stable; not run: left out by the time "
            "budget; skipped: the backend or precision cannot run here (reasons below). FLOPs(G): multiply-adds per "
            "image, as PaddleClas counts them (paddle.flops), i.e. torch.utils.flop_counter's count ÷ 2. Params(M): "
            "trainable parameters. Top-1/Top-5: the published ImageNet-1k accuracy of the model's default weights "
            "(the latency does not depend on the weights). `timm: X`: timm's port of the same architecture on the "
            "same backend.", ""]
    return out
