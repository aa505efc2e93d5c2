"""benchmark.py and its harness (benchmarks/harness/): tables, CSV/JSON, the agreement check, skipped
backends, bad input, and one tiny real run per available CPU backend. No assertion here depends on how fast
anything is."""
from __future__ import annotations

import csv
import json
import re
import time

import numpy as np
import pytest
import torch
from conftest import cached_write_onnx

from benchmarks.harness import (
    BACKENDS,
    BenchmarkConfig,
    BenchmarkInputError,
    Measurement,
    TimingConfig,
    check_output,
    run_benchmark,
    time_interleaved,
    timm_equivalent,
    to_markdown,
    write_results,
)
from benchmarks.harness import core as core_mod
from benchmarks.harness.cli import main as cli_main
from benchmarks.harness.core import BenchmarkReport, ModelInfo
from benchmarks.harness.machine import environment
from benchmarks.harness.paddleclas import paddleclas_tables
from benchmarks.harness.report import plot_latency_vs_top1
from benchmarks.harness.timing import Budget
from hgzoo.deploy import Backend, Runner
from hgzoo.deploy import backends as backends_mod

TINY = "pplcnetv2_small"
FAST = TimingConfig(warmup=1, min_iters=2, max_iters=3, budget_s=0.02, block_s=0.005, gap_s=0.0)
CPU_BACKENDS = ["eager", "reparam", "compile", "torchscript", "onnxruntime", "openvino"]


def tiny_config(**kw) -> BenchmarkConfig:
    # One thread: no assertion depends on speed, and a single thread does not stall on a busy machine.
    base = dict(models=[TINY], img_size=64, backends=["eager"], timing=FAST, roofline=False, threads=1,
                log=lambda msg: None)
    base.update(kw)
    return BenchmarkConfig(**base)


@pytest.fixture
def extra_backend(monkeypatch):
    """Register a test backend for the duration of one test."""
    def add(backend: Backend) -> Backend:
        monkeypatch.setitem(BACKENDS, backend.name, backend)
        return backend
    return add


# --- the agreement check -------------------------------------------------------------------------------------------

def test_agreement_identical_and_perturbed():
    ref = np.random.default_rng(0).normal(size=(4, 10)).astype(np.float32)
    same = check_output(ref.copy(), ref, 1e-4)
    assert same["agrees"] and same["max_rel_err"] == 0 and same["top1_agreement"] == 1.0
    off = ref.copy()
    off[0, 0] += 0.01 * np.abs(ref).max()
    bad = check_output(off, ref, 1e-4)
    assert not bad["agrees"] and bad["max_rel_err"] == pytest.approx(0.01, rel=1e-3)
    assert bad["max_abs_err"] == pytest.approx(0.01 * np.abs(ref).max(), rel=1e-3)


def test_agreement_allows_fp32_rounding_measured_against_fp64():
    exact = np.array([[1.0, -2.0, 0.5]])
    eager = exact + np.array([[1.5e-4, 0, 0]])  # eager fp32 itself is 7.5e-5 (relative) off the exact result
    other = exact - np.array([[1.5e-4, 0, 0]])  # rounds the other way: 1.5e-4 from eager, as close to exact
    floor = check_output(eager, exact, 1.0)["max_rel_err"]
    assert check_output(other, eager, 1e-4)["agrees"] is False  # without the fp64 run: flagged
    fair = check_output(other, eager, 1e-4, ref64=exact, floor=floor)
    assert fair["agrees"] and fair["fp64_err"] == pytest.approx(floor)
    broken = exact + np.array([[0, 0, 2e-3]])
    assert not check_output(broken, eager, 1e-4, ref64=exact, floor=floor)["agrees"]


def test_agreement_nonfinite_is_wrong():
    ref = np.ones((1, 5), dtype=np.float32)
    out = ref.copy()
    out[0, 2] = np.nan
    assert not check_output(out, ref, 1.0)["agrees"]


class WrongBackend(Backend):
    """Runs the model and adds a large error: must be flagged, not trusted."""

    name = "test-wrong"
    reparameterized = False

    def prepare(self, model, x, precision, **kw):
        def fn(xs):
            with torch.inference_mode():
                out = model(xs)
            return out + 0.5 * out.abs().max()
        return Runner(self.name, precision, "torch eager, off by half the largest logit", fn)


class MissingBackend(Backend):
    name = "test-missing"

    def unavailable(self):
        return "testpkg is not installed"


class BrokenBackend(Backend):
    name = "test-broken"

    def prepare(self, model, x, precision, **kw):
        raise RuntimeError("exporter exploded")


GPU_BACKENDS = ["cuda", "cuda-compile", "cuda-torchscript", "tensorrt"]


@pytest.fixture(scope="module")
def fake_backends_run():
    """One run with a wrong, a missing and a broken backend, and the GPU backends (skipped without a GPU)."""
    fakes = [WrongBackend(), MissingBackend(), BrokenBackend()]
    BACKENDS.update({b.name: b for b in fakes})
    try:
        report = run_benchmark(tiny_config(backends=["eager"] + [b.name for b in fakes] + GPU_BACKENDS))
    finally:
        for b in fakes:
            BACKENDS.pop(b.name)
    return report, to_markdown(report)


def test_wrong_output_is_flagged(fake_backends_run):
    report, md = fake_backends_run
    eager = report.find(TINY, "hgzoo", "eager", "fp32", 1)
    wrong = report.find(TINY, "hgzoo", "test-wrong", "fp32", 1)
    assert eager.status == "ok" and eager.rel_err == 0
    assert wrong.status == "mismatch" and wrong.rel_err > 0.1 and "differs from eager fp32" in wrong.reason
    assert "✗" in md and "Errors and mismatches" in md


def test_skipped_and_failing_backends_are_reported(fake_backends_run):
    report, md = fake_backends_run
    missing = report.find(TINY, "hgzoo", "test-missing", "fp32", 1)
    broken = report.find(TINY, "hgzoo", "test-broken", "fp32", 1)
    assert missing.status == "skipped" and missing.reason == "testpkg is not installed"
    assert broken.status == "error" and "exporter exploded" in broken.reason
    assert "`test-missing` (fp32): testpkg is not installed" in md
    assert "exporter exploded" in md


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the GPU backends run")
def test_gpu_backends_skip_with_reason_without_gpu(fake_backends_run):
    report, md = fake_backends_run
    for name in GPU_BACKENDS:
        m = report.find(TINY, "hgzoo", name, "fp32", 1)
        assert m.status == "skipped" and ("GPU" in m.reason or "CUDA" in m.reason)
        assert f"`{name}` (fp32): {m.reason}" in md


def test_the_gpu_backends_join_the_librarys_registry():
    """The harness adds its GPU backends to hgzoo's one registry: one list of backends, one Runner."""
    assert BACKENDS is backends_mod.BACKENDS
    assert {"eager", "reparam", "compile", "torchscript", "onnxruntime", "openvino"} <= set(BACKENDS)
    assert {"cuda", "cuda-compile", "cuda-torchscript", "tensorrt"} <= set(BACKENDS)
    assert all(isinstance(b, Backend) and b.name == name for name, b in BACKENDS.items())
    assert {b.device for b in BACKENDS.values()} == {"cpu", "cuda"}


# --- skipped precisions, bad input, memory ------------------------------------------------------------------------

def test_precision_the_cpu_lacks_is_skipped(monkeypatch):
    monkeypatch.setattr(backends_mod, "cpu_precision_skip",
                        lambda p: None if p == "fp32" else f"no native {p} here")
    report = run_benchmark(tiny_config(precisions=["fp32", "fp16"]))
    m = report.find(TINY, "hgzoo", "eager", "fp16", 1)
    assert m.status == "skipped" and m.reason == "no native fp16 here"


@pytest.mark.parametrize("kw, message", [
    (dict(models=["pphgnet_smal"]), "Unknown model"),
    (dict(models=["nothing*"]), "no model matches"),
    (dict(backends=["onnxrt"]), "unknown backend 'onnxrt'"),
    (dict(precisions=["fp8"]), "unknown precision"),
    (dict(img_size=16), "smaller than pplcnetv2_small's total stride 32"),
    (dict(batch_sizes=[0]), "positive"),
    (dict(compare=["torchvision"]), "cannot compare"),
])
def test_bad_input_raises_clear_error(kw, message):
    with pytest.raises(BenchmarkInputError, match=message):
        run_benchmark(tiny_config(**kw))


@pytest.mark.parametrize("argv, message", [
    (["--model", "nope_net"], "Unknown model 'nope_net'"),
    (["--backend", "tensorflow"], "unknown backend"),
    (["--img-size", "8"], "total stride"),
    (["--results-file", "out.xlsx"], ".csv, .json or .md"),
])
def test_cli_bad_input_is_a_message_not_a_traceback(argv, message, capsys):
    assert cli_main(["--model", TINY, *argv, "-q"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_bad_batch_size_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main(["--batch-sizes", "1,x"])
    assert exc.value.code == 2
    assert "positive integer" in capsys.readouterr().err


class MemoryHungryBackend(Backend):
    """Runs out of memory above batch 2, like a real backend would on a too-large batch."""

    name = "test-oom"
    reparameterized = False

    def prepare(self, model, x, precision, **kw):
        if x.shape[0] > 2:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 99999999999 bytes")
        return BACKENDS["eager"].prepare(model, x, precision, **kw)


def test_out_of_memory_halves_the_batch_and_says_so(extra_backend):
    extra_backend(MemoryHungryBackend())
    report = run_benchmark(tiny_config(backends=["eager", "test-oom"], batch_sizes=[8]))
    m = report.find(TINY, "hgzoo", "test-oom", "fp32", 8)
    assert m.status == "ok" and m.ran_batch_size == 2
    assert "out of memory at batch 8" in m.note and "out of memory at batch 4" in m.note
    assert "(bs2)" in to_markdown(report)


def test_batch_larger_than_memory_is_reduced_before_running(monkeypatch):
    monkeypatch.setattr(core_mod, "_mem_available", lambda: 64 * 2**20)  # 64 MiB "available"
    report = run_benchmark(tiny_config(batch_sizes=[4096]))
    m = report.find(TINY, "hgzoo", "eager", "fp32", 4096)
    assert m.status == "ok" and m.ran_batch_size < 4096 and "ran batch" in m.note


# --- tables, CSV, JSON, plot ---------------------------------------------------------------------------------------

def synthetic_report(**cfg_kw) -> BenchmarkReport:
    cfg = BenchmarkConfig(models=["pphgnet_small"], batch_sizes=[1, 8], backends=["eager", "openvino", "cuda"],
                          compare=["timm"], **cfg_kw)

    def meas(impl, backend, batch, median, status="ok", **kw):
        m = Measurement("pphgnet_small", impl, "pphgnet_small" if impl == "hgzoo" else "hgnet_small", backend,
                           "fp32", batch, 224, status, ran_batch_size=batch, median_ms=median,
                           p90_ms=None if median is None else median * 1.1, iters=20, stable=True, rel_err=1e-6,
                           max_abs_err=1e-5, **kw)
        if median is not None:
            m.gflops_per_image = 11.0
            m.achieved_gflops_s = 11.0 * batch / (median / 1e3)
            m.roofline_gflops_s, m.roofline_pct = 500.0, 100 * m.achieved_gflops_s / 500.0
        return m

    ms = [
        meas("hgzoo", "eager", 1, 50.0), meas("hgzoo", "openvino", 1, 20.0),
        meas("hgzoo", "cuda", 1, None, status="skipped", reason="no CUDA GPU on this machine"),
        meas("timm", "eager", 1, 55.0),
        meas("hgzoo", "eager", 8, 300.0), meas("hgzoo", "openvino", 8, 100.0, status="mismatch", reason="bad"),
        meas("hgzoo", "cuda", 8, None, status="skipped", reason="no CUDA GPU on this machine"),
        meas("timm", "eager", 8, 280.0),
    ]
    info = ModelInfo("pphgnet_small", "pphgnet", params=24_360_872, gflops=11.0, top1=83.82,
                     top1_tag="pphgnet_small.ssld_in1k",
                     peer={"timm": {"model": "hgnet_small", "params": 24_360_872, "gflops": 11.0}})
    return BenchmarkReport(cfg, environment(2), [info], ms, {"fp32": {"gflops_per_s": 500.0, "what": "conv"}})


def test_markdown_table_layout_and_ratios():
    md = to_markdown(synthetic_report())
    lines = md.splitlines()
    header = next(line for line in lines if line.startswith("| model | params (M)"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    assert cols[:4] == ["model", "params (M)", "GFLOPs", "top-1"]
    assert cols[4:10] == ["eager bs1", "openvino bs1", "cuda bs1", "eager bs8", "openvino bs8", "cuda bs8"]
    assert cols[10:13] == ["max rel err", "best GFLOP/s (% roofline) bs1", "best GFLOP/s (% roofline) bs8"]
    row = next(line for line in lines if line.startswith("| pphgnet_small | 24.36"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    by_col = dict(zip(cols, cells))
    assert by_col["eager bs1"] == "50.00" and by_col["cuda bs1"] == "skipped"
    assert by_col["best GFLOP/s (% roofline) bs1"] == "550 (110%) openvino"  # 11 GFLOPs in 20 ms vs 500
    assert by_col["openvino bs8"] == "100.0 ✗"
    assert by_col["timm eager bs1"] == "55.00"
    assert by_col["eager bs1 ÷ timm"] == f"{50 / 55:.2f}"
    assert by_col["best vs timm eager bs1"] == "2.75× (openvino)"
    # the mismatching openvino result is never the "best": eager is
    assert by_col["best vs timm eager bs8"] == f"{280 / 300:.2f}× (eager)"
    assert "**Hardware:**" in md and "**Timing:**" in md and "**Threads:** 2" in md
    assert "`cuda` (fp32): no CUDA GPU on this machine" in md
    assert "### Details" in md


def test_ratios_are_paired_by_round_when_timed_together():
    report = synthetic_report()
    hg = report.find("pphgnet_small", "hgzoo", "eager", "fp32", 1)
    peer = report.find("pphgnet_small", "timm", "eager", "fp32", 1)
    # the machine slowed down 3x in the middle rounds: pairing by round still sees a 0.9 ratio
    hg.round_medians_ms, peer.round_medians_ms = [45.0, 135.0, 135.0, 45.0], [50.0, 150.0, 150.0, 50.0]
    hg.median_ms, peer.median_ms = 90.0, 80.0  # the pooled medians could say anything
    md = to_markdown(report)
    row = next(line for line in md.splitlines() if line.startswith("| pphgnet_small | 24.36"))
    assert "| 0.90 |" in row
    summary = md[md.index("### Summary against timm eager fp32"):]
    assert "| pphgnet_small | 1 | 0.90 | " in summary


def test_csv_json_md_results_files(tmp_path):
    report = synthetic_report()
    with open(write_results(report, tmp_path / "r.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(report.measurements)
    first = rows[0]
    assert first["model"] == "pphgnet_small" and first["backend"] == "eager" and float(first["median_ms"]) == 50.0
    assert {"p90_ms", "rel_err", "max_abs_err", "status", "reason", "roofline_pct", "throughput_img_s"} <= set(first)
    assert [r["status"] for r in rows].count("skipped") == 2
    data = json.loads((tmp_path / "r.json").read_text()) if write_results(report, tmp_path / "r.json") else None
    assert data["env"]["threads"] == 2 and len(data["results"]) == len(report.measurements)
    assert data["models"][0]["peer"]["timm"]["model"] == "hgnet_small"
    write_results(report, tmp_path / "r.md")
    assert (tmp_path / "r.md").read_text().startswith("## hgzoo latency")
    with pytest.raises(ValueError, match="csv"):
        write_results(report, tmp_path / "r.txt")


def test_plot_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    path, left_out = plot_latency_vs_top1(synthetic_report(), tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and left_out == []


def test_timm_names():
    pytest.importorskip("timm")
    assert timm_equivalent("pphgnet_small") == "hgnet_small"
    assert timm_equivalent("pphgnetv2_b0") == "hgnetv2_b0"
    assert timm_equivalent("hrnet_w18_c") == "hrnet_w18"
    assert timm_equivalent("resnet50_vd") == "resnet50d"
    assert timm_equivalent("se_hrnet_w64_c") is None


def test_interleaved_timing_collects_samples():
    calls = {"a": 0, "b": 0}

    def make(key):
        def fn(_x):
            calls[key] += 1
        return Runner(key, "fp32", "counts its calls", fn).bind(torch.zeros(1))

    out = time_interleaved({"a": make("a"), "b": make("b")}, FAST)
    for key in ("a", "b"):
        assert out[key].iters >= 2 and out[key].median_ms >= 0 and out[key].p90_ms >= out[key].median_ms
        assert calls[key] > out[key].iters  # warm-up and the discarded first call of each block are not samples


# --- real runs -----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_cpu_run(onnx_cache):
    """One tiny real run through every CPU backend this machine has (64 px, batch 2, a few iterations); its ONNX
    export is kept for the tests below that export the same model (conftest.cached_write_onnx)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(backends_mod.rt, "write_onnx", cached_write_onnx(*onnx_cache))
        return run_benchmark(tiny_config(backends=CPU_BACKENDS, batch_sizes=[2], roofline=True))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_tiny_real_run_per_cpu_backend(real_cpu_run, backend):
    m = real_cpu_run.find(TINY, "hgzoo", backend, "fp32", 2)
    reason = BACKENDS[backend].skip_reason("fp32")
    if reason:
        assert m.status == "skipped" and m.reason == reason
        pytest.skip(reason)
    assert m.status == "ok", m.reason
    assert m.rel_err <= 1e-4 and m.median_ms > 0 and m.iters >= 2 and m.ran_batch_size == 2
    assert m.achieved_gflops_s > 0 and m.roofline_pct is not None


def test_compare_timm_and_cli_outputs(tmp_path, capsys):
    pytest.importorskip("timm")
    csv_path, png = tmp_path / "out.csv", tmp_path / "out.png"
    argv = ["--model", TINY, "--img-size", "64", "--backend", "eager,reparam", "--compare", "timm", "--precision",
            "fp32",
            "--max-time", "0.02", "--min-iters", "2", "--warmup", "1", "--no-roofline", "--threads", "1", "-q",
            "--results-file", str(csv_path), "--plot", str(png)]
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert "| timm model |" in out
    assert "lcnetv2_small (4.13 M)" in out and "eager ÷ timm" in out and "best vs timm eager" in out
    rows = list(csv.DictReader(open(csv_path)))
    assert {(r["impl"], r["backend"]) for r in rows} == {("hgzoo", "eager"), ("hgzoo", "reparam"), ("timm", "eager")}
    assert all(r["status"] == "ok" for r in rows), [(r["impl"], r["backend"], r["status"], r["reason"]) for r in rows]
    assert png.exists()


# --- int8 ------------------------------------------------------------------------------------------------------------

@pytest.mark.usefixtures("onnx_once")
def test_int8_runs_on_onnxruntime_and_openvino_checked_on_real_photos():
    pytest.importorskip("skimage")
    report = run_benchmark(tiny_config(backends=["eager", "onnxruntime", "openvino"], precisions=["int8"]))
    eager = report.find(TINY, "hgzoo", "eager", "int8", 1)
    assert eager.status == "skipped" and "onnxruntime and openvino" in eager.reason
    for backend in ("onnxruntime", "openvino"):
        m = report.find(TINY, "hgzoo", backend, "int8", 1)
        reason = BACKENDS[backend].skip_reason("int8")
        if reason:
            assert m.status == "skipped" and m.reason == reason
            continue
        assert m.status == "ok", m.reason
        assert m.median_ms > 0 and m.tolerance is None and 0 <= m.top1_agreement <= 1 and np.isfinite(m.rel_err)
        assert "checked against eager fp32 on 42 real photos, not judged (random weights)" in m.note
    md = to_markdown(report)
    assert "**int8:** post-training static quantization" in md and "not judged" in md


def test_int8_agreement_is_judged_with_pretrained_weights(one_thread):
    pytest.importorskip("skimage")
    from benchmarks.harness.backends import int8_images
    from benchmarks.harness.subjects import build_hgzoo

    subject = build_hgzoo(TINY, img_size=64)
    images = int8_images(64)
    with torch.inference_mode():
        exact = subject.model(images).numpy()

    def runner(logits: np.ndarray) -> Runner:
        """Answers the photos, chunk by chunk, with ``logits`` (as a backend would, in order)."""
        chunks = iter([logits[i:i + 2] for i in range(0, len(logits), 2)])
        return Runner("test-answers", "int8", "answers the photos", lambda xb: next(chunks))

    flipped = float((exact.argmin(1) == exact.argmax(1)).mean())
    for pretrained, logits, agrees, top1 in ((True, exact, True, 1.0), (True, -exact, False, flipped),
                                             (False, -exact, True, flipped)):
        result = core_mod._check_int8(tiny_config(pretrained=pretrained), subject, runner(logits), 2)
        assert result["agrees"] is agrees and result["n"] == 42 and result["top1_agreement"] == top1
    nan = np.full_like(exact, np.nan)
    assert not core_mod._check_int8(tiny_config(), subject, runner(nan), 2)["agrees"]  # never, judged or not


def test_summary_compares_best_paths_across_precisions():
    report = synthetic_report()
    report.config.precisions = ["fp32", "int8"]
    base = dict(model="pphgnet_small", batch_size=1, img_size=224, ran_batch_size=1, stable=True, iters=20,
                rel_err=0.05, max_abs_err=0.1)
    report.measurements += [
        Measurement(impl="hgzoo", impl_model="pphgnet_small", backend="openvino", precision="int8", status="ok",
                    median_ms=8.0, top1_agreement=0.95, **base),
        Measurement(impl="timm", impl_model="hgnet_small", backend="openvino", precision="int8", status="ok",
                    median_ms=10.0, top1_agreement=0.93, **base),
        Measurement(impl="timm", impl_model="hgnet_small", backend="openvino", precision="fp32", status="ok",
                    median_ms=25.0, **{**base, "rel_err": 1e-6}),
    ]
    md = to_markdown(report)
    summary = md[md.index("### Summary against timm"):]
    row = next(line for line in summary.splitlines() if line.startswith("| pphgnet_small | 1 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[5] == "1.25× (openvino vs openvino)"  # best fp32: hgzoo openvino 20 ms vs timm openvino 25 ms
    assert cells[6] == "6.88× (openvino int8)" and cells[8] == "95%"  # timm eager fp32 55 ms / 8 ms
    assert cells[9] == "1.25× (openvino int8 vs openvino int8)"


@pytest.mark.usefixtures("onnx_once")
def test_compare_timm_plain_keeps_timm_branches():
    """`timm-plain` exports timm's port as timm.create_model returns it; `timm` after reparameterize_model.
    For PP-LCNetV2 the plain graph still has the parallel depthwise branches, so it has more ONNX nodes;
    after timm's reparameterization it has exactly as many as hgzoo's (the same work)."""
    pytest.importorskip("timm")
    pytest.importorskip("onnxruntime")
    report = run_benchmark(tiny_config(backends=["onnxruntime"], compare=["timm", "timm-plain"],
                                       compare_backends=["onnxruntime"]))
    nodes = {}
    for impl in ("hgzoo", "timm", "timm-plain"):
        m = report.find(TINY, impl, "onnxruntime", "fp32", 1)
        assert m is not None and m.status == "ok", (impl, m and m.reason)
        nodes[impl] = int(re.search(r"(\d+) ONNX nodes", m.note).group(1))
    assert nodes["hgzoo"] == nodes["timm"] < nodes["timm-plain"], nodes
    assert "timm-plain model" in to_markdown(report)


def test_compare_unknown_peer_is_refused():
    with pytest.raises(BenchmarkInputError, match="timm-plain"):
        run_benchmark(tiny_config(compare=["pytorch-image-models"]))


def test_machine_load_is_measured_over_the_run():
    """The report's load line comes from the CPU time other processes used during the run (/proc/stat minus
    this process and its workers), not from the load average, which counts the benchmark itself."""
    from benchmarks.harness.machine import other_cpu_share
    start = {"busy_s": 100.0, "steal_s": 5.0, "own_s": 10.0, "wall_s": 0.0}
    quiet = {"busy_s": 119.0, "steal_s": 5.0, "own_s": 29.5, "wall_s": 10.0}  # 20 CPU-s capacity, 19 s ours
    loud = {"busy_s": 119.0, "steal_s": 7.0, "own_s": 19.0, "wall_s": 10.0}
    assert other_cpu_share(start, quiet, 2) == {"others": 0.0, "steal": 0.0}
    assert other_cpu_share(start, loud, 2) == {"others": 0.5, "steal": 0.1}
    assert other_cpu_share(None, loud, 2) is None
    report = run_benchmark(tiny_config())
    share = report.env["cpu_other_share"]
    assert share is not None and 0.0 <= share["others"] <= 1.0
    assert "other processes used" in to_markdown(report)


def test_own_worker_processes_count_as_the_benchmark():
    """torch.compile's worker pool is the benchmark's own load: a busy child must not read as competition."""
    import subprocess
    import sys
    import time

    from benchmarks.harness.machine import cpu_snapshot
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        a = cpu_snapshot()
        time.sleep(2.0)
        b = cpu_snapshot()
    finally:
        child.kill()
        child.wait()
    assert b["own_s"] - a["own_s"] > 0.25, (a, b)


# --- budgets, partial results, PaddleClas's layout, GPU runs -----------------------------------------------------

class SlowBackend(Backend):
    """Takes 50 ms to prepare (a stand-in for a compiler or an engine builder) and counts its releases."""

    name = "test-slow"
    reparameterized = False

    def __init__(self) -> None:
        self.releases = 0

    def prepare(self, model, x, precision, **kw):
        time.sleep(0.05)
        return BACKENDS["eager"].prepare(model, x, precision, **kw)

    def release(self) -> None:
        self.releases += 1


def test_prepare_budget_stops_a_slow_backend_per_model(extra_backend):
    slow = extra_backend(SlowBackend())
    report = run_benchmark(tiny_config(models=[TINY, "resnet18_vd"], backends=["eager", "test-slow"],
                                       batch_sizes=[1, 2], prepare_budget_s={"test-slow": 0.01}))
    for model in (TINY, "resnet18_vd"):  # each model gets the budget afresh
        assert report.find(model, "hgzoo", "test-slow", "fp32", 1).status == "ok"
        later = report.find(model, "hgzoo", "test-slow", "fp32", 2)
        assert later.status == "skipped" and "--prepare-budget test-slow=0.01 s" in later.reason
        assert report.find(model, "hgzoo", "eager", "fp32", 2).status == "ok"  # the other backends go on
    assert slow.releases == 4  # after each group: 2 models x 2 batch sizes
    assert "| not run |" in to_markdown(report, table="paddleclas")


def test_time_budget_shares_the_time_left_among_the_models_left():
    now = [0.0]
    budget = Budget(run_s=90, prepare_s={"tensorrt": 20}, n_models=3, clock=lambda: now[0])
    budget.next_model(0)  # 90 s left, 3 models: until t=30
    now[0] = 29.9
    assert budget.run_spent() is None
    now[0] = 30
    assert "--time-budget 90 s" in budget.run_spent()
    now[0] = 50
    budget.next_model(1)  # 40 s left, 2 models: until t=70
    now[0] = 69.9
    assert budget.backend_spent("tensorrt") is None
    budget.charge("tensorrt", 20)
    assert "--prepare-budget tensorrt=20 s" in budget.backend_spent("tensorrt")
    assert budget.backend_spent("cuda") is None
    now[0] = 95
    budget.next_model(2)  # nothing left
    assert budget.run_spent() and budget.backend_spent("tensorrt") == budget.run_spent()  # spent resets per model


def test_spent_time_budget_reports_cells_as_not_measured():
    report = run_benchmark(tiny_config(batch_sizes=[1, 2], time_budget_s=1e-9))
    assert report.complete and len(report.measurements) == 2
    assert all(m.status == "skipped" and "--time-budget" in m.reason for m in report.measurements)


def test_results_are_handed_over_after_each_group():
    seen = []
    report = run_benchmark(tiny_config(batch_sizes=[1, 2], on_progress=lambda r: seen.append(
        (r.complete, len(r.measurements)))))
    assert seen == [(False, 1), (False, 2)] and report.complete
    report.complete = False
    assert "PARTIAL" in to_markdown(report).splitlines()[0]


def test_paddleclas_layout():
    report = synthetic_report()
    report.models[0].top5 = 96.81
    tables = paddleclas_tables(report)
    assert [(t["backend"], t["precision"]) for t in tables] == [("eager", "fp32"), ("openvino", "fp32"),
                                                                ("cuda", "fp32")]
    hg, peer = tables[0]["rows"]
    assert hg["label"] == "pphgnet_small (PPHGNet_small)" and (hg["top1"], hg["top5"]) == (83.82, 96.81)
    assert hg["flops_g"] == 5.5 and hg["params_m"] == 24.361  # FLOPs as multiply-adds: 11 GFLOPs / 2
    assert hg["time_ms"] == {"1": 50.0, "8": 300.0}
    assert peer["label"] == "timm: hgnet_small" and peer["time_ms"] == {"1": 55.0, "8": 280.0}
    assert [r["impl"] for r in tables[1]["rows"]] == ["hgzoo"]  # the peer ran on eager only
    assert tables[1]["rows"][0]["cell"] == {"1": "20.00", "8": "100.0 ✗"}
    assert tables[2]["skipped"] == "no CUDA GPU on this machine" and tables[0]["skipped"] is None
    md = to_markdown(report, table="paddleclas")
    assert ("| Model | Top-1 Acc (%) | Top-5 Acc (%) | time(ms) bs=1 | time(ms) bs=8 | FLOPs(G) | Params(M) |"
            in md)
    assert "| pphgnet_small (PPHGNet_small) | 83.82 | 96.81 | 50.00 | 300.0 | 5.50 | 24.36 |" in md
    assert "| timm: hgnet_small | – | – | 55.00 | 280.0 | 5.50 | 24.36 |" in md
    assert "### cuda, fp32 — time (ms) per batch, PaddleClas's layout\n\nskipped: no CUDA GPU on this machine" in md
    assert "multiply-adds" in md and "**Skipped:**" in md
    with pytest.raises(ValueError, match="paddleclas"):
        to_markdown(report, table="paddle")


def test_json_holds_the_paddleclas_tables(tmp_path):
    data = json.loads(open(write_results(synthetic_report(), tmp_path / "r.json")).read())
    assert data["complete"] is True
    assert [t["backend"] for t in data["paddleclas_tables"]] == ["eager", "openvino", "cuda"]
    assert data["paddleclas_tables"][0]["rows"][0]["time_ms"] == {"1": 50.0, "8": 300.0}


def test_gpu_run_title_and_peer_baseline():
    """A run on GPU backends names the GPU in its title; the peer's ratios use its first backend as the baseline."""
    report = synthetic_report()
    report.env["gpu"] = "NVIDIA H200"
    report.env["gpu_details"] = {"name": "NVIDIA H200", "count": 1, "compute_capability": "9.0", "memory_gib": 139.8,
                                 "driver": "570.1", "torch_cuda": "12.8", "cudnn": 91000}
    report.config.compare_backends = ["openvino"]
    report.measurements.append(Measurement("pphgnet_small", "timm", "hgnet_small", "openvino", "fp32", 1, 224, "ok",
                                           ran_batch_size=1, median_ms=25.0, stable=True, rel_err=1e-6))
    md = to_markdown(report)
    assert md.splitlines()[0].endswith("on NVIDIA H200 (host: " + report.env["cpu"] + ")")
    assert "GPU NVIDIA H200 (1 visible; compute capability 9.0, 139.8 GiB; driver 570.1" in md
    header = next(line for line in md.splitlines() if line.startswith("| model | params (M)"))
    row = next(line for line in md.splitlines() if line.startswith("| pphgnet_small | 24.36"))
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in (header, row)]
    by_col = dict(zip(*cells))
    assert by_col["best vs timm openvino bs1"] == "1.25× (openvino)"  # timm openvino 25 ms / hgzoo openvino 20 ms


def test_cli_tables_and_several_results_files(tmp_path, capsys):
    md, js = tmp_path / "r.md", tmp_path / "r.json"
    argv = ["--model", TINY, "--img-size", "64", "--backend", "eager", "--precision", "fp32", "--compare", "none",
            "--max-time", "0.02", "--min-iters", "2", "--warmup", "1", "--no-roofline", "--threads", "1", "-q",
            "--table", "paddleclas", "--time-budget", "600", "--prepare-budget", "eager=600",
            "--results-file", str(md), "--results-file", str(js)]
    assert cli_main(argv) == 0
    assert "| Model | Top-1 Acc (%) | Top-5 Acc (%) | time(ms) bs=1 |" in capsys.readouterr().out
    assert "PaddleClas's layout" in md.read_text() and json.loads(js.read_text())["complete"] is True


@pytest.mark.parametrize("argv, message", [
    (["--prepare-budget", "tensorrt"], "BACKEND=SECONDS"),
    (["--prepare-budget", "tensorrt=-1"], "BACKEND=SECONDS"),
    (["--time-budget", "0"], "must be > 0"),
    (["--table", "paddle"], "invalid choice"),
])
def test_cli_bad_budgets_are_argparse_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main(["--model", TINY, *argv])
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_cli_prepare_budget_of_an_unknown_backend(capsys):
    assert cli_main(["--model", TINY, "--prepare-budget", "tensort=30", "-q"]) == 2
    assert "unknown backend 'tensort'. Did you mean tensorrt" in capsys.readouterr().err


def test_probe_waits_for_an_asynchronous_device():
    """The variant probe calls ``sync`` around every timed call (CUDA kernels return before they finish)."""
    from hgzoo.deploy.backends import probe

    calls = []
    times = probe({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, iters=2,
                   sync=lambda: calls.append("sync"))
    assert set(times) == {"a", "b"}
    assert calls == ["a", "sync", "a", "sync", "sync", "a", "sync", "b", "sync", "b", "sync", "sync", "b", "sync"]
