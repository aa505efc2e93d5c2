"""What a timm user types (issue 26): timm's benchmark.py and train.py flags, timm's dataset split names, and
``hgzoo.data.create_transform(**timm.data.resolve_data_config(...))``, against timm's own code where it has one.
validate.py's spellings are tested in test_validate.py, the ``hgzoo`` console script in test_train.py."""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import torch
from image_samples import photos, small_model_name, write_png
from PIL import Image

from benchmarks.harness.cli import CPU_BACKENDS, GPU_BACKENDS, build_parser, config_from_args
from benchmarks.harness.subjects import BenchmarkInputError
from hgzoo.data import create_transform
from hgzoo.train.config import ConfigError, resolve_config

timm = pytest.importorskip("timm")


def _help(parse) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit):
        parse(["--help"])
    return buf.getvalue()


# --- benchmark.py ---------------------------------------------------------------------------------------------------

def _bench(*argv: str):
    return config_from_args(build_parser().parse_args(list(argv)))


def test_benchmark_timm_flags_choose_the_backends_and_precisions():
    assert _bench("--device", "cpu").backends == CPU_BACKENDS
    cfg = _bench("--device", "cuda", "--amp", "-b", "8")  # timm's AMP on a GPU: fp16 autocast
    assert cfg.backends == GPU_BACKENDS and cfg.precisions == ["fp16"] and cfg.batch_sizes == [8]
    cfg = _bench("--torchcompile", "--amp", "--bench", "inference")
    assert cfg.backends == ["compile"] and cfg.precisions == ["bf16"]
    assert _bench("--torchcompile", "--device", "cuda").backends == ["cuda-compile"]
    shown = _help(build_parser().parse_args)
    for flag in ("--amp", "--channels-last", "--torchcompile", "--bench", "--torchscript", "--device"):
        assert flag in shown, flag


@pytest.mark.parametrize("argv, words", [
    (["--bench", "train"], "inference only"),
    (["--channels-last"], "deploy and cuda backends already time channels-last"),
    (["--torchscript"], "no TorchScript backend"),
    (["--torchcompile", "eager"], "only inductor"),
    (["--torchcompile", "--backend", "eager"], "leave out --backend"),
    (["--device", "cuda", "--backend", "eager"], "--device cuda contradicts --backend eager"),
    (["--amp", "--precision", "fp32"], "--amp is --precision fp16"),
])
def test_benchmark_timm_flags_it_cannot_honour_are_refused(argv, words):
    with pytest.raises(BenchmarkInputError, match=words):
        _bench(*argv)


# --- train.py -------------------------------------------------------------------------------------------------------

def _image_tree(root: Path, splits: tuple[str, ...]) -> Path:
    img = next(iter(photos(("coffee",)).values()))[:64, :64]
    for split in splits:
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
            write_png(root / split / cls / "0.png", img)
    return root


@pytest.mark.parametrize("splits", [("train", "validation"), ("training", "val"), ("train", "eval", "valid"),
                                    ("training", "evaluation")])
def test_split_folders_are_found_as_timm_finds_them(tmp_path, splits):
    """train.py's default --train-split train / --val-split val find the folder timm's create_dataset would use."""
    from timm.data.dataset_factory import _search_split

    from hgzoo.train.data import find_split
    root = _image_tree(tmp_path, splits)
    for split in ("train", "validation", "val"):
        assert find_split(root, split) == Path(_search_split(str(root), split)), split
    assert find_split(root, "test") == root / "test"  # no synonym: the error names the folder asked for


def test_grad_checkpointing_and_validation_folder_take_effect(tmp_path):
    """--grad-checkpointing turns on the model's gradient checkpointing; data in timm's train/validation layout
    trains with the default --val-split val."""
    from hgzoo.train.engine import build_inputs
    data = _image_tree(tmp_path / "data", ("train", "validation"))
    base = ["--model", small_model_name(), "--data-dir", str(data), "--workers", "0", "--img-size", "32"]
    on = build_inputs(resolve_config([*base, "--grad-checkpointing"]), torch.device("cpu"))
    off = build_inputs(resolve_config(base), torch.device("cpu"))
    assert on.model.grad_checkpointing is True and off.model.grad_checkpointing is False
    assert on.num_classes == 2


def test_timm_schedule_and_compile_spellings():
    base = ["--model", small_model_name(), "--data-dir", "x"]
    cfg = resolve_config([*base, "--sched", "piecewise", "--decay-epochs", "9", "19", "--decay-rate", "0.5",
                          "--torchcompile", "inductor"])
    assert (cfg.decay_gamma, cfg.torchcompile) == (0.5, True)
    from timm.scheduler import MultiStepLRScheduler

    from hgzoo.train.optim import LRSchedule
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = LRSchedule(opt, 1.0, 1, 30, cfg.sched, 0, 0, cfg.decay_epochs, cfg.decay_gamma, 0)
    timm_sched = MultiStepLRScheduler(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0),
                                      decay_t=[10, 20], decay_rate=0.5)
    # timm's milestone m takes effect one epoch earlier (its t + 1 convention): its [10, 20] is hgzoo's [9, 19]
    for epoch in (0, 8, 9, 10, 18, 19, 20, 29):
        assert sched.lr_at(epoch) == pytest.approx(timm_sched._get_lr(epoch)[0]), epoch
    same_numbers = LRSchedule(opt, 1.0, 1, 30, "piecewise", 0, 0, [10, 20], 0.5, 0)
    assert same_numbers.lr_at(9) != timm_sched._get_lr(9)[0]  # the check can fail: hence no --decay-milestones alias
    with pytest.raises(SystemExit):
        resolve_config([*base, "--torchcompile", "eager"])


def test_experiment_and_checkpoint_hist(tmp_path):
    base = ["--model", small_model_name(), "--data-dir", "x"]
    assert resolve_config([*base, "--experiment", "e1", "--output", str(tmp_path)]).output == str(tmp_path / "e1")
    assert resolve_config([*base, "--experiment", "e1"]).output == str(Path("output/train/e1"))  # timm's default
    assert resolve_config(base).output is None  # without it: output/<model>, as before
    assert resolve_config([*base, "--checkpoint-hist", "1"]).checkpoint_hist == 1
    assert resolve_config([*base, "--checkpoint-hist", "10"]).checkpoint_hist == 10  # timm's default: kept as timm
    with pytest.raises(ConfigError, match=r"--checkpoint-hist must be in \[1, inf\), got 0"):
        resolve_config([*base, "--checkpoint-hist", "0"])
    from hgzoo.train.config import build_parser as train_parser
    shown = _help(train_parser().parse_args)
    for flag in ("--grad-checkpointing", "--experiment", "--checkpoint-hist", "validation"):
        assert flag in shown, flag


# --- create_transform(**timm's data config) -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.fromarray(next(iter(photos(("astronaut",)).values()))).resize((517, 333))


@pytest.mark.parametrize("interpolation, crop_pct", [("nearest", 0.95), ("bilinear", 0.875), ("bicubic", 0.9)])
def test_create_transform_takes_timms_data_config(photo, interpolation, crop_pct):
    """The same image through timm's create_transform and hgzoo's with timm's resolve_data_config: the same
    geometry (nearest is exact); bilinear/bicubic within one uint8 level (torch's antialiased kernels against
    Pillow's, see hgzoo.data.transforms)."""
    model = timm.create_model("resnet18", pretrained=False)
    cfg = timm.data.resolve_data_config({"interpolation": interpolation, "crop_pct": crop_pct}, model=model)
    assert {"input_size", "crop_mode", "crop_pct"} <= set(cfg)
    ref, ours = timm.data.create_transform(**cfg)(photo), create_transform(**cfg)(photo)
    assert ours.shape == ref.shape == (3, 224, 224)
    levels = (ours - ref).abs() * torch.tensor(cfg["std"]).view(3, 1, 1) * 255
    assert levels.max() < (1e-3 if interpolation == "nearest" else 1.01)
    assert (levels > 0.5).float().mean() < 0.01
    # The check can fail: hgzoo's own crop_pct rounds (round(224 / 0.95) = 236), timm's floors (235).
    own = create_transform(crop_size=224, crop_pct=crop_pct, interpolation=interpolation, resize_backend="pil",
                           size_rounding="torchvision", mean=cfg["mean"], std=cfg["std"])(photo)
    if round(224 / crop_pct) != int(224 / crop_pct):
        assert ((own - ref).abs() * 255 * 0.229).max() > 5


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(crop_mode="squash"), ValueError, "crop_mode='squash' is not supported"),
    (dict(is_training=True), ValueError, "training=True"),
    (dict(input_size=(3, 224, 160)), ValueError, "square"),
    (dict(input_size=(3, 224, 224), scale=(0.08, 1.0)), TypeError, "unknown key"),
])
def test_create_transform_says_which_timm_keywords_it_does_not_support(kwargs, error, words):
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        create_transform(**kwargs)


def test_create_transform_input_size_sets_the_channels(photo):
    t = create_transform(input_size=(1, 96, 96), crop_pct=1.0, crop_mode="center", is_training=False,
                         mean=(0.5,), std=(0.5,))
    assert t(photo).shape == (1, 96, 96)
