"""The fine-tuning journey of the README (issue 18), at small scale, from a wheel install and outside the repository:
pretrain on Fashion-MNIST, fine-tune on scikit-learn's digits as an ImageFolder (a new head, --freeze,
--lr-mult-list), then validate, predict, export int8 (and validate the exported file), and publish to a local Hub
folder that loads back. Every step is ``python -m hgzoo ...`` and no step repeats what the checkpoint knows."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from hgzoo._files import safe_load

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["--epochs", "1", "--batch-size", "32", "--threads", "1", "--no-progress", "--plot", "false"]


def _write_digits(out: Path) -> None:
    spec = importlib.util.spec_from_file_location("digits", ROOT / "examples" / "digits.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.write_digits(out)


@pytest.fixture(scope="module")
def journey(wheel_install, tmp_path_factory):
    """Runs each step once; the tests below check what each left behind."""
    work = tmp_path_factory.mktemp("journey")
    _write_digits(work / "digits")

    def hgzoo(*argv: str):
        proc = wheel_install.run("-m", "hgzoo", *argv, cwd=work)
        assert proc.returncode == 0, (argv, proc.stderr[-3000:])
        return proc

    hgzoo("train", "--config", "fashion_mnist", "--train-subset", "256", "--max-steps-per-epoch", "2", *SMALL,
          "--output", "pre")
    hgzoo("train", "--config", "fashion_mnist", "--dataset", "folder", "--data-dir", "digits",
          "--initial-checkpoint", "pre/best.pt", "--reset-head", "--freeze", "1",
          "--lr-mult-list", "0", "0.25", "0.5", "0.75", "1", "--max-steps-per-epoch", "3", *SMALL, "--output", "ft")
    return work, hgzoo


def test_fine_tuned_checkpoint_describes_itself(journey):
    work, _ = journey
    pre, ft = safe_load(work / "pre" / "best.pt"), safe_load(work / "ft" / "best.pt")
    assert (ft["model_name"], ft["num_classes"], ft["in_chans"]) == ("pplcnetv2_small", 10, 1)
    assert ft["class_names"] == [str(d) for d in range(10)]  # the folder's, not Fashion-MNIST's
    # --initial-checkpoint loads the file's EMA weights where it has them, as timm's train.py does
    start = pre.get("state_dict_ema") or pre["model"]
    stem = [k for k in start if k.startswith("stem.") and k.endswith("conv.weight")]
    assert stem and all(torch.equal(start[k], ft["model"][k]) for k in stem)  # started from pre, frozen
    head = [k for k in ft["model"] if k.startswith("fc.") or k.startswith("head.fc.")]
    assert head and not all(torch.equal(pre["model"][k], ft["model"][k]) for k in head)  # a new head


def test_validate_predict_from_the_checkpoint_alone(journey):
    work, hgzoo = journey
    hgzoo("validate", "--checkpoint", "ft/best.pt", "--data-dir", "digits/val", "--workers", "0", "--no-progress",
          "--results-file", "val.json")
    (r,) = json.loads((work / "val.json").read_text())
    ft = safe_load(work / "ft" / "best.pt")
    assert r["num_images"] == 359 and r["top1"] == pytest.approx(ft["top1"], abs=1e-3)  # train.py's own eval figure
    img = next((work / "digits" / "val" / "7").iterdir())
    (pred,) = json.loads(hgzoo("predict", "--checkpoint", "ft/best.pt", str(img), "--topk", "3",
                               "--json").stdout)["predictions"]
    assert pred["label_names"] == [str(i) for i in pred["class_ids"]]


def test_export_int8_and_validate_the_exported_file(journey):
    work, hgzoo = journey
    hgzoo("export", "--checkpoint", "ft/best.pt", "--format", "openvino", "--precision", "int8", "--calibration",
          "digits/train", "--output", "digits-int8.xml")
    hgzoo("validate", "--checkpoint", "ft/best.pt", "--data-dir", "digits/val", "--workers", "0", "--no-progress",
          "--deployed", "digits-int8.xml", "--results-file", "int8.json")
    (r,) = json.loads((work / "int8.json").read_text())
    assert r["num_images"] == 359 and 0 <= r["top1"] <= 100 and r["top1_agreement"] is not None


def test_publish_to_a_local_hub_folder_and_load_it_back(journey, wheel_install):
    work, hgzoo = journey
    proc = wheel_install.run("-m", "hgzoo.convert", "--input", "ft/best.pt", "--output", "hub/digits", cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {"config.json", "model.safetensors", "README.md"} <= {p.name for p in (work / "hub" / "digits").iterdir()}
    code = ("import hgzoo, torch, json; from hgzoo.checkpoint import model_from_checkpoint; "
            "m = hgzoo.create_model('local-dir:hub/digits', pretrained=True).eval(); "
            "ref, _ = model_from_checkpoint('ft/best.pt'); x = torch.randn(2, 1, 32, 32); "
            "last = hgzoo.create_model('pplcnetv2_small', num_classes=10, in_chans=1, pretrained_file='ft/last.pt'); "
            "print(json.dumps([m.num_classes, bool(torch.equal(m(x), ref(x))), "
            "bool(torch.equal(last.eval()(x), ref(x)))]))")  # one epoch: last.pt holds best.pt's weights
    proc = wheel_install.run("-c", code, cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.splitlines()[-1]) == [10, True, True]
    config = json.loads((work / "hub" / "digits" / "config.json").read_text())
    assert config["label_names"] == [str(d) for d in range(10)] and config["model_args"]["in_chans"] == 1
