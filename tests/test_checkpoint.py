"""Self-describing checkpoints (issue 18): a real train.py run's best.pt read by hgzoo.checkpoint, and validate.py,
predict and export taking the architecture, classes, channels, preprocessing and class names from it; flags that
contradict it are one-line errors (exit 2). Grayscale models get PIL's convert("L") pixels."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from image_samples import photos
from PIL import Image
from safetensors.torch import save_file

import hgzoo
from hgzoo.checkpoint import CheckpointConflictError, data_config, model_from_checkpoint, read_info
from hgzoo.data import ConvertChannels, FashionMNIST, Normalizer, PaddleCenterCrop, ResizeShort

ROOT = Path(__file__).resolve().parent.parent
MODEL = "pplcnetv2_small"
CLASSES = tuple(FashionMNIST.classes)


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=ROOT, timeout=900,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def call(argv: list[str], capsys) -> subprocess.CompletedProcess:
    """``hgzoo <argv>`` through its ``main`` in this process (the real command's exit code and output, without
    a fresh interpreter: used where the refusal, not the process, is checked)."""
    from hgzoo.cli.main import main

    capsys.readouterr()
    env, threads = dict(os.environ), torch.get_num_threads()
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    finally:
        os.environ.clear()
        os.environ.update(env)
        torch.set_num_threads(threads)
    out = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, out.out, out.err)


def one_error_line(proc: subprocess.CompletedProcess, code: int, *words: str) -> None:
    assert proc.returncode == code, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and all(w in lines[0] for w in words), proc.stderr[-3000:]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """val/<class id>/: Fashion-MNIST test images as grayscale PNGs, plus RGB JPEG crops of photos in class 0 (a
    grayscale model must see them as PIL's convert("L") does)."""
    fm = FashionMNIST(train=False)
    root = tmp_path_factory.mktemp("gray_data") / "val"
    for c in range(len(CLASSES)):
        (root / str(c)).mkdir(parents=True)
        for i in np.flatnonzero(fm.targets.numpy() == c)[:2]:
            Image.fromarray(fm.data[i].numpy()).save(root / str(c) / f"{i}.png")
    for name, img in photos(("chelsea", "rocket")).items():
        Image.fromarray(np.ascontiguousarray(img[:200, :160])).save(root / "0" / f"{name}.jpg", quality=92)
    return root


@pytest.fixture(scope="module")
def best(tmp_path_factory) -> Path:
    """A real train.py run (Fashion-MNIST: one input channel, 10 named classes) with EMA: its best.pt."""
    out = tmp_path_factory.mktemp("run") / "run"
    proc = run("train.py", "--config", "fashion_mnist", "--output", str(out), "--train-subset", "256",
               "--ema-decay", "0.5", "--epochs", "1", "--max-steps-per-epoch", "2", "--batch-size", "32",
               "--threads", "1", "--plot", "false", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "best.pt"


def test_read_info_reads_what_train_py_wrote(best):
    info = read_info(best)
    assert (info.model_name, info.num_classes, info.in_chans, info.img_size) == (MODEL, 10, 1, 32)
    assert info.class_names == CLASSES and info.has_ema and info.version == 3 and info.self_describing
    assert (info.data_config["crop_size"], info.data_config["resize_short"]) == (32, 32)
    assert list(info.data_config["mean"]) == [0.5]


def test_model_from_checkpoint_loads_model_or_ema_weights(best):
    stored = torch.load(best, weights_only=True)
    for ema, key in ((False, "model"), (True, "state_dict_ema")):
        model, info = model_from_checkpoint(best, ema=ema)
        assert not model.training and model.num_classes == 10
        sd = model.state_dict()
        assert all(torch.equal(sd[k], v) for k, v in stored[key].items())
    assert any(not torch.equal(stored["model"][k], stored["state_dict_ema"][k]) for k in stored["model"]
               if stored["model"][k].is_floating_point()), "EMA and model weights should differ after training"


def test_ema_weights_are_found_by_timms_load_checkpoint(best, tmp_path):
    """timm's ``load_checkpoint(use_ema=True)`` finds train.py's EMA weights (timm's key, ``state_dict_ema``), and
    hgzoo's ``load_checkpoint`` chooses as timm's does. An older train.py file (EMA under ``ema``) is still read by
    hgzoo; timm, which does not know that key, loads its model weights there: the case a wrong key would give."""
    timm = pytest.importorskip("timm")
    import hgzoo.timm_compat

    hgzoo.timm_compat.register()
    stored = torch.load(best, weights_only=True)
    older = {**{k: v for k, v in stored.items() if k != "state_dict_ema"}, "ema": stored["state_dict_ema"]}
    torch.save(older, tmp_path / "older.pt")

    def loaded(load, path, use_ema: bool) -> dict:
        model = timm.create_model(MODEL, num_classes=10, in_chans=1)  # hgzoo's model, through timm's registry
        load(model, str(path), use_ema=use_ema)
        return model.state_dict()

    def equal(sd: dict, key: str) -> bool:
        return all(torch.equal(sd[k], v) for k, v in stored[key].items())

    for use_ema, key in ((True, "state_dict_ema"), (False, "model")):
        assert equal(loaded(timm.models.load_checkpoint, best, use_ema), key)
        assert equal(loaded(hgzoo.load_checkpoint, best, use_ema), key)
        assert equal(loaded(hgzoo.load_checkpoint, tmp_path / "older.pt", use_ema), key)
    assert equal(loaded(timm.models.load_checkpoint, tmp_path / "older.pt", True), "model")
    assert not equal(loaded(timm.models.load_checkpoint, tmp_path / "older.pt", True), "state_dict_ema")
    assert equal(model_from_checkpoint(tmp_path / "older.pt", ema=True)[0].state_dict(), "state_dict_ema")
    assert read_info(tmp_path / "older.pt").has_ema


def test_flags_that_contradict_the_checkpoint_are_refused(best):
    for kwargs, words in ((dict(model_name="pphgnet_tiny"), "--model pphgnet_tiny"),
                          (dict(num_classes=5), "--num-classes 5"), (dict(in_chans=3), "--in-chans 3")):
        with pytest.raises(CheckpointConflictError, match=words):
            model_from_checkpoint(best, **kwargs)
    model, _ = model_from_checkpoint(best, model_name="PPLCNetV2_small", num_classes=10, in_chans=1)  # agreeing
    assert model.num_classes == 10


def test_plain_weights_take_classes_and_channels_from_their_shapes(tmp_path):
    m = hgzoo.create_model(MODEL, num_classes=7, in_chans=1)
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, tmp_path / "w.safetensors")
    model, info = model_from_checkpoint(tmp_path / "w.safetensors", model_name=MODEL)
    assert (model.num_classes, info.self_describing) == (7, False)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in m.state_dict().items())
    with pytest.raises(CheckpointConflictError, match="--num-classes 5"):
        model_from_checkpoint(tmp_path / "w.safetensors", model_name=MODEL, num_classes=5)
    with pytest.raises(CheckpointConflictError, match="give --model"):
        model_from_checkpoint(tmp_path / "w.safetensors")
    with pytest.raises(CheckpointConflictError, match="no EMA weights"):
        model_from_checkpoint(tmp_path / "w.safetensors", model_name=MODEL, ema=True)


def test_convert_channels_is_pils_convert_L():
    rgb = photos(("astronaut",))["astronaut"]
    ours = ConvertChannels(1)(torch.from_numpy(rgb).permute(2, 0, 1).contiguous())
    assert torch.equal(ours[0], torch.from_numpy(np.array(Image.fromarray(rgb).convert("L"))))
    gray = torch.from_numpy(np.array(Image.fromarray(rgb).convert("L")))
    assert torch.equal(ConvertChannels(1)(gray.expand(3, -1, -1))[0], gray)  # a gray file comes back unchanged
    assert ConvertChannels(3)(gray[None]).shape == (3, *gray.shape)


def _direct_predictions(model, dc, files) -> torch.Tensor:
    """Top-1 of each file, preprocessed here: PIL's grayscale, PaddleClas's resize and crop, normalized."""
    resize, crop = ResizeShort(dc["resize_short"], dc["interpolation"], dc["resize_backend"]), \
        PaddleCenterCrop(dc["crop_size"])
    x = torch.stack([crop(resize(torch.from_numpy(np.array(Image.open(f).convert("L")))[None])) for f in files])
    with torch.no_grad():
        return model(Normalizer(dc["mean"], dc["std"])(x)).argmax(1)


def test_validate_takes_everything_from_the_checkpoint(best, data, tmp_path):
    out = tmp_path / "r.json"
    proc = run("validate.py", "--checkpoint", str(best), "--data-dir", str(data), "--ema", "--workers", "1",
               "--batch-size", "4", "--no-progress", "--results-file", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    (r,) = json.loads(out.read_text())
    model, info = model_from_checkpoint(best, ema=True)
    dc = data_config(info, model)
    files = sorted(f for f in data.rglob("*") if f.is_file())
    labels = torch.tensor([int(f.parent.name) for f in files])
    expected = 100 * (_direct_predictions(model, dc, files) == labels).float().mean().item()
    assert r["top1"] == pytest.approx(expected, abs=1e-3) and r["num_images"] == 22 and r["in_chans"] == 1
    assert (r["model"], r["weights"], r["crop_size"]) == (MODEL, f"{best} (EMA)", 32)


@pytest.mark.parametrize("extra, words", [
    (["--num-classes", "5"], ["--num-classes 5", "best.pt"]),
    (["--model", "pphgnet_tiny"], ["--model pphgnet_tiny", MODEL]),
    (["--in-chans", "3"], ["--in-chans 3"]),
])
def test_validate_refuses_contradicting_flags(best, data, tmp_path, extra, words, capsys):
    out = tmp_path / "r.json"
    proc = call(["validate", "--checkpoint", str(best), "--data-dir", str(data), "--workers", "0",
                 "--results-file", str(out), *extra], capsys)
    one_error_line(proc, 2, *words)
    assert not out.exists()


def test_predict_prints_the_checkpoints_class_names(best, data, capsys):
    img = data / "0" / "rocket.jpg"  # an RGB photo: seen in gray
    proc = run("-m", "hgzoo", "predict", "--checkpoint", str(best), str(img), "--topk", "3", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (pred,) = json.loads(proc.stdout)["predictions"]
    model, info = model_from_checkpoint(best)
    assert pred["class_ids"][0] == int(_direct_predictions(model, data_config(info, model), [img])[0])
    assert pred["label_names"] == [CLASSES[i] for i in pred["class_ids"]]
    one_error_line(call(["predict", "--checkpoint", str(best), "--num-classes", "4", str(img)], capsys), 2,
                   "--num-classes 4")


def test_export_takes_the_checkpoint_and_its_ema(best, data, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    proc = run("-m", "hgzoo", "export", "--checkpoint", str(best), "--ema", "--format", "onnx", "--output", str(out),
               "--verify", str(data), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["passed"] and (report["in_chans"], report["img_size"]) == (1, 32)
    from hgzoo.deploy.runtimes import read_meta

    meta = read_meta(out)
    assert (meta["num_classes"], meta["data_config"]["crop_size"], meta["data_config"]["mean"]) == (10, 32, [0.5])
    one_error_line(call(["export", "--checkpoint", str(best), "--model", "resnet18_vd",
                         "--output", str(tmp_path / "x.onnx")], capsys), 2, "--model resnet18_vd")
    assert not (tmp_path / "x.onnx").exists()
