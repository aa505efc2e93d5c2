"""The Python half of ``benchmarks/gpu_check.sh``: the preflight (is there a CUDA GPU, what is installed) and the
summary (what ran, what passed, the headline figures, where the files are). Run by the script:

    python -m benchmarks.gpu_check preflight OUT [--force]
    python -m benchmarks.gpu_check summary OUT

Exit codes of ``preflight``: 0 a CUDA GPU (or ``--force``), 3 no CUDA GPU (the reason on stdout), 4 this Python
cannot run the check (torch or hgzoo missing: the reason on stdout).
"""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

#: PaddleClas's published GPU latencies to compare with: NVIDIA V100, TensorRT, FP32, batch 1, ms
#: (docs/zh_CN/models/ImageNet1k/PP-HGNet.md and model_list.md, the _ssld weights' rows).
PUBLISHED_V100_TRT_FP32_BS1 = {"pphgnet_tiny": 1.77, "pphgnet_small": 2.52, "pphgnet_base": 5.97}
PACKAGES = ("torch", "torchvision", "timm", "onnx", "onnxscript", "onnxruntime", "onnxruntime-gpu", "tensorrt",
            "torch-tensorrt", "triton", "numpy")


def _version(name: str) -> str | None:
    """The installed version of ``name``; None when it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _versions() -> dict[str, str]:
    """The installed ones of PACKAGES with their versions (the others are left out of the report)."""
    return {name: v for name in PACKAGES if (v := _version(name)) is not None}


def _ort_providers() -> list[str] | None:
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    return list(ort.get_available_providers())


def preflight(out: Path, force: bool) -> int:
    """Say whether the check can run here; with a GPU (or ``force``) write ``out/env.json``."""
    try:
        import torch
    except ImportError as e:
        print(f"{sys.executable} cannot import torch ({e}): set PYTHON to the interpreter of the project's venv")
        return 4
    try:
        from benchmarks.harness.gpu import cuda_unavailable
        from benchmarks.harness.machine import gpu_details
    except ImportError as e:
        print(f"{sys.executable} cannot import hgzoo's benchmark harness ({type(e).__name__}: {e}): install hgzoo's "
              "dependencies (pip install -e '.[bench]')")
        return 4
    from hgzoo.files import atomic_write

    reason = cuda_unavailable()
    if reason and not force:
        print(reason)
        return 3
    env = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "python": sys.version.split()[0],
           "executable": sys.executable, "torch": torch.__version__, "torch_cuda": torch.version.cuda,
           "no_gpu_reason": reason, "gpu": gpu_details(), "versions": _versions(),
           "onnxruntime_providers": _ort_providers()}
    atomic_write(out / "env.json", json.dumps(env, indent=1))
    g = env["gpu"]
    print(f"{g['name']}, driver {g['driver'] or 'unknown'}, torch {torch.__version__} (CUDA {torch.version.cuda})" if g
          else f"no GPU ({reason}); running anyway (--force): every GPU test and backend reports skipped")
    return 0


def _tests(out: Path) -> dict:
    """Counts and failing tests from the junit file of the tests phase."""
    path = out / "tests" / "junit.xml"
    if not path.exists():
        return {"ran": False}
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    failed, skipped = [], {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('name')}"
        kinds = {child.tag for child in case}
        if "failure" in kinds or "error" in kinds:
            counts["failed" if "failure" in kinds else "errors"] += 1
            failed.append(name)
        elif "skipped" in kinds:
            counts["skipped"] += 1
            msg = next(c.get("message", "") for c in case if c.tag == "skipped")
            skipped[msg] = skipped.get(msg, 0) + 1
        else:
            counts["passed"] += 1
    return {"ran": True, **counts, "failed_tests": failed, "skip_reasons": skipped}


def _bench(out: Path, stem: str) -> dict | None:
    path = out / "bench" / f"{stem}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _bench_lines(benches: dict[str, dict | None]) -> list[str]:
    """Per benchmark run: complete or partial, and its cells by status (skipped ones by reason)."""
    lines = ["## Latency (benchmark.py)", ""]
    for stem, data in benches.items():
        if data is None:
            lines.append(f"- {stem}: no results file (see bench/{stem}.log)")
            continue
        counts: dict[str, int] = {}
        reasons: dict[str, int] = {}
        for m in data["results"]:
            counts[m["status"]] = counts.get(m["status"], 0) + 1
            if m["status"] in ("skipped", "error", "mismatch"):
                key = f"{m['status']}: {m['backend']}: {m['reason']}"
                reasons[key] = reasons.get(key, 0) + 1
        state = "complete" if data.get("complete") else "partial (stopped before the end)"
        lines.append(f"- {stem}: {state} in {data.get('seconds', 0):.0f} s; cells: "
                     + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
        lines += [f"  - {n} × {why}" for why, n in sorted(reasons.items())]
    return lines + [""]


def _phases(out: Path) -> list[dict]:
    path = out / "phases.tsv"
    rows = []
    for line in path.read_text().splitlines() if path.exists() else []:
        name, rc, seconds, limit, log = line.split("\t")
        status = "ok" if rc == "0" else ("cut at its time limit" if rc in ("124", "137") else f"exit {rc}")
        rows.append({"name": name, "rc": int(rc), "seconds": int(seconds), "limit": int(limit), "log": log,
                     "status": status})
    return rows


def _headline(benches: dict[str, dict | None]) -> list[str]:
    """hgzoo's TensorRT fp32 batch-1 latency beside PaddleClas's published V100 figure, where both exist."""
    lines = []
    for data in benches.values():
        for table in (data or {}).get("paddleclas_tables", []):
            if (table["backend"], table["precision"]) != ("tensorrt", "fp32") or 1 not in table["batch_sizes"]:
                continue
            for row in table["rows"]:
                published = PUBLISHED_V100_TRT_FP32_BS1.get(row["model"])
                if row["impl"] == "hgzoo" and published is not None:
                    lines.append(f"| {row['model']} | {row['cell']['1']} | {published} |")
    if not lines:
        return []
    return ["| model | TensorRT fp32 bs=1 here (ms) | PaddleClas, V100 TensorRT FP32 bs=1 (ms) |", "|---|---|---|",
            *lines, ""]


def summary(out: Path) -> str:
    """Write ``out/summary.md`` and ``out/latency_paddleclas.md``; return the short text for the console."""
    from hgzoo.files import atomic_write

    env = json.loads((out / "env.json").read_text()) if (out / "env.json").exists() else {}
    g, tests = env.get("gpu") or {}, _tests(out)
    benches = {stem: _bench(out, stem) for stem in ("eager", "compiled")}
    head = [f"# GPU check, {env.get('date', '?')}", "",
            f"- GPU: {g.get('name', 'none')} (compute capability {g.get('compute_capability', '-')}, "
            f"{g.get('memory_gib', '-')} GiB); driver {g.get('driver') or 'unknown'}",
            f"- torch {env.get('torch', '?')} (CUDA {env.get('torch_cuda')}, cuDNN {g.get('cudnn', '-')}); Python "
            f"{env.get('python', '?')}; " + ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items()
                                                      if k != "torch"),
            f"- onnxruntime providers: {env.get('onnxruntime_providers')}", ""]
    if env.get("no_gpu_reason"):
        head += [f"**No GPU: {env['no_gpu_reason']}.** Run with GPU_CHECK_FORCE=1 (a test of this script): every GPU "
                 "test and backend reports skipped, and no figure below is a GPU measurement.", ""]
    phases = ["## Phases", "", "| phase | status | seconds | limit | log |", "|---|---|---|---|---|"] + [
        f"| {p['name']} | {p['status']} | {p['seconds']} | {p['limit']} | {p['log']} |" for p in _phases(out)] + [""]
    if tests["ran"]:
        test_lines = ["## tests (pytest -m gpu tests/test_gpu.py)", "",
                      f"{tests['passed']} passed, {tests['failed']} failed, {tests['errors']} errors, "
                      f"{tests['skipped']} skipped", ""]
        test_lines += [f"- FAILED {t}" for t in tests["failed_tests"]]
        test_lines += [f"- skipped ({n}): {msg}" for msg, n in tests["skip_reasons"].items()] + [""]
    else:
        test_lines = ["## tests", "", "no junit file: the tests phase did not finish (see its log)", ""]
    tables = []
    for stem, data in benches.items():
        md = out / "bench" / f"{stem}.md"
        tables += [f"<!-- {stem}: {md} -->", md.read_text() if md.exists() else f"{stem}: no results (see its log)",
                   ""]
    atomic_write(out / "latency_paddleclas.md", "\n".join(tables))
    files = ["## Files", "", f"- {out}/latency_paddleclas.md: the latency tables in PaddleClas's layout "
             "(bench/eager.* and bench/compiled.*: each run's report, JSON with every measurement)",
             f"- {out}/tests/: junit.xml and the pytest log; {out}/env.json; {out}/*.log", ""]
    text = head + phases + test_lines + _bench_lines(benches) + ["## Against PaddleClas's published figure", ""] + (
        _headline(benches) or ["no TensorRT fp32 batch-1 figure for PP-HGNet was measured", ""]) + files
    atomic_write(out / "summary.md", "\n".join(text))
    short = [f"GPU check summary ({env.get('date', '?')})", head[2][2:], head[3][2:]]
    short += [f"{p['name']}: {p['status']} in {p['seconds']} s (limit {p['limit']} s)" for p in _phases(out)]
    short.append(test_lines[2] if tests["ran"] else "tests: no junit file (did not finish)")
    short.append(f"files: {out}/summary.md, {out}/latency_paddleclas.md, {out}/bench/, {out}/tests/")
    return "\n".join(short)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n\n")[0])
    ap.add_argument("step", choices=("preflight", "summary"))
    ap.add_argument("out", type=Path)
    ap.add_argument("--force", action="store_true", help="preflight: go on without a GPU (to test the script)")
    args = ap.parse_args(argv)
    if args.step == "preflight":
        return preflight(args.out, args.force)
    print(summary(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
