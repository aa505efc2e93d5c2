"""validate.py on a small ImageFolder of real photos, against a top-1 / top-5 computed directly in the test."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from image_samples import calibrated_model, small_model_name, write_photo_jpegs
from safetensors.torch import save_file

import hgzoo
import hgzoo.cli.validate as validate  # validate.py's command line (validate.py wraps it)
from hgzoo.data import Normalizer, create_transform, read_image

ROOT = Path(__file__).resolve().parent.parent




def direct_logits(model, files, **overrides) -> torch.Tensor:
    """The model's logits, one image at a time, with the preprocessing computed here."""
    t = create_transform(model.pretrained_cfg, **overrides)
    with torch.no_grad():
        return torch.cat([model(t(read_image(f))[None]) for f in files])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A checkpoint, and an ImageFolder whose labels make top-1 = 3/7 and top-5 = 5/7 for that model.

    Class folders are named by class id. Images 0-2 are labelled with the model's first choice, 3-4 with its
    third, 5-6 with its last: the expected accuracies follow from the logits computed here, image by image.
    """
    tmp = tmp_path_factory.mktemp("validate")
    photos = write_photo_jpegs(tmp / "photos")
    name = small_model_name()
    cfg_transform = create_transform(hgzoo.get_pretrained_cfg(name))
    batch = torch.stack([cfg_transform(read_image(f)) for f in photos])
    model = calibrated_model(name, batch)
    ckpt = tmp / "model.pth"
    torch.save(model.state_dict(), ckpt)
    logits = direct_logits(model, photos)
    order = logits.argsort(dim=1, descending=True)
    gaps = logits.sort(dim=1, descending=True).values
    # The ranks that decide the expected accuracies are not near-ties (the two computations differ by ~1e-6).
    assert (gaps[:3, 0] - gaps[:3, 1]).min() > 1e-3 and (gaps[3:5, 2] - gaps[3:5, 5]).min() > 1e-3, "near-tied logits"
    labels = [int(order[i, 0]) for i in range(3)] + [int(order[i, 2]) for i in (3, 4)] + \
             [int(order[i, -1]) for i in (5, 6)]
    data = tmp / "val"
    lines = []
    for f, label in zip(photos, labels):
        (data / str(label)).mkdir(parents=True, exist_ok=True)
        (data / str(label) / f.name).write_bytes(f.read_bytes())
        lines.append(f"{label}/{f.name} {label}\n")
    (tmp / "val_list.txt").write_text("".join(lines))
    return dict(tmp=tmp, name=name, model=model, ckpt=ckpt, data=data, photos=photos, labels=labels)


def test_top1_matches_direct_computation(setup, tmp_path, capsys):
    out = tmp_path / "results.json"
    rc = validate.main(["--model", setup["name"], "--checkpoint", str(setup["ckpt"]), "--data-dir", str(setup["data"]),
                        "--batch-size", "3", "--workers", "1", "--results-file", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    (r,) = json.loads(out.read_text())
    assert r["num_images"] == 7 and r["num_bad_images"] == 0
    assert r["top1"] == pytest.approx(100 * 3 / 7, abs=1e-3) and r["top5"] == pytest.approx(100 * 5 / 7, abs=1e-3)
    cfg = hgzoo.get_pretrained_cfg(setup["name"])
    assert (r["resize_short"], r["crop_size"], r["interpolation"], r["resize_backend"]) == \
           (cfg.resize_short, cfg.crop_size, cfg.interpolation, cfg.resize_backend)
    assert r["overrides"] == {} and r["img_per_sec"] > 0
    assert f"top-1 {100 * 3 / 7:.3f}  top-5 {100 * 5 / 7:.3f}  (7 images, 0 bad" in printed


def test_label_list_and_overrides(setup, tmp_path, capsys):
    """The same images through a PaddleClas label list, with preprocessing overrides, reported."""
    out = tmp_path / "results.csv"
    overrides = dict(crop_size=160, resize_short=180, interpolation="bicubic")
    rc = validate.main(["--model", setup["name"], "--checkpoint", str(setup["ckpt"]),
                        "--label-list", str(setup["tmp"] / "val_list.txt"), "--data-dir", str(setup["data"]),
                        "--img-size", "160", "--resize-short", "180", "--interpolation", "bicubic",
                        "--workers", "0", "--results-file", str(out)])
    assert rc == 0
    (row,) = list(csv.DictReader(out.open()))
    logits = direct_logits(setup["model"], setup["photos"], **overrides)
    labels = torch.tensor(setup["labels"])
    top1 = 100 * (logits.argmax(1) == labels).float().mean().item()
    top5 = 100 * (logits.topk(5, 1).indices == labels[:, None]).any(1).float().mean().item()
    assert float(row["top1"]) == pytest.approx(top1, abs=1e-3) and float(row["top5"]) == pytest.approx(top5, abs=1e-3)
    assert row["overrides"] == "resize_short=180;crop_size=160;interpolation=bicubic"
    assert (row["resize_short"], row["crop_size"], row["interpolation"]) == ("180", "160", "bicubic")
    assert "overrides: resize_short=180 (the weights' own: " in capsys.readouterr().out


def test_bad_images_stop_or_are_counted(setup, tmp_path, capsys):
    data = tmp_path / "val"
    for d in setup["data"].iterdir():
        (data / d.name).mkdir(parents=True)
        for f in d.iterdir():
            (data / d.name / f.name).write_bytes(f.read_bytes())
    bad = data / str(setup["labels"][0]) / "zz_corrupt.jpg"
    bad.write_bytes(setup["photos"][0].read_bytes()[:3000])
    args = ["--model", setup["name"], "--checkpoint", str(setup["ckpt"]), "--data-dir", str(data), "--workers", "0"]
    assert validate.main(args) == 2  # an image that would not decode is a bad input file
    err = capsys.readouterr().err
    assert str(bad) in err and "--skip-bad-images" in err

    out = tmp_path / "r.json"
    assert validate.main(args + ["--skip-bad-images", "--results-file", str(out)]) == 0
    (r,) = json.loads(out.read_text())
    assert r["num_images"] == 7 and r["num_bad_images"] == 1 and str(bad) in r["bad_images"][0]
    assert r["top1"] == pytest.approx(100 * 3 / 7, abs=1e-3)  # the bad image is not counted as a miss
    assert f"skipped 1 image(s) that failed to decode:\n    cannot decode image {bad}" in capsys.readouterr().out


def test_wildcard_validates_every_tag_from_the_cache(setup, tmp_path):
    """``--model 'pattern*' --pretrained`` on the command line, weights from a pre-filled hgzoo cache (offline)."""
    for pattern in ("pphgnetv2_b0*", "pplcnetv2_[sb]*", "resnet[13][84]_vd*", setup["name"] + "*"):
        tags = hgzoo.list_pretrained(pattern)
        if len(tags) >= 2 or pattern.startswith(setup["name"]):
            break
    assert tags, f"no weight tag matches {pattern}"
    cache = tmp_path / "cache"
    (cache / "converted").mkdir(parents=True)
    for tag in tags:
        model = hgzoo.create_model(tag)
        weights = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(weights, cache / "converted" / f"{tag}.safetensors")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HGZOO_CACHE=str(cache), HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    out = tmp_path / "all.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "validate.py"), "--model", pattern, "--pretrained",
         "--data-dir", str(setup["data"]), "--img-size", "96", "--resize-short", "110", "--workers", "0",
         "--results-file", str(out)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert [r["model"] for r in results] == tags and all(r["num_images"] == 7 for r in results)
    assert all(r["weights"] == t for r, t in zip(results, tags))
    assert all(f"{t}: top-1 " in proc.stdout for t in tags) and "7 images from" in proc.stderr


def test_usage_errors(setup, tmp_path, capsys):
    with pytest.raises(SystemExit):
        validate.main(["--model", setup["name"], "--data-dir", str(setup["data"])])  # no --pretrained/--checkpoint
    with pytest.raises(SystemExit):
        validate.main(["--model", setup["name"], "--pretrained"])  # no data
    lst = tmp_path / "list.txt"
    lst.write_text("a.jpg 1\nb.jpg\n")
    assert validate.main(["--model", setup["name"], "--checkpoint", str(setup["ckpt"]), "--label-list", str(lst)]) == 2
    assert "list.txt:2: expected" in capsys.readouterr().err


# --- the deployed runtime -------------------------------------------------------------------------------------------

def _uint8_batch(files, cfg) -> torch.Tensor:
    """The images as validate.py feeds them: uint8 crops, normalized in one op."""
    t = create_transform(cfg, normalize=False)
    return Normalizer(cfg.mean, cfg.std)(torch.stack([t(read_image(f)) for f in files]))


def _accuracy(logits: torch.Tensor, labels: list[int]) -> tuple[float, float]:
    y = torch.tensor(labels)
    top5 = torch.as_tensor(logits).topk(5, 1).indices
    return 100 * (top5[:, 0] == y).float().mean().item(), 100 * (top5 == y[:, None]).any(1).float().mean().item()


@pytest.fixture(scope="module")
def int8_run(setup, tmp_path_factory):
    """validate.py on OpenVINO int8, exported from the checkpoint (calibrated on the photos) and kept."""
    tmp = tmp_path_factory.mktemp("int8")
    out, xml = tmp / "r.json", tmp / "m-int8.xml"
    rc = validate.main(["--model", setup["name"], "--checkpoint", str(setup["ckpt"]), "--data-dir", str(setup["data"]),
                        "--backend", "openvino", "--precision", "int8", "--calibration", str(setup["tmp"] / "photos"),
                        "--min-top1-agreement", "0", "--save-deployed", str(xml), "--threads", "1", "--workers", "1",
                        "--batch-size", "4", "--no-progress", "--results-file", str(out)])
    assert rc == 0
    (r,) = json.loads(out.read_text())
    return r, xml


def test_int8_file_is_what_is_validated(setup, int8_run):
    """The accuracy reported is the saved file's, on the same images; the agreement is the file's with eager fp32."""
    from hgzoo.deploy import load

    r, xml = int8_run
    cfg = hgzoo.get_pretrained_cfg(setup["name"])
    files = sorted(setup["data"].rglob("*.jpg"))
    labels = [int(f.parent.name) for f in files]
    x = _uint8_batch(files, cfg)
    logits = torch.from_numpy(load(xml, threads=1)(x))
    top1, top5 = _accuracy(logits, labels)
    assert r["top1"] == pytest.approx(top1, abs=1e-3) and r["top5"] == pytest.approx(top5, abs=1e-3)
    with torch.no_grad():
        eager = setup["model"](x)
    agree = 100 * (logits.argmax(1) == eager.argmax(1)).float().mean().item()
    assert r["top1_agreement"] == pytest.approx(agree, abs=1e-3) and r["agreement_images"] == 7
    assert (r["backend"], r["precision"], r["deployed_file"]) == ("openvino", "int8", str(xml))
    assert "NNCF" in r["compute"] and 0 <= r["data_wait_share"] <= 1 and r["img_per_sec"] > 0
    assert r["export_top1_agreement"] is not None and (r["threads"], r["workers"]) == (1, 1)


def test_deployed_file_runs_without_exporting_again(setup, int8_run, tmp_path, capsys):
    r, xml = int8_run
    out = tmp_path / "again.csv"
    argv = ["--model", setup["name"], "--checkpoint", str(setup["ckpt"]), "--data-dir", str(setup["data"]),
            "--deployed", str(xml), "--workers", "0", "--no-progress", "--results-file", str(out)]
    assert validate.main(argv) == 0
    (row,) = list(csv.DictReader(out.open()))
    assert float(row["top1"]) == pytest.approx(r["top1"]) and row["deployed_file"] == str(xml)
    assert row["backend"] == "openvino" and row["precision"] == "int8"
    assert float(row["top1_agreement"]) == pytest.approx(r["top1_agreement"])
    assert "deployed file: " in capsys.readouterr().out


def test_compile_and_bf16_backends_agree_with_eager(setup, tmp_path):
    """torch.compile fp32 gives eager's accuracy; bf16 autocast reports its agreement with fp32."""
    args = ["--model", setup["name"], "--checkpoint", str(setup["ckpt"]), "--data-dir", str(setup["data"]),
            "--workers", "0", "--threads", "1", "--no-progress", "--img-size", "96", "--resize-short", "110"]
    results = {}
    for backend, precision in (("eager", "fp32"), ("compile", "fp32"), ("eager", "bf16")):
        out = tmp_path / f"{backend}-{precision}.json"
        assert validate.main([*args, "--backend", backend, "--precision", precision, "--results-file", str(out)]) == 0
        (results[backend, precision],) = json.loads(out.read_text())
    assert results["compile", "fp32"]["top1"] == results["eager", "fp32"]["top1"]
    assert results["eager", "fp32"]["top1_agreement"] is None  # the reference itself
    assert results["eager", "bf16"]["top1_agreement"] is not None and "bf16 autocast" in results["eager", "bf16"][
        "compute"]


@pytest.fixture(scope="module")
def other_file(tmp_path_factory):
    """An ONNX file of another model: 3 classes, 64 px."""
    from hgzoo.deploy import export

    out = tmp_path_factory.mktemp("other") / "other.onnx"
    export(hgzoo.create_model(small_model_name(), num_classes=3), "onnx", output=out, img_size=64, verify=False)
    return out


def _run_main(argv, capsys):
    capsys.readouterr()
    try:
        code = validate.main(argv)
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("extra, words", [
    (["--backend", "openvino", "--precision", "int8"], ["--precision int8 needs --calibration"]),
    (["--backend", "onnxruntime", "--precision", "bf16"], ["--backend onnxruntime --precision bf16", "openvino"]),
    (["--backend", "eager", "--precision", "int8"], ["--backend eager has no int8 path"]),
    (["--deployed", "{other}"], ["does not match", "(N, 3, 64, 64)", "3 classes"]),
    (["--deployed", "{missing}"], ["missing.onnx not found"]),
    (["--deployed", "{ckpt}"], ["expected an .onnx", ".xml"]),
    (["--backend", "eager", "--deployed", "{other}"], ["is a file for onnxruntime, not for --backend eager"]),
    (["--backend", "openvino", "--amp"], ["--amp"]),
    (["--deployed", "{other}", "--calibration", "x"], ["--deployed runs a file exported before"]),
])
def test_runtime_bad_input_is_one_line_and_writes_nothing(setup, other_file, tmp_path, capsys, extra, words):
    out = tmp_path / "r.json"
    fill = {"other": str(other_file), "missing": str(tmp_path / "missing.onnx"), "ckpt": str(setup["ckpt"])}
    argv = ["--model", setup["name"], "--checkpoint", str(setup["ckpt"]), "--data-dir", str(setup["data"]),
            "--workers", "0", "--results-file", str(out)] + [a.format(**fill) for a in extra]
    code, err = _run_main(argv, capsys)
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("error:") or ": error:" in line]
    assert len(lines) == 1 and all(w in lines[0] for w in words), err
    assert not out.exists() and "Traceback" not in err


def test_a_runtime_that_is_not_installed(setup, tmp_path, monkeypatch, capsys):
    """OpenVINO made unimportable (sys.modules holds None for it and its submodules, as Python does for a package
    that is not there): one line naming the package, exit 2, nothing written."""
    for name in [m for m in sys.modules if m == "openvino" or m.startswith("openvino.")] + ["openvino"]:
        monkeypatch.setitem(sys.modules, name, None)
    out = tmp_path / "r.json"
    code, err = _run_main(["--model", setup["name"], "--checkpoint", str(setup["ckpt"]), "--data-dir",
                           str(setup["data"]), "--backend", "openvino", "--results-file", str(out)], capsys)
    assert code == 2, err[-2000:]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "pip install" in errors[0] and "openvino" in errors[0], err[-2000:]
    assert "Traceback" not in err and not out.exists()


# --- timm's validate.py spellings (issue 26) ------------------------------------------------------------------------

def test_timm_spellings_take_effect(setup, tmp_path, capsys):
    """-b, -j, --use-ema, --results-format and --input-size do what timm's do: a timm-format checkpoint's EMA
    weights (the calibrated model) give the expected accuracy, its model weights (random) do not."""
    random_model = hgzoo.create_model(setup["name"], num_classes=setup["model"].num_classes)
    ckpt = tmp_path / "timm.pth.tar"
    torch.save({"state_dict": random_model.state_dict(), "state_dict_ema": setup["model"].state_dict()}, ckpt)
    base = ["--model", setup["name"], "--checkpoint", str(ckpt), "--data-dir", str(setup["data"]), "--no-progress"]

    def run(*extra: str) -> dict:
        out = tmp_path / "results.txt"  # timm's --results-file takes any name; --results-format says the format
        assert validate.main([*base, *extra, "--results-file", str(out), "--results-format", "json"]) == 0
        return json.loads(out.read_text())[0]

    ema = run("--use-ema", "-b", "3", "-j", "1")
    assert ema["batch_size"] == 3 and ema["workers"] == 1 and ema["weights"].endswith("(EMA)")
    assert ema["top1"] == pytest.approx(100 * 3 / 7, abs=1e-3) and ema["top5"] == pytest.approx(100 * 5 / 7, abs=1e-3)
    model_weights = run("-b", "3", "-j", "1")
    assert (model_weights["top1"], model_weights["top5"]) != (ema["top1"], ema["top5"])  # the check can fail
    by_timm, by_hgzoo = run("--use-ema", "--input-size", "3", "160", "160"), run("--use-ema", "--img-size", "160")
    assert by_timm["crop_size"] == 160 and by_timm["in_chans"] == 3
    assert {k: by_timm[k] for k in ("top1", "top5", "resize_short")} == \
           {k: by_hgzoo[k] for k in ("top1", "top5", "resize_short")}


def test_timm_spellings_in_help_and_torchcompile_is_the_compile_backend(setup):
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit):
        validate.parse_args(["--help"])
    shown = buf.getvalue()
    for flag in ("-b", "-j", "--use-ema", "--torchcompile", "--input-size", "--results-format"):
        assert f"{flag} " in shown or f"{flag}," in shown, flag
    assert "area" not in shown  # offered only what a resize backend does
    args = validate.parse_args(["--model", setup["name"], "--pretrained", "--data-dir", "x", "--torchcompile"])
    assert args.backend == "compile"


@pytest.mark.parametrize("extra, words", [
    (["--torchscript", "--backend", "compile"], ["--torchscript scripts the torch model", "contradicts --backend "
                                                                                           "compile"]),
    (["--channels-last", "--backend", "openvino"], ["does not apply to --backend openvino"]),
    (["--torchcompile", "eager"], ["inductor only"]),
    (["--torchcompile", "--backend", "openvino"], ["contradicts --backend openvino"]),
    (["--input-size", "3", "160", "200"], ["square"]),
    (["--input-size", "1", "160", "160", "--in-chans", "3"], ["contradicts --in-chans 3"]),
    (["--interpolation", "area"], ["invalid choice: 'area'"]),
    (["--interpolation", "lanczos", "--resize-backend", "cv2"], ["is not --resize-backend cv2"]),
    (["--results-file", "{tmp}/r.csv", "--results-format", "json"], ["contradicts --results-file"]),
    (["--results-file", "{tmp}/r.txt"], ["--results-format csv|json"]),
    (["--results-format", "json"], ["goes with --results-file"]),
])
def test_timm_spellings_hgzoo_cannot_honour_are_one_line_errors(setup, tmp_path, capsys, extra, words):
    argv = ["--model", setup["name"], "--checkpoint", str(setup["ckpt"]), "--data-dir", str(setup["data"]),
            *(e.format(tmp=tmp_path) for e in extra)]
    code, err = _run_main(argv, capsys)
    assert code == 2 and len(err.strip().splitlines()[-1]) > 0, err
    assert all(w in err for w in words), err
