"""validate.py on a small ImageFolder of real photos, against a top-1 / top-5 computed directly in the test."""
from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import hgzoo
from hgzoo.data import create_transform, read_image
from image_samples import calibrated_model, small_model_name, write_photo_jpegs

ROOT = Path(__file__).resolve().parent.parent


def _load_validate():
    spec = importlib.util.spec_from_file_location("validate", ROOT / "validate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


validate = _load_validate()


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
    assert validate.main(args) == 1
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
