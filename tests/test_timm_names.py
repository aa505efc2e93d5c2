"""Weights and checkpoints by timm's names (issue 26), each checked against timm 1.0.31 on the same files.

* ``hgzoo.create_model("hf-hub:timm/<name>")`` on timm's own repos: a Hugging Face cache pre-filled with repos that
  timm itself wrote (``timm.models.save_for_hf``), read offline by timm and by hgzoo in one fresh process;
* ``timm.create_model("local-dir:<hgzoo folder>")`` after ``register()``, and ``timm.list_pretrained()``;
* ``pretrained_cfg=`` as timm takes it;
* EMA weights: timm's own ``CheckpointSaver`` files through ``checkpoint_path=`` and ``load_checkpoint``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import calibrate, relative_error

import hgzoo
from hgzoo._files import CheckpointMismatchError
from hgzoo._registry import UnknownModelError, pretrained_cfgs

timm = pytest.importorskip("timm", reason="timm (the `test` extra) is the reference for its own names and files")
import hgzoo.timm_compat  # noqa: E402  (after timm is known to be there)

pytestmark = pytest.mark.usefixtures("one_thread")

COMMIT = "0123456789abcdef0123456789abcdef01234567"
#: timm's repos of networks hgzoo has (one per family, and both HRNet variants' names), each with hgzoo's network.
REPOS = {
    "hgnet_small.ssld_in1k": "pphgnet_small",
    "hgnetv2_b0.ssld_stage2_ft_in1k": "pphgnetv2_b0",
    "lcnetv2_small.paddle_in1k": "pplcnetv2_small",  # a head that scales by 1 - p at eval in hgzoo, not in timm
    "hrnet_w18_ssld.paddle_in1k": "hrnet_w18_c",
    "resnet18d.ra2_in1k": "resnet18_vd",  # no first-block projection in timm: filled with the identity
}
SIZE = 64

HUB_LOAD = """
import json, sys, numpy as np, torch, timm, hgzoo
spec = json.loads(sys.argv[1])
x = torch.from_numpy(np.load(spec["x"]))
out, archs = {}, {}
for name in spec["names"]:
    with torch.no_grad():
        out["timm/" + name] = timm.create_model("hf-hub:timm/" + name, pretrained=True).eval()(x).numpy()
        hm = hgzoo.create_model("hf-hub:timm/" + name, pretrained=True).eval()
        out["hgzoo/" + name] = hm(x).numpy()
    archs[name] = hm.pretrained_cfg.architecture
for name in spec["refused"]:
    try:
        hgzoo.create_model("hf-hub:timm/" + name, pretrained=True)
        archs[name] = "loaded"
    except Exception as e:
        archs[name] = type(e).__name__ + ": " + str(e).splitlines()[0]
np.savez(spec["out"], **out)
print(json.dumps(archs))
"""


def _images(n: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, SIZE, SIZE, generator=g) + torch.linspace(-1, 1, SIZE)  # not centred: BN must matter


def _put_in_cache(hub: Path, repo: str, folder_writer) -> Path:
    """A repo in the Hugging Face cache layout (``models--ORG--NAME/snapshots/<commit>``, ``refs/main``), as a
    download would have left it: what ``HF_HUB_OFFLINE=1`` reads."""
    root = hub / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / COMMIT
    folder_writer(snapshot)
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(COMMIT)
    return snapshot


@pytest.fixture(scope="module")
def timm_hub(tmp_path_factory) -> tuple[Path, dict]:
    """HF_HOME with timm's repos as timm writes them; two extra repos show the comparison can fail: ``other`` has
    another seed's weights, ``mislabelled`` names hgnet_tiny over hgnet_small's weights; ``resnet200d`` is a config
    naming timm's network that hgzoo refuses."""
    home = tmp_path_factory.mktemp("hf")
    hub = home / "hub"
    x = _images()
    np.save(home / "x.npy", x.numpy())
    for i, name in enumerate([*REPOS, "lcnetv2_small.other"]):
        tm = calibrate(timm.create_model(name.partition(".")[0]), x, seed=i)
        _put_in_cache(hub, f"timm/{name}", lambda d, tm=tm: timm.models.save_for_hf(tm, d, safe_serialization=True))
    small = hub / "models--timm--hgnet_small.ssld_in1k" / "snapshots" / COMMIT

    def mislabelled(d: Path) -> None:
        d.mkdir(parents=True)
        config = json.loads((small / "config.json").read_text())
        (d / "config.json").write_text(json.dumps({**config, "architecture": "hgnet_tiny"}))
        (d / "model.safetensors").write_bytes((small / "model.safetensors").read_bytes())

    def resnet200d(d: Path) -> None:
        d.mkdir(parents=True)
        src = hub / "models--timm--resnet18d.ra2_in1k" / "snapshots" / COMMIT
        config = json.loads((src / "config.json").read_text())
        (d / "config.json").write_text(json.dumps({**config, "architecture": "resnet200d"}))
        (d / "model.safetensors").write_bytes((src / "model.safetensors").read_bytes())

    _put_in_cache(hub, "timm/hgnet_tiny.mislabelled", mislabelled)
    _put_in_cache(hub, "timm/resnet200d.ra2_in1k", resnet200d)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HGZOO_"))}
    env.update(HF_HOME=str(home), HF_HUB_OFFLINE="1", HGZOO_CACHE=str(home / "hgzoo"), OMP_NUM_THREADS="1")
    spec = {"x": str(home / "x.npy"), "out": str(home / "y.npz"), "names": [*REPOS, "lcnetv2_small.other"],
            "refused": ["hgnet_tiny.mislabelled", "resnet200d.ra2_in1k"]}
    proc = subprocess.run([sys.executable, "-c", HUB_LOAD, json.dumps(spec)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return home, {"y": dict(np.load(home / "y.npz")), "archs": json.loads(proc.stdout.splitlines()[-1])}


@pytest.mark.parametrize("name", REPOS)
def test_timm_repo_by_name_gives_timms_logits(timm_hub, name):
    """``create_model("hf-hub:timm/<name>")``, offline from the Hub cache, is hgzoo's network with timm's logits."""
    _, r = timm_hub
    assert r["archs"][name] == REPOS[name]
    y_timm = r["y"][f"timm/{name}"]
    assert np.abs(y_timm[0] - y_timm[1]).max() > 0.1 * y_timm.std(), "the random weights do not carry the input"
    assert relative_error(r["y"][f"hgzoo/{name}"], y_timm) < 1e-4


def test_the_comparison_can_fail(timm_hub):
    """Another seed's weights of the same network are told apart, and a config naming another architecture over
    the weights, or timm's resnet200d, is refused with the reason."""
    _, r = timm_hub
    assert relative_error(r["y"]["hgzoo/lcnetv2_small.other"], r["y"]["timm/lcnetv2_small.paddle_in1k"]) > 1e-2
    assert r["archs"]["hgnet_tiny.mislabelled"].startswith(CheckpointMismatchError.__name__)
    refused = r["archs"]["resnet200d.ra2_in1k"]
    assert refused.startswith("ValueError") and "3-24-36-3" in refused and "3-12-48-3" in refused, refused


def test_timm_loads_an_hgzoo_folder_by_local_dir(tmp_path):
    """After ``register()``, timm's ``local-dir:`` loads a folder hgzoo wrote (its tag, ``custom``, is not a
    registered tag) with the saved weights; ``pretrained=False`` does not load them (the check can fail)."""
    hgzoo.timm_compat.register()
    x = _images(2)
    model = calibrate(hgzoo.create_model("pplcnetv2_small", num_classes=7), x, seed=3)
    hgzoo.save_pretrained(model, tmp_path / "folder")
    config = json.loads((tmp_path / "folder" / "config.json").read_text())
    assert config["pretrained_cfg"]["tag"] not in {c.tag for c in pretrained_cfgs("pplcnetv2_small")}
    tm = timm.create_model(f"local-dir:{tmp_path / 'folder'}", pretrained=True).eval()
    with torch.no_grad():
        assert tm.num_classes == 7 and torch.equal(tm(x), model(x))
        fresh = timm.create_model(f"local-dir:{tmp_path / 'folder'}", pretrained=False).eval()
        assert fresh.num_classes == 7 and relative_error(fresh(x).numpy(), model(x).numpy()) > 1e-2


def test_timm_lists_every_hgzoo_tag():
    """``timm.list_pretrained()`` lists all of hgzoo's tags: timm lists a tag only if its config names a place for
    the weights (timm's ``has_weights``), so a tag whose only source is a Paddle URL carries that URL."""
    hgzoo.timm_compat.register()
    ours = set(hgzoo.list_pretrained())
    assert ours <= set(timm.list_pretrained())
    paddle_only = [t for t in ours if not hgzoo.get_pretrained_cfg(t).hf_hub_id]
    assert paddle_only
    for tag in paddle_only:
        cfg = hgzoo.get_pretrained_cfg(tag)
        assert timm.models.get_pretrained_cfg(tag).url == cfg.paddle_url
        # Without it, timm would not list the tag: the case the test guards against.
        assert not timm.models.PretrainedCfg(**cfg.to_timm_dict()).has_weights


@pytest.mark.parametrize("form", ["str", "dict", "timm", "hgzoo"])
def test_pretrained_cfg_argument_is_timms(form):
    """``pretrained_cfg=`` (a tag, a dict, timm's or hgzoo's ``PretrainedCfg``) selects the tag, over the name's own
    tag, as timm's ``create_model`` does through the bridge."""
    hgzoo.timm_compat.register()
    want = hgzoo.get_pretrained_cfg("pphgnet_small.paddle_in1k")  # not the default tag, nor the name's
    arg = {"str": "paddle_in1k", "dict": {"tag": "paddle_in1k"}, "timm": timm.models.PretrainedCfg(tag="paddle_in1k"),
           "hgzoo": want}[form]
    ours = hgzoo.create_model("pphgnet_small.ssld_in1k", pretrained_cfg=arg)
    theirs = timm.create_model("pphgnet_small.ssld_in1k", pretrained_cfg=arg)
    assert ours.pretrained_cfg.name == theirs.pretrained_cfg.name == want.name
    assert ours.pretrained_cfg.crop_size == want.crop_size and ours.pretrained_cfg.sources == want.sources
    assert hgzoo.create_model("pphgnet_small.ssld_in1k").pretrained_cfg.name != want.name  # so it can fail


def test_pretrained_cfg_argument_errors():
    with pytest.raises(UnknownModelError, match="Unknown weight tag 'nope'.*pphgnet_small.ssld_in1k"):
        hgzoo.create_model("pphgnet_small", pretrained_cfg="nope")
    with pytest.raises(TypeError, match="config.json is its configuration"):
        hgzoo.create_model("hf-hub:timm/hgnet_small.ssld_in1k", pretrained_cfg="ssld_in1k")
    with pytest.raises(ValueError, match="is for pphgnet_tiny"):
        hgzoo.create_model("pphgnet_small", pretrained_cfg=hgzoo.get_pretrained_cfg("pphgnet_tiny"))


@pytest.fixture(scope="module")
def timm_checkpoint(tmp_path_factory) -> tuple[Path, torch.Tensor]:
    """A checkpoint written by timm's own ``CheckpointSaver`` (as timm's train.py writes it: ``state_dict``,
    ``state_dict_ema``, ``args``...) of timm's hgnetv2_b0, whose EMA weights differ from its model weights."""
    out = tmp_path_factory.mktemp("timm_run")
    x = _images(2, seed=1)
    model = calibrate(timm.create_model("hgnetv2_b0", num_classes=5), x, seed=0)
    ema = timm.utils.ModelEmaV3(model)
    calibrate(model, x, seed=1)  # the trained weights move on; the EMA keeps the first ones
    saver = timm.utils.CheckpointSaver(model, torch.optim.SGD(model.parameters(), lr=0.1),
                                       args=argparse.Namespace(model="hgnetv2_b0", lr=0.1), model_ema=ema,
                                       checkpoint_dir=str(out), recovery_dir=str(out), max_history=1)
    saver.save_checkpoint(epoch=0, metric=1.0)
    return out / "model_best.pth.tar", x


def test_checkpoint_path_loads_the_ema_weights_as_timm(timm_checkpoint):
    """``create_model(checkpoint_path=)`` loads a timm checkpoint's EMA weights, as ``timm.create_model`` does;
    ``load_checkpoint(use_ema=)`` chooses as timm's does; the two sets of weights give other logits."""
    path, x = timm_checkpoint
    with torch.no_grad():
        y_timm = timm.create_model("hgnetv2_b0", num_classes=5, checkpoint_path=str(path)).eval()(x).numpy()
        y_ours = hgzoo.create_model("pphgnetv2_b0", num_classes=5, checkpoint_path=path).eval()(x).numpy()
        assert relative_error(y_ours, y_timm) < 1e-4
        for use_ema in (False, True):
            tm = timm.create_model("hgnetv2_b0", num_classes=5)
            timm.models.load_checkpoint(tm, str(path), use_ema=use_ema)
            hm = hgzoo.create_model("pphgnetv2_b0", num_classes=5)
            hgzoo.load_checkpoint(hm, path, use_ema=use_ema)
            y_t, y_h = tm.eval()(x).numpy(), hm.eval()(x).numpy()
            assert relative_error(y_h, y_t) < 1e-4, use_ema
            if not use_ema:
                assert relative_error(y_h, y_ours) > 1e-2  # model and EMA weights are told apart
