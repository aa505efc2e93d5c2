"""train.py: a short end-to-end run on real photos, distillation, 2-process DDP, resume after SIGKILL, bad inputs.

Tiny on purpose (pphgnetv2_b0 at 32 px, a handful of crops of scikit-image's photos, a few iterations).
"""
from __future__ import annotations

import csv
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from image_samples import photos, write_png

from hgzoo._files import safe_load

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import train as train_cli  # noqa: E402

MODEL = "pphgnetv2_b0"
COMMON = ["--model", MODEL, "--img-size", "32", "--batch-size", "4", "--workers", "0", "--no-progress",
          "--lr", "0.05", "--warmup-epochs", "0", "--randaugment", "rand-m7-mstd0.5-inc1"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _crops(img: np.ndarray, n: int, rng: np.random.Generator, size: int = 40) -> list[np.ndarray]:
    h, w = img.shape[:2]
    out = []
    for _ in range(n):
        s = int(min(h, w) * 0.5)
        y, x = rng.integers(0, h - s), rng.integers(0, w - s)
        crop = torch.from_numpy(img[y:y + s, x:x + s]).permute(2, 0, 1)[None].float()
        out.append(torch.nn.functional.interpolate(crop, size=(size, size), mode="area")[0]
                   .permute(1, 2, 0).round().clamp(0, 255).byte().numpy())
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """``train/`` and ``val/`` with two classes (cat / coffee crops), and ``extra/`` unlabeled astronaut crops."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    ph = photos(("chelsea", "coffee", "astronaut"))
    for split, n in (("train", 8), ("val", 4)):
        for cls in ("chelsea", "coffee"):
            (root / split / cls).mkdir(parents=True)
            for i, c in enumerate(_crops(ph[cls], n, rng)):
                write_png(root / split / cls / f"{i}.png", c)
    (root / "extra").mkdir()
    for i, c in enumerate(_crops(ph["astronaut"], 8, rng)):
        write_png(root / "extra" / f"{i}.png", c)
    return root


def _run(argv: list[str], capsys) -> tuple[int, str]:
    code = train_cli.main(argv)
    cap = capsys.readouterr()
    return code, cap.out + cap.err


@pytest.fixture(scope="module")
def first_run(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "out"
    code = train_cli.main(COMMON + ["--data-dir", str(data), "--epochs", "2", "--output", str(out), "--ema",
                                    "--ema-decay", "0.9", "--mixup-alpha", "0.2", "--mixup-prob", "0.5",
                                    "--cutmix-alpha", "1.0", "--cutmix-prob", "0.5", "--random-erasing", "0.25",
                                    "--lr-mult-list", "0.1", "0.1", "0.2", "0.2", "0.3", "--freeze", "1"])
    assert code == 0
    return out


def test_end_to_end(first_run):
    out = first_run
    for name in ("last.pt", "best.pt", "config.yaml", "summary.csv", "curves.png"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert all(0 <= float(r["eval_top1"]) <= 100 and r["ema_top1"] != "" for r in rows)
    import yaml
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["lr_mult_list"] == [0.1, 0.1, 0.2, 0.2, 0.3] and cfg["num_classes"] == 2
    assert cfg["weight_decay"] == 4e-5 and cfg["recipe"].endswith("pphgnetv2.yaml")  # from the recipe
    ckpt = safe_load(out / "last.pt")
    assert ckpt["model_name"] == MODEL and ckpt["epoch"] == 2 and ckpt["global_step"] == 8
    assert ckpt["config"] == cfg  # the checkpoint stores the plain dict that config.yaml holds
    from hgzoo.train import TrainConfig
    assert TrainConfig.from_dict(ckpt["config"]).lr_mult_list == (0.1, 0.1, 0.2, 0.2, 0.3)
    assert ckpt["state_dict_ema"] is not None and ckpt["scheduler"]["step_count"] == 8  # timm's key
    # --freeze 1: the stem's parameters are not in the optimizer
    import hgzoo
    model = hgzoo.create_model(MODEL, num_classes=2)
    n_opt = sum(len(g["params"]) for g in ckpt["optimizer"]["param_groups"])
    assert n_opt == len(list(model.parameters())) - len(list(model.stem.parameters()))
    assert list(out.glob("*.tmp")) == []


def test_distillation_with_unlabeled_extra(data, first_run, tmp_path, capsys):
    code, log = _run(COMMON + ["--data-dir", str(data), "--epochs", "1", "--output", str(tmp_path / "d"),
                               "--model", "pplcnetv2_small", "--teacher", MODEL,
                               "--teacher-checkpoint", str(first_run / "best.pt"),
                               "--extra-data", str(data / "extra"), "--distill-loss", "js"], capsys)
    assert code == 0, log
    assert "(8 unlabeled)" in log and "24 train images" in log
    assert (tmp_path / "d" / "summary.csv").is_file()


def test_distillation_losses():
    from hgzoo.train import DistillationLoss
    s, t = torch.randn(4, 5), torch.randn(4, 5)
    for kind in ("dml", "kl", "js"):
        loss = DistillationLoss(kind, 2.0)
        assert loss(s, t) > 0 and loss(t, t).abs() < 1e-6


def test_none_turns_off_a_recipe_setting():
    from hgzoo.train.config import resolve_config
    recipe = resolve_config(["--model", "pphgnet_small"])
    assert recipe.randaugment == "rand-m7-mstd0.5-inc1" and recipe.recipe.endswith("pphgnet_small.yaml")
    cfg = resolve_config(["--model", "pphgnet_small", "--randaugment", "none", "--drop-rate", "null"])
    assert cfg.randaugment is None and cfg.drop_rate is None and cfg.mixup_alpha == recipe.mixup_alpha


@pytest.mark.parametrize("recipe", ["fashion_mnist", "fashion_mnist_15min"])
def test_fashion_mnist_recipe_is_complete(recipe):
    """The README's real-data commands read everything from the shipped Fashion-MNIST recipes."""
    from hgzoo.train.config import effective_lr, resolve_config
    cfg = resolve_config(["--config", recipe])
    assert (cfg.dataset, cfg.in_chans, cfg.num_classes) == ("fashion_mnist", 1, 10)
    assert cfg.model == "pplcnetv2_small"
    assert cfg.randaugment is None and cfg.mixup_alpha == 0 and effective_lr(cfg, 512)[0] == 0.1
    if recipe == "fashion_mnist_15min":  # timm's init, the images as they are, one evaluation at the end
        assert cfg.init == "timm" and cfg.img_size == cfg.eval_resize_short == 28
        assert cfg.eval_every == cfg.epochs and cfg.ema is False
        assert (cfg.train_crop, cfg.crop_scale_min, cfg.no_weight_decay) == ("timm", 1.0, "1d")  # no crop


def test_lr_schedule_and_param_groups():
    import hgzoo
    from hgzoo.train import LRSchedule, param_groups
    model = hgzoo.create_model("pphgnet_tiny", num_classes=3)
    groups = param_groups(model, 4e-5, "bn", [0.1, 0.1, 0.2, 0.2, 0.3])
    bn = {id(p) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters()}
    for g in groups:
        assert (g["weight_decay"] == 0.0) == (id(g["params"][0]) in bn)
    assert {g["lr_mult"] for g in groups} == {0.1, 0.2, 0.3, 1.0}
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    s = LRSchedule(opt, 1.0, steps_per_epoch=10, epochs=10, sched="cosine", warmup_epochs=1)
    lrs = [s.lr_at(i) for i in (0, 5, 10, 55, 100)]
    assert lrs[0] == 0 and lrs[1] == 0.5 and lrs[2] == 1.0 and abs(lrs[3] - 0.5) < 1e-9 and lrs[4] < 1e-9
    p = LRSchedule(opt, 0.1, 10, 100, "piecewise", decay_epochs=[30, 60, 90])
    assert abs(p.lr_at(299) - 0.1) < 1e-12 and abs(p.lr_at(300) - 0.01) < 1e-12


@pytest.mark.parametrize("name", ["pplcnetv2_small", "pphgnetv2_b0", "resnet18_vd"])
def test_no_weight_decay_1d_is_timms(name):
    """no_weight_decay: 1d exempts exactly what timm's param_groups_weight_decay (its train.py's default) does:
    every 1-D parameter and bias, PP-HGNetV2's learnable affine scales included."""
    from timm.optim import param_groups_weight_decay

    import hgzoo
    from hgzoo.train import param_groups

    model = hgzoo.create_model(name, num_classes=3)
    ours = {id(p) for g in param_groups(model, 1e-4, "1d") if g["weight_decay"] == 0 for p in g["params"]}
    timms = {id(p) for g in param_groups_weight_decay(model, 1e-4) if g["weight_decay"] == 0 for p in g["params"]}
    bn = {id(p) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters()}
    assert ours == timms and bn < ours


def test_train_crop_selects_the_crop():
    from hgzoo.data import PaddleRandCrop, TimmRandCrop
    from hgzoo.train.config import ConfigError, resolve_config
    from hgzoo.train.data import train_transform

    crops = {}
    for choice in ("paddle", "timm"):
        cfg = resolve_config(["--config", "fashion_mnist_15min", "--train-crop", choice, "--crop-scale-min", "0.5"])
        crops[choice] = train_transform(cfg).transforms[1]
    assert type(crops["paddle"]) is PaddleRandCrop and type(crops["timm"]) is TimmRandCrop
    assert crops["timm"].scale == (0.5, 1.0) and crops["timm"].size == (28, 28)
    assert resolve_config(["--model", "pphgnet_small"]).train_crop == "paddle"  # PaddleClas's recipes
    with pytest.raises((ConfigError, SystemExit)):
        resolve_config(["--model", "pphgnet_small", "--train-crop", "torchvision"])


def _free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return env


def test_ddp_two_processes(data, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           str(ROOT / "train.py")] + COMMON + ["--data-dir", str(data), "--epochs", "1", "--output", str(out),
                                               "--sync-bn"]
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("2 process(es)") == 1  # rank 0 logs once
    assert "--sync-bn needs CUDA" in r.stderr  # on CPU: said, not a hang
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert len(rows) == 1
    ckpt = safe_load(out / "last.pt")
    assert ckpt["global_step"] == 2 and len(ckpt["rng"]) == 2  # 16 images / (2 x 4) per step


def test_resume_after_sigkill(data, tmp_path):
    out = tmp_path / "kill"
    args = [sys.executable, str(ROOT / "train.py")] + COMMON + [
        "--data-dir", str(data), "--epochs", "2", "--batch-size", "2", "--output", str(out),
        "--checkpoint-every", "2", "--ema"]
    proc = subprocess.Popen(args, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    try:
        while not (out / "last.pt").exists():
            assert proc.poll() is None, proc.stdout.read()
            assert time.time() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    ckpt = safe_load(out / "last.pt")  # never a partial file
    assert ckpt["epoch"] == 0 and ckpt["micro_in_epoch"] >= 2 and ckpt["global_step"] >= 2
    # Only --resume: the run's model, data and recipe come from the config.yaml it saved beside its checkpoints.
    r = subprocess.run([sys.executable, str(ROOT / "train.py"), "--resume", str(out / "last.pt")], env=_env(),
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"resumed from {out / 'last.pt'}: epoch 0, batch {ckpt['micro_in_epoch']}" in r.stdout
    final = safe_load(out / "last.pt")
    assert final["epoch"] == 2 and final["global_step"] == 16  # 8 steps per epoch, none lost, none repeated
    assert len(list(csv.DictReader(open(out / "summary.csv")))) == 2


@pytest.fixture(scope="module")
def bad(data, tmp_path_factory) -> dict:
    import hgzoo
    root = tmp_path_factory.mktemp("bad")
    empty = root / "empty"
    for split in ("train", "val"):
        for cls in ("a", "b"):
            (empty / split / cls).mkdir(parents=True)
        write_png(empty / split / "a" / "0.png", np.zeros((8, 8, 3), np.uint8))
    teacher = root / "teacher3.pt"
    torch.save({"model_name": MODEL, "num_classes": 3, "in_chans": 3,
                "model": hgzoo.create_model(MODEL, num_classes=3).state_dict()}, teacher)
    other = root / "other.pt"
    torch.save({"model_name": "resnet18_vd", "model": hgzoo.create_model("resnet18_vd", num_classes=2).state_dict()},
               other)
    return dict(empty=empty, teacher=teacher, other=other)


@pytest.mark.parametrize("case, extra, message", [
    ("missing", ["--data-dir", "{tmp}/nope"], "not found"),
    ("empty", ["--data-dir", "{empty}"], "with no images: ['b']"),
    ("classes", ["--data-dir", "{data}", "--num-classes", "5"], "--num-classes 5 disagrees with the data, which has 2"),
    ("teacher", ["--data-dir", "{data}", "--teacher", MODEL, "--teacher-checkpoint", "{teacher}"],
     "the teacher has 3 classes, the student 2"),
    ("resume", ["--data-dir", "{data}", "--resume", "{other}"], "is a checkpoint of 'resnet18_vd', not of"),
    ("randaugment", ["--data-dir", "{data}", "--randaugment", "m9-mstd0.5"], "--randaugment: RandAugment spec must"),
])
def test_bad_input(case, extra, message, data, bad, tmp_path, capsys):
    fmt = dict(tmp=tmp_path, data=data, **bad)
    out = tmp_path / "out"
    code, log = _run(COMMON + [a.format(**fmt) for a in extra] + ["--output", str(out)], capsys)
    assert code == 2 and "error:" in log and message in log, log
    assert not (out / "summary.csv").exists() and not (out / "last.pt").exists()


def test_resume_without_saved_config_says_what_to_give(tmp_path):
    from hgzoo.train import ConfigError, resolve_config
    (tmp_path / "last.pt").write_bytes(b"")
    with pytest.raises(ConfigError, match="no config.yaml beside it"):
        resolve_config(["--resume", str(tmp_path / "last.pt")])


# ---------------------------------------------------------------------------------------------- the journey's flags

def test_lr_is_absolute_and_lr_base_scales():
    """timm's split: --lr is used as given; --lr-base is the recipe's LR at --lr-base-size, scaled linearly."""
    from hgzoo.train.config import effective_lr, resolve_config
    cfg = resolve_config(["--model", "pphgnet_small", "--lr", "0.01", "-b", "32"])
    assert effective_lr(cfg, 32) == (0.01, "lr 0.01 (--lr, absolute)")
    cfg = resolve_config(["--model", "pphgnet_small", "-b", "32"])  # the recipe: 0.5 at 1024
    assert effective_lr(cfg, 64)[0] == pytest.approx(0.5 * 64 / 1024)
    cfg = resolve_config(["--config", "fashion_mnist", "--lr-base", "0.2", "--lr-base-size", "256"])
    assert cfg.lr is None and effective_lr(cfg, 128)[0] == pytest.approx(0.1)  # --lr-base beats the recipe's lr


def test_run_header_says_which_lr_applies(data, tmp_path, capsys):
    code, log = _run(COMMON + ["--data-dir", str(data), "--epochs", "1", "--max-steps-per-epoch", "1",
                               "--output", str(tmp_path / "o")], capsys)
    assert code == 0 and "lr 0.05 (--lr, absolute)" in log, log


def test_timm_spellings_are_aliases():
    from hgzoo.train.config import resolve_config
    cfg = resolve_config(["--model", "pphgnet_tiny", "-b", "8", "-j", "0", "--smoothing", "0.2", "--drop-path", "0.1",
                          "--drop", "0.3", "--model-ema", "--model-ema-decay", "0.99", "--aa", "rand-m9-mstd0.5",
                          "--reprob", "0.3", "--mixup", "0.4", "--cutmix", "0.5", "--grad-accum-steps", "2",
                          "--opt", "adamw", "--warmup-lr", "1e-5"])
    assert (cfg.batch_size, cfg.workers, cfg.label_smoothing, cfg.drop_path_rate, cfg.drop_rate) == \
        (8, 0, 0.2, 0.1, 0.3)
    assert cfg.ema is True and cfg.ema_decay == 0.99 and cfg.randaugment == "rand-m9-mstd0.5"
    assert (cfg.random_erasing, cfg.mixup_alpha, cfg.cutmix_alpha, cfg.accum_steps) == (0.3, 0.4, 0.5, 2)
    assert cfg.opt == "adamw" and cfg.warmup_start_lr == 1e-5


@pytest.mark.parametrize("opt, cls, nesterov", [("momentum", "SGD", False), ("sgd", "SGD", True),
                                                ("adamw", "AdamW", None)])
def test_optimizers(opt, cls, nesterov):
    import hgzoo
    from hgzoo.train.config import resolve_config
    from hgzoo.train.optim import create_optimizer
    cfg = resolve_config(["--model", "pplcnetv2_small", "--opt", opt, "--no-weight-decay", "bn"])
    o = create_optimizer(hgzoo.create_model("pplcnetv2_small", num_classes=3), cfg, 0.1)
    assert type(o).__name__ == cls
    if nesterov is not None:
        assert o.defaults["nesterov"] is nesterov
    assert {g["weight_decay"] for g in o.param_groups} == {0.0, cfg.weight_decay}  # BN excluded, per group


def test_help_describes_every_flag():
    from hgzoo.train.config import SETTINGS, build_parser
    text = build_parser().format_help()
    for s in SETTINGS:
        assert "--" + s.key.replace("_", "-") in text
        assert len(s.help) > 10, s.key
    assert "default: 'pphgnet" not in text
    assert "in [8, 4096]" in " ".join(text.split())  # --img-size's range, from the same table


def test_a_missing_recipe_is_an_error(tmp_path, monkeypatch):
    from hgzoo.train import config
    monkeypatch.setattr(config, "CONFIG_DIR", tmp_path)  # a package without its recipes
    with pytest.raises(config.ConfigError, match="no recipe for pphgnet_small"):
        config.resolve_config(["--model", "pphgnet_small"])
    with pytest.raises(config.ConfigError, match="not a shipped recipe"):
        config.resolve_config(["--config", "nope"])


def test_tensorboard_needs_its_extra(data, tmp_path, capsys):
    import importlib.util
    code, log = _run(COMMON + ["--data-dir", str(data), "--epochs", "1", "--max-steps-per-epoch", "1",
                               "--output", str(tmp_path / "o"), "--tensorboard"], capsys)
    if importlib.util.find_spec("tensorboard") is None:
        assert code == 2 and "pip install 'hgzoo[tensorboard]'" in log, log
    else:
        assert code == 0 and any((tmp_path / "o" / "tb").iterdir()), log


def test_epochs_without_evaluation_have_no_eval_figures(data, tmp_path, capsys):
    """--eval-every 2: epochs 2 and 3 (the last) are evaluated; epoch 1's row has blank eval figures, not stale ones."""
    code, log = _run(COMMON + ["--data-dir", str(data), "--epochs", "3", "--max-steps-per-epoch", "1",
                               "--eval-every", "2", "--ema", "true", "--output", str(tmp_path / "e")], capsys)
    assert code == 0, log
    rows = list(csv.DictReader(open(tmp_path / "e" / "summary.csv")))
    assert [(r["eval_top1"], r["ema_top1"]) for r in rows][0] == ("", "")
    assert all(0 <= float(r["eval_top1"]) <= 100 and r["ema_top1"] != "" for r in rows[1:])
    assert (tmp_path / "e" / "curves.png").is_file()


def test_grayscale_folder_with_one_input_channel(data, tmp_path, capsys):
    """RGB files, --in-chans 1: the loader converts them to grayscale (timm's --input-img-mode L)."""
    code, log = _run(COMMON + ["--data-dir", str(data), "--epochs", "1", "--max-steps-per-epoch", "1",
                               "--in-chans", "1", "--output", str(tmp_path / "g")], capsys)
    assert code == 0, log
    ckpt = safe_load(tmp_path / "g" / "last.pt")
    assert ckpt["in_chans"] == 1 and ckpt["model"]["stem.stem1.conv.weight"].shape[1] == 1
    assert ckpt["class_names"] == ["chelsea", "coffee"]


def test_grayscale_training_pixels_are_validates(data):
    """train.py's evaluation images for a 1-channel model are the pixels validate.py, predict and export give it:
    PIL's convert("L") first (not torchvision's rgb_to_grayscale after the crop)."""
    from PIL import Image

    from hgzoo.data import create_transform
    from hgzoo.deploy.images import eval_transform
    from hgzoo.train.config import resolve_config
    from hgzoo.train.data import build_datasets, eval_data_config

    cfg = resolve_config(COMMON + ["--data-dir", str(data), "--in-chans", "1"])
    eval_cfg = eval_data_config(cfg, None)
    sets = build_datasets(cfg, eval_cfg)
    x, _ = sets.val[0]
    path = sets.val.samples[0][0]
    # A PIL image of any mode reads as its saved file does (RGB), then the model's one channel, as train.py does.
    expected = create_transform(eval_cfg, training=False, normalize=False, in_chans=1)(Image.open(path).convert("L"))
    assert x.shape[0] == 1 and torch.equal(x, expected)
    as_validated = eval_transform(None, cfg.img_size, 1, data_config=eval_cfg)(Image.open(path))
    torch.testing.assert_close(as_validated, (expected.float() / 255 - 0.5) / 0.5)


_WHEEL_COMMANDS = """import contextlib, io, json, sys
import hgzoo
from hgzoo.cli.main import main
out = {"file": hgzoo.__file__}
for argv in json.loads(sys.argv[1]):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
    out[" ".join(argv)] = [code, buf.getvalue()]
print(json.dumps(out))
"""


def test_recipes_ship_in_the_wheel(wheel_install, tmp_path):
    """A wheel install (no repository around it) trains with PaddleClas's recipe: --print-config shows it. The
    commands run through hgzoo's main in one process of the wheel's python, the console script in its own."""
    import json

    import yaml

    from hgzoo.train.config import find_recipe, load_recipe
    argvs = [["train", "--model", "pphgnet_small", "--print-config"], ["models", "pphgnet_tiny"],
             *([command, "--help"] for command in ("validate", "predict", "export", "convert"))]
    r = wheel_install.run("-c", _WHEEL_COMMANDS, json.dumps(argvs), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    ran = json.loads(r.stdout.splitlines()[-1])
    assert str(wheel_install.site) in ran["file"], ran["file"]
    code, out = ran["train --model pphgnet_small --print-config"]
    assert code == 0, r.stderr[-3000:]
    printed = yaml.safe_load(out)
    recipe = load_recipe(find_recipe("pphgnet_small"))
    assert {k: printed[k] for k in recipe} == recipe
    assert printed["epochs"] == 600 and printed["lr_base"] == 0.5 and printed["lr_base_size"] == 1024
    for command in ("validate", "predict", "export"):  # the rest of the journey from the wheel alone
        code, out = ran[f"{command} --help"]
        assert code == 0 and "--checkpoint" in out, (command, r.stderr[-3000:])
    code, out = ran["models pphgnet_tiny"]
    assert code == 0 and out.splitlines()[1].startswith("pphgnet_tiny "), (out, r.stderr[-3000:])
    code, out = ran["convert --help"]
    assert code == 0 and "--output" in out, r.stderr[-3000:]
    # the console script ([project.scripts]; pip --target puts it in bin/), run by the wheel's python
    script = str(wheel_install.site / "bin" / "hgzoo")
    r = wheel_install.run(script, "--help", cwd=tmp_path)
    assert r.returncode == 0 and "usage: hgzoo" in r.stdout, r.stderr
    assert all(c in r.stdout for c in ("models", "train", "validate", "predict", "export", "convert"))


@pytest.mark.parametrize("name", ["pphgnet_tiny", "hrnet_w18_c"])
def test_layer_decay_scales_each_stage(name):
    """--layer-decay d: stage i of n (the stem is 0) trains at d ** (n - i) of the LR, the head at 1."""
    import hgzoo
    from hgzoo.train.optim import param_groups
    model = hgzoo.create_model(name, num_classes=3)
    groups = model.stage_modules()
    scale = {id(p): g["lr_mult"] for g in param_groups(model, 1e-4, layer_decay=0.5) for p in g["params"]}
    for i, group in enumerate(groups):
        for module in group:
            assert {scale[id(p)] for p in module.parameters()} == {0.5 ** (len(groups) - i)}
    assert {scale[id(p)] for p in model.get_classifier().parameters()} == {1.0}


def test_reset_head_gives_a_new_classifier(data, tmp_path):
    """--reset-head: the backbone comes from the checkpoint, the classifier is new though the class counts match."""
    import hgzoo
    from hgzoo.train.config import resolve_config
    from hgzoo.train.engine import build_inputs
    start = hgzoo.create_model(MODEL, num_classes=2)
    torch.save({"model": start.state_dict()}, tmp_path / "start.pt")
    base = COMMON + ["--data-dir", str(data), "--initial-checkpoint", str(tmp_path / "start.pt")]
    kept = build_inputs(resolve_config(base), torch.device("cpu")).model.state_dict()
    new = build_inputs(resolve_config(base + ["--reset-head"]), torch.device("cpu")).model.state_dict()
    for k, v in start.state_dict().items():
        assert torch.equal(kept[k], v)
        assert torch.equal(new[k], v) != k.startswith("head.fc.")


def test_init_timm_reinitialises_the_model(data, tmp_path):
    """--init timm: the depthwise convs get timm's fan_out std, sqrt(2 / (C k^2)), not PaddleClas's sqrt(2 / k^2);
    an --initial-checkpoint's weights replace it."""
    import math

    import hgzoo
    from hgzoo.train.config import resolve_config
    from hgzoo.train.engine import build_inputs

    def depthwise_std(argv):
        model = build_inputs(resolve_config(COMMON + ["--data-dir", str(data)] + argv), torch.device("cpu")).model
        conv = max((m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.groups == m.in_channels > 1),
                   key=lambda m: m.weight.numel())
        k2 = conv.kernel_size[0] * conv.kernel_size[1]
        return float(conv.weight.detach().std()), math.sqrt(2 / (conv.out_channels * k2)), math.sqrt(2 / k2)

    std, fan_out, fan_in = depthwise_std(["--init", "timm"])
    assert std == pytest.approx(fan_out, rel=0.1)
    std, fan_out, fan_in = depthwise_std([])
    assert std == pytest.approx(fan_in, rel=0.1)
    start = hgzoo.create_model(MODEL, num_classes=2)
    torch.save({"model": start.state_dict()}, tmp_path / "start.pt")
    argv = COMMON + ["--data-dir", str(data), "--init", "timm", "--initial-checkpoint", str(tmp_path / "start.pt")]
    loaded = build_inputs(resolve_config(argv), torch.device("cpu")).model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in start.state_dict().items())


# ---------------------------------------------------------------------------------------------- the typed config

def test_config_is_frozen_typed_and_stored_as_a_plain_dict():
    import dataclasses

    import yaml

    from hgzoo.train.config import DEFAULTS, TrainConfig, resolve_config
    cfg = resolve_config(["--model", "PPLCNetV2_small", "--lr-mult-list", "0.1", "0.1", "0.2", "0.2", "0.3"])
    assert isinstance(cfg, TrainConfig) and cfg.model == "pplcnetv2_small" and cfg.lr_mult_list == (0.1, 0.1, 0.2,
                                                                                                  0.2, 0.3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 1.0
    plain = cfg.to_dict()
    assert list(plain) == [*DEFAULTS, "recipe"] and plain["lr_mult_list"] == [0.1, 0.1, 0.2, 0.2, 0.3]
    assert yaml.safe_load(yaml.safe_dump(plain)) == plain  # what checkpoints and config.yaml hold
    assert TrainConfig.from_dict(plain) == cfg and TrainConfig().to_dict() == {**DEFAULTS, "recipe": None}
    assert dataclasses.replace(cfg, num_classes=7).num_classes == 7


@pytest.mark.parametrize("key, bad, good", [
    ("img_size", 7, 8), ("img_size", 4097, 4096), ("crop_scale_min", 0.0, 1.0), ("lr", 0.0, 1e-6),
    ("ema_decay", 1.0, 0.999), ("momentum", 1.0, 0.0), ("freeze", 6, 5), ("epochs", 0, 1), ("hflip", 1.5, 1.0),
    ("label_smoothing", float("nan"), 0.1), ("std", [0.5, 0.0, 0.5], [0.5, 0.1, 0.5]),
    ("decay_epochs", [30, -1], [30, 0]), ("lr_mult_list", [1, 1, 1, 1], [1, 1, 1, 1, 1]),
])
def test_ranges_are_checked_when_a_config_is_made(key, bad, good):
    """PaddleClas-sane ranges, the old range table's: each refused just outside, accepted at its edge."""
    from hgzoo.train.config import ConfigError, TrainConfig
    flag = "--" + key.replace("_", "-")
    with pytest.raises(ConfigError, match=flag):
        TrainConfig(**{key: bad})
    assert getattr(TrainConfig(**{key: good}), key) == (tuple(good) if isinstance(good, list) else good)


def test_every_span_of_the_table_is_enforced():
    """Each setting with a span refuses a value past each finite end of it and takes one inside."""
    from hgzoo.train.config import SETTINGS, ConfigError, TrainConfig
    spans = [s for s in SETTINGS if s.span]
    assert len(spans) >= 40
    for s in spans:
        lo, hi = (float(v) for v in s.span[1:-1].split(","))
        n = 5 if s.key == "lr_mult_list" else 1

        def make(value, s=s, n=n):
            return TrainConfig(**{s.key: [value] * n if s.many else value})
        inside = lo if s.span[0] == "[" else lo + 1 if lo + 1 < hi else (lo + hi) / 2
        assert getattr(make(int(inside) if s.kind is int else inside), s.key) is not None
        for outside in (lo - 1 if s.span[0] == "[" else lo, hi + 1 if s.span[-1] == "]" else hi):
            if math.isfinite(outside):
                with pytest.raises(ConfigError, match=s.flag):
                    make(outside)


def test_recipe_values_are_typed(tmp_path):
    """A recipe's value of the wrong type or outside its choices is refused before training, naming the flag."""
    from hgzoo.train.config import ConfigError, resolve_config
    for line, message in (("epochs: 10.5", "--epochs must be a whole number"), ("opt: lamb", "--opt must be one of"),
                          ("ema: maybe", "--ema must be true or false"), ("lr: fast", "--lr must be a finite"),
                          ("mean: 0.5", "--mean takes a list"), ("sched: null", "--sched cannot be none")):
        recipe = tmp_path / "r.yaml"
        recipe.write_text(f"model: pphgnet_tiny\n{line}\n")
        with pytest.raises(ConfigError, match=message):
            resolve_config(["--config", str(recipe)])
    recipe.write_text("model: pphgnet_tiny\nepochs: 12.0\nmean: [0.5]\n")
    cfg = resolve_config(["--config", str(recipe)])
    assert cfg.epochs == 12 and type(cfg.epochs) is int and cfg.mean == (0.5,)


def test_stored_configs_of_older_runs_are_read():
    """An older run's stored config (recipe_batch_size, its lr the base of the scaling) reads as today's;
    keys that no version wrote are refused."""
    from hgzoo.train.config import ConfigError, TrainConfig, effective_lr
    old = {"model": "pphgnet_small", "lr": 0.5, "recipe_batch_size": 1024, "batch_size": 64}
    cfg = TrainConfig.from_dict(old)
    assert (cfg.lr, cfg.lr_base, cfg.lr_base_size) == (None, 0.5, 1024)
    assert effective_lr(old, 2048)[0] == effective_lr(cfg, 2048)[0] == 1.0  # a plain dict is read the same way
    with pytest.raises(ConfigError, match=r"unknown settings \['learning_rate'\]"):
        TrainConfig.from_dict({"learning_rate": 0.1})


def test_eval_data_config_reads_a_stored_config(data):
    """Readers of train.py checkpoints pass the stored plain dict; it gives what the run evaluated with."""
    from hgzoo.train.config import resolve_config
    from hgzoo.train.data import eval_data_config
    cfg = resolve_config(COMMON + ["--data-dir", str(data), "--in-chans", "1", "--eval-resize-short", "36"])
    assert eval_data_config(cfg.to_dict(), None) == eval_data_config(cfg, None)
    assert eval_data_config(cfg, None)["mean"] == (0.5,) and eval_data_config(cfg, None)["resize_short"] == 36


def test_recipes_name_no_machine_path():
    """A shipped recipe cites its sources, never a path of the machine it was written on."""
    import re

    from hgzoo.train.config import CONFIG_DIR
    recipes = sorted(CONFIG_DIR.glob("*.yaml"))
    assert len(recipes) >= 10
    machine = re.compile(r"(?<![\w.])/(work|root|home|tmp|Users|mnt)/")
    once_cited = "values from " + "/".join(("", "work", "shared", "REFERENCE.md"))  # what pphgnet_small.yaml cited
    assert machine.search(once_cited)
    for path in recipes:
        assert not machine.search(path.read_text()), path.name
