"""The predict command (``python -m hgzoo predict``) and ``hgzoo.predict``: ids, scores and ImageNet names."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from image_samples import calibrated_model, small_model_name, write_photo_jpegs

import hgzoo
from hgzoo import predict
from hgzoo.cli.main import main as cli
from hgzoo.data import create_transform, imagenet_class_names, read_image
from hgzoo.data.transforms import ImageDecodeError

NAMES = ("chelsea", "coffee", "astronaut", "rocket")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("predict")
    photos = write_photo_jpegs(tmp / "imgs", NAMES)  # chelsea.jpg, coffee.jpg in imgs/; the others moved below
    (tmp / "imgs" / "more").mkdir()
    for p in photos[2:]:
        p.rename(tmp / "imgs" / "more" / p.name)
    files = [tmp / "imgs" / "chelsea.jpg", tmp / "imgs" / "coffee.jpg",
             tmp / "imgs" / "more" / "astronaut.jpg", tmp / "imgs" / "more" / "rocket.jpg"]
    name = small_model_name()
    t = create_transform(hgzoo.get_pretrained_cfg(name))
    batch = torch.stack([t(read_image(f)) for f in files])
    model = calibrated_model(name, batch)
    ckpt = tmp / "model.pth"
    torch.save(model.state_dict(), ckpt)
    with torch.no_grad():
        probs = model(batch).softmax(1)
    return dict(tmp=tmp, name=name, model=model, ckpt=ckpt, files=files, probs=probs)


def check(results, setup, topk):
    names = imagenet_class_names()
    assert [r["file_name"] for r in results] == [str(f) for f in setup["files"]]
    for r, p in zip(results, setup["probs"]):
        scores, ids = p.topk(topk)
        assert r["class_ids"] == ids.tolist()
        assert r["scores"] == pytest.approx(scores.tolist(), abs=2e-5)
        assert r["label_names"] == [names[i] for i in ids.tolist()]


def test_predict_python_api(setup):
    """Files and a folder (searched recursively, sorted), from a model name + weights file or a built model."""
    inputs = [setup["files"][0], setup["files"][1], setup["tmp"] / "imgs" / "more"]
    check(predict(setup["name"], inputs, topk=5, pretrained_file=setup["ckpt"], batch_size=3), setup, 5)
    check(predict(setup["model"], setup["tmp"] / "imgs", topk=2), setup, 2)


def test_predict_is_exported():
    assert callable(hgzoo.predict), "hgzoo/__init__.py should export it: `predict` from hgzoo.inference"


def test_predict_cli_json_with_a_bad_file(setup, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    proc = subprocess.run(
        [sys.executable, "-m", "hgzoo", "predict", "--model", setup["name"], "--pretrained-file", str(setup["ckpt"]),
         str(setup["tmp"] / "imgs"), str(bad), "--topk", "3", "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]  # one bad file (bad input), the others are still classified
    assert f"cannot decode image {bad}" in proc.stderr
    out = json.loads(proc.stdout)
    assert (out["backend"], out["precision"], out["deployed_file"]) == ("eager", "fp32", None)
    results = out["predictions"]
    assert results[-1]["file_name"] == str(bad) and "error" in results[-1]
    check(results[:-1], setup, 3)


def test_predict_cli_text(setup, capsys):
    assert cli(["predict", "--model", setup["name"], "--pretrained-file", str(setup["ckpt"]),
                str(setup["files"][0]), "--topk", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    p = setup["probs"][0]
    scores, ids = p.topk(2)
    names = imagenet_class_names()
    assert out[0] == f"{setup['files'][0]}:"
    class_id, score, label = out[1].split(maxsplit=2)
    assert (int(class_id), label) == (ids[0].item(), names[ids[0]]) and out[1].startswith(f"  {class_id:>5}  ")
    assert float(score) == pytest.approx(scores[0].item(), abs=2e-5)  # normalized in one fused op: float rounding
    assert out[2].split()[0] == str(ids[1].item()) and len(out) == 3


def test_predict_errors(setup, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"")
    with pytest.raises(ImageDecodeError, match="bad.png"):
        predict(setup["model"], bad)
    (r,) = predict(setup["model"], bad, skip_bad_images=True)
    assert str(bad) in r["error"]
    with pytest.raises(FileNotFoundError):
        predict(setup["model"], tmp_path / "nope.jpg")
    assert cli(["predict", "--model", "no_such_model", str(setup["files"][0])]) == 2
