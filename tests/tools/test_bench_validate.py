"""benchmarks/bench_validate.py in quick mode: a few JPEGs, one configuration per peer (timm's validate.py loop,
PaddleClas's inference predictor in the reference environment, hgzoo's validate.py on OpenVINO), the same weights
in all three (checked inside the script), a Markdown table and a JSON file. No assertion depends on speed."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import reference_python

ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip("timm")
pytest.importorskip("openvino")
pytest.importorskip("skimage")


def test_quick_mode_runs_every_peer_on_the_same_weights(tmp_path):
    peers = "timm,paddle,hgzoo" if reference_python() else "timm,hgzoo"
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "benchmarks/bench_validate.py", "--quick", "--model", "pphgnetv2_b0", "--peers", peers,
         "--results-file", str(out), "--work", str(tmp_path / "work")],
        capture_output=True, text=True, cwd=ROOT, timeout=1200)  # as the README runs it: no PYTHONPATH
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(out.read_text())
    rows = {r["peer"]: r for r in report["rows"]}
    expected = {"timm", "hgzoo"} | ({"PaddleClas"} if "paddle" in peers else set())
    assert set(rows) == expected and all(r["images"] == 14 and r["img_per_sec"] > 0 for r in rows.values())
    assert rows["hgzoo"]["config"] == "pphgnetv2_b0 openvino fp32" and rows["hgzoo"]["agreement"] is not None
    assert 0 <= rows["hgzoo"]["data_wait_share"] <= 1
    # The classifier was fitted to the photos: every peer classifies them (well above chance, 1 in 7).
    assert all(r["top1"] > 50 for r in rows.values()), rows
    if "PaddleClas" in rows:
        assert any("same weights: max rel err" in n for n in report["notes"])
        assert any(s["peer"].startswith("PPHGNetV2_B0") for s in report["summary"])
    comparisons = [s["comparison"] for s in report["summary"]]
    assert "hgzoo best fp32 ÷ timm best fp32" in comparisons
    assert "| peer | configuration | images/s |" in proc.stdout and "**" in proc.stdout
    assert (tmp_path / "work" / "val").is_dir() and len(list((tmp_path / "work" / "val").rglob("*.jpg"))) == 14


def test_agreement_of_each_peer_with_its_own_fp32_run():
    """Several configurations per peer (the full run): each is compared with the peer's first fp32 run."""
    from benchmarks.bench_validate import add_agreements

    rows = [{"peer": "timm", "precision": "fp32", "preds": [1, 2, 3, 4]},
            {"peer": "timm", "precision": "fp32", "preds": [1, 2, 3, 0]},
            {"peer": "timm", "precision": "bf16", "preds": [1, 2, 0, 0]},
            {"peer": "PaddleClas", "precision": "bf16", "preds": [1, 2, 3, 4]},
            {"peer": "hgzoo", "precision": "int8", "agreement": 99.0}]
    add_agreements(rows)
    assert [r.get("agreement") for r in rows] == [100.0, 75.0, 50.0, None, 99.0]
    assert not any("preds" in r for r in rows)
