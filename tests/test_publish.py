"""Publishing: save_pretrained / push_to_hub / ``python -m hgzoo.convert --input best.pt``, for a real train.py
checkpoint and a model in memory, uploaded to the local Hub server and loaded back by hgzoo and by timm."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from image_samples import photos, write_png
from local_server import LocalServer

import hgzoo
from hgzoo._files import safe_load
from hgzoo.files import CorruptCheckpointError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import train as train_cli  # noqa: E402

pytest.importorskip("timm", reason="timm (the `test` extra) loads the published folders")
from huggingface_hub import ModelCard  # noqa: E402


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A real train.py run (pphgnetv2_b0, 32 px, two classes of photo crops, one epoch): its best.pt."""
    root = tmp_path_factory.mktemp("pub")
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("val", 4)):
        for cls, img in photos(("chelsea", "coffee")).items():
            (root / "data" / split / cls).mkdir(parents=True)
            for i in range(n):
                y, x = rng.integers(0, img.shape[0] - 64), rng.integers(0, img.shape[1] - 64)
                write_png(root / "data" / split / cls / f"{i}.png", np.ascontiguousarray(img[y:y + 64:2, x:x + 64:2]))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = train_cli.main(["--model", "pphgnetv2_b0", "--img-size", "32", "--batch-size", "4", "--workers", "0",
                               "--no-progress", "--lr", "0.05", "--warmup-epochs", "0",
                               "--epochs", "1", "--data-dir", str(root / "data"), "--output", str(root / "run"),
                               "--randaugment", "none", "--label-smoothing", "0.1"])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    return root / "run" / "best.pt"


PUSH_AND_LOAD = r"""
import json, sys, torch, hgzoo, hgzoo.timm_compat, timm
best, x1 = sys.argv[1], torch.randn(2, 1, 40, 40, generator=torch.Generator().manual_seed(0))
out = {"commits": [hgzoo.push_to_hub(best, "someone/b0-finetuned")]}
torch.manual_seed(0)
gray = hgzoo.create_model("pplcnetv2_small", in_chans=1, num_classes=4).eval()
out["commits"].append(hgzoo.push_to_hub(gray, "someone/gray", source="a test",
                                        metrics={"top1": 12.5, "top5": 50.0, "dataset": "toy", "dataset_id": None}))
hgzoo.timm_compat.register()
x3 = torch.randn(2, 3, 40, 40, generator=torch.Generator().manual_seed(1))
ref = hgzoo.publish.from_train_checkpoint(best)[0].eval()
with torch.no_grad():
    for key, repo, x, expected in (("run", "someone/b0-finetuned", x3, ref), ("gray", "someone/gray", x1, gray)):
        a = hgzoo.create_model(f"hf-hub:{repo}", pretrained=True).eval()
        b = timm.create_model(f"hf-hub:{repo}", pretrained=True).eval()
        y = expected(x)
        out[key] = {"hgzoo": float((a(x) - y).abs().max()), "timm": float((b(x) - y).abs().max()),
                    "spread": float((y[0] - y[1]).abs().max()), "types": [type(a).__name__, type(b).__name__],
                    "timm_config": {k: list(v) if isinstance(v, tuple) else v
                                    for k, v in timm.data.resolve_model_data_config(b).items()}}
# The command's --push-to-hub, in this process: the same Hub settings (read at import).
from hgzoo.cli.convert import main
out["cli"] = main(["--input", best, "--output", sys.argv[2], "--push-to-hub", "someone/from-cli"])
print(json.dumps(out))
"""


def _env(server: LocalServer, tmp: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HGZOO_"))}
    env.update(HF_ENDPOINT=server.url, HF_TOKEN="hf_local_test", HF_HOME=str(tmp / "hf"),
               HGZOO_CACHE=str(tmp / "cache"), HF_HUB_DISABLE_TELEMETRY="1")
    return env


def test_push_to_hub_then_load_in_hgzoo_and_timm(run, tmp_path):
    with LocalServer() as server:
        proc = subprocess.run([sys.executable, "-c", PUSH_AND_LOAD, str(run), str(tmp_path / "cli")],
                              env=_env(server, tmp_path), capture_output=True, text=True, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr[-4000:]
        out = json.loads(proc.stdout.splitlines()[-1])
        assert out["cli"] == 0 and "pushed: " in proc.stdout, proc.stderr[-3000:]
        assert server.files["/someone/from-cli/resolve/main/model.safetensors"] == \
            (tmp_path / "cli" / "model.safetensors").read_bytes()
        posts = [p for m, p in server.requests if m == "POST"]
        readme = server.files["/someone/b0-finetuned/resolve/main/README.md"].decode()
        config = json.loads(server.files["/someone/b0-finetuned/resolve/main/config.json"])
    assert posts.count("/api/repos/create") == 3 and "/api/models/someone/gray/commit/main" in posts
    assert all(c.endswith("/commit/" + LocalServer.COMMIT) for c in out["commits"])
    for key in ("run", "gray"):
        assert out[key]["spread"] > 0 and out[key]["hgzoo"] == 0 and out[key]["timm"] == 0, out[key]
    assert out["run"]["types"] == ["PPHGNetV2", "PPHGNetV2"] and out["gray"]["types"] == ["PPLCNetV2", "PPLCNetV2"]
    assert out["gray"]["timm_config"]["input_size"] == [1, 224, 224]  # timm reads in_chans from model_args

    ckpt = safe_load(run)
    assert config["architecture"] == "pphgnetv2_b0" and config["num_classes"] == 2
    assert config["label_names"] == ckpt["class_names"] == ["chelsea", "coffee"]
    assert config["pretrained_cfg"]["crop_size"] == 32
    assert config["pretrained_cfg"]["hf_hub_id"] == "someone/b0-finetuned"
    card = ModelCard(readme)
    meta = card.data.to_dict()
    assert meta["pipeline_tag"] == "image-classification" and meta["library_name"] == "hgzoo"
    assert "timm" in meta["tags"] and meta["license"] == "apache-2.0"
    result = card.data.eval_results[0]
    assert result.metric_value == pytest.approx(round(ckpt["top1"], 4)) and result.dataset_split == "val"
    assert "Fine-tuned by hgzoo's `train.py`" in readme and "Converted from PaddleClas" not in readme
    assert "| epochs | 1 |" in readme and "PaddleClas's random initialization" in readme
    assert "forward_intermediates" in readme and "features_only=True" in readme and "@misc{paddleclas" in readme


def test_convert_cli_publishes_a_train_checkpoint(run, tmp_path, capsys):
    from hgzoo.cli.convert import main

    out = tmp_path / "folder"
    assert main(["--input", str(run), "--output", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"model.safetensors", "config.json", "README.md"}
    model = hgzoo.create_model("pphgnetv2_b0", num_classes=2, pretrained_file=out / "model.safetensors").eval()
    ref = hgzoo.create_model("pphgnetv2_b0", num_classes=2, pretrained_file=run).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), rtol=0, atol=0)
    capsys.readouterr()
    (tmp_path / "x.pdparams").write_bytes(b"\x80")
    for argv, needle in ((["--input", str(run), "--num-classes", "3"], "own class count"),
                         (["--input", str(tmp_path / "missing.pt")], "no such file"),
                         (["--input", str(tmp_path / "x.pdparams")], "give --model")):
        assert main(argv + ["--output", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and needle in err and len(err.strip().splitlines()) == 1, err
    not_a_run = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(2)}, not_a_run)
    assert main(["--input", str(not_a_run), "--output", str(tmp_path / "o")]) == 2
    assert "not a train.py checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("tag, cites, absent", [
    ("hrnet_w18_c.ssld_in1k", ("wang2020hrnet", "cui2021ssld", "paddleclas"), ("he2019bag",)),
    ("resnet50_vd.paddle_in1k", ("he2019bag", "paddleclas"), ("cui2021ssld",)),
])
def test_converted_weights_card(tag, cites, absent, tmp_path):
    from hgzoo.publish import write_hub_folder

    cfg = hgzoo.get_pretrained_cfg(tag)
    model = hgzoo.create_model(tag)
    write_hub_folder(model, model.state_dict(), cfg, tmp_path, source=cfg.paddle_url)
    readme = (tmp_path / "README.md").read_text()
    card = ModelCard(readme)
    assert card.data.to_dict()["datasets"] == ["imagenet-1k"]
    assert card.data.eval_results[0].metric_value == cfg.top1
    assert "Converted from PaddleClas" in readme and cfg.paddle_url in readme
    assert all(c in readme for c in cites) and not any(a in readme for a in absent)


def test_save_pretrained_refuses_a_backbone(tmp_path):
    with pytest.raises(TypeError, match="features_only"):
        hgzoo.save_pretrained(hgzoo.create_model("resnet18_vd", features_only=True), tmp_path)
    with pytest.raises(TypeError, match="unknown metrics key"):
        hgzoo.save_pretrained(hgzoo.create_model("resnet18_vd"), tmp_path, metrics={"acc": 1.0})


def test_the_network_it_was_built_as_comes_back(tmp_path):
    """A model built with other layers, a dilated last stage and D-FINE's stem pool is published with those
    arguments (timm's ``model_args``): hgzoo and timm rebuild that network, not the default one, from the folder."""
    import timm
    from conftest import calibrate

    import hgzoo.timm_compat

    x = torch.randn(2, 3, 64, 64) + torch.linspace(-1, 1, 64)
    model = hgzoo.create_model("pphgnetv2_b0", num_classes=5, act_layer=torch.nn.SiLU, norm_layer="syncbatchnorm",
                               output_stride=16, stem_pool="zero")
    model = calibrate(model, x, seed=0)
    hgzoo.save_pretrained(model, tmp_path / "repo")
    config = json.loads((tmp_path / "repo" / "config.json").read_text())
    assert config["model_args"] == {"act_layer": "silu", "norm_layer": "syncbatchnorm", "output_stride": 16,
                                    "stem_pool": "zero"}
    hgzoo.timm_compat.register()
    with torch.no_grad():
        want = model(x)
        for back in (hgzoo.create_model(f"local-dir:{tmp_path / 'repo'}", pretrained=True),
                     timm.create_model(f"local-dir:{tmp_path / 'repo'}", pretrained=True)):
            assert type(back.stem.stem1.act) is torch.nn.SiLU and back.feature_info[-1]["reduction"] == 16
            torch.testing.assert_close(back.eval()(x), want, rtol=1e-5, atol=1e-5)
        # An argument given at load time wins over the repo's, as in timm; the check sees the difference.
        relu = hgzoo.create_model(f"local-dir:{tmp_path / 'repo'}", pretrained=True, act_layer="relu").eval()
        assert (relu(x) - want).abs().max() > 0.1 * want.std()


def test_a_network_that_cannot_be_recorded_is_not_published(tmp_path):
    class Swish(torch.nn.Module):
        def forward(self, x):
            return x * torch.sigmoid(x)

    with pytest.raises(ValueError, match="act_layer=.*Swish.* no name config.json can record"):
        hgzoo.save_pretrained(hgzoo.create_model("resnet18_vd", act_layer=Swish), tmp_path / "repo")
    assert not (tmp_path / "repo").exists()
    hgzoo.save_pretrained(hgzoo.create_model("resnet18_vd"), tmp_path / "repo")
    config = json.loads((tmp_path / "repo" / "config.json").read_text())
    assert "model_args" not in config  # the default network needs none
    # timm 1.0.31 records its factory's arguments too (num_classes, in_chans, global_pool): read as timm does.
    config["model_args"] = {"num_classes": 1000, "in_chans": 3, "global_pool": "max", "act_layer": "silu"}
    (tmp_path / "repo" / "config.json").write_text(json.dumps(config))
    back = hgzoo.create_model(f"local-dir:{tmp_path / 'repo'}")
    assert type(back.stem[0].act) is torch.nn.SiLU and back.head.global_pool.pool_type == "max"
    for bad, match in (({"layers": 3}, r"model_args.layers is not an argument of resnet18_vd"),
                       ({"num_classes": 7}, r"model_args.num_classes 7 contradicts num_classes 1000")):
        (tmp_path / "repo" / "config.json").write_text(json.dumps({**config, "model_args": bad}))
        with pytest.raises(CorruptCheckpointError, match=match):
            hgzoo.create_model(f"local-dir:{tmp_path / 'repo'}")


def test_card_names_the_runs_init_crop_and_flip(run, tmp_path):
    """A run from timm's initialization, with no random crop and no flip (the 15-minute Fashion-MNIST recipe's
    kind of settings), is described as such: its card neither claims PaddleClas's initialization nor hides a
    setting turned off against its default."""
    ckpt = safe_load(run)
    assert {"init", "train_crop", "crop_scale_min", "hflip", "opt"} <= set(ckpt["config"])  # train.py records them
    ckpt["config"].update(init="timm", train_crop="timm", crop_scale_min=1.0, hflip=0.0, mixup_alpha=0.0)
    torch.save(ckpt, tmp_path / "best.pt")
    readme = (hgzoo.save_pretrained(tmp_path / "best.pt", tmp_path / "folder") / "README.md").read_text()
    assert "timm's random initialization" in readme and "PaddleClas's random initialization" not in readme
    for row in ("| init | timm |", "| train_crop | timm |", "| crop_scale_min | 1.0 |", "| hflip | 0.0 |",
                "| opt | momentum |"):
        assert row in readme, row
    assert "| mixup_alpha |" not in readme and "| pretrained |" not in readme  # off, as by default
