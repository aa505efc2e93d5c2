"""benchmarks/fmnist_timm_peer.py: the recipe → timm train.py flag mapping (always), and a tiny real run through
timm's train.py when ``$HGZOO_TIMM_TRAIN`` names a copy of it (CI has none: timm's train.py is not in its wheel)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hgzoo.data.datasets import FASHION_MNIST_DIR
from hgzoo.train.config import DEFAULTS, load_recipe, recipe_path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "fmnist_timm_peer.py"
TIMM_TRAIN = os.environ.get("HGZOO_TIMM_TRAIN", "")
needs_train_py = pytest.mark.skipif(
    not Path(TIMM_TRAIN).is_file(),
    reason="timm's train.py is not in timm's wheel: set HGZOO_TIMM_TRAIN to a copy (timm's GitHub, tag v1.0.31)")


def _run(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def _run_here(capsys, monkeypatch, *args: str) -> subprocess.CompletedProcess:
    """The script's entry point (``guarded_main(main)``, as its ``__main__`` runs it) in this process: what it
    prints and returns, without an interpreter start per case (the real process: the first case of
    test_bad_input_exits_2 and the tiny timm run)."""
    import warnings

    from benchmarks.fmnist_timm_peer import BadInput, RunFailed, guarded_main, main

    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # guarded_main replaces it
    capsys.readouterr()
    code = guarded_main(main, list(args), bad_input=(BadInput,), failed=(RunFailed,))
    cap = capsys.readouterr()
    return subprocess.CompletedProcess([str(SCRIPT), *args], code, cap.out, cap.err)


def _command(stdout: str) -> list[str]:
    line = next(line for line in stdout.splitlines() if line.startswith("command:"))
    return line.split()


def _values(cmd: list[str], flag: str, n: int = 1) -> list[str]:
    assert flag in cmd, f"{flag} missing from {cmd}"
    i = cmd.index(flag)
    return cmd[i + 1:i + 1 + n]


@pytest.mark.parametrize("recipe", ["fashion_mnist", "fashion_mnist_15min"])
def test_dry_run_maps_the_recipe(recipe, tmp_path, capsys, monkeypatch):
    import timm

    from hgzoo.convert.timm import timm_archs_of

    cfg = {**DEFAULTS, **load_recipe(recipe_path(recipe))}
    args = ["--dry-run", "--config", recipe, "--output", str(tmp_path / "out")]
    if Path(TIMM_TRAIN).is_file():
        args += ["--timm-train", TIMM_TRAIN]  # also checks every flag against that train.py's --help
    out = _run_here(capsys, monkeypatch, *args)
    assert out.returncode == 0, out.stderr
    cmd = _command(out.stdout)
    model = _values(cmd, "--model")[0]
    assert model == timm_archs_of(cfg["model"])[0].timm and model in timm.list_models()
    size = str(cfg["img_size"])
    assert _values(cmd, "--input-size", 3) == ["1", size, size] and _values(cmd, "--in-chans") == ["1"]
    assert _values(cmd, "--dataset") == ["torch/fashion_mnist"] and _values(cmd, "--val-split") == ["test"]
    assert int(_values(cmd, "--epochs")[0]) == cfg["epochs"] and int(_values(cmd, "-b")[0]) == cfg["batch_size"]
    assert float(_values(cmd, "--lr")[0]) == cfg["lr"] and _values(cmd, "--sched") == [cfg["sched"]]
    assert float(_values(cmd, "--momentum")[0]) == cfg["momentum"]
    assert float(_values(cmd, "--weight-decay")[0]) == cfg["weight_decay"]
    assert float(_values(cmd, "--smoothing")[0]) == cfg["label_smoothing"]
    assert [float(v) for v in _values(cmd, "--scale", 2)] == [cfg["crop_scale_min"], 1.0]
    assert float(_values(cmd, "--hflip")[0]) == cfg["hflip"]
    assert _values(cmd, "--train-interpolation") == [cfg["interpolation"]]
    assert float(_values(cmd, "--crop-pct")[0]) == cfg["img_size"] / (cfg["eval_resize_short"] or cfg["img_size"])
    assert ("--model-ema" in cmd) == bool(cfg["ema"])
    if cfg["ema"]:
        assert float(_values(cmd, "--model-ema-decay")[0]) == cfg["ema_decay"]
    assert ("--channels-last" in cmd) == bool(cfg["channels_last"])
    assert f"note: init {cfg['init']}: " in out.stdout  # timm's train.py always starts from timm's init
    assert int(_values(cmd, "-j")[0]) == cfg["workers"]
    for absent in ("--aa", "--reprob", "--mixup", "--cutmix"):  # the recipe has none of them
        assert absent not in cmd
    if cfg["threads"]:
        assert f"OMP_NUM_THREADS={cfg['threads']}" in cmd
    warmup = float(cfg["warmup_epochs"])
    if warmup.is_integer():
        assert int(_values(cmd, "--warmup-epochs")[0]) == warmup
    else:  # a fraction goes through timm's --config YAML, and the note says so
        assert "--warmup-epochs" not in cmd and '"warmup_epochs": ' + str(warmup) in out.stdout
        assert "note: warmup_epochs" in out.stdout


def test_bad_input_exits_2(tmp_path, capsys, monkeypatch):
    out = _run("--timm-train", str(tmp_path / "nope.py"), "--output", str(tmp_path / "o"))  # the real process
    assert out.returncode == 2 and out.stderr.startswith("error: --timm-train") and "v1.0.31" in out.stderr
    out = _run_here(capsys, monkeypatch, "--dry-run", "--config", "no_such_recipe", "--output", str(tmp_path / "o"))
    assert out.returncode == 2 and out.stderr.startswith("error: --config no_such_recipe")
    recipe = tmp_path / "imagenet.yaml"
    recipe.write_text("model: pphgnet_small\ndataset: folder\n")
    out = _run_here(capsys, monkeypatch, "--dry-run", "--config", str(recipe), "--output", str(tmp_path / "o"))
    assert out.returncode == 2 and "Fashion-MNIST" in out.stderr


@needs_train_py
@pytest.mark.skipif(not Path(FASHION_MNIST_DIR).is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_tiny_run_through_timm_train_py(tmp_path):
    cfg = load_recipe(recipe_path("fashion_mnist"))
    cfg.update(threads=1, batch_size=64)  # a tiny run: 1 thread, 256 training and 128 test images, 1 epoch
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(cfg))
    summary = tmp_path / "hgzoo_summary.csv"
    summary.write_text("epoch,train_loss,eval_top1,eval_top5,ema_top1,lr,epoch_time_s,images_per_s\n"
                       "1,2.0,10.0,50.0,11.0,0.1,3.0,85.3\n")
    out = _run("--timm-train", TIMM_TRAIN, "--config", str(recipe), "--output", str(tmp_path / "run"),
               "--epochs", "1", "--train-subset", "256", "--val-subset", "128", "--hgzoo-summary", str(summary))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    record = json.loads((tmp_path / "run" / "peer.json").read_text())
    timm_row, hgzoo_row = record["rows"]
    assert timm_row["framework"] == "timm" and timm_row["epochs"] == 1 and timm_row["images_per_s"] > 0
    assert 0.0 <= timm_row["top1"] <= 100.0 and 0.0 <= timm_row["ema_top1"] <= 100.0
    assert hgzoo_row["images_per_s"] == 85.3 and hgzoo_row["ema_top1"] == 11.0
    assert record["args_mismatches"] == []
    assert "images/s, hgzoo / timm" in out.stdout


def test_peer_json_is_strict_json(monkeypatch):
    """A figure not measured (no EMA, no eval yet) is written as null, not as NaN, which strict JSON rejects."""
    import importlib.util
    import math

    spec = importlib.util.spec_from_file_location("fmnist_timm_peer", SCRIPT)
    peer = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, peer)  # its dataclasses look their module up there
    spec.loader.exec_module(peer)
    record = {"rows": [{"top1": 91.18, "ema_top1": math.nan}], "per_epoch": ({"top1": math.nan},)}
    text = json.dumps(peer._strict(record), allow_nan=False)
    assert json.loads(text) == {"rows": [{"top1": 91.18, "ema_top1": None}], "per_epoch": [{"top1": None}]}
    for name in ("fashion_mnist_15min_peer.json", "fashion_mnist_6ep_peer.json"):  # the logged figures
        json.loads((ROOT / "docs" / "results" / name).read_text(), parse_constant=lambda c: pytest.fail(f"{name}: {c}"))
