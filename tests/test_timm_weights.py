"""timm's Hub repos as weight sources, and timm state dicts both ways, checked against timm's own models and files.

The local server (tests/local_server.py) plays the Hub and Baidu's file server. Its timm repos are written by timm
itself (``timm.models.save_for_hf``: ``model.safetensors`` + ``config.json``) from timm's models with random weights
made to carry the input (BN statistics calibrated on scikit-image's photos). Each load runs in a fresh process, so
that HF_ENDPOINT / HF_HUB_OFFLINE / HF_HOME are read the way huggingface_hub reads them (at import).
"""
from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import calibrate, relative_error
from image_samples import photos
from local_server import LocalServer
from torch import nn

import hgzoo
from hgzoo._registry import model_entrypoint, paddle_name
from hgzoo.convert import CheckpointMismatchError
from hgzoo.convert.timm import dropout_scale, find_timm_arch, hgzoo_to_timm, timm_key_maps, timm_to_hgzoo
from hgzoo.pretrained import PADDLE_BUCKET

timm = pytest.importorskip("timm", reason="timm (the `test` extra) is the reference for its own layout")

# One tag of each family timm has (PP-HGNet v1's key map differs from v2's only in three renames, tested below), and
# the timm repo each is served from.
SERVED = {
    "pphgnetv2_b0.ssld_stage2_ft_in1k": "hgnetv2_b0.ssld_stage2_ft_in1k",
    "pplcnetv2_small.paddle_in1k": "lcnetv2_small.paddle_in1k",  # PaddleClas's dropout: logits differ by (1 - p)
    "hrnet_w18_c.ms_in1k": "hrnet_w18.ms_in1k",  # head conv biases folded into the BNs
    "resnet18_vd.ra2_in1k": "resnet18d.ra2_in1k",  # identity projection filled in
}

LOAD = """
import json, sys, numpy as np, torch, hgzoo
spec = json.loads(sys.argv[1])
x = torch.from_numpy(np.load(spec["x"]))
out = {}
for tag in spec["tags"]:
    m = hgzoo.create_model(tag, pretrained=True, progress=False).eval()
    with torch.no_grad():
        out[tag] = m(x).numpy()
np.savez(spec["out"], **out)
if spec.get("convert"):
    from hgzoo.cli.convert import main
    sys.exit(main(["--from", "timm", "--input", spec["convert"][0], "--output", spec["convert"][1]]))
"""

PINNED = """
import dataclasses, json, sys, hgzoo
from hgzoo._builder import load_pretrained
tag, cases = sys.argv[1], json.loads(sys.argv[2])
model = hgzoo.create_model(tag.split(".")[0])
for name, field, value in cases:
    cfg = hgzoo.get_pretrained_cfg(tag)
    cfg = dataclasses.replace(cfg, sources=tuple(dataclasses.replace(s, **{field: value}) for s in cfg.sources))
    try:
        load_pretrained(model, cfg, progress=False, cache_dir=f"{sys.argv[3]}/{name}")
        print(name, "loaded")
    except Exception as e:
        print(name, type(e).__name__, " ".join(str(e).split()))
"""


def _env(tmp: Path, url: str, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HGZOO_"))}
    env.update({"HF_HOME": str(tmp / "hf"), "HGZOO_CACHE": str(tmp / "cache"), "HF_ENDPOINT": url,
                "HGZOO_PADDLE_MIRROR": f"{url}/paddle", "HF_HUB_DISABLE_TELEMETRY": "1", **extra})
    return env


def _run(script: str, args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """Three real photos, preprocessed as PaddleClas does but at 128 px (HRNet's forward at 224 costs seconds here;
    128 keeps every stride-32 map whole, which timm's HRNet needs)."""
    from hgzoo.data import create_transform

    t = create_transform(crop_size=128)
    return torch.stack([t(img) for img in photos(("chelsea", "astronaut", "coffee")).values()])


def calibrated_timm(name: str, images: torch.Tensor, seed: int = 0) -> nn.Module:
    """timm's ``name`` with random weights that carry the input (:func:`conftest.calibrate`: BN statistics of the
    photos, non-zero biases everywhere, HRNet's head conv biases and the fc bias included), the fc weights spread
    out: fewer near-ties between classes."""
    model = calibrate(timm.create_model(name), images, seed)
    with torch.no_grad():
        model.get_classifier().weight.mul_(10)
    return model


def timm_logits(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        y = model(x).numpy()
    assert np.abs(y[0] - y[1]).max() > 0.1 * y.std(), "the random weights do not carry the input"
    return y


# --- every tag's sources are exact ---------------------------------------------------------------------------------

@pytest.mark.parametrize("tag", hgzoo.list_pretrained())
def test_every_tag_names_exact_sources(tag):
    """A tag asks timm's repo of the same weights (named by timm 1.0.31's own default_cfgs) and the official Paddle
    URL, and nothing else: no organisation anyone else can claim."""
    cfg = hgzoo.get_pretrained_cfg(tag)
    assert cfg.sources
    for s in cfg.sources:
        assert "hgzoo" not in s.location.lower()
        if s.kind == "hf-hub":
            timm_name = s.location.removeprefix("timm/")
            assert s.organisation == "timm" and s.filename == "model.safetensors" and s.layout == "timm"
            assert timm_name in timm.list_pretrained(), f"{s.location} is not one of timm's pretrained tags"
            assert timm.models.get_pretrained_cfg(timm_name).hf_hub_id == s.location
            assert s.timm_arch == timm_name.split(".")[0] and find_timm_arch(s.timm_arch)[1].hgzoo == cfg.architecture
        else:
            assert s.kind == "url" and s.layout == "paddle" and s.location.startswith(PADDLE_BUCKET)
            assert Path(s.location).name.endswith("_pretrained.pdparams")
            assert paddle_name(cfg.architecture) in Path(s.location).name
    if cfg.paddle_url is None:  # timm's trainings and HRNet's originals: timm's own preprocessing for them
        timm_cfg = timm.models.get_pretrained_cfg(cfg.sources[0].location.removeprefix("timm/"))
        size = timm_cfg.input_size[-1]
        assert (cfg.crop_size, cfg.resize_short) == (size, math.floor(size / timm_cfg.crop_pct))
        assert (cfg.interpolation, cfg.mean, cfg.std) == (timm_cfg.interpolation, timm_cfg.mean, timm_cfg.std)
        assert (cfg.resize_backend, cfg.size_rounding) == ("pil", "torchvision")
        # Trained with timm's dropout: converted by the model's own p, so the model must have none at eval.
        assert all(s.dropout_convention == "timm" for s in cfg.sources)
        assert inspect.signature(model_entrypoint(cfg.architecture)).parameters["drop_rate"].default == 0.0
    else:  # timm's mirrors of PaddleClas's weights hold PaddleClas's tensors: loaded as they are
        assert all(s.dropout_convention == "paddle" for s in cfg.sources)


def test_timm_tags_the_issue_lists_are_all_used():
    """Every timm tag that holds PaddleClas's weights is a source of the hgzoo tag of the same weights."""
    paddle_in_timm = [t for t in timm.list_pretrained("hgnet*") + timm.list_pretrained("lcnetv2*")
                      + timm.list_pretrained("hrnet_w*_ssld*")]
    used = {s.location.removeprefix("timm/") for t in hgzoo.list_pretrained()
            for s in hgzoo.get_pretrained_cfg(t).sources if s.kind == "hf-hub"}
    assert len(paddle_in_timm) == 25 and set(paddle_in_timm) <= used
    assert {f"hrnet_w{w}.ms_in1k" for w in (18, 30, 32, 40, 44, 48, 64)} <= used


# --- the key maps ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", [a for m in timm_key_maps() for a in m.archs], ids=lambda a: a.timm)
def test_every_timm_variant_maps_key_for_key(arch):
    """timm's keys of every variant become exactly hgzoo's, shapes included, and back (on the meta device: no
    weights are made). The only differences are the declared ones: folded biases and the filled-in identity."""
    key_map, _ = find_timm_arch(arch.timm)
    t = {k: tuple(v.shape) for k, v in timm.create_model(arch.timm, device="meta").state_dict().items()}
    with torch.device("meta"):
        h = {k: tuple(v.shape) for k, v in hgzoo.create_model(arch.hgzoo).state_dict().items()}
    forward = {key_map.to_hgzoo(k): k for k in t}
    assert len(forward) == len(t)
    folded = {k for k in forward if k not in h and key_map.fold_target(k) is not None}
    filled = {k for k in h if any(k.startswith(p) for p in key_map.identity_shortcuts) and k not in forward}
    assert bool(folded) == arch.head_conv_bias and bool(filled) == arch.identity_shortcut
    assert set(forward) - folded == set(h) - filled
    assert all(h[k] == t[forward[k]] for k in set(forward) - folded)
    backward = {key_map.to_timm(k) for k in h if k not in filled}
    assert backward == set(t) - {forward[k] for k in folded}


# One variant per family and per non-rename case (the key maps of every variant: the meta-device test above).
FAMILIES = ["hgnet_tiny", "hgnetv2_b0", "lcnetv2_small", "resnet18d", "hrnet_w18"]


@pytest.mark.parametrize("timm_name", FAMILIES)
def test_timm_to_hgzoo_to_timm_is_exact(timm_name, images):
    """timm's model → hgzoo gives timm's logits; hgzoo → timm gives back a timm model with the same logits, and for
    the pure renames the same tensors. (Exact up to float rounding: the two add branches in different orders,
    about 1e-6 relative.) ResNet-d is compared at an odd size too (97x161): the avg-pool shortcut
    (ceil mode, padding not counted) is the same as PaddleClas's."""
    tm = calibrated_timm(timm_name, images)
    arch = find_timm_arch(timm_name)[1]
    y_t = timm_logits(tm, images)
    hm = hgzoo.create_model(arch.hgzoo).eval()
    hm.load_state_dict(timm_to_hgzoo(tm.state_dict(), hm))
    with torch.no_grad():
        y_h = hm(images).numpy()
    assert relative_error(y_h, y_t) < 1e-5
    back = hgzoo_to_timm(hm.state_dict(), hm, arch.hgzoo, timm_name)
    tm2 = timm.create_model(timm_name).eval()
    tm2.load_state_dict(back)  # strict
    with torch.no_grad():
        assert relative_error(tm2(images).numpy(), y_t) < 1e-5
    original = tm.state_dict()
    if not arch.head_conv_bias:  # HRNet's biases come back as zeros with the means shifted: same function
        for k, v in back.items():
            if not k.endswith("num_batches_tracked"):  # a training counter, not a weight: hgzoo starts it at 0
                torch.testing.assert_close(v, original[k], rtol=1e-6, atol=0)
    if timm_name.startswith("resnet"):
        odd = torch.nn.functional.interpolate(images, size=(97, 161), mode="bilinear")
        with torch.no_grad():
            assert relative_error(hm(odd).numpy(), tm(odd).numpy()) < 1e-5


def test_dropout_convention(images):
    """PaddleClas's PP-LCNetV2 (and PPHGNet_base) heads multiply by 1 - p = 0.8 at eval, timm's do not. A timm-trained
    checkpoint gets its fc weight divided by 0.8: hgzoo gives timm's logits exactly (so the same top-1). A file of
    PaddleClas's tensors (timm's mirror of Paddle's weights) is loaded as it is: hgzoo gives PaddleClas's logits,
    whose W·x part is 0.8 times timm's (the bias is not scaled: it comes after the dropout)."""
    tm = calibrated_timm("lcnetv2_small", images)
    y_t, b = timm_logits(tm, images), tm.get_classifier().bias.detach().numpy()
    hm = hgzoo.create_model("pplcnetv2_small").eval()
    assert dropout_scale(hm) == pytest.approx(0.8)
    with torch.device("meta"):
        assert dropout_scale(hgzoo.create_model("pphgnet_base")) == pytest.approx(0.8)
        assert dropout_scale(hgzoo.create_model("pphgnet_small")) == 1.0
    hm.load_state_dict(timm_to_hgzoo(tm.state_dict(), hm, dropout_convention="timm"))
    with torch.no_grad():
        y_timm_conv = hm(images).numpy()
    assert relative_error(y_timm_conv, y_t) < 1e-6
    assert (y_timm_conv.argmax(1) == y_t.argmax(1)).all()
    hm.load_state_dict(timm_to_hgzoo(tm.state_dict(), hm, dropout_convention="paddle"))
    with torch.no_grad():
        y_paddle_conv = hm(images).numpy()
    assert relative_error(y_paddle_conv - b, 0.8 * (y_t - b)) < 1e-6
    assert relative_error(y_paddle_conv, y_t) > 1e-2  # the factor is really there


def test_resnet200d_is_refused_by_name(tmp_path):
    from hgzoo.cli.convert import main

    with pytest.raises(ValueError, match="3-24-36-3.*3-12-48-3"):
        find_timm_arch("resnet200d")
    t = timm.create_model("resnet200d", device="meta").state_dict()
    with torch.device("meta"):
        h = hgzoo.create_model("resnet200_vd")
    with pytest.raises(CheckpointMismatchError, match="resnet200d"):
        timm_to_hgzoo(t, h)
    f = tmp_path / "w.safetensors"
    f.write_bytes(b"x" * 16)
    assert main(["--from", "timm", "--model", "resnet200d", "--input", str(f), "--output", str(tmp_path / "o")]) == 2


def test_projection_that_is_not_the_identity_is_refused(tmp_path, capsys):
    from safetensors.torch import save_file

    from hgzoo.cli.convert import main

    model = hgzoo.create_model("resnet18_vd")  # PaddleClas's init: a projection that is no identity
    with pytest.raises(ValueError, match="not the identity"):
        hgzoo_to_timm(model.state_dict(), model, "resnet18_vd", "resnet18d")
    save_file(model.state_dict(), str(tmp_path / "r18.safetensors"))
    code = main(["--to", "timm", "--model", "resnet18_vd", "--input", str(tmp_path / "r18.safetensors"),
                 "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "not the identity" in err[0]


def test_pretrained_file_recognises_timm_checkpoints(tmp_path, images):
    """A timm state dict (safetensors, a .pth, a timm training checkpoint) loads as it is: its layout is recognised
    by its keys and converted."""
    from safetensors.torch import save_file

    tm = calibrated_timm("resnet18d", images)
    y_t = timm_logits(tm, images)
    save_file(tm.state_dict(), str(tmp_path / "r.safetensors"))
    torch.save(tm.state_dict(), tmp_path / "r.pth")
    import argparse

    torch.save({"epoch": 3, "arch": "resnet18d", "state_dict": tm.state_dict(), "args": argparse.Namespace(lr=0.1)},
               tmp_path / "r.pth.tar")
    for f in ("r.safetensors", "r.pth", "r.pth.tar"):
        hm = hgzoo.create_model("resnet18_vd", pretrained_file=tmp_path / f).eval()
        with torch.no_grad():
            assert relative_error(hm(images).numpy(), y_t) < 1e-6, f


def test_convert_cli_from_timm_and_back(tmp_path, images):
    """``--from timm`` turns timm's own folder into an hgzoo one; ``--to timm`` writes a folder timm loads
    (``local-dir:``) and whose logits are the original's."""
    from hgzoo.cli.convert import main

    for name, arch in (("resnet18d", "resnet18_vd"),):
        tm = calibrated_timm(name, images)
        y_t = timm_logits(tm, images)
        timm.models.save_for_hf(tm, tmp_path / name, safe_serialization=True)
        hz, back = tmp_path / f"{name}_hgzoo", tmp_path / f"{name}_timm"
        assert main(["--from", "timm", "--input", str(tmp_path / name / "model.safetensors"), "--output", str(hz)]) == 0
        config = json.loads((hz / "config.json").read_text())
        assert config["architecture"] == arch and config["pretrained_cfg"]["size_rounding"] == "torchvision"
        card = (hz / "README.md").read_text()  # the card says where the weights came from
        assert "Converted from the timm checkpoint" in card and "Converted from PaddleClas" not in card
        hm = hgzoo.create_model(arch, pretrained_file=hz / "model.safetensors").eval()
        with torch.no_grad():
            assert relative_error(hm(images).numpy(), y_t) < 1e-6
        assert main(["--to", "timm", "--model", arch, "--timm-model", name, "--input", str(hz / "model.safetensors"),
                     "--output", str(back)]) == 0
        tm2 = timm.create_model(f"local-dir:{back}", pretrained=True).eval()
        with torch.no_grad():
            assert relative_error(tm2(images).numpy(), y_t) < 1e-6


# --- preprocessing ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("tag", ["hrnet_w18_c.ms_in1k", "resnet50_vd.a3_in1k", "resnet18_vd.ra4_e3600_r224_in1k",
                                 "resnet101_vd.ra2_in1k"])
def test_create_transform_reproduces_timms_eval_transform(tag):
    """hgzoo's transform for a timm tag against ``timm.data.create_transform`` on real photos: the same resize
    size and crop box (torchvision's rounding), pixels within two 8-bit levels (torch's antialiased kernels against
    Pillow's), mean difference a small fraction of a level."""
    from PIL import Image

    from hgzoo.data import create_transform

    cfg = hgzoo.get_pretrained_cfg(tag)
    timm_name = cfg.sources[0].location.removeprefix("timm/")
    theirs = timm.data.create_transform(**timm.data.resolve_data_config(
        pretrained_cfg=timm.models.get_pretrained_cfg(timm_name).to_dict()))
    ours = create_transform(cfg)
    level = 1 / 255 / min(cfg.std)
    for name, img in photos().items():
        pil = Image.fromarray(img)
        a, b = ours(pil), theirs(pil)
        assert a.shape == b.shape == (3, cfg.crop_size, cfg.crop_size), name
        diff = (a - b).abs()
        assert diff.max() <= 2.01 * level and diff.mean() < 0.2 * level, (name, diff.max() / level, diff.mean() / level)


def test_torchvision_rounding_is_torchvisions():
    from torchvision.transforms import v2

    from hgzoo.data import PaddleCenterCrop, ResizeShort

    for h, w in ((300, 451), (451, 300), (375, 500), (333, 333), (257, 193)):
        img = torch.zeros(3, h, w, dtype=torch.uint8)
        assert tuple(v2.Resize(256)(img).shape[1:]) == ResizeShort(256, rounding="torchvision").output_size(h, w)
        x = torch.arange(h * w, dtype=torch.float32).reshape(1, h, w)
        torch.testing.assert_close(PaddleCenterCrop(192, rounding="torchvision")(x), v2.CenterCrop(192)(x))
    assert ResizeShort(256).output_size(300, 451) == (256, 385)  # PaddleClas rounds: 384.85
    assert ResizeShort(256, rounding="torchvision").output_size(300, 451) == (256, 384)


# --- loading tags from the local Hub ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def timm_repos(tmp_path_factory, images):
    """For each served tag: timm's repo folder (written by timm) and timm's logits on the photos."""
    root = tmp_path_factory.mktemp("timm_repos")
    np.save(root / "x.npy", images.numpy())
    repos = {}
    for tag, timm_name in SERVED.items():
        tm = calibrated_timm(timm_name, images, seed=len(repos))
        timm.models.save_for_hf(tm, root / timm_name, safe_serialization=True)
        repos[tag] = (root / timm_name, timm_logits(tm, images), tm.get_classifier().bias.detach().numpy())
    return root, repos


def test_tags_load_from_timms_repos_and_give_timms_logits(timm_repos, tmp_path):
    """Each tag loads from ``timm/<tag>`` and nowhere else (a repo under another organisation, here ``hgzoo/``, is
    never asked for); its logits are timm's (PP-LCNetV2: up to PaddleClas's 0.8 on W·x); the cache records each
    file's sha256, source and commit; offline, the converted cache alone serves."""
    root, repos = timm_repos
    with LocalServer() as server:
        for tag, (folder, _, _) in repos.items():
            server.add_hub_repo(f"timm/{SERVED[tag]}", folder)
            server.add_hub_repo(f"hgzoo/{tag}", repos["resnet18_vd.ra2_in1k"][0])  # a squatter's repo
        spec = {"x": str(root / "x.npy"), "out": str(tmp_path / "y.npz"),
                "tags": [*repos, "hf-hub:timm/resnet18d.ra2_in1k"],  # a timm repo by name: hgzoo's network
                "convert": ["hf-hub:timm/resnet18d.ra2_in1k", str(tmp_path / "converted_repo")]}
        proc = _run(LOAD, [json.dumps(spec)], _env(tmp_path, server.url))
        assert proc.returncode == 0, proc.stderr[-3000:]
        asked = server.requested()
    assert asked and all(any(p.startswith(f"/timm/{t}/resolve/") for t in SERVED.values()) for p in asked), asked
    y = np.load(tmp_path / "y.npz")
    np.testing.assert_array_equal(y["hf-hub:timm/resnet18d.ra2_in1k"], y["resnet18_vd.ra2_in1k"])
    for tag, (folder, y_t, b) in repos.items():
        if tag.startswith("pplcnetv2"):  # PaddleClas's tensors, PaddleClas's definition
            assert relative_error(y[tag] - b, 0.8 * (y_t - b)) < 1e-5, tag
        else:
            assert relative_error(y[tag], y_t) < 1e-4, tag  # the parity contract; HRNet sums in another order
        record = json.loads((tmp_path / "cache" / "converted" / f"{tag}.json").read_text())
        served = (folder / "model.safetensors").read_bytes()
        assert record["sha256"] == hashlib.sha256(served).hexdigest() and record["revision"] == LocalServer.COMMIT
        assert record["source"]["location"] == f"timm/{SERVED[tag]}"
    # --from timm hf-hub:timm/... wrote an hgzoo folder with the same weights.
    hm = hgzoo.create_model("resnet18_vd", pretrained_file=tmp_path / "converted_repo" / "model.safetensors").eval()
    with torch.no_grad():
        assert relative_error(hm(torch.from_numpy(np.load(root / "x.npy"))).numpy(), y["resnet18_vd.ra2_in1k"]) < 1e-6
    spec["out"], spec["convert"] = str(tmp_path / "y_offline.npz"), None
    proc = _run(LOAD, [json.dumps(spec)], _env(tmp_path, "http://127.0.0.1:9", HF_HUB_OFFLINE="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    y_off = np.load(tmp_path / "y_offline.npz")
    for tag in spec["tags"]:
        np.testing.assert_array_equal(y[tag], y_off[tag])


def test_pins_refuse_another_file(timm_repos, tmp_path):
    """A tag that pins a sha256 or a Hub commit refuses a file that is not that one, naming both values; with the
    right pins it loads."""
    root, repos = timm_repos
    tag = "resnet18_vd.ra2_in1k"
    repo = f"timm/{SERVED[tag]}"
    served = (repos[tag][0] / "model.safetensors").read_bytes()
    good_sha, other = hashlib.sha256(served).hexdigest(), "f" * 40
    with LocalServer() as server:
        server.add_hub_repo(repo, repos[tag][0])
        # A mirror that answers a request for commit `other` with another commit's file.
        server.files[f"/{repo}/resolve/{other}/model.safetensors"] = served
        cases = [("sha", "sha256", "0" * 64), ("commit", "revision", other), ("good", "sha256", good_sha)]
        proc = _run(PINNED, [tag, json.dumps(cases), str(tmp_path / "caches")], _env(tmp_path, server.url))
        assert proc.returncode == 0, proc.stderr[-3000:]
    outs = dict(line.split(" ", 1) for line in proc.stdout.strip().splitlines())
    assert outs["sha"].startswith("WeightsIntegrityError") and "0" * 64 in outs["sha"] and good_sha in outs["sha"]
    assert outs["commit"].startswith("WeightsIntegrityError") and other in outs["commit"]
    assert LocalServer.COMMIT in outs["commit"]
    assert outs["good"] == "loaded"
    # cache_dir= holds both the Hub download and the converted file; the default caches were not touched.
    good = tmp_path / "caches" / "good"
    assert (good / "converted" / f"{tag}.safetensors").is_file()
    assert list(good.glob(f"models--timm--{SERVED[tag]}/snapshots/*/model.safetensors"))
    assert not (tmp_path / "cache").exists() and not (tmp_path / "hf" / "hub").exists()


def test_missing_timm_repo_falls_through_to_the_paddle_url(paddle_reference, tmp_path):
    """No timm repo (a 404), then an unreachable Hub: both times the official Paddle file is used, and the result is
    PaddleClas's own logits."""
    pdparams, ref = paddle_reference.get("pplcnetv2_small")
    x = tmp_path / "x.npy"
    np.save(x, ref["x_193x257"])
    tag, paddle_file = "pplcnetv2_small.paddle_in1k", "PPLCNetV2_small_pretrained.pdparams"
    with LocalServer() as server:
        server.files[f"/paddle/{paddle_file}"] = pdparams.read_bytes()
        spec = {"x": str(x), "out": str(tmp_path / "y.npz"), "tags": [tag]}
        proc = _run(LOAD, [json.dumps(spec)], _env(tmp_path / "a", server.url))
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert server.requested("/timm/") and server.requested(f"/paddle/{paddle_file}")
        assert set(server.requested()) <= {f"/timm/{SERVED[tag]}/resolve/main/model.safetensors",
                                           f"/paddle/{paddle_file}"}
        env = _env(tmp_path / "b", "http://127.0.0.1:9", HGZOO_PADDLE_MIRROR=f"{server.url}/paddle")
        spec["out"] = str(tmp_path / "y2.npz")
        proc = _run(LOAD, [json.dumps(spec)], env)
        assert proc.returncode == 0, proc.stderr[-3000:]
    for out in ("y.npz", "y2.npz"):
        assert relative_error(np.load(tmp_path / out)[tag], ref["y_193x257"]) < 1e-4


def test_hgzoo_config_round_trips_sources():
    from hgzoo.pretrained import pretrained_cfg_from_dict

    for tag in ("pphgnet_small.ssld_in1k", "hrnet_w18_c.ms_in1k"):
        cfg = hgzoo.get_pretrained_cfg(tag)
        assert pretrained_cfg_from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert dataclasses.replace(cfg, sources=()).paddle_url is None


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_timm_cli_bad_input_gets_one_line_and_exit_2(tmp_path, capsys):
    """Hostile or wrong input to ``--from timm`` / ``--to timm``: one ``error:`` line naming the problem, exit 2,
    and nothing runs from a file."""
    import pickle

    from hgzoo.cli.convert import main

    marker = tmp_path / "pwned"
    torch.save({"state_dict": {"conv1.0.weight": _Payload(marker)}}, tmp_path / "evil.pth")
    (tmp_path / "w.pdparams").write_bytes(pickle.dumps({"conv1_1_weights": np.zeros(2, np.float32)}, protocol=4))
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "w.safetensors"))
    out, w = str(tmp_path / "out"), str(tmp_path / "w.safetensors")
    from_timm = ["--from", "timm", "--model", "resnet18d", "--input"]
    cases = {
        "code in a .pth": ([*from_timm, str(tmp_path / "evil.pth")], "evil.pth"),
        "a Paddle file": ([*from_timm, str(tmp_path / "w.pdparams")], "Paddle .pdparams"),
        "no network named": (["--from", "timm", "--input", w], "--model"),
        "no timm counterpart": (["--to", "timm", "--model", "se_hrnet_w64_c", "--input", w], "no timm counterpart"),
        "wrong pair": (["--to", "timm", "--model", "hrnet_w18_c", "--timm-model", "hrnet_w48_ssld", "--input", w],
                       "hrnet_w48_c, not hrnet_w18_c"),
        "missing file": ([*from_timm, str(tmp_path / "nope.pth")], "nope.pth"),
    }
    for what, (argv, expected) in cases.items():
        code = main([*argv, "--output", out])
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert code == 2 and len(err) == 1 and err[0].startswith("error:") and expected in err[0], (what, err)
    assert not marker.exists()
    with pytest.raises(SystemExit) as e:
        main(["--from", "timm", "--to", "timm", "--input", w, "--output", out])
    assert e.value.code == 2


def test_which_cached_files_may_serve_a_tag(tmp_path):
    """A converted file serves its tag while its record names a source the tag lists and meets its pins; a file put
    there by hand (no record) serves like a pretrained_file, unless the tag pins its source."""
    from safetensors.torch import save_file

    from hgzoo.hub import cached_problem

    cfg = hgzoo.get_pretrained_cfg("resnet18_vd.ra2_in1k")
    path = tmp_path / "converted" / f"{cfg.name}.safetensors"
    path.parent.mkdir()
    save_file({"w": torch.zeros(1)}, str(path))
    assert cached_problem(path, cfg) is None
    pinned = dataclasses.replace(cfg, sources=(dataclasses.replace(cfg.sources[0], sha256="a" * 64),))
    assert "records no source" in cached_problem(path, pinned)
    record = {"source": {"location": "timm/resnet18d.ra2_in1k"}, "sha256": "b" * 64, "revision": None}
    path.with_suffix(".json").write_text(json.dumps(record))
    assert cached_problem(path, cfg) is None
    assert "a" * 64 in cached_problem(path, pinned) and "b" * 64 in cached_problem(path, pinned)
    record["source"]["location"] = "hgzoo/resnet18_vd.ra2_in1k"
    path.with_suffix(".json").write_text(json.dumps(record))
    assert "does not list" in cached_problem(path, cfg)


def test_convert_from_timm_keeps_a_one_channel_stem(tmp_path):
    """A timm training on grayscale images (``in_chans=1``, 10 classes) converts: the hgzoo folder declares one
    input channel and loads (``local-dir:``) with timm's logits (PP-LCNetV2: PaddleClas's 0.8 on the fc input)."""
    import timm

    from hgzoo.cli.convert import main

    torch.manual_seed(0)
    tm = timm.create_model("lcnetv2_small", in_chans=1, num_classes=10).eval()
    for p in tm.get_classifier().parameters():  # timm starts the classifier at zero: give it logits to compare
        nn.init.normal_(p, std=0.05)
    torch.save(tm.state_dict(), tmp_path / "gray.pth")
    assert main(["--from", "timm", "--model", "pplcnetv2_small", "--input", str(tmp_path / "gray.pth"),
                 "--output", str(tmp_path / "hub")]) == 0
    config = json.loads((tmp_path / "hub" / "config.json").read_text())
    assert config["model_args"] == {"in_chans": 1} and config["num_classes"] == 10
    hm = hgzoo.create_model(f"local-dir:{tmp_path / 'hub'}", pretrained=True).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        bias = tm.get_classifier().bias
        assert relative_error((hm(x) - bias).numpy(), (0.8 * (tm(x) - bias)).numpy()) < 1e-5
