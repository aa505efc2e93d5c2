"""Weights resolution end to end, against a local server playing the Hub and the Paddle file server.

The served .pdparams is one that real PaddleClas produced (randomized weights, see conftest), so each
path must end with PaddleClas's own logits. Each load runs in a fresh process, as a user's would, so
that HF_ENDPOINT / HF_HUB_OFFLINE / HF_HOME are read the way huggingface_hub reads them (at import).
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import relative_error
from local_server import LocalServer
from safetensors.torch import save_file

import hgzoo
from hgzoo.cli.convert import main as convert_main

ARCH, TAG = "resnet18_vd", "paddle_in1k"
PADDLE_FILE = "ResNet18_vd_pretrained.pdparams"
LOAD = """
import sys, numpy as np, torch, hgzoo
m = hgzoo.create_model(sys.argv[1], pretrained=True, progress=False).eval()
with torch.no_grad():
    np.save(sys.argv[3], m(torch.from_numpy(np.load(sys.argv[2]))).numpy())
"""


@pytest.fixture(scope="module")
def reference(paddle_reference, tmp_path_factory):
    pdparams, ref = paddle_reference.get(ARCH)
    d = tmp_path_factory.mktemp("ref_inputs")
    np.save(d / "x.npy", ref["x_193x257"])
    return pdparams, d / "x.npy", ref["y_193x257"]


def run_load(name: str, x: Path, tmp: Path, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    out = tmp / f"y_{os.urandom(4).hex()}.npy"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HGZOO_"))}
    full_env.update(env)
    proc = subprocess.run([sys.executable, "-c", LOAD, name, str(x), str(out)], env=full_env,
                          capture_output=True, text=True)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
        proc.y = np.load(out)
    return proc


def run_script(script: str, args: list[str], env: dict) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HGZOO_"))}
    proc = subprocess.run([sys.executable, "-c", script, *args], env={**full_env, **env}, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def env_for(tmp: Path, server: LocalServer | None, **extra) -> dict:
    url = server.url if server else "http://127.0.0.1:9"  # port 9: nothing listens
    return {"HF_HOME": str(tmp / "hf"), "HGZOO_CACHE": str(tmp / "cache"), "HF_ENDPOINT": url,
            "HGZOO_PADDLE_MIRROR": f"{url}/paddle", "HF_HUB_DISABLE_TELEMETRY": "1", **extra}


def test_paddle_url_path_then_offline(reference, tmp_path):
    pdparams, x, y_ref = reference
    with LocalServer() as server:
        server.files[f"/paddle/{PADDLE_FILE}"] = pdparams.read_bytes()
        y = run_load(f"{ARCH}.{TAG}", x, tmp_path, env_for(tmp_path, server)).y
        assert ("GET", f"/paddle/{PADDLE_FILE}") in server.requests
    assert relative_error(y, y_ref) < 1e-4
    cached = tmp_path / "cache" / "converted" / f"{ARCH}.{TAG}.safetensors"
    assert cached.is_file() and not list((tmp_path / "cache" / "downloads").glob("*")), "raw download left behind"
    # Server gone, offline: the converted cache alone must serve.
    y2 = run_load(f"{ARCH}.{TAG}", x, tmp_path, env_for(tmp_path, None, HF_HUB_OFFLINE="1")).y
    np.testing.assert_array_equal(y, y2)
    record = json.loads(cached.with_suffix(".json").read_text())
    assert record["source"]["location"].endswith(PADDLE_FILE) and len(record["sha256"]) == 64
    assert record["sha256"] == hashlib.sha256(pdparams.read_bytes()).hexdigest()
    # A converted file whose record names a source the tag does not list is not used.
    record["source"]["location"] = f"hgzoo/{ARCH}.{TAG}"
    cached.with_suffix(".json").write_text(json.dumps(record))
    proc = run_load(f"{ARCH}.{TAG}", x, tmp_path, env_for(tmp_path, None, HF_HUB_OFFLINE="1"), check=False)
    assert proc.returncode != 0 and "which resnet18_vd.paddle_in1k does not list" in proc.stderr
    assert cached.is_file(), "a cached file not used is left for a listed source to replace"


def test_hub_repo_by_name_and_no_squatting_then_offline(reference, tmp_path):
    """A repo the user names (``hf-hub:someone/my-resnet``, written by our converter) loads; a repo under an
    organisation the tag does not name (``hgzoo/<tag>``, here holding other weights) is never asked for: the tag's
    weights come from its own source, the Paddle URL."""
    pdparams, x, y_ref = reference
    official = tmp_path / PADDLE_FILE
    official.write_bytes(pdparams.read_bytes())
    folder = tmp_path / "repo"
    assert convert_main(["--model", ARCH, "--input", str(official), "--output", str(folder)]) == 0  # in process
    assert {p.name for p in folder.iterdir()} == {"model.safetensors", "config.json", "README.md"}
    card = (folder / "README.md").read_text()
    assert "Apache-2.0" in card and "ResNet18_vd_pretrained.pdparams" in card
    squatter = tmp_path / "squatter"
    squatter.mkdir()
    save_file(hgzoo.create_model(ARCH).state_dict(), str(squatter / "model.safetensors"))  # other weights
    (squatter / "config.json").write_text((folder / "config.json").read_text())
    with LocalServer() as server:
        server.add_hub_repo(f"hgzoo/{ARCH}.{TAG}", squatter)
        server.add_hub_repo("someone/my-resnet", folder)
        server.files[f"/paddle/{PADDLE_FILE}"] = pdparams.read_bytes()
        # One process for the three online loads (the Hub's settings are read once, at import, and are the same
        # for the three); the named source gets its own cache_dir, so it cannot be served the tag's converted file.
        out = tmp_path / "y_online.npz"
        run_script(REPO_LOADS, [f"{ARCH}.{TAG}", "someone/my-resnet", str(x), str(out), str(tmp_path / "named_cache")],
                   env_for(tmp_path, server))
        assert not server.requested("/hgzoo/"), "asked an organisation the tag does not name"
        assert server.requested(f"/paddle/{PADDLE_FILE}")
    y = np.load(out)
    assert relative_error(y["tag"], y_ref) < 1e-4
    np.testing.assert_array_equal(y["tag"], y["repo"])
    np.testing.assert_array_equal(y["tag"], y["named"])
    # Offline, warm cache, one process: the tag again, and a backbone from the Hub repo (the repo's weights,
    # features instead of logits).
    proc = run_script(OFFLINE_LOADS, [f"{ARCH}.{TAG}", str(folder / "model.safetensors"), str(x),
                                      str(tmp_path / "y_off.npy")], env_for(tmp_path, None, HF_HUB_OFFLINE="1"))
    np.testing.assert_array_equal(y["tag"], np.load(tmp_path / "y_off.npy"))
    assert proc.stdout.split() == ["2", "True", "True"], proc.stdout


REPO_LOADS = """
import dataclasses, sys, numpy as np, torch, hgzoo
from hgzoo._builder import load_pretrained
from hgzoo.pretrained import WeightSource
tag, repo, x, out, named_cache = sys.argv[1:6]
models = {"tag": hgzoo.create_model(tag, pretrained=True, progress=False),
          "repo": hgzoo.create_model(f"hf-hub:{repo}", pretrained=True, progress=False)}
# A tag that names an hgzoo-layout Hub repo as its source loads from it.
cfg = dataclasses.replace(hgzoo.get_pretrained_cfg(tag), sources=(WeightSource("hf-hub", repo, "hgzoo"),))
models["named"] = hgzoo.create_model(tag.split(".")[0])
load_pretrained(models["named"], cfg, progress=False, cache_dir=named_cache)
x = torch.from_numpy(np.load(x))
with torch.no_grad():
    np.savez(out, **{k: m.eval()(x).numpy() for k, m in models.items()})
"""

OFFLINE_LOADS = """
import sys, numpy as np, torch, hgzoo
tag, weights, x, out = sys.argv[1:5]
x = torch.from_numpy(np.load(x))
kw = dict(features_only=True, out_indices=(2, 3))
hub = hgzoo.create_model("hf-hub:someone/my-resnet", pretrained=True, **kw).eval()
ref = hgzoo.create_model("resnet18_vd", pretrained_file=weights, **kw).eval()
rnd = hgzoo.create_model("resnet18_vd", **kw).eval()
with torch.no_grad():
    np.save(out, hgzoo.create_model(tag, pretrained=True, progress=False).eval()(x).numpy())
    a, b, c = hub(x), ref(x), rnd(x)
print(len(a), all(torch.equal(u, v) for u, v in zip(a, b)), not torch.equal(a[-1], c[-1]))
"""


def test_no_network_no_cache_says_how_to_fix(reference, tmp_path):
    _, x, _ = reference
    proc = run_load(f"{ARCH}.{TAG}", x, tmp_path, env_for(tmp_path, None), check=False)
    assert proc.returncode != 0
    assert "WeightsNotFoundError" in proc.stderr and "pretrained_file=" in proc.stderr
    assert "HGZOO_PADDLE_MIRROR" in proc.stderr and "HF_ENDPOINT" in proc.stderr
    proc = run_load(f"{ARCH}.{TAG}", x, tmp_path, env_for(tmp_path, None, HF_HUB_OFFLINE="1"), check=False)
    assert "HF_HUB_OFFLINE is set" in proc.stderr


def test_interrupted_download_leaves_nothing_that_looks_valid(reference, tmp_path):
    pdparams, x, _ = reference
    with LocalServer() as server:
        server.files[f"/paddle/{PADDLE_FILE}"] = pdparams.read_bytes()
        server.truncate.add(f"/paddle/{PADDLE_FILE}")
        proc = run_load(f"{ARCH}.{TAG}", x, tmp_path, env_for(tmp_path, server), check=False)
    assert proc.returncode != 0 and "cut short" in proc.stderr
    leftovers = [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and not p.name.endswith(".lock")]
    assert leftovers == []


def test_corrupt_download_is_named_and_evicted(reference, tmp_path):
    pdparams, x, _ = reference
    with LocalServer() as server:
        server.files[f"/paddle/{PADDLE_FILE}"] = pdparams.read_bytes()[:-1000]  # complete transfer, bad file
        proc = run_load(f"{ARCH}.{TAG}", x, tmp_path, env_for(tmp_path, server), check=False)
    assert proc.returncode != 0
    assert PADDLE_FILE in proc.stderr and "corrupt" in proc.stderr
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and not p.name.endswith(".lock")] == []


def test_two_processes_loading_at_once_both_succeed(reference, tmp_path):
    pdparams, x, y_ref = reference
    with LocalServer() as server:
        server.files[f"/paddle/{PADDLE_FILE}"] = pdparams.read_bytes()
        server.delay = 0.002
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HGZOO_"))}
        env.update(env_for(tmp_path, server))
        procs = [subprocess.Popen([sys.executable, "-c", LOAD, f"{ARCH}.{TAG}", str(x), str(tmp_path / f"y{i}.npy")],
                                  env=env, stderr=subprocess.PIPE, text=True) for i in range(2)]
        for p in procs:
            assert p.wait() == 0, p.stderr.read()[-3000:]
        downloads = [r for r in server.requests if r == ("GET", f"/paddle/{PADDLE_FILE}")]
    assert len(downloads) == 1, "the lock should let only one process download"
    for i in range(2):
        assert relative_error(np.load(tmp_path / f"y{i}.npy"), y_ref) < 1e-4


def test_converter_accepts_a_users_own_checkpoint_with_other_classes(reference, tmp_path):
    """A PaddleClas training with class_num=10: the converter reads the count off the checkpoint."""
    import hgzoo
    from hgzoo.convert import load_pdparams

    pdparams, _, _ = reference
    sd = load_pdparams(pdparams)
    rng = np.random.RandomState(0)
    sd["fc.weight"] = rng.normal(0, 0.01, (sd["fc.weight"].shape[0], 10)).astype(np.float32)
    sd["fc.bias"] = np.zeros(10, np.float32)
    mine = tmp_path / "best_model.pdparams"
    mine.write_bytes(pickle.dumps(sd, protocol=4))
    out = tmp_path / "mine"
    assert convert_main(["--model", "ResNet18_vd", "--input", str(mine), "--output", str(out)]) == 0  # in process
    import json

    config = json.loads((out / "config.json").read_text())
    assert config["num_classes"] == 10 and config["pretrained_cfg"]["top1"] is None
    model = hgzoo.create_model(ARCH, num_classes=10, pretrained_file=out / "model.safetensors")
    np.testing.assert_allclose(model.get_classifier().weight.detach().numpy(), sd["fc.weight"].T)
    bad = subprocess.run([sys.executable, "-m", "hgzoo.convert", "--model", ARCH, "--input", str(mine),
                          "--output", str(tmp_path / "x"), "--num-classes", "5"], capture_output=True, text=True)
    assert bad.returncode != 0 and "has 10 classes" in bad.stderr  # the real entry point's exit status


def test_convert_all_converts_official_files_and_skips_others(reference, tmp_path, capsys):
    pdparams, _, _ = reference
    src = tmp_path / "paddle"
    src.mkdir()
    (src / PADDLE_FILE).write_bytes(pdparams.read_bytes())
    (src / "my_experiment.pdparams").write_bytes(pdparams.read_bytes())
    assert convert_main(["--all", str(src), "--output", str(tmp_path / "out")]) == 0  # in process
    assert (tmp_path / "out" / f"{ARCH}.{TAG}" / "model.safetensors").is_file()
    assert "skipped my_experiment.pdparams" in capsys.readouterr().out


def test_local_dir_names_what_is_missing(tmp_path):
    """``local-dir:FOLDER`` (timm's spelling for a Hub folder on disk) without its files: one clear error."""
    (tmp_path / "config.json").write_text('{"architecture": "pphgnet_tiny", "num_classes": 3}')
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        hgzoo.create_model(f"local-dir:{tmp_path}", pretrained=True)
