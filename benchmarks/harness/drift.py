"""Accuracy drift of exported models: top-1 accuracy of every format × precision against eager fp32 on a held-out
labelled set, with top-1 agreement and logit errors. ``benchmarks/drift.py`` is the command line.

A study on top of the library: every file goes through :func:`hgzoo.deploy.export` and :func:`hgzoo.deploy.load`."""
from __future__ import annotations

import csv
import io
import json
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from hgzoo.deploy import (
    EXTENSIONS,
    FORMATS,
    FP32_MAX_REL_ERR,
    MIN_TOP1_AGREEMENT,
    PRECISIONS,
    ExportReport,
    Predictor,
    agreement,
    describe_compute,
    export,
    load,
    unsupported_reason,
    verdict,
)
from hgzoo.deploy.images import ImageSource
from hgzoo.files import atomic_write

from .machine import environment

__all__ = ["DriftRow", "DriftReport", "measure_drift", "ALL_TARGETS"]

ALL_TARGETS = tuple((f, p) for f in FORMATS for p in PRECISIONS)


@dataclass
class DriftRow:
    """One exported model (or the eager fp32 reference) measured on the held-out set."""

    target: str  # "eager fp32", "onnx int8", ...
    format: str
    precision: str
    status: str  # "reference", "ok", "fail" (beyond the export bound), "skipped", "error"
    compute: str = ""
    reason: str = ""
    n: int = 0
    top1: float | None = None  # accuracy, %
    top1_delta: float | None = None  # percentage points against eager fp32
    agreement: float | None = None  # share of images whose top-1 class equals eager fp32's
    max_abs_err: float | None = None
    max_rel_err: float | None = None  # max |Δ| / max |eager fp32 logit| over the whole set
    criterion: str = ""
    file: str = ""
    size_mb: float | None = None
    export_s: float | None = None


@dataclass
class DriftReport:
    model: str
    weights: str
    heldout: str
    calibration: str
    rows: list[DriftRow]
    env: dict = field(default_factory=dict)
    seconds: float = 0.0

    def row(self, target: str) -> DriftRow | None:
        return next((r for r in self.rows if r.target == target), None)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items()}

    def to_markdown(self) -> str:
        def f(v, spec):
            return "–" if v is None else format(v, spec)

        ref = self.row("eager fp32")
        out = [f"## Accuracy drift of exported {self.model}", "",
               f"- **Weights:** {self.weights}",
               f"- **Held-out set:** {self.heldout} ({ref.n if ref else 0} images)",
               f"- **int8 calibration:** {self.calibration}",
               f"- **Machine:** {self.env.get('cpu', '?')}; "
               + ", ".join(f"{k} {v}" for k, v in self.env.get("versions", {}).items()),
               f"- **Measured:** {self.env.get('date', '')}, in {self.seconds:.0f} s",
               "- **Bounds** (those of `hgzoo.deploy.export`): fp32 max rel err <= "
               f"{FP32_MAX_REL_ERR:.0e}; top-1 agreement with eager fp32 >= "
               + ", ".join(f"{p} {b:.0%}" for p, b in MIN_TOP1_AGREEMENT.items()),
               "",
               "| target | computes in | top-1 (%) | Δ vs fp32 (pp) | top-1 agreement with fp32 | max abs err | "
               "max rel err | status | file (MB) |",
               "|---|---|---|---|---|---|---|---|---|"]
        for r in self.rows:
            if r.status == "skipped":
                continue
            status = r.status + (f": {r.reason}" if r.status in ("fail", "error") and r.reason else "")
            out.append("| " + " | ".join([
                r.target, r.compute, f(r.top1, ".2f"), f(r.top1_delta, "+.2f"),
                "–" if r.agreement is None else f"{r.agreement:.2%}", f(r.max_abs_err, ".2g"), f(r.max_rel_err, ".2g"),
                status.replace("|", "/"), f(r.size_mb, ".1f")]) + " |")
        skipped = [r for r in self.rows if r.status == "skipped"]
        if skipped:
            out += ["", "**Not available here:**"] + [f"- {r.target}: {r.reason}" for r in skipped]
        return "\n".join(out) + "\n"

    def write(self, path: str | os.PathLike) -> str:
        """Write the report as .md, .json or .csv (one row per target)."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix in (".md", ".markdown"):
            atomic_write(path, self.to_markdown())
        elif suffix == ".json":
            atomic_write(path, json.dumps(self.to_dict(), indent=1, default=str))
        elif suffix == ".csv":
            text = io.StringIO()
            w = csv.DictWriter(text, fieldnames=[f.name for f in fields(DriftRow)])
            w.writeheader()
            for r in self.rows:
                w.writerow(asdict(r))
            atomic_write(path, text.getvalue())
        else:
            raise ValueError(f"results file must end in .md, .json or .csv, not {path.name!r}")
        return str(path)


class _Transformed(Dataset):
    def __init__(self, dataset: Dataset, transform: Callable, limit: int | None) -> None:
        self.dataset, self.transform = dataset, transform
        self.n = len(dataset) if limit is None else min(limit, len(dataset))  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        img, label = self.dataset[i]
        return self.transform(img), int(label)


def _environment() -> dict:
    env = environment(torch.get_num_threads())
    return {"date": env["date"], "cpu": env["cpu"], "versions": env["versions"]}


def _file_mb(files: list[str]) -> float:
    return sum(os.path.getsize(f) for f in files) / 2**20


def _export_target(row: DriftRow, model: nn.Module, workdir: Path, export_kwargs: dict,
                   log: Callable[[str], None]) -> tuple[Predictor | None, ExportReport | None]:
    """Export ``model`` to ``row``'s target without :func:`export`'s own gate and load the file; a target this
    machine cannot make is skipped, one that fails is an error (the row says why either way)."""
    reason = unsupported_reason(row.format, row.precision)
    if reason is None and row.precision == "int8" and export_kwargs["calibration"] is None:
        reason = "int8 needs calibration images (--calibration)"
    if reason:
        row.status, row.reason = "skipped", reason
        return None, None
    row.compute = describe_compute(row.format, row.precision)
    out = workdir / f"model-{row.precision}{EXTENSIONS[row.format]}"
    try:
        t = time.perf_counter()
        rep = export(model, row.format, row.precision, output=out, verify=False, **export_kwargs)
        row.export_s = time.perf_counter() - t
        row.file, row.size_mb = rep.path, _file_mb(rep.files)
        predictor = load(rep.path, threads=export_kwargs["threads"])
    except Exception as e:  # noqa: BLE001 - one broken target must not end the report
        row.status, row.reason = "error", f"{type(e).__name__}: {e}"
        log(f"{row.target}: error: {row.reason}")
        return None, None
    log(f"{row.target}: exported in {row.export_s:.1f} s ({row.size_mb:.1f} MB)")
    return predictor, rep


def _run_heldout(model: nn.Module, data: DataLoader, predictors: dict[str, Predictor],
                 log: Callable[[str], None]) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Eager fp32 logits, the labels, and every predictor's logits over the held-out set."""
    ref_all, labels, outs = [], [], {k: [] for k in predictors}
    t = time.perf_counter()
    for x, y in data:
        with torch.inference_mode():
            ref_all.append(model(x.float()).float().numpy())
        labels.append(y.numpy())
        for key, predictor in predictors.items():
            outs[key].append(predictor(x))
    log(f"held-out set: {sum(len(y) for y in labels)} images through {len(predictors) + 1} models in "
        f"{time.perf_counter() - t:.0f} s")
    return np.concatenate(ref_all), np.concatenate(labels), {k: np.concatenate(v) for k, v in outs.items()}


def _score(rows: list[DriftRow], ref: np.ndarray, labels: np.ndarray, outs: dict[str, np.ndarray]) -> None:
    """Accuracy of every row on ``labels``, its :func:`agreement` with eager fp32 (``rows[0]``), and the verdict
    by the bounds of :func:`export` (:func:`verdict`)."""
    acc_ref = 100.0 * float((ref.argmax(1) == labels).mean())
    rows[0].n, rows[0].top1, rows[0].agreement = len(labels), acc_ref, 1.0
    for row in rows[1:]:
        if row.target not in outs:
            continue
        out, row.n = outs[row.target], len(labels)
        stats = agreement(out, ref)
        if not stats["finite"]:
            row.status, row.reason = "fail", "non-finite outputs"
            continue
        row.top1 = 100.0 * float((out.argmax(1) == labels).mean())
        row.top1_delta = row.top1 - acc_ref
        row.agreement, row.max_abs_err, row.max_rel_err = (
            stats["top1_agreement"], stats["max_abs_err"], stats["max_rel_err"])
        ok, row.criterion = verdict(row.precision, stats)
        if not ok:
            row.status, row.reason = "fail", f"beyond the export bound ({row.criterion})"


def measure_drift(
    model: nn.Module,
    heldout: Dataset,
    transform: Callable,
    *,
    calibration: ImageSource | None = None,
    calibration_size: int = 300,
    targets: list[tuple[str, str]] | None = None,
    workdir: str | os.PathLike,
    img_size: int,
    data_config: dict | None = None,
    batch_size: int = 256,
    workers: int = 0,
    limit: int | None = None,
    threads: int | None = None,
    heldout_name: str = "",
    calibration_name: str = "",
    weights: str = "",
    log: Callable[[str], None] = print,
) -> DriftReport:
    """Export ``model`` to every target (format, precision) this machine supports, then run the held-out set
    (``(image, label)`` items, preprocessed by ``transform``) through eager fp32 and every exported file.

    Files are exported without ``export``'s own gate (so that a failing precision is still measured) into
    ``workdir``; each row is then judged here by the same bounds, on the whole held-out set. Targets the
    machine cannot run are reported as skipped with the reason; an int8 target without ``calibration`` too.
    """
    t0 = time.perf_counter()
    model = model.eval()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    export_kwargs = dict(calibration=calibration, calibration_size=calibration_size, img_size=img_size,
                         data_config=data_config, threads=threads)
    rows = [DriftRow("eager fp32", "eager", "fp32", "reference", compute="fp32, torch eager (the model as trained)")]
    predictors: dict[str, Predictor] = {}
    calibrated = "none (no int8 target exported)"
    for fmt, precision in targets or ALL_TARGETS:
        row = DriftRow(f"{fmt} {precision}", fmt, precision, "ok")
        rows.append(row)
        predictor, rep = _export_target(row, model, workdir, export_kwargs, log)
        if predictor is not None:
            predictors[row.target] = predictor
        if rep is not None and rep.n_calibration:
            calibrated = f"{rep.n_calibration} random images of {calibration_name or rep.calibration}"

    data = DataLoader(_Transformed(heldout, transform, limit), batch_size=batch_size, num_workers=workers)
    _score(rows, *_run_heldout(model, data, predictors, log))
    name = getattr(getattr(model, "pretrained_cfg", None), "architecture", None) or type(model).__name__
    return DriftReport(name, weights, heldout_name or type(heldout).__name__, calibrated, rows, _environment(),
                       time.perf_counter() - t0)
